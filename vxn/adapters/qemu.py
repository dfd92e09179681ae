"""The `qemu` backend: one qemu-system-x86_64 per guest, outliving vxnd.

    <root>/<name>/      (root is <run dir>/guests)
        qmp.sock        the monitor
        console.sock    hvc0 (a virtconsole); console.log is QEMU's own copy of it
        kernel.log      ttyS0: the kernel's messages
        qemu.pid        the daemonized QEMU
        qemu.err        what QEMU said while starting
        labels.json     GuestConfig.labels (vxn's id, image, origin), written before QEMU starts

QEMU is started with -daemonize: its parent exits once the sockets listen, so the
start is an event, and the guest is nobody's child, so it outlives vxnd. Its end is
seen on QMP (SHUTDOWN) and on a pidfd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from vxn.adapters import process
from vxn.adapters.hypervisor import Console, GuestInfo
from vxn.adapters.qmp import Qmp
from vxn.adapters.statedir import atomic_write
from vxn.core import protocol
from vxn.core.guestboot import CMDLINE_QEMU, PROBE_OK
from vxn.core.vm import NAME, GuestConfig, QemuPaths, State, qemu_argv
from vxn.errors import AlreadyExists, Internal, NotFound, Unavailable

BINARY = "qemu-system-x86_64"
START_TIMEOUT = 30.0
_STATES = {"prelaunch": State.PAUSED, "paused": State.PAUSED, "running": State.RUNNING}


class SocketConsole:
    """hvc0 through QEMU's chardev socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            return await self._reader.read(1 << 16)
        except OSError:
            return b""

    async def write(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class QemuBackend:
    name = "qemu"
    cmdline = CMDLINE_QEMU

    def __init__(
        self, root: Path, *, accel: str | Callable[[], Awaitable[str]], binary: str = BINARY
    ) -> None:
        self.root = root
        self.accel = accel  # "kvm", "tcg", or how to find out (when a guest is first made)
        self.binary = binary
        self._qmp: dict[str, Qmp] = {}
        self._consoles: dict[str, SocketConsole] = {}

    def paths(self, name: str) -> QemuPaths:
        if not NAME.fullmatch(name):
            raise NotFound(f"guest {name!r}: no such guest")
        d = self.root / name
        return QemuPaths(
            qmp=str(d / "qmp.sock"),
            console=str(d / "console.sock"),
            console_log=str(d / "console.log"),
            kernel_log=str(d / "kernel.log"),
            pidfile=str(d / "qemu.pid"),
        )

    async def create(self, config: GuestConfig) -> GuestInfo:
        paths = self.paths(config.name)
        accel = self.accel if isinstance(self.accel, str) else await self.accel()
        guest_dir = self.root / config.name
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            guest_dir.mkdir(mode=0o700)
        except FileExistsError:
            raise AlreadyExists(f"guest {config.name}: already exists") from None
        labels = json.dumps(dict(config.labels)).encode()
        await asyncio.to_thread(atomic_write, guest_dir / "labels.json", labels, 0o600)
        argv = [*qemu_argv(self.binary, config, paths, accel), "-daemonize"]
        try:
            done = await process.run(argv, limit=START_TIMEOUT, check=False)
            if done.returncode != 0:
                said = done.stderr.decode(errors="replace").strip().replace("\n", " ")
                raise Unavailable(f"guest {config.name}: qemu failed to start: {said[-300:]}")
            self._qmp[config.name] = await Qmp.connect(Path(paths.qmp))
        except BaseException:
            await asyncio.shield(self.destroy(config.name))
            raise
        return await self.info(config.name)

    async def console(self, name: str) -> Console:
        path = self.paths(name).console
        try:
            reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        except OSError as e:
            raise Unavailable(f"guest {name}: console {path}: {e.strerror or e}") from None
        self._consoles[name] = SocketConsole(reader, writer)
        return self._consoles[name]

    async def unpause(self, name: str) -> None:
        await self._monitor(name).execute("cont")

    async def pause(self, name: str) -> None:
        await self._monitor(name).execute("stop")

    async def wait(self, name: str) -> GuestInfo:
        await asyncio.shield(self._monitor(name).stopped)
        return await self.info(name)

    async def signal(self, name: str, signum: int) -> None:
        console = self._consoles.get(name)
        if console is None:
            raise NotFound(f"guest {name}: no console attached to signal through")
        await console.write(protocol.signal_frame(signum))

    async def destroy(self, name: str) -> None:
        qmp, console = self._qmp.pop(name, None), self._consoles.pop(name, None)
        if console is not None:
            await console.close()
        if qmp is not None:
            with contextlib.suppress(Unavailable):
                await qmp.execute("quit", limit=2.0)
            await qmp.close()
        pid = self._pid(name)
        if pid is not None:
            await _kill(pid)
        shutil.rmtree(self.root / name, ignore_errors=True)

    async def list(self) -> list[GuestInfo]:
        if not self.root.is_dir():
            return []
        names = sorted(p.name for p in self.root.iterdir() if NAME.fullmatch(p.name))
        return [await self.info(n) for n in names]

    async def adopt(self, name: str) -> GuestInfo:
        if self._pid(name) is None:
            raise NotFound(f"guest {name}: no running qemu for it under {self.root}")
        if name not in self._qmp:
            self._qmp[name] = await Qmp.connect(Path(self.paths(name).qmp))
        return await self.info(name)

    async def info(self, name: str) -> GuestInfo:
        pid = self._pid(name)
        if pid is None:
            return GuestInfo(name=name, state=State.GONE, backend=self.name)
        labels = await asyncio.to_thread(self._labels, name)
        qmp = self._qmp.get(name)
        state = State.RUNNING
        if qmp is not None and not qmp.stopped.done():
            with contextlib.suppress(Unavailable):
                status = (await qmp.execute("query-status"))["status"]
                state = _STATES.get(status, State.SHUTDOWN)
        elif qmp is not None:
            state = State.SHUTDOWN
        return GuestInfo(name=name, state=state, backend=self.name, pid=pid, labels=labels)

    async def boot_log(self, name: str) -> bytes:
        try:
            return await asyncio.to_thread(Path(self.paths(name).kernel_log).read_bytes)
        except OSError:
            return b""

    async def exit_witness(self, name: str) -> int | None:
        return None  # the exit frame in console.log is the only witness

    async def console_log(self, name: str) -> bytes | None:
        try:
            return await asyncio.to_thread(Path(self.paths(name).console_log).read_bytes)
        except OSError:
            return None

    def _labels(self, name: str) -> dict[str, str]:
        """labels.json, or {} when missing or not vxn's format (then the guest is foreign)."""
        try:
            labels = json.loads((self.root / name / "labels.json").read_text())
        except (OSError, ValueError):
            return {}
        ok = isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
        return labels if ok else {}

    def _monitor(self, name: str) -> Qmp:
        qmp = self._qmp.get(name)
        if qmp is None:
            raise NotFound(f"guest {name}: not created or adopted by this vxnd")
        return qmp

    def _pid(self, name: str) -> int | None:
        """QEMU's pid, when it still runs this guest (a reused pid is not ours)."""
        try:
            pid = int(Path(self.paths(name).pidfile).read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"vxn-{name}".encode() in cmdline.split(b"\0") else None


async def probe_kvm(vmlinux: Path, initrd: Path, log: Path, *, limit: float) -> bool:
    """Whether a KVM guest of this kernel reaches userspace within `limit` s (it can hang:
    ENVIRONMENT.md 10). `initrd` prints PROBE_OK and powers off, which ends QEMU."""
    argv = [
        *(BINARY, "-machine", "pc,accel=kvm", "-cpu", "host", "-m", "128"),
        *("-nodefaults", "-no-user-config", "-display", "none", "-nic", "none"),
        *("-kernel", str(vmlinux), "-initrd", str(initrd), "-serial", f"file:{log}"),
        *("-append", "console=ttyS0 quiet panic=-1 rdinit=/init", "-no-reboot"),
    ]
    try:
        done = await process.run(argv, limit=limit, check=False)
    except (Internal, Unavailable):
        return False
    try:
        seen = await asyncio.to_thread(log.read_bytes)
    except OSError:
        return False
    return done.returncode == 0 and PROBE_OK in seen


async def _kill(pid: int, grace: float = 3.0) -> None:
    """SIGTERM (QEMU exits at once), then SIGKILL; wait on a pidfd: QEMU is not our child."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
            if await _readable(fd, wait):
                return
    finally:
        os.close(fd)


async def _readable(fd: int, limit: float) -> bool:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: None if ready.done() else ready.set_result(None))
    try:
        async with asyncio.timeout(limit):
            await ready
        return True
    except TimeoutError:
        return False
    finally:
        loop.remove_reader(fd)
