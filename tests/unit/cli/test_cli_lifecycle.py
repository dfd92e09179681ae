"""The container commands through the real CLI and a real vxnd on the fake backend
(VXN_TESTING_FAKE_BACKEND: guests are FakeHypervisor services, see its docstring: the
main process echoes stdin, exits 143 on TERM; exec prints its argv or exits N)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest
from data.guestimages import APP_NAME, app_image

from vxn.cli.main import invoke as vxn_cli
from vxn.testing.clirunner import Result, invoke as invoke_cli
from vxn.testing.daemon import VxnDirs, vxn_argv

TIMEOUT = 60


class Vxn:
    def __init__(self, dirs: VxnDirs) -> None:
        self.env = dirs.env(VXN_TESTING_FAKE_BACKEND="1")

    def __call__(self, *args: str, input: bytes | None = None) -> Result:
        """In this process; the exit code a shell would see is in `.code`."""
        result = invoke_cli(vxn_cli, args, input=input, env=self.env)
        result.code = result.return_value if result.exception is None else 125  # type: ignore[attr-defined]
        return result

    def run_d(self, *args: str) -> str:
        result = self("run", "-d", *args, APP_NAME)
        assert result.exception is None, result.exception
        return str(result.stdout.strip())


@pytest.fixture(scope="module")
def vxn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vxn]:
    archive = app_image(tmp_path_factory.mktemp("img") / "app.tar")
    with VxnDirs() as dirs:
        run = Vxn(dirs)
        loaded = subprocess.run(vxn_argv("load", "-i", str(archive)), env=run.env, timeout=TIMEOUT)
        assert loaded.returncode == 0
        yield run


def test_run_d_then_ps_shows_it_up_and_quiet_and_json(vxn: Vxn) -> None:
    cid = vxn.run_d("--name", "up1")
    assert len(cid) == 64
    lines = vxn("ps").stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
    (row,) = [line for line in lines if line.startswith(cid[:12])]
    assert row.split("   ")[-1].strip() == "up1"
    assert " Up " in row
    assert APP_NAME in row
    assert cid[:12] in vxn("ps", "-q").stdout.split()
    assert f"{cid}\n" in vxn("ps", "-q", "--no-trunc").stdout
    (doc,) = [
        json.loads(j) for j in vxn("ps", "--format", "json").stdout.splitlines() if cid[:12] in j
    ]
    assert (doc["Names"], doc["State"], doc["Image"]) == ("up1", "running", APP_NAME)
    assert doc["Status"].startswith("Up ")
    vxn("rm", "-f", "up1")


def test_stop_wait_and_ps_a_with_a_status_filter(vxn: Vxn) -> None:
    vxn.run_d("--name", "st1")
    stopped = vxn("stop", "-t", "5", "st1", "nope")
    assert (stopped.stdout, stopped.code) == ("st1\n", 1)
    assert "nope" in stopped.stderr
    assert vxn("wait", "st1").stdout == "143\n"
    assert "st1" not in vxn("ps").stdout
    exited = vxn("ps", "-a", "--filter", "status=exited").stdout
    assert any(line.endswith("st1") and "Exited (143) " in line for line in exited.splitlines())
    assert "st1" not in vxn("ps", "--filter", "status=running").stdout
    bad = vxn("ps", "--filter", "status=bogus")
    assert "invalid filter 'status=bogus'" in str(bad.exception)
    vxn("rm", "st1")


def test_kill_rm_and_rm_f(vxn: Vxn) -> None:
    vxn.run_d("--name", "k1")
    vxn.run_d("--name", "k2")
    refused = vxn("rm", "k1")
    assert refused.code == 1
    assert "k1" in refused.stderr
    assert vxn("kill", "-s", "SIGKILL", "k1").stdout == "k1\n"
    assert vxn("wait", "k1").stdout == "137\n"
    assert vxn("rm", "k1").stdout == "k1\n"
    assert vxn("rm", "-f", "k2").stdout == "k2\n"
    assert not {"k1", "k2"} & set(vxn("ps", "-a", "--format", "json").stdout.split('"'))


def test_exec_prints_and_returns_its_code(vxn: Vxn) -> None:
    cid = vxn.run_d("--name", "ex1")
    said = vxn("exec", "ex1", "echo", "from", "inside")
    assert (said.stdout, said.code) == ("echo from inside\n", 0)
    assert vxn("exec", cid[:10], "exit", "7").code == 7
    piped = vxn("exec", "-i", "ex1", "cat", input=b"in and out")
    assert (piped.stdout, piped.code) == ("in and out", 0)
    assert (vxn("exec", "-d", "ex1", "cat").stdout, vxn("exec", "-d", "ex1", "cat").code) == ("", 0)
    vxn("stop", "ex1")
    stopped = vxn("exec", "-d", "ex1", "cat")
    assert str(stopped.exception) == "exec ex1: it is exited; start it first"
    vxn("rm", "ex1")


def test_attach_with_stdin_then_logs_keep_it(vxn: Vxn) -> None:
    vxn.run_d("-i", "--name", "at1")
    attached = vxn("attach", "at1", input=b"hello\n")
    assert (attached.stdout, attached.code) == ("hello\n", 0)  # its eof ended the container
    assert vxn("wait", "at1").stdout == "0\n"
    assert vxn("logs", "at1").stdout == "hello\n"
    stamped = vxn("logs", "-t", "at1").stdout
    assert stamped.endswith("Z hello\n")
    assert stamped[:4].isdigit()
    vxn("rm", "at1")


def test_start_restart_and_inspect(vxn: Vxn) -> None:
    cid = vxn.run_d("--name", "rs1")
    assert vxn("stop", "rs1").code == 0
    assert vxn("start", "rs1").stdout == "rs1\n"
    assert "rs1" in vxn("ps").stdout
    assert vxn("restart", "-t", "1", "rs1").stdout == "rs1\n"
    both = vxn("inspect", "rs1", APP_NAME, "nope")
    docs = json.loads(both.stdout)
    assert (docs[0]["id"], docs[0]["state"], len(docs)) == (cid, "running", 2)
    assert APP_NAME in json.dumps(docs[1])
    assert (both.stderr, both.code) == ("vxn: no such object: nope\n", 1)
    assert vxn("inspect", "--type", "image", "rs1").code == 1
    vxn("rm", "-f", "rs1")


def test_events_replay_and_stream_create_start_die_destroy(vxn: Vxn) -> None:
    since = f"{time.time():.3f}"
    assert vxn("run", "-i", "--rm", "--name", "ev1", APP_NAME, input=b"").code == 0  # eof ends it
    argv = vxn_argv("events", "--since", since, "--format", "json")
    with subprocess.Popen(argv, env=vxn.env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            replayed = [json.loads(proc.stdout.readline()) for _ in range(4)]
            vxn.run_d("--name", "ev2")  # and a live one
            live = json.loads(proc.stdout.readline())
        finally:
            proc.terminate()
    assert [(e["action"], e["name"]) for e in replayed] == [
        ("create", "ev1"), ("start", "ev1"), ("die", "ev1"), ("destroy", "ev1")
    ]  # fmt: skip
    assert replayed[2]["exit_code"] == 0
    assert (live["action"], live["name"]) == ("create", "ev2")
    text = vxn_argv("events", "--since", since)
    with subprocess.Popen(text, env=vxn.env, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.terminate()
    assert f" container create {replayed[0]['id']} (image={APP_NAME}, name=ev1)\n" in first
    vxn("rm", "-f", "ev2")
