"""The Dom0 side of the guest protocol (guest-init/PROTOCOL.md, version 2), pure.

The guest's hvc0 carries boot noise, then guest-init's hello line, then the per-run
start marker, then frames: a type byte, a 4-byte big-endian session, a 4-byte
big-endian length, the payload. Session 0 is the container's main process; sessions
1 and up are exec sessions the Dom0 starts with an EXEC frame. `ConsoleParser` is an
incremental parser of that byte stream; `encode_spec` writes the spec file the guest
reads from its appended initramfs, `exec_frame` the spec of an exec session. Both
sides are mirrored in guest-init/vxn-helper.c.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from vxn.core.envvars import check_env
from vxn.core.guestspec import GuestSpec, check_cwd, check_size, check_user
from vxn.errors import Internal, InvalidArgument

VERSION = 2
HEADER = struct.Struct(">BII")  # type, session, length
MAX_PAYLOAD = 1 << 16
MAX_SESSION = 0xFFFFFFFF
MAX_EXEC_SESSIONS = 32  # running at once; the guest refuses more (ERROR, EXIT 125)
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
    EXEC = 20  # payload: spec records of a new session


FROM_GUEST = frozenset({Frame.STDOUT, Frame.STDERR, Frame.EXIT, Frame.ERROR})


def hello_line(nonce: str) -> bytes:
    return b"vxn-hello %d %s\n" % (VERSION, nonce.encode())


def start_marker(nonce: str) -> bytes:
    return b"vxn-start %d %s\n" % (VERSION, nonce.encode())


def frame(kind: Frame, payload: bytes = b"", session: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise InvalidArgument(
            f"frame {kind.name}: payload of {len(payload)} bytes is over {MAX_PAYLOAD}"
        )
    if not 0 <= session <= MAX_SESSION:
        raise InvalidArgument(f"frame {kind.name}: session {session} is not a u32")
    return HEADER.pack(kind, session, len(payload)) + payload


def signal_frame(signum: int, session: int = 0) -> bytes:
    if not 0 < signum < 65:
        raise InvalidArgument(f"signal {signum}: want 1..64")
    return frame(Frame.SIGNAL, struct.pack(">I", signum), session)


def winsize_frame(rows: int, columns: int, session: int = 0) -> bytes:
    check_size(rows, columns, "winsize")
    return frame(Frame.WINSIZE, struct.pack(">HH", rows, columns), session)


def exit_frame(code: int, session: int = 0) -> bytes:
    return frame(Frame.EXIT, struct.pack(">I", code), session)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecSpec:
    """A process to run in the running guest (`vxn exec`), as its own session."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()  # K=V, the whole environment: the Dom0 merges the container's
    cwd: str = "/"
    user: str = ""  # as in the spec: "" (root), NAME, UID, NAME:GROUP, UID:GID...
    tty: bool = False
    stdin: bool = False
    rows: int = 0  # the pty's initial size; 0 = unknown
    cols: int = 0


def exec_frame(session: int, spec: ExecSpec) -> bytes:
    """The EXEC frame that starts `spec` as session `session` (1 and up)."""
    if not 0 < session <= MAX_SESSION:
        raise InvalidArgument(f"exec: session {session} is invalid; want 1..{MAX_SESSION}")
    if not spec.argv:
        raise InvalidArgument("exec: no command specified")
    for entry in spec.env:
        check_env(entry)
    check_cwd(spec.cwd, "exec")
    check_user(spec.user, "exec")
    check_size(spec.rows, spec.cols, "exec")
    records = [("arg", a) for a in spec.argv] + [("env", e) for e in spec.env]
    records += [("cwd", spec.cwd), ("user", spec.user), *_terminal(spec)]
    payload = b"".join(_record(k, v) for k, v in records)
    if len(payload) > MAX_PAYLOAD:
        raise InvalidArgument(
            f"exec: command and env take {len(payload)} bytes; the limit is {MAX_PAYLOAD}"
        )
    return frame(Frame.EXEC, payload, session)


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
    session: int = 0


@dataclass(frozen=True, slots=True)
class GuestError:
    message: str
    session: int = 0


@dataclass(frozen=True, slots=True)
class Exited:
    """The last event of its session; session 0's ends the container."""

    code: int
    session: int = 0


Event = Hello | Started | Output | GuestError | Exited


class ConsoleParser:
    """Feed it the console's bytes in any chunks; it returns the events they complete.

    Before the start marker the bytes are boot noise: kept (the last NOISE_KEPT) for
    error messages, scanned only for this run's hello and start lines, which carry its
    nonce, so neither an old log nor anything the container prints can fake them.
    Frames of every session are parsed until the main session's exit (`exit_code`).
    """

    def __init__(self, nonce: str, *, started: bool = False) -> None:
        """`started`: resume in the frames, for an adopter whose console kept no log
        (Xen): the start marker went by before it came."""
        self._hello = hello_line(nonce)
        self._start = start_marker(nonce)
        self._buf = bytearray()
        self._noise = bytearray()
        self.greeted = started
        self.started = started
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
        while self._buf and self.exit_code is None:
            # The type is checked as soon as it arrives: a guest of another version fails fast.
            if self._buf[0] not in FROM_GUEST:
                raise self._bad_header()
            if len(self._buf) < HEADER.size:
                break
            kind, session, length = HEADER.unpack_from(self._buf)
            if length > MAX_PAYLOAD:
                raise self._bad_header()
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            event = _event(Frame(kind), session, payload)
            events.append(event)
            if isinstance(event, Exited) and event.session == 0:
                self.exit_code = event.code
        return events

    def _bad_header(self) -> Internal:
        return Internal(
            f"guest console: bad frame header {bytes(self._buf[: HEADER.size]).hex()}; "
            f"the guest's initramfs does not speak protocol {VERSION}: rebuild it"
        )


def _event(kind: Frame, session: int, payload: bytes) -> Event:
    if kind is Frame.EXIT:
        if len(payload) != 4:
            raise Internal(f"guest console: exit frame of {len(payload)} bytes; want 4")
        return Exited(struct.unpack(">I", payload)[0], session)
    if kind is Frame.ERROR:
        return GuestError(payload.decode("utf-8", "replace"), session)
    return Output(1 if kind is Frame.STDOUT else 2, payload, session)


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
        *_terminal(spec),
    ]
    return b"".join(_record(k, v) for k, v in records)


def _terminal(spec: GuestSpec | ExecSpec) -> list[tuple[str, str]]:
    return [
        ("stdin", "1" if spec.stdin else "0"),
        ("tty", "1" if spec.tty else "0"),
        ("rows", str(spec.rows)),
        ("cols", str(spec.cols)),
    ]


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
