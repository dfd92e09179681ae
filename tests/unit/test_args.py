"""vxn.args: Docker's command line conventions, click's usage errors."""

from __future__ import annotations

import re
from typing import Any

import pytest

from vxn import args


@args.command("run", interspersed=False)
@args.argument("image")
@args.argument("command", nargs=-1)
@args.option("-d", "--detach", is_flag=True, help="Detach.")
@args.option("-i", "--interactive", is_flag=True)
@args.option("-t", "--tty", is_flag=True)
@args.option("-e", "--env", multiple=True, help="Set K=V.")
@args.option("-h", "--hostname")
@args.option("--cpus", type=args.IntRange(min=1))
@args.option("--pull", type=args.Choice(["always", "never"]), default="never")
@args.option("--sig-proxy", is_flag=True, default=True)
@args.option("--tls-verify", is_flag=True, default=None)
@args.option("--rm", "remove", is_flag=True)
@args.option("-p", "--publish", multiple=True, hidden=True)
def run(obj: Any, **values: Any) -> dict[str, Any]:
    """Run a command.

    A second paragraph."""
    return {"obj": obj, **values}


@args.command("rm")
@args.argument("containers", metavar="CONTAINER...", nargs=-1, required=True)
@args.option("-f", "--force", is_flag=True)
def rm(obj: Any, **values: Any) -> dict[str, Any]:
    return values


def _run(*argv: str) -> dict[str, Any]:
    result: dict[str, Any] = run.main("app", argv)
    return result


def test_defaults() -> None:
    assert _run("img") == {
        "obj": "app",
        "image": "img",
        "command": (),
        "detach": False,
        "interactive": False,
        "tty": False,
        "env": (),
        "hostname": None,
        "cpus": None,
        "pull": "never",
        "sig_proxy": True,
        "tls_verify": None,  # three-valued: not given
        "remove": False,
        "publish": (),
    }


def test_docker_style_flags_and_values() -> None:
    got = _run("-it", "-eA=1", "-e", "B=2", "--env=C=3", "--env", "D", "-h", "box", "img")
    assert (got["interactive"], got["tty"]) == (True, True)
    assert got["env"] == ("A=1", "B=2", "C=3", "D")
    assert got["hostname"] == "box"  # -h is the command's own: no help
    got = _run("--sig-proxy=false", "--tls-verify", "--rm", "--cpus", "2", "img")
    assert (got["sig_proxy"], got["tls_verify"], got["remove"], got["cpus"]) == (
        False,
        True,
        True,
        2,
    )
    assert _run("--tls-verify=false", "img")["tls_verify"] is False


def test_the_container_argv_starts_at_the_image() -> None:
    got = _run("-d", "img", "sh", "-c", "echo -d --rm", "--help", "-x")
    assert got["detach"] is True
    assert got["remove"] is False
    assert got["command"] == ("sh", "-c", "echo -d --rm", "--help", "-x")
    assert _run("--", "-img", "-d")["image"] == "-img"


def test_options_mix_with_arguments_elsewhere() -> None:
    assert rm.main(None, ["a", "-f", "b"]) == {"containers": ("a", "b"), "force": True}


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--bogus", "img"], "No such option '--bogus'."),
        (["-x", "img"], "No such option '-x'."),
        (["-ix"], "No such option '-x'."),
        (["img", "-e"], None),  # after the image: the container's argv
        (["-e"], "Option '-e' requires an argument."),
        (["--env"], "Option '--env' requires an argument."),
        ([], "Missing argument 'IMAGE'."),
        (["--cpus", "0", "img"], "Invalid value for '--cpus': 0 is not in the range x>=1."),
        (["--cpus", "two", "img"], "Invalid value for '--cpus': 'two' is not a valid integer."),
        (
            ["--pull", "sometimes", "img"],
            "Invalid value for '--pull': 'sometimes' is not one of 'always', 'never'.",
        ),
        (["--rm=maybe", "img"], "Invalid value for '--rm': 'maybe' is not a valid boolean."),
    ],
)
def test_usage_errors(argv: list[str], error: str | None) -> None:
    if error is None:
        _run(*argv)
        return
    with pytest.raises(args.UsageError) as caught:
        _run(*argv)
    assert caught.value.message == error
    assert caught.value.show() == (
        f"Usage: run [OPTIONS] IMAGE [COMMAND...]\nTry 'run --help' for help.\n\nError: {error}\n"
    )


