"""A fake `Hypervisor` for the cheap cases: its "guest" is a script of console bytes.

The script is a function of the run's spec records (read back from the ramdisk, as
a guest would), so it can say the right hello and start marker, or the wrong ones.
After the script a plain guest stops when `stop` is set, else it hangs (a guest that
never boots). A `Service` script is a long-running guest instead: it answers the
frames vxn writes (stdin echo, EOF, signals, winsize, exec sessions) and powers off
after its main session's exit, as the real helper does.

Guest state lives in the fake, not in a console, so a second "vxnd" can adopt a
guest: like QEMU, the fake keeps a console log of everything the guest wrote, and
output written while no console was attached is only in that log. Every guest the
fake created is in `created`; `destroyed` lists names.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vxn.adapters.hypervisor import Console, GuestInfo
from vxn.core import protocol
from vxn.core.vm import GuestConfig, State
from vxn.errors import AlreadyExists, NotFound

Script = Callable[[dict[str, list[str]]], list[bytes]]
F = protocol.Frame


def normal(stdout: bytes = b"", code: int = 0) -> Script:
    """A guest that boots, prints `stdout` and exits with `code`."""

    def script(spec: dict[str, list[str]]) -> list[bytes]:
        nonce = spec["nonce"][0]
        return [
            b"noise\n" + protocol.hello_line(nonce),
            protocol.start_marker(nonce) + protocol.frame(F.STDOUT, stdout),
            protocol.exit_frame(code),
        ]

    return script


@dataclass
class Service:
    """A long-running guest. Main session: STDIN is echoed on stdout, EOF exits with
    `eof_code`, SIGKILL exits 137, a signal in `traps` exits with its code (others are
    ignored), WINSIZE prints `winsize R C`. Exec sessions: `exit N` exits N, `cat`
    echoes stdin until EOF, anything else prints its argv joined and exits 0."""

    banner: bytes = b""
    traps: Mapping[int, int] = field(default_factory=lambda: {15: 143})
    eof_code: int | None = 0

    def __call__(self, spec: dict[str, list[str]]) -> list[bytes]:
        nonce = spec["nonce"][0]
        banner = protocol.frame(F.STDOUT, self.banner) if self.banner else b""
        return [protocol.hello_line(nonce), protocol.start_marker(nonce) + banner]

    def react(self, kind: int, session: int, payload: bytes) -> list[bytes]:
        if kind == F.STDIN:
            return [protocol.frame(F.STDOUT, payload, session)]
        if kind == F.EOF:
            code = self.eof_code if session == 0 else 0
            return [] if code is None else [protocol.exit_frame(code, session)]
        if kind == F.SIGNAL:
            (signum,) = struct.unpack(">I", payload)
            code = 137 if signum == 9 else self.traps.get(signum) if session == 0 else 128 + signum
            return [] if code is None else [protocol.exit_frame(code, session)]
        if kind == F.WINSIZE:
            rows, cols = struct.unpack(">HH", payload)
            return [protocol.frame(F.STDOUT, b"winsize %d %d\n" % (rows, cols), session)]
        if kind == F.EXEC:
            argv = [v for k, v in protocol.decode_spec(payload) if k == "arg"]
            if argv[0] == "exit":
                return [protocol.exit_frame(int(argv[1]), session)]
            if argv[0] == "cat":
                return []
            said = protocol.frame(F.STDOUT, " ".join(argv).encode() + b"\n", session)
            return [said + protocol.exit_frame(0, session)]
        return []


class _Guest:
    def __init__(self, config: GuestConfig) -> None:
        self.config = config
        self.stopped = asyncio.Event()
        self.running = False
        self.log = bytearray()  # everything the guest wrote, as QEMU's console.log
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()  # what the console has not read
        self.script: Script | None = None
        self.stop_after_script = False  # a plain script: stop once it is read
        self.inbox = bytearray()  # frames vxn wrote, not yet whole
        self.written: list[bytes] = []

    def emit(self, data: bytes) -> None:
        self.log += data
        self.queue.put_nowait(data)
        if _main_exit(data):
            self.stopped.set()  # powered off; what it wrote is still in the channel


def _main_exit(data: bytes) -> bool:
    """Whether `data` holds the main session's EXIT frame (a header scan: good enough for
    the fake's own output, which never prints such bytes)."""
    at = 0
    while (at := data.find(bytes([F.EXIT]), at)) >= 0:
        if data[at + 1 : at + 9] == struct.pack(">II", 0, 4):
            return True
        at += 1
    return False


class _Console:
    def __init__(self, hv: FakeHypervisor, guest: _Guest) -> None:
        self._hv, self._guest = hv, guest
        self.closed = False

    @property
    def written(self) -> list[bytes]:
        return self._guest.written

    async def read(self) -> bytes:
        guest = self._guest
        if guest.queue.empty() and guest.stop_after_script:
            guest.stopped.set()
        if self.closed:
            return b""
        return await guest.queue.get()  # hvc0 stays open while the guest runs

    async def write(self, data: bytes) -> None:
        self._hv.write(self._guest, data)

    async def close(self) -> None:
        self.closed = True


