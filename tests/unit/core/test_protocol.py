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
    + frame(Frame.ERROR, "exec: \u00e9".encode())
    + exit_frame(42)
    + b"after the end"
)
EVENTS = [
    Hello(),
    Started(),
    Output(1, b"out\n"),
    Output(2, b"err\n"),
    GuestError("exec: \u00e9"),
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
        bytes([9, 0, 0, 0, 0]),  # unknown type
        bytes([16, 0, 0, 0, 0]),  # a host-to-guest type
        bytes([1]) + (protocol.MAX_PAYLOAD + 1).to_bytes(4, "big"),
        bytes([3, 0, 0, 0, 2, 0, 1]),  # an exit frame of 2 bytes
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


def test_host_frames() -> None:
    assert protocol.signal_frame(15) == bytes([18, 0, 0, 0, 4, 0, 0, 0, 15])
    assert protocol.winsize_frame(24, 80) == bytes([19, 0, 0, 0, 4, 0, 24, 0, 80])
    assert frame(Frame.EOF) == bytes([17, 0, 0, 0, 0])


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
    assert data.startswith(b"vxn-spec=1\0nonce=" + NONCE.encode() + b"\0")
    records = protocol.decode_spec(data)
    assert protocol.spec_values(records, "arg") == ["sh", "-c", "a b\n$x", ""]
    assert protocol.spec_values(records, "env") == ["A=1", "B=x=y"]
    assert dict(records)["writable"] == "0"
    assert dict(records)["stdin"] == "0"


def test_a_nul_cannot_enter_the_spec() -> None:
    spec = GuestSpec(argv=("a\0b",), env=(), cwd="/", user="", hostname="h")
    with pytest.raises(InvalidArgument, match="NUL"):
        protocol.encode_spec(spec, NONCE)
