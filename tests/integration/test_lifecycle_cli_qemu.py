"""The container lifecycle with real QEMU guests (TCG), through real vxn and vxnd
processes: run -d, ps, logs -f, exec in the guest, stop (trapped and ignored TERM),
wait, start with the kept disk, restart, rm -f, and nothing leaked after many. Cases share
guests: each boot takes seconds."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from data.guestimages import APP_NAME, app_image
from integration.qemuguests import qemus, tcg_vxnd

from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration

TIMEOUT = 120.0


class Vxn:
    def __init__(self, dirs: VxnDirs) -> None:
        self.dirs = dirs
        self.env = dirs.env()

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = vxn_argv(*args)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=TIMEOUT)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def until(self, what: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def vxn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vxn]:
    with tcg_vxnd(app_image(tmp_path_factory.mktemp("images") / "app.tar")) as dirs:
        yield Vxn(dirs)


SCRIPT = (
    '[ -f /kept ] && echo "found $(cat /kept)"; '
    'n=$(busybox od -An -tx1 -N8 /dev/urandom | busybox tr -d " \\n"); '
    'echo "$n" > /tmp/nonce; echo "$n" > /kept; echo "nonce=$n"; '
    'trap "echo bye; exit 42" TERM; '
    "i=0; while :; do echo line$i; i=$((i+1)); sleep 1; done"
)


def test_detached_ps_logs_f_exec_stop_wait_start_and_rm_f(vxn: Vxn) -> None:
    cid = vxn.ok("run", "-d", "--name", "lc", APP_NAME, "sh", "-c", SCRIPT).strip()
    assert len(cid) == 64
    with subprocess.Popen(
        vxn_argv("logs", "-f", "lc"), env=vxn.env, stdout=subprocess.PIPE, text=True
    ) as follow:
        assert follow.stdout is not None
        nonce = follow.stdout.readline().strip().removeprefix("nonce=")
        assert len(nonce) == 16
        assert follow.stdout.readline() == "line0\n"
        seen = time.monotonic()
        assert follow.stdout.readline() == "line1\n"  # followed live: written a second later
        assert time.monotonic() - seen > 0.5
        follow.terminate()
    (row,) = [json.loads(j) for j in vxn.ok("ps", "--format", "json").splitlines()]
    assert (row["Names"], row["ID"], row["State"]) == ("lc", cid[:12], "running")
    assert row["Status"].startswith("Up ")
    assert vxn.ok("exec", "lc", "cat", "/tmp/nonce") == f"{nonce}\n"  # written in the guest
    assert vxn("exec", "lc", "sh", "-c", "echo err >&2; exit 5").returncode == 5
    assert vxn.ok("stop", "lc") == "lc\n"
    assert vxn.ok("wait", "lc") == "42\n"
    assert "\nbye\n" in vxn.ok("logs", "lc")
    status = json.loads(vxn.ok("ps", "-a", "--format", "json"))["Status"]
    assert status.startswith("Exited (42) ")
    assert vxn.ok("start", "lc") == "lc\n"
    vxn.until(lambda: f"found {nonce}\n" in vxn.ok("logs", "lc"))  # its disk was kept
    assert vxn.ok("restart", "-t", "5", "lc") == "lc\n"
    vxn.until(lambda: vxn.ok("logs", "lc").count("found ") == 2)  # a third run, same disk
    assert vxn.ok("logs", "lc").count("\nbye\n") == 2  # the second run was stopped by TERM
    assert json.loads(vxn.ok("ps", "--format", "json"))["Status"].startswith("Up ")
    assert vxn.ok("rm", "-f", "lc") == "lc\n"
    assert vxn.ok("ps", "-a", "-q") == ""
    vxn.until(lambda: qemus(vxn.dirs) == [])


def test_stop_kills_what_ignores_term_after_t(vxn: Vxn) -> None:
    script = 'trap "" TERM; echo ready; while :; do sleep 1; done'
    vxn.ok("run", "-d", "--name", "ig", APP_NAME, "sh", "-c", script)
    vxn.until(lambda: vxn.ok("logs", "ig") == "ready\n")
    started = time.monotonic()
    assert vxn.ok("stop", "-t", "2", "ig") == "ig\n"
    assert time.monotonic() - started >= 2
    assert vxn.ok("wait", "ig") == "137\n"
    assert vxn.ok("rm", "ig") == "ig\n"


def test_five_detached_then_all_stopped_leave_nothing(vxn: Vxn) -> None:
    ids = [
        vxn.ok("run", "-d", APP_NAME, "sh", "-c", "echo up; while :; do sleep 1; done").strip()
        for _ in range(5)
    ]
    assert len(qemus(vxn.dirs)) == 5
    for cid in ids:
        vxn.until(lambda cid=cid: vxn.ok("logs", cid) == "up\n")
    assert set(vxn.ok("ps", "-q", "--no-trunc").split()) == set(ids)
    assert vxn.ok("stop", *ids).split() == ids
    assert vxn.ok("wait", *ids).split() == ["143"] * 5
    assert vxn.ok("rm", *ids).split() == ids
    assert qemus(vxn.dirs) == []
    assert vxn.ok("ps", "-a", "-q") == ""
    assert not list((vxn.dirs.run.root / "guests").iterdir())
    records = [p.name for p in (vxn.dirs.state / "containers").iterdir()]
    assert not set(records) & set(ids)
