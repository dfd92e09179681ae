"""Docker's rules for what a container runs: argv, env, working dir, user, hostname."""

from __future__ import annotations

from dataclasses import replace

import pytest

from vxn.core.envvars import parse_env_file, resolve_env
from vxn.core.guestspec import (
    DEFAULT_PATH,
    RunOptions,
    build_spec,
    merge_env,
    parse_memory,
)
from vxn.core.manifest import ImageConfig
from vxn.errors import InvalidArgument

CID = "abcdef0123456789" * 4
IMAGE = ImageConfig(
    os="linux",
    architecture="amd64",
    entrypoint=("/entry",),
    cmd=("default", "cmd"),
    env=("PATH=/image/bin", "IMG=1"),
    working_dir="/srv",
    user="app",
)
BARE = ImageConfig(os="linux", architecture="amd64", cmd=("sh",))


@pytest.mark.parametrize(
    ("image", "options", "argv"),
    [
        (IMAGE, RunOptions(), ("/entry", "default", "cmd")),
        (IMAGE, RunOptions(command=("x", "y")), ("/entry", "x", "y")),
        (IMAGE, RunOptions(entrypoint="/other"), ("/other",)),
        (IMAGE, RunOptions(entrypoint="/other", command=("a",)), ("/other", "a")),
        (IMAGE, RunOptions(entrypoint="", command=("ls",)), ("ls",)),
        (BARE, RunOptions(), ("sh",)),
        (BARE, RunOptions(command=("echo", "")), ("echo", "")),
    ],
)
def test_argv_follows_entrypoint_and_cmd(
    image: ImageConfig, options: RunOptions, argv: tuple[str, ...]
) -> None:
    assert build_spec(image, options, container_id=CID).argv == argv


def test_no_command_at_all_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="no command specified"):
        build_spec(replace(BARE, cmd=None), RunOptions(), container_id=CID)


def test_env_defaults_image_and_user_in_order() -> None:
    spec = build_spec(IMAGE, RunOptions(env=("IMG=2", "NEW=x")), container_id=CID)
    assert spec.env == ("PATH=/image/bin", f"HOSTNAME={CID[:12]}", "IMG=2", "NEW=x")
    bare = build_spec(BARE, RunOptions(hostname="h"), container_id=CID)
    assert bare.env == (f"PATH={DEFAULT_PATH}", "HOSTNAME=h")


def test_a_tty_adds_term_unless_the_image_or_user_sets_it() -> None:
    options = RunOptions(tty=True, rows=24, cols=80)
    spec = build_spec(BARE, options, container_id=CID)
    assert spec.env == (f"PATH={DEFAULT_PATH}", f"HOSTNAME={CID[:12]}", "TERM=xterm")
    assert (spec.tty, spec.rows, spec.cols) == (True, 24, 80)
    user = build_spec(BARE, replace(options, env=("TERM=vt100",)), container_id=CID)
    assert user.env[-1:] == ("TERM=vt100",)
    assert "TERM=xterm" not in user.env
    image = build_spec(replace(BARE, env=("TERM=dumb",)), options, container_id=CID)
    assert [e for e in image.env if e.startswith("TERM=")] == ["TERM=dumb"]
    plain = build_spec(BARE, RunOptions(), container_id=CID)
    assert not plain.tty
    assert not any(e.startswith("TERM=") for e in plain.env)


def test_workdir_user_and_hostname() -> None:
    spec = build_spec(IMAGE, RunOptions(), container_id=CID)
    assert (spec.cwd, spec.user, spec.hostname) == ("/srv", "app", CID[:12])
    spec = build_spec(IMAGE, RunOptions(workdir="/w", user="0:0", hostname="h"), container_id=CID)
    assert (spec.cwd, spec.user, spec.hostname) == ("/w", "0:0", "h")
    assert build_spec(BARE, RunOptions(), container_id=CID).cwd == "/"
    assert build_spec(IMAGE, RunOptions(user=""), container_id=CID).user == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RunOptions(workdir="rel"), "must be an absolute path"),
        (RunOptions(user="a b"), "user 'a b' is invalid"),
        (RunOptions(user="a:b:c"), "is invalid"),
        (RunOptions(hostname="-x"), "hostname '-x' is invalid"),
        (RunOptions(env=("NOEQUALS",)), "want KEY=VALUE"),
        (RunOptions(tty=True, rows=65536, cols=80), "terminal size 65536x80 is invalid"),
    ],
)
def test_bad_options_are_refused(options: RunOptions, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        build_spec(IMAGE, options, container_id=CID)


def test_dash_e_key_takes_the_callers_value_or_is_dropped() -> None:
    caller = {"HOME": "/root", "EMPTY": ""}
    assert resolve_env(["A=1", "HOME", "EMPTY", "UNSET"], caller) == ["A=1", "HOME=/root", "EMPTY="]


def test_env_file() -> None:
    text = '# comment\n\nA=1\n  B="quoted" \nC\n'
    assert parse_env_file(text, "f") == ["A=1", 'B="quoted" ', "C"]
    with pytest.raises(InvalidArgument, match="env file f: line 1"):
        parse_env_file("bad key=1\n", "f")


def test_merge_replaces_in_place() -> None:
    assert merge_env(["A=1", "B=2"], ["A=3"]) == ("A=3", "B=2")


@pytest.mark.parametrize(
    ("text", "mib"), [("256m", 256), ("1g", 1024), ("1G", 1024), ("268435456", 256), ("512mb", 512)]
)
def test_memory_sizes(text: str, mib: int) -> None:
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "lots", "1.5g", "1000k", "-1m"])
def test_bad_memory_sizes(text: str) -> None:
    with pytest.raises(InvalidArgument, match="memory"):
        parse_memory(text)
