"""A raw `xl create` of a PV guest: console marker, exit code via XenStore, @releaseDomain.

One guest lifecycle (about 10 s under TCG) serves all tests here. The guest
prints a marker, writes its exit code to its own `data/` node and powers off;
`on_poweroff="preserve"` keeps the domain (and the node) until we destroy it.
Every pyxs call is bounded: pyxs itself never times out.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import pyxs  # type: ignore[import-untyped]  # no stubs

from e2e.xen.guest import (
    bounded,
    domain_state,
    guest_kernel,
    initramfs,
    pv_config,
    wait_until,
    xl,
)

# Idle times under TCG (uncompressed kernel): marker ~6 s after `xl create`,
# shut down +0.5 s, gone +0.5 s after `xl destroy` (XEN-IN-QEMU.md 4.2); x3 and more.
T_MARKER = 60.0
T_STATE = 30.0
T_EVENT = 30.0
T_XS = 10.0


@dataclass
class GuestRun:
    name: str
    token: str
    code: int
    domid: int = -1
    console: list[str] = field(default_factory=list)
    events: list[tuple[float, pyxs.Event]] = field(default_factory=list)  # (monotonic, event)
    t: dict[str, float] = field(default_factory=dict)  # milestones, monotonic
    exit_code_node: bytes | None = None
    gone_after_destroy: bool = False
    error: str = ""  # the first step that failed; the tests report it

    def events_after(self, milestone: str) -> int:
        return sum(t > self.t[milestone] for t, _ in self.events) if milestone in self.t else 0


def guest_init(token: str, code: int) -> str:
    return f"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "VXN-GUEST-MARKER {token}"
/bin/xenstore-write data/vxn-exit-code {code} && echo VXN-XENSTORE-WRITE-OK
/bin/busybox poweroff -f
"""


def _pump(stream: IO[str], sink: list[str]) -> None:
    for line in stream:
        sink.append(line.rstrip("\n"))


def _collect_events(monitor: pyxs.Monitor, run: GuestRun, stop: threading.Event) -> None:
    while not stop.is_set():  # Monitor.events is a plain Queue: poll it, bounded
        with contextlib.suppress(queue.Empty):
            run.events.append((time.monotonic(), monitor.events.get(timeout=0.2)))


def _lifecycle(run: GuestRun, cfg: Path, client: pyxs.Client) -> None:
    # Attached (-c): the console comes to us; with "preserve" xl stays attached
    # until the domain is destroyed (XEN-IN-QEMU.md 2.10).
    run.t["create"] = time.monotonic()
    xl_proc = subprocess.Popen(
        ["xl", "create", "-c", str(cfg)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert xl_proc.stdout is not None
    pump = threading.Thread(target=_pump, args=(xl_proc.stdout, run.console), daemon=True)
    pump.start()
    try:
        marker = f"VXN-GUEST-MARKER {run.token}"
        wait_until(
            "marker on the guest console", lambda: any(marker in ln for ln in run.console), T_MARKER
        )
        run.t["marker"] = time.monotonic()
        run.domid = int(xl("domid", run.name))
        wait_until("guest shut down", lambda: "s" in (domain_state(run.name) or ""), T_STATE)
        # Creating a domain fires no @releaseDomain, so the first one after
        # `xl create` is this guest's poweroff (the domain is shut down by now).
        wait_until(
            "@releaseDomain after the guest powered off",
            lambda: run.events_after("create"),
            T_EVENT,
        )
        run.t["shutdown_event"] = min(t for t, _ in run.events if t > run.t["create"])
        node = f"/local/domain/{run.domid}/data/vxn-exit-code".encode()
        run.exit_code_node = bounded("pyxs read", lambda: client.read(node), T_XS)
        run.t["destroy"] = time.monotonic()
        xl("destroy", run.name)
        wait_until("@releaseDomain after xl destroy", lambda: run.events_after("destroy"), T_EVENT)
        dom = f"/local/domain/{run.domid}".encode()
        run.gone_after_destroy = domain_state(run.name) is None and not bounded(
            "pyxs exists", lambda: client.exists(dom), T_XS
        )
        xl_proc.wait(timeout=T_STATE)  # its console ends with the domain
    finally:
        if domain_state(run.name) is not None:
            subprocess.run(["xl", "destroy", run.name], timeout=60, check=False)
        if xl_proc.poll() is None:
            xl_proc.kill()
            xl_proc.wait(timeout=10)
        pump.join(timeout=5)
        xl_proc.stdout.close()


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory: pytest.TempPathFactory) -> GuestRun:
    d = tmp_path_factory.mktemp("guest")
    run = GuestRun(
        name=f"vxn-t-{secrets.token_hex(3)}",
        token=secrets.token_hex(8),
        code=secrets.randbelow(200) + 20,  # random: a stale value cannot pass
    )
    (d / "initrd.cpio").write_bytes(initramfs(guest_init(run.token, run.code)))
    cfg = d / "guest.cfg"
    cfg.write_text(pv_config(run.name, d / "initrd.cpio"))
    stop = threading.Event()
    with pyxs.Client() as client:
        monitor = client.monitor()
        collector = threading.Thread(target=_collect_events, args=(monitor, run, stop), daemon=True)
        collector.start()
        try:
            bounded("pyxs watch", lambda: monitor.watch(b"@releaseDomain", b"vxn"), T_XS)
            # xenstored answers a new watch with one event: wait for it, so it is not
            # mistaken for the guest's.
            wait_until("initial @releaseDomain event", lambda: run.events, T_EVENT)
            _lifecycle(run, cfg, client)
        except (TimeoutError, subprocess.SubprocessError, OSError, ValueError) as e:
            run.error = f"{type(e).__name__}: {e}"
        finally:
            stop.set()
            collector.join(timeout=5)
            bounded("pyxs unwatch", monitor.close, T_XS)
    return run


def _why(run: GuestRun) -> str:
    tail = "\n".join(run.console[-20:])
    return f"{run.error or 'no step failed'}\n--- guest console (tail) ---\n{tail}"


def test_pv_guest_prints_marker(guest_run: GuestRun) -> None:
    assert "marker" in guest_run.t, _why(guest_run)


def test_guest_exit_code_read_back_with_pyxs(guest_run: GuestRun) -> None:
    assert any("VXN-XENSTORE-WRITE-OK" in ln for ln in guest_run.console), _why(guest_run)
    assert guest_run.exit_code_node == str(guest_run.code).encode(), _why(guest_run)


def test_release_domain_watch_fires_when_guest_dies(guest_run: GuestRun) -> None:
    events = guest_run.events
    assert "shutdown_event" in guest_run.t, (
        f"none after it powered off: {events}; {_why(guest_run)}"
    )
    assert guest_run.events_after("destroy"), f"none after xl destroy: {events}; {_why(guest_run)}"
    assert guest_run.gone_after_destroy, f"domain {guest_run.domid} still there; {_why(guest_run)}"


def test_guest_kernel_is_uncompressed() -> None:
    assert guest_kernel().read_bytes()[:4] == b"\x7fELF"  # halves `xl create` under TCG