class FakeHypervisor:
    name = "fake"
    cmdline = "console=fake"

    def __init__(
        self, script: Script, *, stop: bool = True, boot_log: bytes = b"", keeps_log: bool = True
    ) -> None:
        self.script, self.stop, self.log = script, stop, boot_log
        self.keeps_log = keeps_log  # like QEMU (console.log); False: like Xen
        self.guests: dict[str, _Guest] = {}
        self.destroyed: list[str] = []
        self.witness: dict[str, int] = {}  # exit_witness answers, as Xen's data/ node
        self.foreign: dict[str, dict[str, str]] = {}  # guests someone else made: their labels

    @property
    def created(self) -> dict[str, GuestConfig]:
        return {n: g.config for n, g in self.guests.items()}

    async def create(self, config: GuestConfig) -> GuestInfo:
        if config.name in self.guests or config.name in self.foreign:
            raise AlreadyExists(f"guest {config.name}: already exists")
        self.guests[config.name] = _Guest(config)
        return await self.info(config.name)

    async def console(self, name: str) -> Console:
        guest = self._guest(name)
        if guest.script is None:
            spec = _spec(await asyncio.to_thread(Path(guest.config.initrd).read_bytes))
            guest.script = self.script
            guest.stop_after_script = self.stop and not isinstance(self.script, Service)
            for chunk in self.script(spec):
                guest.emit(chunk)
        elif self.keeps_log:  # a reconnect: what was written meanwhile is only in the
            while not guest.queue.empty():  # log, as on QEMU (Xen's pty keeps it unread)
                guest.queue.get_nowait()
        return _Console(self, guest)

    async def unpause(self, name: str) -> None:
        self._guest(name).running = True

    async def pause(self, name: str) -> None:
        self._guest(name).running = False

    async def wait(self, name: str) -> GuestInfo:
        if name in self.guests:
            await self.guests[name].stopped.wait()
        return await self.info(name)

    async def signal(self, name: str, signum: int) -> None:
        self.write(self._guest(name), protocol.signal_frame(signum))

    async def destroy(self, name: str) -> None:
        self.destroyed.append(name)
        guest = self.guests.pop(name, None)
        if guest is not None:
            guest.stopped.set()
        self.foreign.pop(name, None)

    async def list(self) -> list[GuestInfo]:
        return [await self.info(n) for n in [*self.guests, *self.foreign]]

    async def adopt(self, name: str) -> GuestInfo:
        return await self.info(self._guest(name).config.name)

    async def info(self, name: str) -> GuestInfo:
        if name in self.foreign:
            return GuestInfo(
                name=name, state=State.RUNNING, backend=self.name, labels=self.foreign[name]
            )
        if name not in self.guests:
            return GuestInfo(name=name, state=State.GONE, backend=self.name)
        guest = self.guests[name]
        state = State.SHUTDOWN if guest.stopped.is_set() else State.RUNNING
        return GuestInfo(name=name, state=state, backend=self.name, labels=guest.config.labels)

    async def boot_log(self, name: str) -> bytes:
        return self.log

    async def exit_witness(self, name: str) -> int | None:
        return self.witness.get(name)

    async def console_log(self, name: str) -> bytes | None:
        guest = self.guests.get(name)
        return bytes(guest.log) if guest is not None and self.keeps_log else None

    # --- for tests: the guest's side -------------------------------------------------

    def emit(self, name: str, data: bytes) -> None:
        """Make the guest write `data` to its console (frames, or noise)."""
        self._guest(name).emit(data)

    def write(self, guest: _Guest, data: bytes) -> None:
        """vxn wrote `data` to the console: answer each whole frame as the script says."""
        guest.written.append(data)
        guest.inbox += data
        header = protocol.HEADER
        while len(guest.inbox) >= header.size:
            kind, session, length = header.unpack_from(guest.inbox)
            if len(guest.inbox) < header.size + length:
                break
            payload = bytes(guest.inbox[header.size : header.size + length])
            del guest.inbox[: header.size + length]
            if isinstance(guest.script, Service) and not guest.stopped.is_set():
                for chunk in guest.script.react(kind, session, payload):
                    guest.emit(chunk)

    def _guest(self, name: str) -> _Guest:
        if name not in self.guests:
            raise NotFound(f"guest {name}: no such guest")
        return self.guests[name]


def _spec(ramdisk: bytes) -> dict[str, list[str]]:
    """The spec records of the appended archive, found as the guest's kernel would."""
    at = ramdisk.rfind(b"vxn-spec=")
    end = ramdisk.find(b"\0\0", at)  # the file's data is padded with NULs
    out: dict[str, list[str]] = {}
    for record in ramdisk[at:end].split(b"\0"):
        key, _, value = record.decode().partition("=")
        out.setdefault(key, []).append(value)
    return out
