"""A fake `Hypervisor` for the cheap cases: its "guest" is a script of console bytes.

The script is a function of the run's spec records (read back from the ramdisk, as
a guest would), so it can say the right hello and start marker, or the wrong ones.
After the script the guest stops when `stop` is set, else it hangs (a guest that
never boots). Every guest the fake created is in `created`; `destroyed` lists names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from vxn.adapters.hypervisor import Console, GuestInfo
from vxn.core import protocol
from vxn.core.vm import GuestConfig, State
from vxn.errors import AlreadyExists, NotFound

Script = Callable[[dict[str, list[str]]], list[bytes]]


def normal(stdout: bytes = b"", code: int = 0) -> Script:
    """A guest that boots, prints `stdout` and exits with `code`."""

    def script(spec: dict[str, list[str]]) -> list[bytes]:
        nonce = spec["nonce"][0]
        return [
            b"noise\n" + protocol.hello_line(nonce),
            protocol.start_marker(nonce) + protocol.frame(protocol.Frame.STDOUT, stdout),
            protocol.exit_frame(code),
        ]

    return script


class _Console:
    def __init__(self, chunks: list[bytes], stopped: asyncio.Event, stop: bool) -> None:
        self._chunks, self._stopped, self._stop = list(chunks), stopped, stop
        self.written: list[bytes] = []

    async def read(self) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        if self._stop:
            self._stopped.set()
        await asyncio.Event().wait()  # hvc0 stays open while QEMU runs
        return b""

    async def write(self, data: bytes) -> None:
        self.written.append(data)

    async def close(self) -> None:
        pass


class FakeHypervisor:
    name = "fake"

    def __init__(self, script: Script, *, stop: bool = True, boot_log: bytes = b"") -> None:
        self.script, self.stop, self.log = script, stop, boot_log
        self.created: dict[str, GuestConfig] = {}
        self.destroyed: list[str] = []
        self._stopped: dict[str, asyncio.Event] = {}
        self._consoles: dict[str, _Console] = {}

    async def create(self, config: GuestConfig) -> GuestInfo:
        if config.name in self.created:
            raise AlreadyExists(f"guest {config.name}: already exists")
        self.created[config.name] = config
        self._stopped[config.name] = asyncio.Event()
        return await self.info(config.name)

    async def console(self, name: str) -> Console:
        spec = _spec(await asyncio.to_thread(Path(self.created[name].initrd).read_bytes))
        console = _Console(self.script(spec), self._stopped[name], self.stop)
        self._consoles[name] = console
        return console

    async def unpause(self, name: str) -> None:
        self._guest(name)

    async def wait(self, name: str) -> GuestInfo:
        await self._stopped[name].wait()
        return await self.info(name)

    async def signal(self, name: str, signum: int) -> None:
        await self._consoles[name].write(protocol.signal_frame(signum))

    async def destroy(self, name: str) -> None:
        self.destroyed.append(name)
        self.created.pop(name, None)

    async def list(self) -> list[GuestInfo]:
        return [await self.info(n) for n in self.created]

    async def adopt(self, name: str) -> GuestInfo:
        return await self.info(self._guest(name).name)

    async def info(self, name: str) -> GuestInfo:
        if name not in self.created:
            return GuestInfo(name=name, state=State.GONE, backend=self.name)
        stopped = self._stopped[name].is_set()
        return GuestInfo(
            name=name, state=State.SHUTDOWN if stopped else State.RUNNING, backend=self.name
        )

    async def boot_log(self, name: str) -> bytes:
        return self.log

    def _guest(self, name: str) -> GuestConfig:
        if name not in self.created:
            raise NotFound(f"guest {name}: no such guest")
        return self.created[name]


def _spec(ramdisk: bytes) -> dict[str, list[str]]:
    """The spec records of the appended archive, found as the guest's kernel would."""
    at = ramdisk.rfind(b"vxn-spec=")
    end = ramdisk.find(b"\0\0", at)  # the file's data is padded with NULs
    out: dict[str, list[str]] = {}
    for record in ramdisk[at:end].split(b"\0"):
        key, _, value = record.decode().partition("=")
        out.setdefault(key, []).append(value)
    return out
