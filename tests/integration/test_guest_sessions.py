"""Protocol version 2 on real QEMU guests (TCG), driven frame by frame: the main session
and exec sessions, pipes and ptys, stdin, EOF, signals and window sizes.

The guest is created straight on the QemuBackend with the protocol module, no vxnd in
between, so these tests hold the helper to PROTOCOL.md alone. Each test boots one guest
and runs many sessions in it, since a TCG boot costs seconds of a shared CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from data.guestimages import app_entries, write_image
from data.imagebuild import Entry, ImageSpec

from vxn.adapters.hypervisor import Console
from vxn.adapters.qemu import QemuBackend
from vxn.adapters.statedir import StateDir
from vxn.core import protocol
from vxn.core.guestboot import CMDLINE_QEMU
from vxn.core.guestspec import GuestSpec
from vxn.core.platform import Platform
from vxn.core.protocol import ExecSpec, Frame
from vxn.core.vm import Disk, GuestConfig
from vxn.engine.guest import GuestArtefacts
from vxn.engine.guestrun import write_ramdisk
from vxn.engine.images import ImageService

pytestmark = pytest.mark.integration

IMAGE = "localhost/vxn-sessions:latest"
EXTRA_APPLETS = ("stty", "tty", "sha256sum", "head", "wc")
WAIT = 60.0  # seconds for one expected event: TCG on two shared cores is slow
PATH = ("PATH=/bin",)


@dataclass
class Guest:
    """One booted guest: frames go in, every session's events are collected."""

    console: Console
    parser: protocol.ConsoleParser
    events: list[protocol.Event] = field(default_factory=list)
    out: dict[int, bytearray] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    exits: dict[int, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, data: bytes) -> None:
        await self.console.write(data)

    async def exec(
        self,
        session: int,
        *argv: str,
        tty: bool = False,
        stdin: bool = False,
        rows: int = 0,
        cols: int = 0,
        user: str = "",
        cwd: str = "/",
    ) -> None:
        spec = ExecSpec(
            argv=argv, env=PATH, cwd=cwd, user=user, tty=tty, stdin=stdin, rows=rows, cols=cols
        )
        await self.send(protocol.exec_frame(session, spec))

    async def read(self) -> None:
        while data := await self.console.read():
            for event in self.parser.feed(data):
                self.events.append(event)
                if isinstance(event, protocol.Output):
                    self.out.setdefault(event.session, bytearray()).extend(event.data)
                elif isinstance(event, protocol.GuestError):
                    self.errors[event.session] = event.message
                elif isinstance(event, protocol.Exited):
                    self.exits[event.session] = event.code
            self.changed.set()

    async def until(self, done: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(WAIT):
                while not done():
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            seen = {s: bytes(o[-200:]) for s, o in self.out.items()}
            raise AssertionError(f"no {what} in {WAIT:.0f} s; output so far: {seen}") from None

    async def output(self, session: int, pattern: bytes) -> re.Match[bytes]:
        found: list[re.Match[bytes]] = []

        def seen() -> bool:
            match = re.search(pattern, self.out.get(session, b""))
            found[:] = [match] if match else []
            return bool(found)

        await self.until(seen, f"session {session}: {pattern!r}")
        return found[0]

    async def exit(self, session: int) -> int:
        await self.until(lambda: session in self.exits, f"session {session}'s exit")
        return self.exits[session]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The base disk of busybox with the applets these tests need."""
    tmp = tmp_path_factory.mktemp("sessions-image")
    links = [Entry(f"bin/{a}", "symlink", link="busybox", mode=0o777) for a in EXTRA_APPLETS]
    spec = ImageSpec(entrypoint=None, cmd=["sh"], env=list(PATH), working_dir="", user="")
    archive = write_image(tmp / "image.tar", IMAGE, [*app_entries(), *links], spec)
    images = ImageService(StateDir(tmp / "state"), Platform.parse("linux/amd64"))
    with archive.open("rb") as stream:
        images.load_sync(stream)
    return images.rootfs_sync(IMAGE).path


@contextlib.asynccontextmanager
async def booted(
    tmp: Path, kernel_dir: Path, rootfs: Path, spec: GuestSpec
) -> AsyncIterator[tuple[Guest, QemuBackend]]:
    artefacts = GuestArtefacts(tmp / "artefacts", kernel_dir)
    kernel = await artefacts.kernel()
    nonce = secrets.token_hex(16)
    ramdisk = tmp / "initrd"
    base = await artefacts.initramfs(kernel)
    await asyncio.to_thread(write_ramdisk, base, ramdisk, protocol.encode_spec(spec, nonce))
    hv = QemuBackend(tmp / "guests", accel="tcg")
    config = GuestConfig(
        name="sessions",
        kernel=str(kernel.vmlinux),
        initrd=str(ramdisk),
        cmdline=CMDLINE_QEMU,
        disks=(Disk(path=str(rootfs), read_only=True),),
        memory_mib=256,
    )
    await hv.create(config)
    try:
        guest = Guest(await hv.console("sessions"), protocol.ConsoleParser(nonce))
        await hv.unpause("sessions")
        reader = asyncio.create_task(guest.read())
        try:
            yield guest, hv
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    finally:
        await hv.destroy("sessions")


def main_spec(script: str, *, tty: bool = False, rows: int = 0, cols: int = 0) -> GuestSpec:
    return GuestSpec(
        argv=("sh", "-c", script),
        env=PATH,
        cwd="/",
        user="",
        hostname="sessions",
        read_only=True,
        stdin=True,
        tty=tty,
        rows=rows,
        cols=cols,
    )


MAIN = """
echo "$NONCE" > /tmp/nonce
trap 'echo term; exit 9' TERM
echo ready
read line
echo "got:$line"
while :; do sleep 0.1; done
"""

# The child prints the marker, so Ctrl-C cannot come before it runs.
EXEC_TTY = """
stty size; tty
read line
stty size
trap 'echo INTR' INT
sh -c 'echo sleeping; exec sleep 100'
echo after
"""


SIGNALLED = """
trap 'echo trapped' TERM
sh -c 'echo armed; exec sleep 100'
echo survived
"""


async def test_exec_sessions_share_the_running_guest(
    tmp_path: Path, kernel_dir: Path, rootfs: Path
) -> None:
    nonce = secrets.token_hex(8)
    spec = main_spec(MAIN.replace("$NONCE", nonce))
    async with booted(tmp_path, kernel_dir, rootfs, spec) as (g, hv):
        await g.output(0, b"ready\n")

        # An exec session sees what the main process wrote: the same guest.
        await g.exec(1, "cat", "/tmp/nonce")
        assert await g.exit(1) == 0
        assert g.out[1] == nonce.encode() + b"\n"

        # Its exit code is its own; the main process runs on.
        await g.exec(2, "sh", "-c", "echo bye >&2; exit 7")
        assert await g.exit(2) == 7
        assert g.parser.exit_code is None
        assert [e for e in g.events if getattr(e, "session", None) == 2] == [
            protocol.Output(2, b"bye\n", session=2),
            protocol.Exited(7, session=2),
        ]

        # Two at once, interleaved in time, kept apart.
        loop = "for i in 1 2 3 4 5; do echo {0}$i; sleep 0.05; done"
        await g.exec(3, "sh", "-c", loop.format("a"))
        await g.exec(4, "sh", "-c", loop.format("b"))
        assert (await g.exit(3), await g.exit(4)) == (0, 0)
        assert g.out[3] == b"".join(b"a%d\n" % i for i in range(1, 6))
        assert g.out[4] == b"".join(b"b%d\n" % i for i in range(1, 6))

        # A pty: its initial size, resize, its name, and Ctrl-C through the line discipline.
        await g.exec(5, "sh", "-c", EXEC_TTY, tty=True, stdin=True, rows=33, cols=101)
        await g.output(5, rb"33 101\r\n/dev/pts/\d+\r\n")
        await g.send(protocol.winsize_frame(50, 120, session=5))
        await g.send(protocol.frame(Frame.STDIN, b"go\n", session=5))
        await g.output(5, rb"50 120\r\nsleeping\r\n")
        await g.send(protocol.frame(Frame.STDIN, b"\x03", session=5))
        assert await g.exit(5) == 0
        assert g.out[5].endswith(b"INTR\r\nafter\r\n")
        assert 5 not in g.errors

        # SIGNAL on a pty goes to its foreground group: sleep dies, its shell traps TERM.
        await g.exec(8, "sh", "-c", SIGNALLED, tty=True)
        await g.output(8, b"armed")
        await g.send(protocol.signal_frame(15, session=8))
        assert await g.exit(8) == 0
        assert g.out[8].endswith(b"trapped\r\nsurvived\r\n")  # sh may say "Terminated" first

        # The user and working directory resolve as for the main process.
        await g.exec(9, "sh", "-c", 'id -u; pwd; echo "$HOME"', user="app", cwd="/home/app")
        assert await g.exit(9) == 0
        assert g.out[9] == b"1001\n/home/app\n/home/app\n"

        # Binary stdin survives, and EOF ends it.
        data = secrets.token_bytes(1 << 20)
        await g.exec(6, "sha256sum", stdin=True)
        for at in range(0, len(data), protocol.MAX_PAYLOAD):
            await g.send(protocol.frame(Frame.STDIN, data[at : at + protocol.MAX_PAYLOAD], 6))
        await g.send(protocol.frame(Frame.EOF, session=6))
        assert await g.exit(6) == 0
        assert g.out[6] == f"{hashlib.sha256(data).hexdigest()}  -\n".encode()

        # A command that is not there: why, then 127.
        await g.exec(7, "no-such-command")
        assert await g.exit(7) == 127
        assert g.errors[7] == 'exec: "no-such-command": executable file not found in $PATH'

        # The session table is bounded: one more than it holds is refused.
        sleepers = range(100, 100 + protocol.MAX_EXEC_SESSIONS)
        for session in sleepers:
            await g.exec(session, "sleep", "100")
        await g.exec(200, "true")
        assert await g.exit(200) == 125
        assert "too many exec sessions" in g.errors[200]

        # The main process still reads its stdin; SIGNAL reaches its trap.
        await g.send(protocol.frame(Frame.STDIN, b"hello\n"))
        await g.output(0, b"got:hello\n")
        assert not any(s in g.exits for s in sleepers)
        await g.send(protocol.signal_frame(15))
        assert await g.exit(0) == 9
        assert g.out[0] == b"ready\ngot:hello\nterm\n"

        # The running exec sessions were killed, and said so before the main exit.
        assert all(g.exits[s] == 128 + 9 for s in sleepers)
        assert isinstance(g.events[-1], protocol.Exited)
        assert g.events[-1].session == 0
        async with asyncio.timeout(WAIT):
            await hv.wait("sessions")  # powered off


MAIN_TTY = """
stty size; tty
read line
stty size
trap 'echo INTR' INT
sh -c 'echo sleeping; exec sleep 100'
read line
echo "got:$line"
exit 3
"""


async def test_the_main_process_on_a_pty(tmp_path: Path, kernel_dir: Path, rootfs: Path) -> None:
    spec = main_spec(MAIN_TTY, tty=True, rows=24, cols=80)
    async with booted(tmp_path, kernel_dir, rootfs, spec) as (g, hv):
        await g.output(0, rb"24 80\r\n/dev/pts/\d+\r\n")
        await g.send(protocol.winsize_frame(40, 132))
        await g.send(protocol.frame(Frame.STDIN, b"\n"))
        await g.output(0, rb"40 132\r\nsleeping\r\n")
        await g.send(protocol.frame(Frame.STDIN, b"\x03"))
        await g.output(0, b"INTR\r\n")
        await g.send(protocol.frame(Frame.STDIN, b"x y\n"))
        assert await g.exit(0) == 3
        assert g.out[0].endswith(b"x y\r\ngot:x y\r\n")  # the pty echoes the input
        assert 2 not in {e.stream for e in g.events if isinstance(e, protocol.Output)}
        async with asyncio.timeout(WAIT):
            await hv.wait("sessions")
