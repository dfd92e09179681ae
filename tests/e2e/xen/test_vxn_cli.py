"""vxn on real Xen, end to end: the real vxn CLI against a real vxnd inside the Dom0.

vxnd's backend is left at `auto`: it must find the Xen toolstack itself. Every PV
guest costs 10-30 s under TCG, so one scenario runs per module, with the guests of
each phase running at the same time, and records what happened; the tests below
check it:
  1. three at once: `run --rm IMG echo hello`; argv, env, stderr apart and exit 42
     (and /sys/hypervisor/type); 300 kB of binary stdin through `-i`, up to its EOF;
     then three more: a detached `web` that traps TERM, writes a nonce to /tmp and
     idles; an `-it` shell driven through a pty (prompt, `stty size`, `exit 3`); a
     `vxn run` client killed -9;
  2. `-m` beyond Xen's free memory: the preflight error, no domain left;
  3. `ps`, `logs`, `exec` (the nonce, an exit code) on `web`; `rm -f` of the
     container whose client was killed; an idle vxnd uses no CPU for 10 s;
  4. `kill -9` vxnd, start another: `web` is adopted (ps, logs, exec), `stop` gets
     its trap's exit code; nothing is left in `xl list`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pty
import re
import secrets
import select
import shutil
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from e2e.xen.dom0vxn import Dom0Vxn, Ran, cpu_seconds, vxn_domains
from e2e.xen.guest import staged_dir, wait_until

ARGS = ["a b", ' "q" ', "it's", "$HOME", "l1\nl2", "üñí €", "", "--x", "*", "\\n"]
PRINT_ARGS = 'for a; do printf "[%s]" "$a"; done; echo "$FOO" >&2; cat /sys/hypervisor/type >&2'
WEB = (
    "trap 'echo bye; exit 7' TERM; echo $NONCE > /tmp/nonce; echo started; "
    "while true; do sleep 1; done"
)
IDLE_WINDOW = 10.0
ROWS, COLS = 33, 101


@dataclass
class Cli:
    ran: dict[str, Ran] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    most_domains_at_once: int = 0
    stdin_digest: str = ""
    tty: dict[str, Any] = field(default_factory=dict)
    nonce: str = ""
    backend: str = ""
    killed_client_state: str = ""
    domains: dict[str, list[str]] = field(default_factory=dict)
    free_mib: int = 0
    vxnd_cpu: float = -1.0
    adopted_state: str = ""
    exit_code_after_stop: int | None = None
    errors: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        except Exception as e:  # recorded: the tests below say which step failed
            self.errors.append(f"{name}: {type(e).__name__}: {e}")
        finally:
            self.timings[name] = round(time.monotonic() - t0, 1)


class DomainCounter(threading.Thread):
    """The most domains `xl list` showed at once while it ran."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.most = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(subprocess.SubprocessError):
                self.most = max(self.most, len(vxn_domains()))
            self.stop.wait(2.0)


def _finish(p: subprocess.Popen[bytes], input: bytes | None = None) -> Ran:
    out, err = p.communicate(input, timeout=300)
    return Ran(p.returncode, out, err)