def test_a_required_list_and_extra_arguments() -> None:
    with pytest.raises(args.UsageError, match=r"^Missing argument 'CONTAINER\.\.\.'\.$"):
        rm.main(None, ["-f"])
    with pytest.raises(args.UsageError, match=r"^Got unexpected extra argument \(b c\)$"):
        args.command("one")(args.argument("x")(lambda obj, x: x)).main(None, ["a", "b", "c"])


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(None, ["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "Usage: run [OPTIONS] IMAGE [COMMAND...]\n\n  Run a command.\n\n  A second paragraph.\n\n"
    )
    assert "-d, --detach" in out
    assert "-e, --env TEXT" in out and "Set K=V." in out  # noqa: PT018
    assert "--cpus INTEGER" in out
    assert "--pull [always|never]" in out
    assert "--publish" not in out  # hidden
    assert re.search(r"\n  --help +Show this message and exit\.\n$", out)
    assert "-h, --help" not in out  # -h is --hostname here
    assert rm.main(None, ["-h"]) == 0
    assert "-h, --help" in capsys.readouterr().out


def _group() -> args.Group:
    image = args.Group("image", help="Manage images.")
    image.add_command(rm, "remove")
    loaded: list[str] = []

    def load(name: str) -> args.Command:
        loaded.append(name)
        return run

    root = args.Group(
        "vxn",
        lambda obj, *, state_dir: (obj, state_dir),
        options=[args.Option(("--state-dir",), "state_dir")],
        load=load,
        names=("run",),
        version="vxn version 1",
    )
    root.add_command(image)
    root.loaded = loaded  # type: ignore[attr-defined]
    return root


def test_a_group_dispatches_and_loads_on_use(capsys: pytest.CaptureFixture[str]) -> None:
    root = _group()
    assert root.main("app", ["image", "remove", "-f", "a"]) == {"containers": ("a",), "force": True}
    assert root.loaded == []  # type: ignore[attr-defined]
    got = root.main("app", ["--state-dir", "/s", "run", "img", "true"])
    assert got["obj"] == ("app", "/s")
    assert got["command"] == ("true",)
    assert root.loaded == ["run"]  # type: ignore[attr-defined]
    assert root.main("app", ["-v"]) == 0
    assert capsys.readouterr().out == "vxn version 1\n"
    assert root.main("app", ["--help"]) == 0
    out = capsys.readouterr().out
    assert root.main("app", []) == 0
    assert capsys.readouterr().out == out
    assert "Commands:\n  image  Manage images.\n  run    Run a command.\n" in out
    with pytest.raises(args.UsageError, match=r"^No such command 'frob'\.$") as caught:
        root.main("app", ["frob"])
    assert caught.value.show().startswith("Usage: vxn [OPTIONS] COMMAND [ARGS]...\n")
    with pytest.raises(args.UsageError) as caught:
        root.main("app", ["image", "remove", "--bogus"])
    assert "Try 'vxn image remove --help' for help." in caught.value.show()


def test_paths_are_checked_when_asked(tmp_path: Any) -> None:
    convert = args.Path(exists=True, file_okay=False)
    assert convert(str(tmp_path)) == tmp_path
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        convert(str(tmp_path / "f"))
    with pytest.raises(ValueError, match="does not exist"):
        convert(str(tmp_path / "nope"))


def test_a_bad_value_the_command_finds_shows_its_usage() -> None:
    @args.command("logs")
    @args.option("-n", "--tail", default="all")
    def logs(obj: Any, tail: str) -> None:
        raise args.BadParameter(f"{tail!r}: want a number of lines or all", param_hint="--tail")

    with pytest.raises(args.UsageError) as caught:
        logs.main(None, ["-n", "x"], "vxn logs")
    assert caught.value.show() == (
        "Usage: vxn logs [OPTIONS]\nTry 'vxn logs --help' for help.\n\n"
        "Error: Invalid value for '--tail': 'x': want a number of lines or all\n"
    )
