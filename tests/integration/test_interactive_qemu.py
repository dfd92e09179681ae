"""Interactive sessions with real QEMU guests (TCG) through real vxn and vxnd processes:
stdin with EOF, live stdin, signals, and terminals driven through a pty (`-it`, `exec
-it`, `attach` and its detach keys). Cases share guests: each boot takes seconds."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest
from data.guestimages import APP_NAME, app_image
from integration.qemuguests import tcg_vxnd

from vxn.testing.daemon import vxn_argv
from vxn.testing.terminal import Pty

pytestmark = pytest.mark.integration

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with tcg_vxnd(app_image(tmp_path_factory.mktemp("images") / "app.tar")) as dirs:
        yield dirs.env()


def _vxn(
    env: dict[str, str], *args: str, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        vxn_argv(*args), env=env, input=input, capture_output=True, timeout=TIMEOUT
    )


def test_stdin_with_eof_and_binary_data(env: dict[str, str]) -> None:
    counted = _vxn(env, "run", "-i", "--rm", APP_NAME, "busybox", "wc", "-l", input=b"a\nb")
    assert (counted.stdout.strip(), counted.returncode) == (b"1", 0)
    data = os.urandom(1_000_000)
    summed = _vxn(env, "run", "-i", "--rm", APP_NAME, "busybox", "sha256sum", input=data)
    assert summed.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_live_stdin_is_read_as_it_is_written(env: dict[str, str]) -> None:
    script = 'echo prompt; read a; echo "echo:$a"; read b; echo "done:$b"'
    argv = vxn_argv("run", "-i", "--rm", APP_NAME, "sh", "-c", script)
    with subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"prompt\n"
        proc.stdin.write(b"hello\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"echo:hello\n"  # seen while stdin is still open
        proc.stdin.write(b"last")
        proc.stdin.close()
        assert proc.stdout.read() == b"done:last\n"
        assert proc.wait(TIMEOUT) == 0


def test_without_t_sigterm_to_vxn_reaches_the_container(env: dict[str, str]) -> None:
    script = 'trap "echo trapped; exit 9" TERM; echo ready; while :; do sleep 1; done'
    argv = vxn_argv("run", "--rm", APP_NAME, "sh", "-c", script)
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.read() == b"trapped\n"
        assert proc.wait(TIMEOUT) == 9


@pytest.fixture
def ptys() -> Iterator[list[Pty]]:
    made: list[Pty] = []
    yield made
    for p in made:
        p.close()


def _ended(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(TIMEOUT)
    finally:
        proc.kill()
        proc.wait()


def test_run_it_a_shell_with_size_resize_ctrl_c_exec_it_and_exit(
    env: dict[str, str], ptys: list[Pty]
) -> None:
    term = Pty(30, 90, timeout=TIMEOUT)
    ptys.append(term)
    proc = term.spawn(env, "run", "-it", "--rm", "--name", "itc", "-e", "PS1=vxn$ ", APP_NAME, "sh")
    try:
        term.expect(b"vxn$ ")
        assert not termios.tcgetattr(term.slave)[3] & termios.ICANON  # ours is raw meanwhile
        term.type(b"busybox stty size; echo TERM=$TERM\r")
        term.expect(b"30 90\r\nTERM=xterm\r\n")
        term.resize(40, 120)
        proc.send_signal(signal.SIGWINCH)
        time.sleep(0.5)  # the resize and the next line travel apart
        term.type(b"busybox stty size\r")
        term.expect(b"40 120\r\n")
        term.type(b"sh -c 'trap \"echo INTR-$((40+2))\" INT; sleep 100; echo after'\r")
        time.sleep(2)  # sleep is running
        term.type(b"\x03")
        term.expect(b"INTR-42\r\nafter\r\n")
        inner = Pty(25, 70, timeout=TIMEOUT)
        ptys.append(inner)
        exec_proc = inner.spawn(env, "exec", "-it", "itc", "sh")
        inner.type(b"busybox stty size; tty\r")
        inner.expect(b"25 70\r\n/dev/pts/")
        inner.type(b"exit 4\r")
        assert _ended(exec_proc) == 4
        assert termios.tcgetattr(inner.slave) == inner.cooked
        term.type(b"exit 3\r")
        assert _ended(proc) == 3
    finally:
        proc.kill()
    assert termios.tcgetattr(term.slave) == term.cooked


def test_attach_to_a_detached_container_then_detach_with_ctrl_p_ctrl_q(
    env: dict[str, str], ptys: list[Pty]
) -> None:
    script = "i=0; while :; do echo tick$i; i=$((i+1)); sleep 1; done"
    started = _vxn(env, "run", "-dit", "--name", "att", APP_NAME, "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    try:
        term = Pty(24, 80, timeout=TIMEOUT)
        ptys.append(term)
        proc = term.spawn(env, "attach", "att")
        term.expect(b"tick")
        term.expect(b"\r\n")
        term.expect(b"tick")  # a new line, written after the attach
        term.type(b"\x10\x11")
        assert _ended(proc) == 0
        assert termios.tcgetattr(term.slave) == term.cooked
        ps = _vxn(env, "ps", "--filter", "status=running", "--format", "json")
        assert b'"Names":"att"' in ps.stdout
    finally:
        assert _vxn(env, "rm", "-f", "att").returncode == 0
