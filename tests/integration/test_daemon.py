"""vxnd as a real process: readiness, the socket, signals, the singleton, idle CPU."""

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vxn.cli.client import Client
from vxn.daemon.server import pid_of
from vxn.testing.daemon import VxnDirs, vxn_argv, vxnd_argv

TIMEOUT = 30.0


@pytest.fixture
def dirs() -> Iterator[VxnDirs]:
    with VxnDirs() as d:
        yield d


class Notify:
    """A NOTIFY_SOCKET of our own, at a path or abstract."""

    def __init__(self, root: Path, abstract: bool) -> None:
        name = f"vxn-test-{os.urandom(6).hex()}"
        self.address = f"@{name}" if abstract else str(root / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(f"\0{name}" if abstract else self.address)
        self.sock.settimeout(TIMEOUT)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().splitlines()


@contextmanager
def vxnd(
    dirs: VxnDirs, *args: str, abstract: bool = False, **popen: object
) -> Iterator[tuple[subprocess.Popen[bytes], Notify]]:
    notify = Notify(dirs.root, abstract)
    env = dirs.env(NOTIFY_SOCKET=notify.address)
    popen.setdefault("stderr", subprocess.PIPE)
    with notify.sock, subprocess.Popen(vxnd_argv(*args), env=env, **popen) as proc:  # type: ignore[call-overload]
        try:
            yield proc, notify
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.communicate(timeout=TIMEOUT)


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.mark.parametrize(("abstract", "sig"), [(False, signal.SIGTERM), (True, signal.SIGINT)])
def test_ready_serve_and_a_clean_exit(dirs: VxnDirs, abstract: bool, sig: signal.Signals) -> None:
    with vxnd(dirs, abstract=abstract) as (proc, notify):
        assert "READY=1" in notify.receive()
        assert notify.receive()[0].endswith("warmed up")
        assert pid_of(dirs.run) == proc.pid
        mode = dirs.run.socket.stat().st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) == 0o660
        with Client(dirs.run) as client:
            assert client.get("/v1/version") == {"version": "0.1.0", "api": 1}
        proc.send_signal(sig)
        assert proc.wait(TIMEOUT) == 0
        assert notify.receive() == ["STOPPING=1"]
    assert not dirs.run.socket.exists()


def test_a_second_vxnd_for_the_same_run_dir_exits_1(dirs: VxnDirs) -> None:
    with vxnd(dirs) as (_, notify):
        assert "READY=1" in notify.receive()
        second = subprocess.run(
            vxnd_argv(), env=dirs.env(), capture_output=True, text=True, timeout=TIMEOUT
        )
        assert second.returncode == 1
        assert f"vxnd: another vxnd is running for {dirs.run.root}: stop it" in second.stderr
        assert dirs.daemons() == [pid_of(dirs.run)]


def test_an_idle_vxnd_uses_no_cpu(dirs: VxnDirs) -> None:
    with vxnd(dirs) as (proc, notify):
        assert "READY=1" in notify.receive()
        assert notify.receive()[0].endswith("warmed up")  # its one-off preload is done
        subprocess.run(vxn_argv("images"), env=dirs.env(), check=True, capture_output=True)
        before = _cpu_ticks(proc.pid)
        time.sleep(1.0)  # measuring idleness, not waiting for an event
        assert _cpu_ticks(proc.pid) - before <= 2


def test_logs_carry_syslog_priorities_under_journald(dirs: VxnDirs) -> None:
    r, w = os.pipe()
    st = os.fstat(w)
    notify = Notify(dirs.root, abstract=True)
    env = dirs.env(NOTIFY_SOCKET=notify.address, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    with notify.sock, os.fdopen(r, "rb") as stderr:
        with subprocess.Popen(vxnd_argv(), env=env, stderr=w) as proc:
            os.close(w)
            assert "READY=1" in notify.receive()
            proc.terminate()
            assert proc.wait(TIMEOUT) == 0
        lines = stderr.read().decode().splitlines()
    assert lines[0] == f"<6>vxnd: version 0.1.0 (pid {proc.pid}) ready on {dirs.run.socket}"
    assert lines[-1] == "<6>vxnd: stopping"


_ACTIVATE = """
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen()
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself keeps CLOEXEC
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.executable, [sys.executable, "-m", "vxn.daemon.main", *sys.argv[2:]])
"""


def test_a_socket_from_systemd_is_used_and_left_in_place(dirs: VxnDirs) -> None:
    dirs.run.root.mkdir(parents=True)
    argv = [sys.executable, "-c", _ACTIVATE, str(dirs.run.socket), "--run-dir", str(dirs.run.root)]
    notify = Notify(dirs.root, abstract=True)
    env = dirs.env(NOTIFY_SOCKET=notify.address)
    with notify.sock, subprocess.Popen(argv, env=env, pass_fds=()) as proc:
        assert "READY=1" in notify.receive()
        result = subprocess.run(
            vxn_argv("images", "-q"), env=dirs.env(VXN_NO_AUTOSTART="1"), capture_output=True
        )
        assert result.returncode == 0, result.stderr
        proc.terminate()
        assert proc.wait(TIMEOUT) == 0
    assert dirs.run.socket.exists()  # systemd's, not ours to remove


def test_vxnd_version() -> None:
    result = subprocess.run(vxnd_argv("--version"), capture_output=True, text=True, check=True)
    assert result.stdout == "vxnd version 0.1.0\n"
