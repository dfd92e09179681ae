"""The Xen benchmark (issue 7): `vxn run --rm IMG true` against a bare xl run of the same guest.

    scripts/e2e.sh --bench [--keep]

Not collected with the tier (its name is not test_*); the agent runs it when named.
In one Dom0 boot: a vxnd (backend auto) runs `vxn run --rm IMG true`, timed from the
CLI's start to its exit; a kept container of the same image gives the exact initrd
(base initramfs + spec, its nonce), the image's base disk and a writable disk, which
`bare_xl.py` boots with a plain xl config as vxn renders it: create paused, console
pty, unpause, EXIT frame, destroy, timed from its Python's start to its exit. Rounds
alternate. vxn's own spans come from the inspect document's `timings` of kept runs.
Then the smallest memory that boots: bare xl from 48 MiB up, and vxn at its floor.
The table goes to stdout and to /srv/run/bench_xen.txt (the host prints it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.xen.dom0vxn import Dom0Vxn
from e2e.xen.guest import staged_dir
from vxn.adapters.xen import CMDLINE
from vxn.core.xlconfig import XlConfig, XlDisk, render
from vxn.testing.daemon import vxn_argv

ROUNDS = 5  # one round varies by 10-20 % under TCG
MEMORY = 256  # vxn's default
BARE_MEMORY = (48, 64, 80, 96)
OUT = Path("/srv/run/bench_xen.txt")
SRC = Path(__file__).resolve().parents[3]


def _timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str, str]:
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    took = time.monotonic() - t0
    if p.returncode != 0:
        raise AssertionError(f"{argv[:4]}... exit {p.returncode}: {p.stderr[-1500:]}")
    return took, p.stdout, p.stderr


def _bare(root: Path, kernel: Path, initrd: Path, disks: list[XlDisk], memory: int) -> list[str]:
    name = f"bare-{secrets.token_hex(3)}"
    cfg = root / f"{name}.cfg"
    config = XlConfig(
        name=name,
        kernel=str(kernel),
        ramdisk=str(initrd),
        extra=CMDLINE,  # XenBackend's
        memory_mib=memory,
        disks=tuple(disks),
    )
    cfg.write_text(render(config))
    return [sys.executable, "-m", "e2e.xen.bare_xl", str(cfg), name]


def test_bench_xen(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    staged = staged_dir(os.environ["VXN_E2E_JOB"])
    manifest = json.loads((staged / "manifest.json").read_text())
    root = tmp_path_factory.mktemp("bench")
    vxn = Dom0Vxn(staged, root, manifest)
    env = {**os.environ, "PYTHONPATH": f"{os.environ.get('PYTHONPATH', '')}:{SRC / 'tests'}"}
    rows: list[str] = []
    try:
        vxn.start_vxnd()
        assert vxn("load", str(vxn.archive)).code == 0
        img = vxn.image
        assert vxn("run", "--rm", img, "true").code == 0  # warm: base initramfs, base disk
        # The guest the bare runs boot: a kept container's initrd, nonce and disks.
        assert vxn("run", "--name", "proto", img, "true").code == 0
        record = vxn.inspect("proto")
        cdir = vxn.dirs.state / "containers" / record["id"]
        nonce = json.loads((cdir / "config.json").read_text())["nonce"]
        initrd = root / "initrd"
        shutil.copyfile(cdir / "initrd", initrd)
        upper = root / "upper.ext4"
        subprocess.run(["cp", "--sparse=always", str(cdir / "upper.ext4"), str(upper)], check=True)
        (base,) = list((vxn.dirs.state / "rootfs").rglob("*.ext4"))
        disks = [
            XlDisk(path=str(base), vdev="xvda", writable=False),
            XlDisk(path=str(upper), vdev="xvdb", writable=True),
        ]
        kernel = vxn.kernel_dir / "vmlinux"
        assert vxn("rm", "proto").code == 0

        vxn_t, bare_t, spans, bare_spans = [], [], [], []
        for i in range(ROUNDS):
            took, _, _ = _timed(vxn_argv("run", "--rm", img, "true"), vxn.env)
            vxn_t.append(took)
            took, out, err = _timed([*_bare(root, kernel, initrd, disks, MEMORY), nonce], env)
            assert out.strip() == "0", out
            bare_t.append(took)
            bare_spans.append(json.loads(err.strip().splitlines()[-1]))
            assert vxn("run", "--name", f"s{i}", img, "true").code == 0
            spans.append(vxn.inspect(f"s{i}")["timings"])
            assert vxn("rm", f"s{i}").code == 0

        smallest = None
        for memory in BARE_MEMORY:
            argv = [*_bare(root, kernel, initrd, disks, memory), nonce]
            p = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
            if p.returncode == 0 and p.stdout.strip() == "0":
                smallest = memory
                break
        floor = vxn("run", "--rm", "-m", f"{BARE_MEMORY[-1]}m", img, "echo", "ok")
        cli_start, _, _ = _timed(vxn_argv("--version"), vxn.env)

        med_v, med_b = statistics.median(vxn_t), statistics.median(bare_t)
        paired = [v / b for v, b in zip(vxn_t, bare_t, strict=True)]  # drift cancels out
        rows += [
            f"Xen {_xl_version()} in QEMU TCG, {ROUNDS} rounds, {MEMORY} MiB guests (median, s)",
            f"  vxn run --rm IMG true          {med_v:7.2f}   {_all(vxn_t)}",
            f"  bare xl (same guest, same way) {med_b:7.2f}   {_all(bare_t)}",
            f"  ratio vxn / bare               {med_v / med_b:7.3f}   (goal <= 1.05)",
            f"  same-round ratios, median      {statistics.median(paired):7.3f}   {_all(paired)}",
            f"  vxn --version (CLI start)      {cli_start:7.2f}",
            "vxn's spans inside vxnd (median of kept runs, s); bare's same steps",
        ]
        for key in ("prepare", "create", "boot", "guest", "teardown"):
            values = [s[key] for s in spans if key in s]
            if values:
                rows.append(f"  {key:<30} {statistics.median(values):7.3f}   {_all(values)}")
            bare = [s[key] for s in bare_spans if key in s]
            if bare:
                rows.append(f"    bare {key:<25} {statistics.median(bare):7.3f}   {_all(bare)}")
        rows += [
            f"smallest memory that boots (bare xl, tried {BARE_MEMORY}): {smallest} MiB",
            f"vxn at {BARE_MEMORY[-1]} MiB: exit {floor.code}, stdout {floor.out!r}",
        ]
    finally:
        vxn.close()
        shutil.rmtree(root, ignore_errors=True)
    table = "\n".join(rows) + "\n"
    OUT.write_text(table)
    with capsys.disabled():
        print("\n" + table)


def _all(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _xl_version() -> str:
    out = subprocess.run(["xl", "info"], capture_output=True, text=True, timeout=60).stdout
    versions = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if "xen_version" in ln]
    return versions[0] if versions else "?"
