"""vxn's Xen backend (`vxn.adapters.xen.XenBackend`) on real Xen, driven directly.

The guests are vxn's own (e2e/vxnguest.py: the kernel, base initramfs + spec, the
busybox image's base disk and a writable disk). One scenario, run once per module
because every PV guest costs 10-20 s under TCG, records what happened; the tests
below check it:
  - two guests at once, created paused, consoles opened, unpaused: each prints
    exactly hello, sees /sys/hypervisor/type = xen, exits 42 (EXIT frame, witness);
  - a second backend (a restarted vxnd) finds one of them by its labels, adopts it
    and collects its code; labels are owned by Dom0, read-only for the guest;
  - an idle guest: the waiting backend uses no CPU for 10 s; SIGTERM through the
    console ends it with 143;
  - failed creates (memory beyond Xen's free memory; a kernel xl cannot build)
    leave no domain; destroy leaves nothing in `xl list` and is idempotent.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.xen.guest import copy_sparse, staged_dir
from vxn.adapters.hypervisor import GuestInfo
from vxn.adapters.xen import XenBackend
from vxn.core import protocol, xenstore_keys as keys
from vxn.core.vm import Disk, GuestConfig, State
from vxn.errors import FailedPrecondition, Unavailable

T_RUN = 120.0  # unpause to EXIT under a loaded TCG host
IDLE_WINDOW = 10.0
MEMORY = 256
IMAGE, NOW = "app:latest", "2025-01-01T00:00:00Z"


@dataclass
class Run:
    name: str
    parser: protocol.ConsoleParser
    stdout: bytes = b""
    stderr: bytes = b""
    exit_frame: int | None = None
    witness: int | None = None
    stopped: GuestInfo | None = None
    started: bool = False


@dataclass
class Scenario:
    runs: dict[str, Run] = field(default_factory=dict)
    paused_state: str = ""
    listed: dict[str, dict[str, str]] = field(default_factory=dict)
    adopted: GuestInfo | None = None
    adopted_witness: int | None = None
    label_perms: list[str] = field(default_factory=list)
    vm_perms: list[str] = field(default_factory=list)
    domid: int = -1
    idle_cpu: float = -1.0
    idle_code: int | None = None
    memory_error: str = ""
    build_error: str = ""
    left_after_failures: list[str] = field(default_factory=list)
    left_at_end: list[str] = field(default_factory=list)
    destroy_again_ok: bool = False
    errors: list[str] = field(default_factory=list)


async def _stream(backend: XenBackend, run: Run, stop_at_start: bool = False) -> None:
    """Read the console through the run's protocol parser until EXIT (or the start)."""
    console = await backend.console(run.name)
    parser = run.parser
    while parser.exit_code is None:
        data = await console.read()
        if not data:
            break
        for event in parser.feed(data):
            if isinstance(event, protocol.Output):
                if event.stream == 1:
                    run.stdout += event.data
                else:
                    run.stderr += event.data
            elif isinstance(event, protocol.Started):
                run.started = True
        if stop_at_start and run.started:
            return
    run.exit_frame = parser.exit_code


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


