"""Test helpers for vxnd: in-process servers on a private loop, and real-process hygiene.

`in_process_daemon` runs the real Daemon (lock, socket, API) with any image service
on a thread, so blocking clients can talk to it; `cli_against` drives a
command line (through the CLI's `invoke`, passed in: nothing imports the CLI) against one.
`VxnDirs` makes short state/run dirs for real `vxn`/`vxnd` processes (a unix
socket path must stay under 108 bytes) and, on exit, stops every vxnd serving them.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from vxn.adapters.statedir import RunDir
from vxn.config import Settings
from vxn.core.platform import Platform
from vxn.daemon.api import Context, ImageAPI
from vxn.daemon.server import Daemon
from vxn.testing.clirunner import Result, invoke as invoke_cli

T = TypeVar("T")
PLATFORM = Platform(os="linux", architecture="amd64")


class LoopThread:
    """An event loop on its own thread; `run()` a coroutine on it from the caller's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="vxn-test-loop")

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def __exit__(self, *exc: object) -> None:
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@contextmanager
def in_process_daemon(
    settings: Settings, images: ImageAPI, platform: Platform = PLATFORM
) -> Iterator[Daemon]:
    with LoopThread() as lt:
        daemon = Daemon(Context(settings=settings, images=images, platform=platform), env={})
        lt.run(daemon.start())
        try:
            yield daemon
        finally:
            lt.run(daemon.stop())


Invoke = Callable[..., Result]


@contextmanager
def cli_against(
    cli: Callable[[Sequence[str]], object], root: Path, images: ImageAPI
) -> Iterator[Invoke]:
    """`invoke(*args, input=None)`: run the CLI (exceptions propagate) against a vxnd in root/."""
    settings = Settings(state_dir=root / "s", run_dir=root / "r")
    config = root / "vxn.toml"
    config.write_text("")
    env = {"VXN_NO_AUTOSTART": "1", "VXN_CONFIG": str(config)}
    flags = ["--state-dir", str(settings.state_dir), "--run-dir", str(settings.run_dir)]

    def invoke(*args: str, input: bytes | str | None = None) -> Result:
        return invoke_cli(cli, [*flags, *args], input=input, env=env, catch_exceptions=False)

    with in_process_daemon(settings, images):
        yield invoke


@contextmanager
def serve_app(app: web.Application, socket_path: Path) -> Iterator[None]:
    """Serve any aiohttp app on a unix socket (a fake or misbehaving vxnd)."""
    with LoopThread() as lt:
        runner = web.AppRunner(app)
        lt.run(runner.setup())
        try:
            lt.run(web.UnixSite(runner, str(socket_path)).start())
            yield
        finally:
            lt.run(runner.cleanup())


class VxnDirs:
    """Short temporary state and run dirs, and the env that points real processes at them."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="vxn-", dir="/tmp"))
        self.state = self.root / "s"
        self.run = RunDir(self.root / "r")
        self.config = self.root / "vxn.toml"
        self.config.write_text("")  # keep a real /etc/vxn/vxn.toml out of the tests

    def env(self, **extra: str) -> dict[str, str]:
        drop = ("NOTIFY_SOCKET", "JOURNAL_STREAM", "LISTEN_PID", "LISTEN_FDS")
        env = {k: v for k, v in os.environ.items() if not k.startswith("VXN_") and k not in drop}
        env.update(
            VXN_STATE_DIR=str(self.state),
            VXN_RUN_DIR=str(self.run.root),
            VXN_CONFIG=str(self.config),
        )
        env.update(extra)
        return env

    def daemons(self) -> list[int]:
        return daemon_pids(self.run.root)

    def cleanup(self) -> None:
        for pid in self.daemons():
            terminate(pid)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> VxnDirs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def vxn_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vxn", *args]


def vxnd_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "vxn.daemon.main", *args]


def daemon_pids(run_dir: Path) -> list[int]:
    """Every live vxnd serving `run_dir` (auto-started ones too), by --run-dir or VXN_RUN_DIR."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _serves(entry, os.fsencode(run_dir)):
            found.append(int(entry.name))
    return sorted(found)


def _serves(proc: Path, run_dir: bytes) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        if b"vxn.daemon.main" not in argv:
            return False
        if b"--run-dir" in argv:
            return argv[argv.index(b"--run-dir") + 1 :][:1] == [run_dir]
        return b"VXN_RUN_DIR=" + run_dir in (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def terminate(pid: int, timeout: float = 10.0) -> bool:
    """SIGTERM a process (not necessarily our child) and wait for it to die; SIGKILL if it won't.

    Returns whether it went on SIGTERM alone.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if select.select([pidfd], [], [], timeout)[0]:
            return True
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        select.select([pidfd], [], [], timeout)
        return False
    except ProcessLookupError:
        return True
    finally:
        os.close(pidfd)


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait for any process to exit, on its pidfd; whether it did within the timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)
