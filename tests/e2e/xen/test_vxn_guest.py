"""vxn's own guest on real Xen: the artefacts the QEMU backend boots, through a plain xl config.

The host built them with vxn's engine code (`e2e/vxnguest.py`): the provisioned
kernel, the cached base initramfs with this run's spec appended, the busybox image's
read-only base disk and a sparse writable disk. Here one PV guest runs
`sh -c 'cat /sys/hypervisor/type >&2; echo hello; exit 42'`: created paused, its
console pty (from XenStore) opened raw before it is unpaused, the bytes decoded
with `vxn.core.protocol`. The exit code must come back through both channels, the
EXIT frame and the guest's own XenStore node `data/vxn-exit-code`.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import subprocess
import termios
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pyxs  # type: ignore[import-untyped]  # no stubs

from e2e.xen.guest import bounded, copy_sparse, domain_state, staged_dir, wait_until, xl
from vxn.core import protocol

# Idle TCG: a PV guest with disks reaches its exit 10-15 s after unpause
# (XEN-IN-QEMU.md 4.3, plus the overlay); about 3x and more for a loaded host.
T_RUN = 90.0
T_STATE = 30.0
T_XS = 10.0
MEMORY = 256  # vxn's default guest memory ([guest] memory); >= 96 (XEN-IN-QEMU.md 3.3)


@dataclass
class VxnGuest:
    name: str
    manifest: dict[str, Any]
    domid: int = -1
    stdout: bytes = b""
    stderr: bytes = b""
    errors: list[str] = field(default_factory=list)
    parser: protocol.ConsoleParser | None = None
    raw: bytearray = field(default_factory=bytearray)  # everything read from the console
    state_after_exit: str | None = None
    exit_code_node: bytes | None = None
    gone_after_destroy: bool = False
    t: dict[str, float] = field(default_factory=dict)
    error: str = ""


def xl_config(name: str, staged: Path, d: Path, cmdline: str) -> str:
    """A plain xl config: PV, the base disk read-only as xvda, the writable one as xvdb."""
    return "\n".join(
        [
            f'name = "{name}"',
            'type = "pv"',
            f'kernel = "{d / "vmlinux"}"',
            f'ramdisk = "{d / "ramdisk"}"',
            f'extra = "{cmdline}"',
            f"memory = {MEMORY}",
            "vcpus = 1",
            "disk = [",
            f'    "format=raw,vdev=xvda,access=ro,target={d / "base.ext4"}",',
            f'    "format=raw,vdev=xvdb,access=rw,target={d / "upper.ext4"}",',
            "]",
            'on_poweroff = "preserve"',  # data/ stays readable after the exit
            'on_crash = "preserve"',
            "",
        ]
    )


def _read_console(fd: int, run: VxnGuest, stop: threading.Event) -> None:
    assert run.parser is not None
    while not stop.is_set() and run.parser.exit_code is None:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: xenconsoled closed the pty (the domain went away)
            return
        if not data:
            return
        run.raw += data
        for event in run.parser.feed(data):
            if isinstance(event, protocol.Output):
                if event.stream == 1:
                    run.stdout += event.data
                else:
                    run.stderr += event.data
            elif isinstance(event, protocol.GuestError):
                run.errors.append(event.message)
            elif isinstance(event, protocol.Hello | protocol.Started):
                run.t[type(event).__name__.lower()] = time.monotonic()


def _lifecycle(run: VxnGuest, cfg: Path, client: pyxs.Client) -> None:
    run.t["create"] = time.monotonic()
    xl("create", "-p", str(cfg), timeout=120)  # paused: attach before it prints a byte
    run.t["created"] = time.monotonic()
    run.domid = int(xl("domid", run.name))
    node = f"/local/domain/{run.domid}/console/tty".encode()

    def console_tty() -> bytes | None:
        return bounded("pyxs read tty", lambda: client.read(node), T_XS) or None

    pty = wait_until("console tty in XenStore", console_tty, T_STATE).decode()
    fd = os.open(pty, os.O_RDWR | os.O_NOCTTY)
    stop = threading.Event()
    try:
        tty.setraw(fd, termios.TCSANOW)  # no echo, no \r\n: the frames are binary
        reader = threading.Thread(target=_read_console, args=(fd, run, stop), daemon=True)
        reader.start()
        xl("unpause", run.name)
        run.t["unpaused"] = time.monotonic()
        reader.join(T_RUN)
        if reader.is_alive():
            raise TimeoutError(f"no EXIT frame within {T_RUN:.0f} s of unpause")
        run.t["exit_frame"] = time.monotonic()
        run.state_after_exit = wait_until(
            "guest shut down", lambda: _stopped(domain_state(run.name)), T_STATE
        )
        run.t["shut_down"] = time.monotonic()
        xs_node = f"/local/domain/{run.domid}/data/vxn-exit-code".encode()
        run.exit_code_node = bounded("pyxs read exit code", lambda: client.read(xs_node), T_XS)
    finally:
        stop.set()
        os.close(fd)


def _stopped(state: str | None) -> str | None:
    return state if state and ("s" in state or "c" in state) else None


@pytest.fixture(scope="module")
def vxn_guest(tmp_path_factory: pytest.TempPathFactory) -> VxnGuest:
    staged = staged_dir(os.environ["VXN_E2E_JOB"])
    manifest = json.loads((staged / "manifest.json").read_text())
    d = tmp_path_factory.mktemp("vxnguest")  # /tmp: a tmpfs, loop devices work on it
    for name in ("vmlinux", "ramdisk"):
        shutil.copyfile(staged / name, d / name)
    for name, extents in manifest["extents"].items():
        copy_sparse(staged / name, d / name, extents, manifest["sizes"][name])
    run = VxnGuest(name=f"vxn-g-{secrets.token_hex(3)}", manifest=manifest)
    run.parser = protocol.ConsoleParser(manifest["nonce"])
    cfg = d / "guest.cfg"
    cfg.write_text(xl_config(run.name, staged, d, manifest["cmdline"]))
    with pyxs.Client() as client:
        try:
            _lifecycle(run, cfg, client)
        except (TimeoutError, subprocess.SubprocessError, OSError, ValueError) as e:
            run.error = f"{type(e).__name__}: {e}"
        finally:
            if domain_state(run.name) is not None:
                subprocess.run(["xl", "destroy", run.name], timeout=60, check=False)
            run.gone_after_destroy = domain_state(run.name) is None and (
                run.domid < 0
                or not bounded(
                    "pyxs exists",
                    lambda: client.exists(f"/local/domain/{run.domid}".encode()),
                    T_XS,
                )
            )
    return run


def _why(run: VxnGuest) -> str:
    parser = run.parser
    noise = parser.noise if parser else b""
    tail = (noise if parser and not parser.started else bytes(run.raw))[-2000:]
    return (
        f"{run.error or 'no step failed'}; hello={parser and parser.greeted} "
        f"started={parser and parser.started} errors={run.errors}\n"
        f"--- guest console (tail) ---\n{tail.decode('utf-8', 'replace')}"
    )


def test_vxn_guest_prints_exactly_hello(vxn_guest: VxnGuest) -> None:
    assert vxn_guest.parser is not None
    assert vxn_guest.parser.started, _why(vxn_guest)
    assert vxn_guest.stdout == b"hello\n", _why(vxn_guest)
    assert not vxn_guest.errors, _why(vxn_guest)


def test_vxn_guest_sees_xen(vxn_guest: VxnGuest) -> None:
    # The container's own /sys/hypervisor/type, sent back over its stderr frames.
    assert vxn_guest.stderr == b"xen\n", _why(vxn_guest)


def test_exit_code_through_both_channels(vxn_guest: VxnGuest) -> None:
    assert vxn_guest.parser is not None
    assert vxn_guest.parser.exit_code == 42, _why(vxn_guest)  # the EXIT frame
    assert vxn_guest.exit_code_node == b"42", _why(vxn_guest)  # the helper's XenStore write
    # a clean poweroff by the helper, not a crash (on_crash also preserves)
    assert "s" in (vxn_guest.state_after_exit or ""), _why(vxn_guest)


def test_vxn_guest_is_destroyed(vxn_guest: VxnGuest) -> None:
    assert vxn_guest.domid >= 0, _why(vxn_guest)
    assert vxn_guest.gone_after_destroy, f"domain {vxn_guest.domid} still there"