async def _scenario(d: Path, manifest: dict[str, Any], out: Scenario) -> None:
    root = d / "guests"
    backend = await XenBackend.open(root)
    tag = secrets.token_hex(3)
    a, b, idle = (f"vxn-be-{x}-{tag}" for x in ("a", "b", "idle"))

    def config(name: str, ramdisk: str, upper: str, **kw: Any) -> GuestConfig:
        return GuestConfig(
            name=name,
            kernel=str(d / "vmlinux"),
            initrd=str(d / ramdisk),
            cmdline=backend.cmdline,
            disks=(
                Disk(path=str(d / "base.ext4"), read_only=True),
                Disk(path=str(d / upper), read_only=False),
            ),
            memory_mib=kw.pop("memory_mib", MEMORY),
            labels={
                "id": secrets.token_hex(32),
                "image": "app:latest",
                "origin": "vxn",
                "created": "2025-01-01T00:00:00Z",
            },
            **kw,
        )

    try:
        # Two at once; `a` is seen through to its end by this backend, `b` by a second one.
        for name, upper in ((a, "upper-a.ext4"), (b, "upper-b.ext4")):
            await backend.create(config(name, "ramdisk", upper))
            out.runs[name] = Run(name, protocol.ConsoleParser(manifest["nonce"]))
        out.paused_state = (await backend.info(a)).state
        domid = await backend._domid(a)
        out.domid = domid
        vm = (await backend.store.read(keys.vm_key(domid)) or b"").decode()
        out.vm_perms = await backend.store.get_perms(keys.vm_key(domid))
        out.label_perms = await backend.store.get_perms(f"{keys.labels_dir(vm)}/origin")
        for name in (a, b):
            await backend.console(name)  # before the unpause: nothing is lost
            await backend.unpause(name)
        async with asyncio.timeout(T_RUN):
            await asyncio.gather(
                _stream(backend, out.runs[a]),
                _stream(backend, out.runs[b]),
            )
            out.runs[a].stopped = await backend.wait(a)
        out.runs[a].witness = await backend.exit_witness(a)

        # A restarted vxnd: a new backend finds `b` by its labels and collects its code.
        second = await XenBackend.open(root)
        try:
            out.listed = {g.name: dict(g.labels) for g in await second.list()}
            out.adopted = await second.adopt(b)
            async with asyncio.timeout(T_RUN):
                out.runs[b].stopped = await second.wait(b)
            out.adopted_witness = await second.exit_witness(b)
            await second.destroy(b)
        finally:
            await second.close()
        await backend.destroy(a)
        await backend.destroy(a)
        out.destroy_again_ok = True

        # Failed creates leave nothing behind.
        free = (await backend.xl.info()).free_memory_mib
        try:
            await backend.create(
                config(f"vxn-be-big-{tag}", "ramdisk", "upper-a.ext4", memory_mib=free + 512)
            )
        except FailedPrecondition as e:
            out.memory_error = str(e)
        try:  # a "kernel" xl's domain builder refuses: xl create itself fails
            await backend.create(
                GuestConfig(
                    name=f"vxn-be-bad-{tag}",
                    kernel=str(d / "base.ext4"),
                    initrd=str(d / "ramdisk"),
                    cmdline=backend.cmdline,
                )
            )
        except Unavailable as e:
            out.build_error = str(e)
        out.left_after_failures = [x.name for x in await backend.xl.list() if tag in x.name]
        # Idle: the backend waits on a running guest and uses no CPU; then SIGTERM.
        await backend.create(config(idle, "ramdisk-idle", "upper-a.ext4"))
        run = out.runs[idle] = Run(idle, protocol.ConsoleParser(manifest["idle_nonce"]))
        await backend.console(idle)
        await backend.unpause(idle)
        async with asyncio.timeout(T_RUN):
            await _stream(backend, run, stop_at_start=True)
        waiter = asyncio.ensure_future(backend.wait(idle))
        reader = asyncio.ensure_future(_stream(backend, run))
        await asyncio.sleep(1.0)  # let both settle into their waits
        t0 = _cpu()
        await asyncio.sleep(IDLE_WINDOW)
        out.idle_cpu = _cpu() - t0
        await backend.signal(idle, 15)
        async with asyncio.timeout(T_RUN):
            await reader
            run.stopped = await waiter
        out.idle_code = run.exit_frame
        await backend.destroy(idle)

    except Exception as e:  # recorded: the tests below say which step failed
        out.errors.append(f"{type(e).__name__}: {e}")
    finally:
        for name in (a, b, idle):
            try:
                await backend.destroy(name)
            except Exception as e:
                out.errors.append(f"destroy {name}: {e}")
        out.left_at_end = [x.name for x in await backend.xl.list() if tag in x.name]
        await backend.close()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    staged = staged_dir(os.environ["VXN_E2E_JOB"])
    manifest = json.loads((staged / "manifest.json").read_text())
    d = tmp_path_factory.mktemp("xenbackend")  # /tmp: a tmpfs, loop devices work on it
    for name in ("vmlinux", "ramdisk", "ramdisk-idle"):
        shutil.copyfile(staged / name, d / name)
    copy_sparse(
        staged / "base.ext4",
        d / "base.ext4",
        manifest["extents"]["base.ext4"],
        manifest["sizes"]["base.ext4"],
    )
    for upper in ("upper-a.ext4", "upper-b.ext4"):
        extents = manifest["extents"]["upper.ext4"]
        copy_sparse(staged / "upper.ext4", d / upper, extents, manifest["sizes"]["upper.ext4"])
    out = Scenario()
    t0 = time.monotonic()
    try:
        asyncio.run(_scenario(d, manifest, out))
    finally:
        shutil.rmtree(d)  # ~100 MB on the Dom0's /tmp tmpfs: a kept Dom0 would fill up
    print(f"xen backend scenario: {time.monotonic() - t0:.1f} s")
    return out


