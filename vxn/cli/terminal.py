"""The local end of an attached session (run, start -a, attach, exec; docs/CONTAINERS.md §4).

Raw mode and the window size of this terminal, our signals, and our stdin each become
lines of the duplex stream; the relay writes the container's output and returns its
exit code. Stdlib only. Signal handlers only enqueue (a SimpleQueue is safe in them),
and each blocking read has a thread of its own, so the main thread just dispatches.
"""

from __future__ import annotations

import base64
import fcntl
import os
import queue
import select
import signal
import struct
import sys
import termios
import threading
import tty
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, BinaryIO

from vxn.errors import InvalidArgument, Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.cli.client import Duplex

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
NOT_A_TTY = "the input device is not a TTY; drop -t, or run from a terminal"
_CTRL = "@abcdefghijklmnopqrstuvwxyz[\\]^_"  # ctrl-@ is 0, ctrl-a is 1, ... ctrl-_ is 31
_CHUNK = 1 << 16
ATTACH_WAIT = 30.0  # seconds for vxnd to attach the stream before the start goes anyway
# What Docker's --sig-proxy forwards that a shell user can send; SIGWINCH is resize.
PROXIED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def parse_detach_keys(spec: str) -> bytes:
    """Docker's `--detach-keys`: comma-separated single characters or `ctrl-<x>`."""
    codes = bytearray()
    for key in spec.split(","):
        if len(key) == 1 and key.isascii():
            codes.append(ord(key))
        elif len(key) == 6 and key.lower().startswith("ctrl-") and key[5].lower() in _CTRL:
            codes.append(_CTRL.index(key[5].lower()))
        else:
            raise InvalidArgument(
                f"--detach-keys {spec!r}: unknown key {key!r}; use single characters or "
                "ctrl-<a-z @ [ \\ ] ^ _>, comma-separated, e.g. ctrl-p,ctrl-q"
            )
    return bytes(codes)


@dataclass(slots=True)
class DetachMatcher:
    """Finds the detach keys in a stream of stdin chunks, holding back a partial match.

    `feed` returns the bytes to forward and whether the keys were seen (what follows them
    in the chunk is dropped). Held bytes that turn out not to be the keys are forwarded.
    """

    keys: bytes
    held: int = 0

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        out = bytearray()
        for byte in chunk:
            if self.held and byte != self.keys[self.held]:
                out += self.keys[: self.held]
                self.held = 0
            if byte == self.keys[self.held]:
                self.held += 1
                if self.held == len(self.keys):
                    self.held = 0
                    return bytes(out), True
            else:
                out.append(byte)
        return bytes(out), False


def window_size(fds: tuple[int, ...] = (1, 0)) -> tuple[int, int] | None:
    """(rows, columns) of the first terminal among `fds`; None when none is one."""
    for fd in fds:
        try:
            rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        except OSError:
            continue
        if rows and cols:
            return rows, cols
    return None


def stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (AttributeError, ValueError, OSError):
        return False  # replaced by a test runner, or closed


@contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal in raw mode (keys go through as bytes) until the block ends, however."""
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """How a session meets this process."""

    stdin: bool = False  # pump our stdin into it (-i)
    tty: bool = False  # it has a pty: raw mode, and the window size follows ours
    sig_proxy: bool = False  # forward our signals (never with a tty: Ctrl-C is a byte there)
    detach_keys: bytes = b""
    label: str = ""  # what `{"message"}` lines are prefixed with: `run alpine`


@dataclass(frozen=True, slots=True)
class _Ended:
    code: int | None = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class _Stop:
    signum: int


_DETACH = object()


def relay(duplex: Duplex, wiring: Wiring, start: Callable[[], object] | None = None) -> int | None:
    """Run a session to its end: the exit code, or None when the user detached.

    `start` runs once vxnd has attached the stream (run and start -a open the attach
    first, so no output is missed); stdin is read only after it.
    """
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    stdin_fd = _stdin_fd()
    try:
        with ExitStack() as stack:
            if wiring.tty and wiring.stdin and stdin_fd is not None and os.isatty(stdin_fd):
                stack.enter_context(raw_mode(stdin_fd))
            stack.enter_context(_signals(wiring, events))
            if start is not None:
                # vxnd answers (its head) once the stream is attached: only then start,
                # so not a byte is missed; looked for before the reader thread reads it
                select.select([duplex], [], [], ATTACH_WAIT)
            reader = threading.Thread(target=_read_replies, args=(duplex, wiring, events))
            reader.daemon = True
            reader.start()
            if start is not None:
                start()
            if wiring.stdin:
                args = (duplex, _stdin_reader(stdin_fd), _matcher(wiring, stdin_fd), events)
                threading.Thread(target=_pump_stdin, args=args, daemon=True).start()
            return _dispatch(duplex, events)
    finally:
        duplex.close()


def _dispatch(duplex: Duplex, events: queue.SimpleQueue[Any]) -> int | None:
    while True:
        event = events.get()
        if event is _DETACH:
            return None
        if isinstance(event, _Stop):
            return 128 + event.signum  # we were told to go; the container goes on
        if isinstance(event, _Ended):
            if event.error is not None:
                raise event.error
            return event.code
        duplex.send(event)


@contextmanager
def _signals(wiring: Wiring, events: queue.SimpleQueue[Any]) -> Iterator[None]:
    def forward(signum: int, frame: FrameType | None) -> None:
        events.put({"signal": signum})

    def stop(signum: int, frame: FrameType | None) -> None:
        events.put(_Stop(signum))

    def resize(signum: int, frame: FrameType | None) -> None:
        if size := window_size():
            events.put({"winsize": list(size)})

    handlers: dict[int, Callable[[int, FrameType | None], None]] = {}
    if wiring.tty:
        handlers[signal.SIGWINCH] = resize
        # with a raw terminal, dying by a signal would leave it raw: leave through finally
        handlers.update(dict.fromkeys((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), stop))
    elif wiring.sig_proxy:
        handlers.update(dict.fromkeys(PROXIED, forward))
    saved = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _read_replies(duplex: Duplex, wiring: Wiring, events: queue.SimpleQueue[Any]) -> None:
    streams = {"out": sys.stdout.buffer, "err": sys.stderr.buffer}
    for stream in streams.values():
        stream.flush()  # what the CLI printed before goes first: _write bypasses the buffer
    try:
        for line in duplex.lines():
            if "exit" in line:
                events.put(_Ended(int(line["exit"])))
                return
            for key, stream in streams.items():
                if key in line:
                    _write(stream, base64.b64decode(line[key]))
            if "message" in line:
                prefix = f"vxn: {wiring.label}: " if wiring.label else "vxn: "
                _write(streams["err"], f"{prefix}{line['message']}\n".encode())
    except (VxnError, OSError) as e:
        events.put(_Ended(error=e))
        return
    events.put(
        _Ended(error=Unavailable("vxnd ended the session without an exit code; see its log"))
    )


def _write(stream: BinaryIO, data: bytes) -> None:
    """Straight to the fd: a daemon thread inside a buffered write when the CLI exits
    makes the interpreter abort (it cannot take the buffer's lock at shutdown)."""
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError):  # a test runner's in-memory stream
        stream.write(data)
        stream.flush()
        return
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pump_stdin(
    duplex: Duplex,
    read: Callable[[], bytes],
    matcher: DetachMatcher | None,
    events: queue.SimpleQueue[Any],
) -> None:
    """Our stdin into the session, sent from this thread so a slow vxnd holds the reads back."""
    try:
        while chunk := read():
            detached = False
            if matcher is not None:
                chunk, detached = matcher.feed(chunk)
            if chunk:
                duplex.send({"in": base64.b64encode(chunk).decode()})
            if detached:
                events.put(_DETACH)
                return
        duplex.send({"eof": True})
    except (OSError, ValueError, VxnError):
        return  # the session is over (closed under us), or stdin broke: the reply tells


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _stdin_reader(fd: int | None) -> Callable[[], bytes]:
    """os.read on the fd, not the buffered file: a thread blocked in it holds no lock."""
    if fd is None:
        return lambda: sys.stdin.buffer.read(_CHUNK)  # a test runner's in-memory stdin
    return lambda: os.read(fd, _CHUNK)


def _matcher(wiring: Wiring, fd: int | None) -> DetachMatcher | None:
    """Keys are typed: piped data (1 MB of random bytes) must never detach."""
    if not wiring.detach_keys or fd is None or not os.isatty(fd):
        return None
    return DetachMatcher(wiring.detach_keys)
