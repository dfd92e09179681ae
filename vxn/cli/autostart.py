"""Connecting to vxnd, starting it first when nobody answers (ARCHITECTURE.md, decision 5).

The rules: one starter at a time (flock on the run dir's autostart.lock, then a
re-try, since another CLI may have won); vxnd runs fully detached (double fork,
setsid, stdio on /dev/null: it must never hold the caller's pipes, or
`vxn images | cat` would hang); readiness is an sd_notify READY=1 on an abstract
datagram socket, raced against the daemon's exit (pidfd), never polled; then
client and daemon handshake on the API version. VXN_NO_AUTOSTART=1 opts out.
"""

from __future__ import annotations

import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import NoReturn

from vxn import API_VERSION
from vxn.adapters.statedir import RunDir
from vxn.cli.client import Client, DaemonNotRunning
from vxn.config import Settings
from vxn.errors import FailedPrecondition, Unavailable

READY_TIMEOUT = 20.0
LOCK_TIMEOUT = READY_TIMEOUT + 10.0
# Inherited by vxnd from us, and meaningless (or harmful) there.
_DROP_ENV = ("NOTIFY_SOCKET", "JOURNAL_STREAM", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def connect(settings: Settings, env: Mapping[str, str] | None = None) -> Client:
    """A handshaken client for the run dir's vxnd, auto-starting it when allowed."""
    env = os.environ if env is None else env
    run = RunDir(settings.run_dir)
    try:
        return handshake(Client(run))
    except DaemonNotRunning:
        if env.get("VXN_NO_AUTOSTART") == "1":
            raise Unavailable(
                f"vxnd is not running at {run.socket} and VXN_NO_AUTOSTART=1: "
                "start vxnd (or systemctl start vxnd), or unset VXN_NO_AUTOSTART"
            ) from None
    with _autostart_lock(run):
        try:
            return handshake(Client(run))
        except DaemonNotRunning:
            start_daemon(settings, run, env)
    return handshake(Client(run))


def handshake(client: Client) -> Client:
    """Refuse a vxnd that speaks another API version; close the client on any failure."""
    try:
        reply = client.get("/v1/version")
        api = reply.get("api") if isinstance(reply, dict) else None
        if api != API_VERSION:
            raise FailedPrecondition(
                f"vxnd at {client.socket_path} speaks API v{api}, "
                f"this vxn needs v{API_VERSION}: restart vxnd"
            )
    except BaseException:
        client.close()
        raise
    return client


def start_daemon(settings: Settings, run: RunDir, env: Mapping[str, str]) -> int:
    """Start a detached vxnd for `settings` and return its pid once it has said READY=1."""
    child_env = {k: v for k, v in env.items() if k not in _DROP_ENV}
    argv = [sys.executable, "-m", "vxn.daemon.main", "--state-dir", str(settings.state_dir)]
    argv += ["--run-dir", str(settings.run_dir), "--log-file", str(run.log)]
    name = f"vxn-notify-{os.urandom(8).hex()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
        notify.bind(f"\0{name}")
        pid = _spawn_detached(argv, {**child_env, "NOTIFY_SOCKET": f"@{name}"})
        _wait_ready(notify, pid, run)
    return pid


@contextmanager
def _autostart_lock(run: RunDir) -> Iterator[None]:
    try:
        run.ensure()
        fd = os.open(run.autostart_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise Unavailable(
            f"vxnd is not running at {run.socket}, and auto-start cannot use {run.root}: "
            f"{e.strerror}; start vxnd, or set VXN_RUN_DIR to a directory you own"
        ) from None
    try:
        _flock(fd, LOCK_TIMEOUT, run)
        yield
    finally:
        os.close(fd)


class _LockTimeout(Exception):
    pass


def _flock(fd: int, timeout: float, run: RunDir) -> None:
    """Block on the lock, but only until the deadline: SIGALRM interrupts flock(2), no polling."""
    import fcntl
    import signal  # here and below: only a start needs them, and the CLI must start fast

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if threading.current_thread() is not threading.main_thread():
            fcntl.flock(fd, fcntl.LOCK_EX)  # signals only reach the main thread
            return

    def expire(signum: int, frame: object) -> NoReturn:
        raise _LockTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except _LockTimeout:
        raise Unavailable(
            f"vxnd auto-start: {run.autostart_lock} is still locked after {timeout:.0f}s "
            "by another vxn; retry, or start vxnd yourself"
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _spawn_detached(argv: list[str], env: dict[str, str]) -> int:
    """Double fork + setsid, so vxnd is nobody's child and has no terminal; returns its pid."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(rfd)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                _exec_detached(argv, env)
            os.write(wfd, b"%d" % grandchild)
            code = 0
        finally:
            os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as r:
        reported = r.read()
    os.waitpid(pid, 0)
    if not reported:
        raise Unavailable("vxnd auto-start: fork failed; start vxnd yourself")
    return int(reported)


def _exec_detached(argv: list[str], env: dict[str, str]) -> NoReturn:
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # no inherited pipe may outlive the caller
        os.chdir("/")
        os.execve(argv[0], argv, env)
    finally:
        os._exit(127)


def _wait_ready(notify: socket.socket, pid: int, run: RunDir) -> None:
    """Wait for READY=1, or the daemon's exit, or the deadline, whichever comes first."""
    deadline = time.monotonic() + READY_TIMEOUT
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        raise _failed("vxnd exited during start-up", run) from None
    except OSError:
        pidfd = None  # no pidfds here: the deadline still bounds the wait
    try:
        watched = [notify.fileno()] + ([pidfd] if pidfd is not None else [])
        while (remaining := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select(watched, [], [], remaining)
            if notify.fileno() in ready:
                if "READY=1" in notify.recv(4096).decode(errors="replace").splitlines():
                    return
            elif ready:
                raise _failed("vxnd exited during start-up", run)
        raise _failed(f"vxnd did not report ready within {READY_TIMEOUT:.0f}s", run)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _failed(what: str, run: RunDir) -> Unavailable:
    try:
        lines = [ln for ln in run.log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    tail = " | ".join(lines[-3:]) or "no log output"
    return Unavailable(f"{what}: {tail}; see {run.log}")