def _runs(s: Scenario) -> list[Run]:
    return [r for r in s.runs.values() if "-idle-" not in r.name]


def test_no_step_failed(scenario: Scenario) -> None:
    assert not scenario.errors, scenario


def test_created_paused(scenario: Scenario) -> None:
    assert scenario.paused_state == State.PAUSED


def test_two_guests_print_exactly_hello_and_see_xen(scenario: Scenario) -> None:
    runs = _runs(scenario)
    assert len(runs) == 2, scenario
    for run in runs:
        assert run.stdout == b"hello\n", run
        assert run.stderr == b"xen\n", run  # the container's /sys/hypervisor/type


def test_exit_42_through_the_frame_and_the_witness(scenario: Scenario) -> None:
    a, b = _runs(scenario)
    assert (a.exit_frame, b.exit_frame) == (42, 42), scenario.runs
    assert a.witness == 42, a
    assert a.stopped is not None, a
    assert a.stopped.state == State.SHUTDOWN, a


def test_labels_are_dom0s_and_read_only_for_the_guest(scenario: Scenario) -> None:
    d = scenario.domid
    for perms in (scenario.label_perms, scenario.vm_perms):
        assert perms[:1] == ["n0"], perms  # owned by Dom0, no access for others
        assert f"r{d}" in perms[1:] or perms[1:] == [], perms
        assert not any(p[0] in "wb" for p in perms[1:]), perms


def test_a_second_backend_adopts_by_labels_and_collects_the_code(scenario: Scenario) -> None:
    _, b = _runs(scenario)
    assert scenario.listed.get(b.name, {}).get("origin") == "vxn", scenario.listed
    assert scenario.listed[b.name]["image"] == "app:latest"
    assert scenario.adopted is not None
    assert scenario.adopted.labels["origin"] == "vxn"
    assert scenario.adopted_witness == 42
    assert b.stopped is not None
    assert b.stopped.state == State.SHUTDOWN


def test_a_waiting_backend_uses_no_cpu(scenario: Scenario) -> None:
    assert 0 <= scenario.idle_cpu < 0.1, f"{scenario.idle_cpu:.3f} s CPU in {IDLE_WINDOW:.0f} s"


def test_a_signal_reaches_the_guest(scenario: Scenario) -> None:
    assert scenario.idle_code == 128 + 15, scenario.runs


def test_failed_creates_leave_no_domain(scenario: Scenario) -> None:
    assert "MiB but Xen has" in scenario.memory_error, scenario.memory_error
    assert scenario.build_error.startswith("xl create -p"), scenario.build_error
    assert scenario.left_after_failures == []


def test_destroy_leaves_nothing_and_is_idempotent(scenario: Scenario) -> None:
    assert scenario.destroy_again_ok
    assert scenario.left_at_end == []
