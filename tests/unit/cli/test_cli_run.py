"""`vxn run` against a stub vxnd (conftest.py): create, attach before start, relay, exit code."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from vxn.cli.commands.run import _env
from vxn.errors import InvalidArgument

if TYPE_CHECKING:
    from conftest import Stub  # tests/unit/cli/conftest.py, the stub vxnd


@pytest.mark.parametrize(
    ("flags", "name"),
    [
        (["-p", "80:80"], "-p/--publish"),
        (["-v", "/a:/b"], "-v/--volume"),
        (["--restart", "always"], "--restart"),
        (["--network", "host"], "--network host"),
    ],
)
def test_unsupported_flags_are_refused(stub: Stub, flags: list[str], name: str) -> None:
    result = stub("run", *flags, "img")
    assert isinstance(result.exception, InvalidArgument)
    assert f"run: {name} is not supported yet" in str(result.exception)
    assert stub.vxnd.containers == {}


def test_env_comes_from_files_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_CALLER", "yes")
    monkeypatch.delenv("UNSET_HERE", raising=False)
    env_file = tmp_path / "env"
    env_file.write_text("# c\nA=1\nFROM_CALLER\nUNSET_HERE\n")
    assert _env(("B=2", "A=3"), (env_file,)) == ["A=1", "FROM_CALLER=yes", "B=2", "A=3"]
    with pytest.raises(InvalidArgument, match="cannot read it"):
        _env((), (tmp_path / "missing",))


def test_attached_run_is_create_attach_start_and_the_exit_code(stub: Stub) -> None:
    result = stub("run", "--rm", "--name", "web", "-e", "A=1", "img", "echo", "hi", "there")
    assert (result.stdout, result.stderr, result.return_value) == ("hi there\n", "", 0)
    c = stub.only()
    assert c.options == {
        "image": "img", "command": ["echo", "hi", "there"], "env": ["A=1"], "rm": True,
        "read_only": False, "tty": False, "stdin": False, "name": "web",
    }  # fmt: skip
    assert c.sent == [{"stdin": False, "logs": False}]
    calls = [call for call in stub.vxnd.calls if "/v1/containers" in call]
    assert calls == [
        "POST /v1/containers/create",
        f"POST /v1/containers/{c.id}/attach",
        f"POST /v1/containers/{c.id}/start",
    ]
    assert stub.vxnd.calls[:2] == ["GET /v1/version", "POST /v1/containers/create"]
    assert not any("/v1/images" in call for call in stub.vxnd.calls)  # create finds the image


def test_the_container_exit_code_and_messages(stub: Stub) -> None:
    assert stub("run", "img", "exit", "42").return_value == 42
    result = stub("run", "img", "nope")
    assert result.return_value == 127
    assert result.stderr == 'vxn: run img: exec: "nope": executable file not found in $PATH\n'


def test_interactive_stdin_is_sent_binary_safe_then_eof(stub: Stub) -> None:
    data = os.urandom(300_000)
    result = stub("run", "-i", "img", "sha256")
    assert result.return_value == 0  # no stdin given: an empty one, then eof
    result = stub("run", "-i", "img", "sha256", input=data)
    assert result.stdout == hashlib.sha256(data).hexdigest() + "\n"
    sent = list(stub.vxnd.containers.values())[-1].sent
    assert sent[0] == {"stdin": True, "logs": False}
    assert sent[-1] == {"eof": True}
    assert list(stub.vxnd.containers.values())[-1].options["stdin"] is True


def test_out_and_err_stay_apart(stub: Stub) -> None:
    result = stub("run", "-i", "img", "cat", input=b"abc")
    assert (result.stdout, result.stderr, result.return_value) == ("abc", "e", 0)


def test_without_i_stdin_is_not_sent(stub: Stub) -> None:
    result = stub("run", "img", "echo", "x", input=b"secret")
    assert result.return_value == 0
    assert stub.only().sent == [{"stdin": False, "logs": False}]


def test_detached_run_prints_the_id_and_starts_without_attaching(stub: Stub) -> None:
    result = stub("run", "-d", "img", "wait")
    c = stub.only()
    assert (result.stdout, result.return_value) == (f"{c.id}\n", 0)
    assert c.state == "running"
    assert not any("/attach" in call for call in stub.vxnd.calls)


def test_it_needs_a_terminal_on_stdin(stub: Stub) -> None:
    result = stub("run", "-it", "img", "sh")
    assert isinstance(result.exception, InvalidArgument)
    assert str(result.exception) == (
        "run: the input device is not a TTY; drop -t, or run from a terminal"
    )
    assert stub.vxnd.containers == {}


def test_bad_detach_keys_are_refused_before_anything_is_created(stub: Stub) -> None:
    result = stub("run", "--detach-keys", "ctrl-9", "img", "echo")
    assert "unknown key 'ctrl-9'" in str(result.exception)
    assert stub.vxnd.containers == {}


def test_pull_missing_pulls_only_what_is_not_there(stub: Stub) -> None:
    result = stub("run", "alpine", "echo", "a")
    assert result.return_value == 0
    assert result.stdout == "a\n"  # the pull's report is on stderr
    assert result.stderr == (
        "Unable to find image 'alpine' locally\n"
        f"Digest: sha256:{'cd' * 32}\n"
        "Status: Downloaded newer image for alpine:latest\n"
    )
    assert stub("run", "alpine", "echo", "b").stderr == ""
    assert sum("/v1/images/pull" in call for call in stub.vxnd.calls) == 1


def test_pull_always_and_never(stub: Stub) -> None:
    assert stub("run", "--pull", "always", "img", "echo").return_value == 0
    assert "POST /v1/images/pull?ref=img&progress=0" in stub.vxnd.calls
    stub.vxnd.calls.clear()
    result = stub("run", "--pull", "never", "other", "echo")
    assert str(result.exception) == "image other: no such image"
    assert not any("/v1/images/" in call for call in stub.vxnd.calls)
