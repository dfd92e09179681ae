"""The Dom0 side of the guest protocol (guest-init/PROTOCOL.md, version 1), pure.

The guest's hvc0 carries boot noise, then guest-init's hello line, then the per-run
start marker, then frames: a type byte, a 4-byte big-endian length, the payload.
`ConsoleParser` is an incremental parser of that byte stream; `encode_spec` writes
the spec file the guest reads from its appended initramfs. Both sides are mirrored
in guest-init/vxn-helper.c.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from vxn.core.guestspec import GuestSpec
from vxn.errors import Internal, InvalidArgument

VERSION = 1
HEADER = struct.Struct(">BI")
MAX_PAYLOAD = 1 << 16
NOISE_KEPT = 1 << 14  # bytes of boot noise kept for error messages


class Frame(enum.IntEnum):
    # guest -> Dom0
    STDOUT = 1
    STDERR = 2
    EXIT = 3  # payload: the exit code, u32
    ERROR = 4  # payload: one line of UTF-8: why the command could not run
    # Dom0 -> guest
    STDIN = 16
    EOF = 17
    SIGNAL = 18  # payload: the signal number, u32
    WINSIZE = 19  # payload: rows, columns, u16 each


FROM_GUEST = frozenset({Frame.STDOUT, Frame.STDERR, Frame.EXIT, Frame.ERROR})


def hello_line(nonce: str) -> bytes:
    return b"vxn-hello %d %s\n" % (VERSION, nonce.encode())


def start_marker(nonce: str) -> bytes:
    return b"vxn-start %d %s\n" % (VERSION, nonce.encode())


def frame(kind: Frame, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise InvalidArgument(f"frame {kind.name}: payload of {len(payload)} bytes is too big")
    return HEADER.pack(kind, len(payload)) + payload


def signal_frame(signum: int) -> bytes:
    return frame(Frame.SIGNAL, struct.pack(">I", signum))


def winsize_frame(rows: int, columns: int) -> bytes:
    return frame(Frame.WINSIZE, struct.pack(">HH", rows, columns))


def exit_frame(code: int) -> bytes:
    return frame(Frame.EXIT, struct.pack(">I", code))


# --- the console stream ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """guest-init is up: the kernel booted and the channel works."""


@dataclass(frozen=True, slots=True)
class Started:
    """The start marker: everything from here on is frames."""


@dataclass(frozen=True, slots=True)
class Output:
    stream: int  # 1 stdout, 2 stderr
    data: bytes


@dataclass(frozen=True, slots=True)
class GuestError:
    message: str


@dataclass(frozen=True, slots=True)
class Exited:
    code: int


Event = Hello | Started | Output | GuestError | Exited


class ConsoleParser:
    """Feed it the console's bytes in any chunks; it returns the events they complete.

    Before the start marker the bytes are boot noise: kept (the last NOISE_KEPT) for
    error messages, scanned only for this run's hello and start lines, which carry its
    nonce, so neither an old log nor anything the container prints can fake them.
    """

    def __init__(self, nonce: str) -> None:
        self._hello = hello_line(nonce)
        self._start = start_marker(nonce)
        self._buf = bytearray()
        self._noise = bytearray()
        self.greeted = False
        self.started = False
        self.exit_code: int | None = None

    @property
    def noise(self) -> bytes:
        """The boot noise seen so far (its tail), markers included."""
        pending = b"" if self.started else self._buf  # held back in case a marker is split
        return bytes(self._noise + pending)[-NOISE_KEPT:]

    def feed(self, data: bytes) -> list[Event]:
        if self.exit_code is not None:
            return []  # anything after the exit frame is the guest powering off
        self._buf += data
        events: list[Event] = []
        if not self.started:
            events += self._scan_noise()
        if self.started:
            events += self._frames()
        return events

    def _scan_noise(self) -> list[Event]:
        events: list[Event] = []
        if not self.greeted and self._hello in self._buf:
            self.greeted = True
            events.append(Hello())
        at = self._buf.find(self._start)
        if at < 0:
            keep = len(self._start) - 1  # a marker may be split across reads
            self._note_noise(self._buf[: max(0, len(self._buf) - keep)])
            del self._buf[: max(0, len(self._buf) - keep)]
            return events
        end = at + len(self._start)
        self._note_noise(self._buf[:end])
        del self._buf[:end]
        if not self.greeted:
            self.greeted = True
            events.append(Hello())
        self.started = True
        events.append(Started())
        return events

    def _note_noise(self, data: bytes | bytearray) -> None:
        self._noise += data
        del self._noise[: max(0, len(self._noise) - NOISE_KEPT)]

    def _frames(self) -> list[Event]:
        events: list[Event] = []
        while len(self._buf) >= HEADER.size and self.exit_code is None:
            kind, length = HEADER.unpack_from(self._buf)
            if kind not in FROM_GUEST or length > MAX_PAYLOAD:
                raise Internal(
                    f"guest console: bad frame header {bytes(self._buf[: HEADER.size]).hex()}; "
                    "the guest's initramfs does not speak this protocol: rebuild it"
                )
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            events.append(_event(Frame(kind), payload))
            if isinstance(events[-1], Exited):
                self.exit_code = events[-1].code
        return events


def _event(kind: Frame, payload: bytes) -> Event:
    if kind is Frame.EXIT:
        if len(payload) != 4:
            raise Internal(f"guest console: exit frame of {len(payload)} bytes; want 4")
        return Exited(struct.unpack(">I", payload)[0])
    if kind is Frame.ERROR:
        return GuestError(payload.decode("utf-8", "replace"))
    return Output(1 if kind is Frame.STDOUT else 2, payload)


# --- the spec file ----------------------------------------------------------------------


def encode_spec(spec: GuestSpec, nonce: str) -> bytes:
    """`key=value` records, each ended by NUL; lists repeat their key. See PROTOCOL.md."""
    records: list[tuple[str, str]] = [("vxn-spec", str(VERSION)), ("nonce", nonce)]
    records += [("arg", a) for a in spec.argv]
    records += [("env", e) for e in spec.env]
    records += [
        ("cwd", spec.cwd),
        ("user", spec.user),
        ("hostname", spec.hostname),
        ("writable", "0" if spec.read_only else "1"),
        ("stdin", "1" if spec.stdin else "0"),
    ]
    return b"".join(_record(k, v) for k, v in records)


def decode_spec(data: bytes) -> list[tuple[str, str]]:
    """The records of a spec file, in order (for tests and tools; the guest parses it in C)."""
    if not data.endswith(b"\0"):
        raise InvalidArgument("spec: the last record is not NUL-terminated")
    out = []
    for raw in data[:-1].split(b"\0"):
        key, sep, value = raw.decode().partition("=")
        if not sep:
            raise InvalidArgument(f"spec: record {raw[:40]!r} has no '='")
        out.append((key, value))
    return out


def _record(key: str, value: str) -> bytes:
    if "\0" in value:
        raise InvalidArgument(f"spec: {key} {value[:40]!r} contains a NUL byte")
    return f"{key}={value}".encode() + b"\0"


def spec_values(records: Iterable[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in records if k == key]
