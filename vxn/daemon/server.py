"""vxnd's life: the singleton lock, the API socket, readiness, and a clean shutdown.

One vxnd per run dir: a non-blocking flock on vxnd.lock (which then holds our pid).
Whoever holds it owns the socket path, so a socket file found there is stale and
is replaced. The socket is 0660 with the configured group when that group exists.
Readiness and shutdown are reported with sd_notify (systemd Type=notify, and the
CLI's auto-start). Everything is event-driven: an idle vxnd sleeps in epoll.
"""

from __future__ import annotations

import asyncio
import fcntl
import grp
import importlib
import logging
import os
import signal
import socket
from collections.abc import MutableMapping
from pathlib import Path

from aiohttp import web

from vxn import __version__
from vxn.adapters.statedir import RunDir, StateDir
from vxn.daemon.api import Context, make_app
from vxn.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger("vxnd")

SOCKET_MODE = 0o660
_SD_LISTEN_FDS_START = 3


class Daemon:
    """Startup and shutdown around the aiohttp app; signals are left to run()."""

    def __init__(self, ctx: Context, env: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.ctx = ctx
        self.run = RunDir(ctx.settings.run_dir)
        # Read once and dropped, so the guests' processes we start never inherit them.
        self._notify = env.pop("NOTIFY_SOCKET", None)
        self._activated = _activated_socket(env)
        self._lock_fd: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._lock_fd = take_lock(self.run)
        sock: socket.socket | None = None
        try:
            StateDir(self.ctx.settings.state_dir).ensure()
            if self.ctx.containers is not None:
                await self.ctx.containers.reconcile()  # before serving: ps shows the truth
            sock = self._activated or bind_socket(self.run.socket, self.ctx.settings.socket_group)
            runner = web.AppRunner(make_app(self.ctx), handle_signals=False, shutdown_timeout=5.0)
            await runner.setup()
            self._runner = runner
            await web.SockSite(runner, sock).start()
        except BaseException:
            if sock is not None:
                sock.close()  # the site did not take it over
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.ctx.containers is not None:
            await self.ctx.containers.close()  # ends the streams; the guests run on
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._lock_fd is not None:
            if self._activated is None:
                self.run.socket.unlink(missing_ok=True)
            os.close(self._lock_fd)  # after the unlink: the next vxnd may bind at once
            self._lock_fd = None

    def notify(self, message: str, *, level: int = logging.WARNING) -> None:
        if self._notify:
            try:
                sd_notify(self._notify, message)
            except OSError as e:
                log.log(level, "sd_notify %s: %s", self._notify, e.strerror or e)


async def run(ctx: Context) -> None:
    """Serve until SIGTERM or SIGINT."""
    daemon = Daemon(ctx)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)  # before start: an early SIGTERM still cleans up
    try:
        await daemon.start()
        log.info("version %s (pid %d) ready on %s", __version__, os.getpid(), daemon.run.socket)
        daemon.notify(f"READY=1\nSTATUS=serving on {daemon.run.socket}")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_preload(daemon))
            await stop.wait()
        log.info("stopping")
        # An auto-starting CLI only listened for READY=1 and is gone by now.
        daemon.notify("STOPPING=1", level=logging.DEBUG)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await daemon.stop()


async def _preload(daemon: Daemon) -> None:
    """Import the registry client (oras, requests: ~0.3 s) while idle, so that the
    first pull does not wait for it; a STATUS line says when vxnd is idle for real."""
    try:
        await asyncio.to_thread(importlib.import_module, "vxn.adapters.registry_client")
    except ImportError as e:
        log.warning("registry client unavailable (%s): pulls will fail", e)
    daemon.notify(f"STATUS=serving on {daemon.run.socket}; warmed up", level=logging.DEBUG)


def take_lock(run: RunDir) -> int:
    """Hold vxnd.lock for our lifetime and write our pid into it; fail if another vxnd has it."""
    run.ensure()
    fd = os.open(run.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FailedPrecondition(
            f"another vxnd is running for {run.root}: stop it, or use another --run-dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, b"%d\n" % os.getpid())
    return fd


def bind_socket(path: Path, group: str) -> socket.socket:
    """Bind the API socket 0660 from the start (umask), replacing a stale file."""
    if len(os.fsencode(path)) >= 108:
        raise InvalidArgument(f"socket {path}: path longer than 107 bytes; use a shorter --run-dir")
    path.unlink(missing_ok=True)  # we hold the lock, so nobody else serves it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o777 & ~SOCKET_MODE)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    _set_group(path, group)
    return sock


def _set_group(path: Path, group: str) -> None:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.debug("socket %s: group %s does not exist; leaving the group as is", path, group)
        return
    try:
        os.chown(path, -1, gid)
    except OSError as e:
        log.warning("socket %s: cannot set group %s: %s", path, group, e.strerror or e)


def _activated_socket(env: MutableMapping[str, str]) -> socket.socket | None:
    """The listening socket systemd passed us (vxnd.socket), if any (sd_listen_fds)."""
    if env.get("LISTEN_PID") != str(os.getpid()) or int(env.get("LISTEN_FDS", "0") or 0) < 1:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    try:
        os.set_inheritable(_SD_LISTEN_FDS_START, False)
        return socket.socket(fileno=_SD_LISTEN_FDS_START)
    except OSError as e:
        raise InvalidArgument(
            f"LISTEN_FDS: fd {_SD_LISTEN_FDS_START} is not a usable socket ({e.strerror}); "
            "check vxnd.socket"
        ) from None


def sd_notify(address: str, message: str) -> None:
    """Send one datagram to NOTIFY_SOCKET: a path, or `@name` for an abstract socket."""
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        raise OSError(f"unsupported NOTIFY_SOCKET {address!r}")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(address)
        s.sendall(message.encode())


def pid_of(run: RunDir) -> int | None:
    """The pid a running vxnd wrote into its lock file (None when unreadable)."""
    try:
        return int(run.daemon_lock.read_text().strip())
    except (OSError, ValueError):
        return None
