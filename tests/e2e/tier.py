"""Runs pytest inside a Dom0 and brings the JUnit result back.

Two ways: `run_once` boots a fresh Dom0 with a snapshot of the checkout on a
per-run disk, runs one job and powers off (CI). `run_kept` reuses a Dom0 left
running by an earlier call, or boots one that stays up, sharing the live
checkout read-only so edits are seen at once (`scripts/e2e.sh --keep`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from e2e import checkout, junit, vxnguest
from e2e.cache import REPO, cache_root
from e2e.dom0image import Dom0Image, ensure_image
from e2e.ext4 import make_ext4
from e2e.pydeps import ensure_deps
from e2e.xenvm import Share, XenVM

AGENT = "/srv/src/tests/e2e/dom0/agent.py"
DEFAULT_TESTS = ["tests/e2e/xen"]
# The inner pytest job: ~12 s of pytest start-up (Dom0 Python under TCG is slow),
# ~20 s for one raw PV guest and ~20 s for vxn's own (test_vxn_guest.py), ~1.5-4 min
# for the Xen backend (test_xen_backend.py: five guests, a 10 s idle window), the
# XenStore and xl contracts, and ~4-6 min for vxn's CLI against vxnd
# (test_vxn_cli.py: six guests, created one at a time). About 1.5x that; raise it
# with VXN_E2E_JOB_TIMEOUT as xen/ grows. It also bounds the agent's pytest.
T_JOB = float(os.environ.get("VXN_E2E_JOB_TIMEOUT", "1080"))
KEEP_RUNS = 3  # finished run directories kept for post-mortems


@dataclass
class TierRun:
    rc: int
    cases: list[junit.Case]
    log: str
    junit_via: str  # "share" or "console"
    times: dict[str, float] = field(default_factory=dict)
    manifest: dict[str, object] = field(default_factory=dict)


def _new_rundir(kind: str) -> Path:
    runs = cache_root() / "runs"
    runs.mkdir(exist_ok=True)
    for old in sorted(runs.iterdir())[:-KEEP_RUNS]:
        shutil.rmtree(old, ignore_errors=True)
    d = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{uuid.uuid4().hex[:6]}"
    (d / "jobs").mkdir(parents=True)
    return d


def _submit(rundir: Path, tests: list[str], poweroff: bool, snapshot: Path | None) -> str:
    """Queue a pytest job for the agent. With a `snapshot` of the checkout the Dom0
    also checks a digest of its files (the live tree of --keep may change meanwhile)."""
    jid = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:8]}"
    files = checkout.files_in(snapshot) if snapshot else []
    job = {
        "id": jid,
        "pytest_args": ["-v", "-m", "xen", *tests],
        "host_head": checkout.host_head(REPO),
        "files": files,
        "tree_digest": checkout.tree_digest(snapshot, files) if snapshot else None,
        "poweroff": poweroff,
        "timeout": T_JOB,
    }
    tmp = rundir / "jobs" / f"{jid}.tmp"
    tmp.write_text(json.dumps(job, indent=1))
    tmp.rename(tmp.with_suffix(".json"))  # atomic: the agent never sees half a job
    return jid


def _collect(vm: XenVM, rundir: Path, jid: str) -> TierRun:
    m = vm.wait_for(rf"VXN-JOB-DONE id={jid} rc=(\d+)", T_JOB + 30, f"job {jid}")
    base = rundir / "jobs" / jid
    xml_path = base.with_suffix(".junit.xml")
    if xml_path.is_file() and xml_path.stat().st_size:
        xml, via = xml_path.read_bytes(), "share"
    else:  # the agent could not write the share: it sent the XML over the console
        xml, via = junit.from_console(vm.text, jid), "console"
    if not xml:
        raise vm.fail(f"job {jid}: inner pytest wrote no JUnit XML (rc={m.group(1)})")
    log_path = base.with_suffix(".log")
    log = log_path.read_text() if log_path.is_file() else vm.text
    return TierRun(int(m.group(1)), junit.parse(xml), log, via)


def _prepare() -> tuple[Dom0Image, Path, dict[str, float]]:
    t0 = time.monotonic()
    image = ensure_image()
    t1 = time.monotonic()
    deps = ensure_deps()
    return image, deps, {"image": round(t1 - t0, 1), "deps": round(time.monotonic() - t1, 1)}


def _stage_guest(rundir: Path) -> dict[str, float]:
    """vxn's own guest artefacts for xen/test_vxn_guest.py, into the shared run dir."""
    t0 = time.monotonic()
    vxnguest.stage(rundir)
    return {"vxn_guest": round(time.monotonic() - t0, 1)}


def run_once(tests: list[str] = DEFAULT_TESTS) -> TierRun:
    image, deps, times = _prepare()
    rundir = _new_rundir("once")
    times |= _stage_guest(rundir)
    checkout.snapshot(REPO, rundir / "src")
    make_ext4(rundir / "src", rundir / "src.img", "vxnsrc")
    jid = _submit(rundir, tests, poweroff=True, snapshot=rundir / "src")
    run_share = [Share("vxnrun", rundir, readonly=False)]
    vm = XenVM(image, rundir, run_share, hook=AGENT, disks=(deps, rundir / "src.img"))
    t0 = time.monotonic()
    try:
        times |= {f"boot_{k}": v for k, v in vm.boot().items()}
        run = _collect(vm, rundir, jid)
        times["job"] = round(time.monotonic() - t0 - times["boot_ready"], 1)
        vm.wait_exit()
    finally:
        vm.stop()
    times["qemu_total"] = round(time.monotonic() - t0, 1)
    run.times, run.manifest = times, image.manifest
    return run


def _keep_dir() -> Path:
    d = cache_root() / "keep"
    (d / "jobs").mkdir(parents=True, exist_ok=True)
    return d


def run_kept(tests: list[str] = DEFAULT_TESTS) -> TierRun:
    image, deps, times = _prepare()
    rundir = _keep_dir()
    shares = [Share("vxnsrc", REPO), Share("vxnrun", rundir, readonly=False)]  # live edits
    vm = XenVM.attach(image, rundir, shares)
    stamp = rundir / "image-key"
    if vm and stamp.is_file() and stamp.read_text() != image.dir.name + str(deps):
        vm.stop()  # the image or the deps changed since it booted
        vm = None
    if vm is None:
        for old in (rundir / "jobs").iterdir():
            old.unlink()
        vm = XenVM(image, rundir, shares, hook=AGENT, disks=(deps,))
        try:
            times |= {f"boot_{k}": v for k, v in vm.boot(detached=True).items()}
        except BaseException:
            vm.stop()
            raise
        stamp.write_text(image.dir.name + str(deps))
    else:
        vm.mark()
    times |= _stage_guest(rundir)
    t0 = time.monotonic()
    jid = _submit(rundir, tests, poweroff=False, snapshot=None)
    run = _collect(vm, rundir, jid)
    times["job"] = round(time.monotonic() - t0, 1)
    run.times, run.manifest = times, image.manifest
    return run


def _kept_vm() -> XenVM | None:
    rundir = cache_root() / "keep"
    return XenVM.attach(None, rundir, []) if rundir.is_dir() else None


def stop_kept() -> bool:
    vm = _kept_vm()
    if vm is not None:
        vm.stop()
    return vm is not None


def shell_in_kept(command: str, timeout: float = 120) -> int:
    """Run `command` in the kept Dom0's console shell, print its output, return its status."""
    vm = _kept_vm()
    if vm is None:
        raise SystemExit("no kept Dom0: start one with scripts/e2e.sh --keep")
    rc, out = vm.run(command, timeout)
    print(out, end="")
    return rc