def _tty_session(vxn: Dom0Vxn, out: Cli) -> None:
    """`vxn run -it --rm IMG sh` on a pty: prompt, stty size, exit 3; the pty restored."""
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    before = termios.tcgetattr(slave)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    p = vxn.popen(
        "run", "-it", "--rm", vxn.image, "sh",
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    os.close(slave)
    seen = b""

    def expect(pattern: bytes, limit: float = 240.0) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + limit
        while not re.search(pattern, seen):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([master], [], [], left)[0]:
                raise TimeoutError(f"no {pattern!r} on the pty; it showed {seen[-500:]!r}")
            try:
                seen += os.read(master, 4096)
            except OSError:  # EIO: the CLI exited
                raise TimeoutError(f"pty closed; it showed {seen[-500:]!r}") from None
        return seen

    try:
        expect(rb"# ")  # busybox ash: "/ # ", then it asks the cursor position
        out.tty["prompt"] = True
        os.write(master, b"stty size\r")
        out.tty["size"] = re.findall(rb"(\d+) (\d+)\r\n", expect(rb"\d+ \d+\r\n"))[-1]
        os.write(master, b"exit 3\r")
        out.tty["code"] = p.wait(120)
        # The CLI restored the terminal: the slave's modes are as they were before.
        reopened = os.open(slave_name, os.O_RDWR | os.O_NOCTTY)
        try:
            out.tty["restored"] = termios.tcgetattr(reopened) == before
        finally:
            os.close(reopened)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
        os.close(master)


def _scenario(vxn: Dom0Vxn, out: Cli) -> None:
    img = vxn.image
    with out.step("vxnd start"):
        out.timings["vxnd_ready"] = round(vxn.start_vxnd(), 1)
    with out.step("load"):
        ran = vxn("load", str(vxn.archive))
        assert ran.code == 0, ran

    # Two waves of three guests at once (vxnd creates one domain at a time).
    out.nonce = secrets.token_hex(8)
    data = os.urandom(300_000)
    out.stdin_digest = hashlib.sha256(data).hexdigest()
    args_run = ["run", "--rm", "-e", "FOO=bar baz", img, "sh", "-c", PRINT_ARGS + "; exit 42"]
    args_run += ["sh", *ARGS]
    counter = DomainCounter()
    counter.start()
    with out.step("wave 1"):
        runs = {
            "hello": vxn.popen("run", "--rm", img, "echo", "hello"),
            "args": vxn.popen(*args_run),
            "binary": vxn.popen(
                "run", "-i", "--rm", img, "busybox", "sha256sum", stdin=subprocess.PIPE
            ),
        }
        for name, p in runs.items():
            out.ran[name] = _finish(p, data if name == "binary" else None)
    with out.step("wave 2"):
        web = ["run", "-d", "--name", "web", "-e", f"NONCE={out.nonce}", img, "sh", "-c", WEB]
        out.ran["web"] = vxn(*web)
        client = vxn.popen("run", "--name", "client", img, "sleep", "600")
        _tty_session(vxn, out)
        # The killed client: its container runs on under vxnd.
        wait_until("client running", lambda: _state(vxn, "client") == "running", 240)
        client.kill()
        client.communicate(timeout=30)
        time.sleep(2)
        out.killed_client_state = _state(vxn, "client")
    counter.stop.set()
    out.most_domains_at_once = counter.most

    with out.step("memory preflight"):
        before = vxn_domains()
        info = subprocess.run(["xl", "info"], capture_output=True, text=True, timeout=60).stdout
        out.free_mib = int(re.search(r"free_memory\s*:\s*(\d+)", info)[1])  # type: ignore[index]
        out.ran["big"] = vxn("run", "--rm", "-m", f"{out.free_mib + 512}m", img, "true")
        out.domains["after big"] = sorted(set(vxn_domains()) - set(before))

    with out.step("web"):
        wait_until("web started", lambda: b"started" in vxn("logs", "web").out, 240)
        out.backend = vxn.inspect("web").get("backend", "")
        out.ran["ps"] = vxn("ps")
        out.ran["logs"] = vxn("logs", "web")
        out.ran["exec nonce"] = vxn("exec", "web", "cat", "/tmp/nonce")
        out.ran["exec code"] = vxn("exec", "web", "sh", "-c", "exit 3")

    with out.step("rm -f the killed client's container"):
        out.ran["rm client"] = vxn("rm", "-f", "client")
        out.domains["after rm client"] = vxn_domains()

    with out.step("idle vxnd"):
        assert vxn.vxnd is not None
        time.sleep(2.0)  # let the last request's work settle
        t0 = cpu_seconds(vxn.vxnd.pid)
        time.sleep(IDLE_WINDOW)
        out.vxnd_cpu = cpu_seconds(vxn.vxnd.pid) - t0

    with out.step("kill -9 vxnd and adopt"):
        vxn.kill_vxnd()
        out.domains["vxnd killed"] = vxn_domains()
        out.timings["vxnd_ready_again"] = round(vxn.start_vxnd(), 1)
        out.adopted_state = _state(vxn, "web")
        out.ran["ps after"] = vxn("ps")
        out.ran["logs after"] = vxn("logs", "web")
        out.ran["exec after"] = vxn("exec", "web", "cat", "/tmp/nonce")
        out.ran["stop"] = vxn("stop", "-t", "60", "web")
        out.exit_code_after_stop = vxn.inspect("web").get("exit_code")
        out.ran["rm web"] = vxn("rm", "web")
    out.domains["at end"] = vxn_domains()


def _state(vxn: Dom0Vxn, ref: str) -> str:
    try:
        return str(vxn.inspect(ref).get("state", ""))
    except RuntimeError:
        return ""


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    staged = staged_dir(os.environ["VXN_E2E_JOB"])
    manifest = json.loads((staged / "manifest.json").read_text())
    root = tmp_path_factory.mktemp("vxncli")
    vxn = Dom0Vxn(staged, root, manifest)
    out = Cli()
    t0 = time.monotonic()
    try:
        _scenario(vxn, out)
    finally:
        for name in ("web", "client"):
            with contextlib.suppress(Exception):
                vxn("rm", "-f", name, timeout=120)
        vxn.close()
        shutil.rmtree(root, ignore_errors=True)
    print(f"vxn cli scenario: {time.monotonic() - t0:.1f} s; steps {out.timings}")
    return out


def test_no_step_failed(cli: Cli) -> None:
    assert not cli.errors, cli


def test_auto_picks_xen(cli: Cli) -> None:
    assert cli.backend == "xen"


def test_echo_hello_prints_exactly_hello(cli: Cli) -> None:
    ran = cli.ran["hello"]
    assert (ran.code, ran.out, ran.err) == (0, b"hello\n", b"")


def test_argv_env_stderr_apart_exit_42_on_xen(cli: Cli) -> None:
    ran = cli.ran["args"]
    assert ran.code == 42, ran
    assert ran.out.decode() == "".join(f"[{a}]" for a in ARGS)
    assert ran.err == b"bar baz\nxen\n"


def test_two_containers_at_once(cli: Cli) -> None:
    assert cli.most_domains_at_once >= 2, cli.most_domains_at_once


def test_binary_stdin_arrives_intact_up_to_its_eof(cli: Cli) -> None:
    # sha256sum ends only on EOF; every byte value, ^O (hvc0's SysRq prefix) included
    ran = cli.ran["binary"]
    assert ran.code == 0, ran
    assert ran.out.split()[:1] == [cli.stdin_digest.encode()], ran


def test_a_tty_session_through_a_pty(cli: Cli) -> None:
    assert cli.tty.get("prompt"), cli.tty
    assert cli.tty.get("size") == (str(ROWS).encode(), str(COLS).encode()), cli.tty
    assert cli.tty.get("code") == 3, cli.tty
    assert cli.tty.get("restored"), cli.tty


def test_memory_beyond_free_is_refused_before_any_domain(cli: Cli) -> None:
    ran = cli.ran["big"]
    assert ran.code != 0
    need = cli.free_mib + 512
    assert f"needs {need} MiB but Xen has" in ran.err.decode(), ran
    assert cli.domains["after big"] == []


def test_detached_ps_logs_exec(cli: Cli) -> None:
    assert cli.ran["web"].code == 0, cli.ran["web"]
    assert re.fullmatch(rb"[0-9a-f]{64}\n", cli.ran["web"].out), cli.ran["web"]
    ps = cli.ran["ps"].out.decode()
    assert re.search(r"\bUp\b.*\bweb\b", ps), ps
    assert b"started\n" in cli.ran["logs"].out
    assert cli.ran["exec nonce"].out == f"{cli.nonce}\n".encode(), cli.ran["exec nonce"]
    assert cli.ran["exec code"].code == 3


def test_a_killed_client_leaves_its_container_running_and_rm_f_removes_it(cli: Cli) -> None:
    assert cli.killed_client_state == "running"
    assert cli.ran["rm client"].code == 0, cli.ran["rm client"]
    assert not any(d for d in cli.domains["after rm client"] if d != _web_guest(cli))


def test_an_idle_vxnd_uses_no_cpu(cli: Cli) -> None:
    assert 0 <= cli.vxnd_cpu < 0.1, f"{cli.vxnd_cpu:.2f} s CPU in {IDLE_WINDOW:.0f} s"


def test_a_restarted_vxnd_adopts_the_running_container(cli: Cli) -> None:
    assert len(cli.domains["vxnd killed"]) == 1  # the guest outlived vxnd
    assert cli.adopted_state == "running"
    assert re.search(r"\bUp\b.*\bweb\b", cli.ran["ps after"].out.decode())
    assert b"started\n" in cli.ran["logs after"].out


def test_an_adopted_container_still_execs_and_stops_with_its_code(cli: Cli) -> None:
    assert cli.ran["exec after"].out == f"{cli.nonce}\n".encode(), cli.ran["exec after"]
    assert cli.ran["stop"].code == 0, cli.ran["stop"]
    assert cli.exit_code_after_stop == 7  # its TERM trap's


def test_nothing_left_in_xl_list(cli: Cli) -> None:
    assert cli.domains["at end"] == []


def _web_guest(cli: Cli) -> str:
    return cli.domains["vxnd killed"][0] if cli.domains.get("vxnd killed") else ""
