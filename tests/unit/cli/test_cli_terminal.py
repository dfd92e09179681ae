"""The pure and local parts of a session: detach keys, signals, raw mode, window size."""

import fcntl
import os
import struct
import termios
from collections.abc import Iterator

import pytest

from vxn.cli.commands._containers import parse_signal, path
from vxn.cli.terminal import DetachMatcher, parse_detach_keys, raw_mode, window_size
from vxn.errors import InvalidArgument


@pytest.mark.parametrize(
    ("spec", "keys"),
    [
        ("ctrl-p,ctrl-q", b"\x10\x11"),
        ("CTRL-P,Ctrl-Q", b"\x10\x11"),
        ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", b"\x00\x1b\x1c\x1d\x1e\x1f"),
        ("a,ctrl-a,,", None),
        ("x,y", b"xy"),
        ("q", b"q"),
    ],
)
def test_detach_keys_parse_like_docker(spec: str, keys: bytes | None) -> None:
    if keys is None:
        with pytest.raises(InvalidArgument, match="unknown key ''"):
            parse_detach_keys(spec)
    else:
        assert parse_detach_keys(spec) == keys


@pytest.mark.parametrize("spec", ["ctrl-1", "ctrl-pq", "alt-x", "é", "ctrl-"])
def test_bad_detach_keys_name_the_key_and_the_syntax(spec: str) -> None:
    with pytest.raises(InvalidArgument, match=r"--detach-keys .*: unknown key .*ctrl-p,ctrl-q"):
        parse_detach_keys(spec)


def test_detach_matcher_across_chunks_and_false_starts() -> None:
    m = DetachMatcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == (b"ab", False)  # the first key is held back
    assert m.feed(b"\x11tail") == (b"", True)  # what follows the keys is dropped
    assert m.feed(b"\x10x") == (b"\x10x", False)  # a false start is forwarded
    assert m.feed(b"\x10\x10\x11") == (b"\x10", True)  # a repeat restarts the match
    assert m.feed(b"\x11") == (b"\x11", False)


def test_a_one_key_sequence_detaches_at_once() -> None:
    assert DetachMatcher(b"q").feed(b"abqc") == (b"ab", True)


@pytest.mark.parametrize(
    ("text", "number"),
    [("KILL", 9), ("sigterm", 15), ("SIGINT", 2), ("hup", 1), ("9", 9), ("64", 64)],
)
def test_signals_parse_like_docker(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "NOPE", "SIG", "-9", ""])
def test_bad_signals_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="not a signal; use a name"):
        parse_signal(text)


def test_container_paths_keep_the_ref_one_segment() -> None:
    assert path("web-1.a_b") == "/v1/containers/web-1.a_b"
    assert path("a/../b c", "logs") == "/v1/containers/a%2F..%2Fb%20c/logs"


@pytest.fixture
def pty_fds() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_window_size_of_a_terminal_and_none_without_one(pty_fds: tuple[int, int]) -> None:
    _, slave = pty_fds
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    r, w = os.pipe()
    try:
        assert window_size((r, slave)) == (33, 101)
        assert window_size((r, w)) is None
    finally:
        os.close(r)
        os.close(w)


def test_raw_mode_is_undone_even_on_error(pty_fds: tuple[int, int]) -> None:
    _, slave = pty_fds
    before = termios.tcgetattr(slave)
    seen: list[int] = []

    def fail_in_raw_mode() -> None:
        with raw_mode(slave):
            seen.append(termios.tcgetattr(slave)[3])
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail_in_raw_mode()
    assert not seen[0] & (termios.ICANON | termios.ECHO | termios.ISIG)
    assert termios.tcgetattr(slave) == before
