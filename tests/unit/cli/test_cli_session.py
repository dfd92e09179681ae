"""Sessions through real `vxn` processes against the stub vxnd (conftest.py): signals sent
to the CLI, and a terminal driven through a pty (raw mode, size, resize, detach keys)."""

from __future__ import annotations

import base64
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from vxn.testing.daemon import vxn_argv
from vxn.testing.terminal import Pty

if TYPE_CHECKING:
    from conftest import Stub, StubContainer

TIMEOUT = 20.0


def _until(what: Callable[[], object], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _running(stub: Stub) -> StubContainer:
    _until(lambda: any(c.state == "running" for c in stub.vxnd.containers.values()))
    return stub.only()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_without_t_our_signals_reach_the_container(stub: Stub, signum: int) -> None:
    argv = vxn_argv("run", "img", "trap")
    with subprocess.Popen(argv, env=stub.env, stdout=subprocess.PIPE) as proc:
        _running(stub)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=TIMEOUT)
    assert (out, proc.returncode) == (f"signal {signum}\n".encode(), signum)
    assert stub.only().sent[-1] == {"signal": signum}


def test_sig_proxy_false_leaves_signals_to_us(stub: Stub) -> None:
    argv = vxn_argv("run", "--sig-proxy=false", "img", "trap")
    with subprocess.Popen(argv, env=stub.env, stdout=subprocess.PIPE) as proc:
        _running(stub)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGTERM
    assert stub.only().sent == [{"stdin": False, "logs": False}]


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty(30, 90, timeout=TIMEOUT)
    yield p
    p.close()


def test_a_tty_session_is_raw_follows_resizes_and_detaches(stub: Stub, pty: Pty) -> None:
    proc = pty.spawn(stub.env, "run", "-it", "img", "size")
    try:
        pty.expect(b"30 90\n")  # the size went with create; raw: no \r added here
        assert not termios.tcgetattr(pty.slave)[3] & termios.ICANON
        pty.resize(40, 120)
        proc.send_signal(signal.SIGWINCH)
        pty.expect(b"40 120\n")
        pty.type(b"x\x03y\x10z\x10\x11")  # Ctrl-C is a byte; Ctrl-P Ctrl-Q detaches
        assert proc.wait(TIMEOUT) == 0
    finally:
        proc.kill()
        proc.wait()
    c = stub.only()
    assert c.options["tty"] is True
    assert (c.options["rows"], c.options["cols"]) == (30, 90)
    typed = b"".join(base64.b64decode(s["in"]) for s in c.sent if "in" in s)
    assert typed == b"x\x03y\x10z"
    assert {"winsize": [40, 120]} in c.sent
    assert {"eof": True} not in c.sent
    _until(lambda: c.sent and not c.ended_body and c.state == "running")
    assert termios.tcgetattr(pty.slave) == pty.cooked


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_a_tty_session_still_restores_the_terminal(
    stub: Stub, pty: Pty, signum: int
) -> None:
    proc = pty.spawn(stub.env, "run", "-it", "img", "size")
    try:
        pty.expect(b"30 90")
        proc.send_signal(signum)
        assert proc.wait(TIMEOUT) == 128 + signum
    finally:
        proc.kill()
        proc.wait()
    assert termios.tcgetattr(pty.slave) == pty.cooked
    assert not any("signal" in line for line in stub.only().sent)


def test_the_exit_code_of_a_tty_session(stub: Stub, pty: Pty) -> None:
    proc = pty.spawn(stub.env, "run", "-it", "img", "exit", "3")
    assert proc.wait(TIMEOUT) == 3
    assert termios.tcgetattr(pty.slave) == pty.cooked
