"""The Dom0 side of PROTOCOL.md: the console parser, frames and the spec file."""

from __future__ import annotations

import pytest

from vxn.core import protocol
from vxn.core.guestspec import GuestSpec
from vxn.core.protocol import (
    ConsoleParser,
    Exited,
    Frame,
    GuestError,
    Hello,
    Output,
    Started,
    exec_frame,
    exit_frame,
    frame,
    hello_line,
    start_marker,
)
from vxn.errors import Internal, InvalidArgument

NONCE = "0123456789abcdef0123456789abcdef"
STREAM = (
    b"[boot noise]\r\n"
    + hello_line(NONCE)
    + b"more noise\n"
    + start_marker(NONCE)
    + frame(Frame.STDOUT, b"out\n")
    + frame(Frame.STDERR, b"err\n")
    + frame(Frame.STDOUT, b"exec out", session=7)
    + frame(Frame.ERROR, "exec: \u00e9".encode())
    + exit_frame(1, session=7)
    + frame(Frame.STDERR, b"late", session=0x01020304)
    + exit_frame(42)
    + b"after the end"
)
EVENTS = [
    Hello(),
    Started(),
    Output(1, b"out\n"),
    Output(2, b"err\n"),
    Output(1, b"exec out", session=7),
    GuestError("exec: \u00e9"),
    Exited(1, session=7),
    Output(2, b"late", session=0x01020304),
    Exited(42),
]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64, len(STREAM)])
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    parser = ConsoleParser(NONCE)
    events = []
    for i in range(0, len(STREAM), chunk):
        events += parser.feed(STREAM[i : i + chunk])
    assert events == EVENTS
    assert parser.exit_code == 42
    assert parser.noise.startswith(b"[boot noise]")


def test_markers_of_another_run_are_noise() -> None:
    parser = ConsoleParser(NONCE)
    other = "f" * 32
    assert parser.feed(hello_line(other) + start_marker(other) + frame(Frame.STDOUT, b"x")) == []
    assert not parser.started


def test_the_start_marker_implies_hello() -> None:
    assert ConsoleParser(NONCE).feed(start_marker(NONCE)) == [Hello(), Started()]


def test_output_that_looks_like_protocol_stays_output() -> None:
    fake = start_marker(NONCE) + exit_frame(0)
    parser = ConsoleParser(NONCE)
    events = parser.feed(start_marker(NONCE) + frame(Frame.STDOUT, fake) + exit_frame(3))
    assert events[2:] == [Output(1, fake), Exited(3)]


@pytest.mark.parametrize(
    "bad",
    [
        bytes([9]),  # unknown type: refused before the rest of the header
        bytes([16, 0, 0, 0, 0, 0, 0, 0, 0]),  # a host-to-guest type
        bytes([1, 0, 0, 0, 0]) + (protocol.MAX_PAYLOAD + 1).to_bytes(4, "big"),
        bytes([3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]),  # an exit frame of 2 bytes
    ],
)
def test_bad_frames_are_protocol_errors(bad: bytes) -> None:
    parser = ConsoleParser(NONCE)
    parser.feed(start_marker(NONCE))
    with pytest.raises(Internal, match="guest console"):
        parser.feed(bad)


def test_noise_is_bounded() -> None:
    parser = ConsoleParser(NONCE)
    parser.feed(b"x" * (protocol.NOISE_KEPT * 3))
    assert len(parser.noise) <= protocol.NOISE_KEPT


def test_an_exec_sessions_exit_does_not_end_the_parse() -> None:
    parser = ConsoleParser(NONCE)
    parser.feed(start_marker(NONCE) + exit_frame(7, session=1))
    assert parser.exit_code is None
    assert parser.feed(frame(Frame.STDOUT, b"x")) == [Output(1, b"x")]
    assert parser.feed(exit_frame(0) + exit_frame(5, session=2)) == [Exited(0)]
    assert parser.exit_code == 0


