"""Boot one guest for one command and stream it: the Dom0 side of PROTOCOL.md.

Write the ramdisk (the cached base + this run's spec), create the guest paused,
attach to hvc0, unpause, then feed the console to the protocol parser until the exit
frame. A guest that does not say hello, or reach its start marker, within the boot
timeout, or that stops before its exit frame, is vxn's failure (exit 125) and the
error shows the tail of its consoles. The guest is destroyed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from vxn.adapters.hypervisor import Console, Hypervisor
from vxn.core import protocol
from vxn.core.guestboot import CMDLINE_QEMU, with_spec
from vxn.core.guestspec import GuestSpec
from vxn.core.vm import Disk, GuestConfig, console_tail
from vxn.errors import Unavailable

OutputFn = Callable[[int, bytes], Awaitable[None]]  # (1 stdout | 2 stderr, data)
ErrorFn = Callable[[str], Awaitable[None]]  # the guest could not run the command: why


@dataclass(frozen=True, slots=True, kw_only=True)
class Boot:
    name: str
    spec: GuestSpec
    kernel: Path
    initramfs: Path
    ramdisk: Path  # written here: base + spec
    disks: tuple[Disk, ...]
    memory_mib: int
    cpus: int
    boot_timeout: float


@dataclass(slots=True)
class Timeline:
    """Monotonic marks of one run, for the log and the benchmark."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def span(self, start: str, end: str) -> float:
        return self.marks[end] - self.marks[start]


async def run_guest(
    hv: Hypervisor, boot: Boot, output: OutputFn, error: ErrorFn, timeline: Timeline
) -> int:
    """Run `boot` to its end; the command's exit code."""
    nonce = secrets.token_hex(16)
    spec = protocol.encode_spec(boot.spec, nonce)
    await asyncio.to_thread(write_ramdisk, boot.initramfs, boot.ramdisk, spec)
    config = GuestConfig(
        name=boot.name,
        kernel=str(boot.kernel),
        initrd=str(boot.ramdisk),
        cmdline=CMDLINE_QEMU,
        disks=boot.disks,
        memory_mib=boot.memory_mib,
        cpus=boot.cpus,
    )
    timeline.mark("create")
    await hv.create(config)
    try:
        console = await hv.console(boot.name)
        await hv.unpause(boot.name)
        timeline.mark("unpaused")
        parser = protocol.ConsoleParser(nonce)
        stream = _Stream(hv, boot, console, parser, timeline)
        return await stream.run(output, error)
    finally:
        timeline.mark("exited")
        await asyncio.shield(hv.destroy(boot.name))
        timeline.mark("destroyed")


def write_ramdisk(base: Path, ramdisk: Path, spec: bytes) -> None:
    ramdisk.unlink(missing_ok=True)
    with ramdisk.open("xb") as f:  # 0600 under a 0700 dir: the spec is private
        ramdisk.chmod(0o600)
        f.write(with_spec(base.read_bytes(), spec))


class _Stream:
    def __init__(
        self,
        hv: Hypervisor,
        boot: Boot,
        console: Console,
        parser: protocol.ConsoleParser,
        timeline: Timeline,
    ) -> None:
        self.hv, self.boot, self.console, self.parser = hv, boot, console, parser
        self.timeline = timeline
        self.read: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def run(self, output: OutputFn, error: ErrorFn) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.boot.boot_timeout
        stopped = asyncio.ensure_future(self.hv.wait(self.boot.name))
        self.read = asyncio.ensure_future(self.console.read())
        try:
            while self.parser.exit_code is None:
                timeout = None if self.parser.started else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    {self.read, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if self.read in done:
                    if not await self._consume(output, error):
                        raise await self._failure("closed its console")
                elif stopped in done:
                    await self._drain(output, error)
                    if self.parser.exit_code is None:
                        raise await self._failure("stopped")
                else:
                    raise await self._failure(f"did not start in {self.boot.boot_timeout:.0f} s")
            return self.parser.exit_code
        finally:
            for task in (self.read, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _consume(self, output: OutputFn, error: ErrorFn) -> bool:
        """Handle the finished read and start the next; False at the console's end."""
        data = self.read.result()
        if data:
            await self._handle(self.parser.feed(data), output, error)
            self.read = asyncio.ensure_future(self.console.read())
        return bool(data)

    async def _drain(self, output: OutputFn, error: ErrorFn) -> None:
        """The guest stopped: what it wrote before is still worth reading."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                while self.parser.exit_code is None:
                    await asyncio.wait({self.read})
                    if not await self._consume(output, error):
                        return

    async def _handle(self, events: list[protocol.Event], output: OutputFn, error: ErrorFn) -> None:
        for event in events:
            if isinstance(event, protocol.Output):
                await output(event.stream, event.data)
            elif isinstance(event, protocol.GuestError):
                await error(event.message)
            elif isinstance(event, protocol.Hello):
                self.timeline.mark("hello")
            elif isinstance(event, protocol.Started):
                self.timeline.mark("started")

    async def _failure(self, what: str) -> Unavailable:
        stage = (
            "after the start marker"
            if self.parser.started
            else "after guest-init's hello"
            if self.parser.greeted
            else "before guest-init said hello"
        )
        kernel = console_tail(await self.hv.boot_log(self.boot.name))
        noise = console_tail(self.parser.noise, 6)
        tail = "".join(f"\n  | {line}" for line in [*kernel, *noise])
        return Unavailable(
            f"guest {self.boot.name}: {what} {stage}; see its console below, "
            f"and check the kernel and memory ({self.boot.memory_mib} MiB){tail}"
        )