def test_host_frames() -> None:
    assert protocol.signal_frame(15) == bytes([18, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 15])
    assert protocol.signal_frame(2, session=3) == bytes([18, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 2])
    assert protocol.winsize_frame(24, 80, session=258) == bytes(
        [19, 0, 0, 1, 2, 0, 0, 0, 4, 0, 24, 0, 80]
    )
    assert frame(Frame.EOF) == bytes([17, 0, 0, 0, 0, 0, 0, 0, 0])
    assert (
        frame(Frame.STDIN, b"ab", session=0xFFFFFFFF)
        == bytes([16, 255, 255, 255, 255]) + bytes([0, 0, 0, 2]) + b"ab"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: frame(Frame.STDIN, b"x" * (protocol.MAX_PAYLOAD + 1)), "over 65536"),
        (lambda: frame(Frame.EOF, session=-1), "not a u32"),
        (lambda: frame(Frame.EOF, session=1 << 32), "not a u32"),
        (lambda: protocol.signal_frame(0), "want 1..64"),
        (lambda: protocol.winsize_frame(70000, 80), "terminal size"),
    ],
)
def test_bad_host_frames_are_refused(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(InvalidArgument, match=message):
        make()


def test_exec_frame_carries_its_spec_records() -> None:
    spec = protocol.ExecSpec(
        argv=("sh", "-c", "echo $x", ""),
        env=("PATH=/bin", "x=a=b"),
        cwd="/srv",
        user="1000:1000",
        tty=True,
        rows=40,
        cols=120,
    )
    data = exec_frame(5, spec)
    kind, session, length = protocol.HEADER.unpack_from(data)
    assert (kind, session, length) == (Frame.EXEC, 5, len(data) - protocol.HEADER.size)
    records = protocol.decode_spec(data[protocol.HEADER.size :])
    assert records == [
        ("arg", "sh"),
        ("arg", "-c"),
        ("arg", "echo $x"),
        ("arg", ""),
        ("env", "PATH=/bin"),
        ("env", "x=a=b"),
        ("cwd", "/srv"),
        ("user", "1000:1000"),
        ("stdin", "0"),
        ("tty", "1"),
        ("rows", "40"),
        ("cols", "120"),
    ]


@pytest.mark.parametrize(
    ("session", "spec", "message"),
    [
        (0, protocol.ExecSpec(argv=("ls",)), "session 0 is invalid"),
        (1, protocol.ExecSpec(argv=()), "no command"),
        (1, protocol.ExecSpec(argv=("ls",), env=("NOEQ",)), "want KEY=VALUE"),
        (1, protocol.ExecSpec(argv=("ls",), cwd="rel"), "absolute"),
        (1, protocol.ExecSpec(argv=("ls",), user="a b"), "user 'a b' is invalid"),
        (1, protocol.ExecSpec(argv=("ls",), rows=-1), "terminal size"),
        (1, protocol.ExecSpec(argv=("a\0b",)), "NUL"),
        (1, protocol.ExecSpec(argv=("x" * protocol.MAX_PAYLOAD,)), "the limit is 65536"),
    ],
)
def test_bad_exec_specs_are_refused(session: int, spec: protocol.ExecSpec, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        exec_frame(session, spec)


def test_the_spec_file_keeps_argv_and_env_exactly() -> None:
    spec = GuestSpec(
        argv=("sh", "-c", "a b\n$x", ""),
        env=("A=1", "B=x=y"),
        cwd="/w",
        user="app:1",
        hostname="h",
        read_only=True,
    )
    data = protocol.encode_spec(spec, NONCE)
    assert data.startswith(b"vxn-spec=2\0nonce=" + NONCE.encode() + b"\0")
    records = protocol.decode_spec(data)
    assert protocol.spec_values(records, "arg") == ["sh", "-c", "a b\n$x", ""]
    assert protocol.spec_values(records, "env") == ["A=1", "B=x=y"]
    fields = dict(records)
    assert (fields["writable"], fields["stdin"], fields["tty"]) == ("0", "0", "0")
    assert (fields["rows"], fields["cols"]) == ("0", "0")


def test_the_spec_file_carries_the_terminal() -> None:
    spec = GuestSpec(
        argv=("sh",), env=(), cwd="/", user="", hostname="h", stdin=True, tty=True, rows=24, cols=80
    )
    fields = dict(protocol.decode_spec(protocol.encode_spec(spec, NONCE)))
    assert (fields["stdin"], fields["tty"], fields["rows"], fields["cols"]) == (
        "1",
        "1",
        "24",
        "80",
    )


def test_a_nul_cannot_enter_the_spec() -> None:
    spec = GuestSpec(argv=("a\0b",), env=(), cwd="/", user="", hostname="h")
    with pytest.raises(InvalidArgument, match="NUL"):
        protocol.encode_spec(spec, NONCE)
