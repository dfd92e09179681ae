"""`vxn run --rm IMG true` on a warm cache, against a bare QEMU boot of the same guest.

The bare boot is qemu-system-x86_64 with the same kernel, initramfs (base + a spec
for `true`) and base disk, run to its power-off with no vxn at all. vxn's own spans
are measured inside vxnd (the container's inspect document carries them): `prepare`, before the
hypervisor starts, and `teardown`, after the guest's exit frame. Goals: vxn's share
<= 5 % of the bare boot and <= 100 ms. Also printed: the base initramfs size and the
smallest -m that runs `true`.
"""

from __future__ import annotations

import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import VXN, Row, load_demo, timed, vxn_env
from data.imagebuild import DEMO_NAME

from vxn.core import protocol
from vxn.core.guestboot import CMDLINE_QEMU, with_spec
from vxn.core.guestspec import GuestSpec

TITLE = "Guest run (TCG)"
KERNEL_DIR = Path(__file__).resolve().parents[1] / ".cache" / "guest-kernel"
MEMORY_STEPS = (96, 112, 128)  # 80 panics in the kernel; vxn refuses < 96


def rows(runs: int, work: Path) -> list[Row]:
    runs = max(1, min(runs, 5))  # each is a TCG boot: seconds, not milliseconds
    config = work / "vxn.toml"
    config.write_text(f'[guest]\nkernel_dir = "{KERNEL_DIR}"\naccel = "tcg"\n')
    with vxn_env(work, VXN_CONFIG=str(config)) as env:
        load_demo(work, env)
        argv = [VXN, "run", "--rm", DEMO_NAME, "true"]
        timed(argv, env)  # warm: kernel, initramfs and rootfs disk built once
        cli = [timed(argv, env) for _ in range(runs)]
        spans = [_spans(env) for _ in range(runs)]
        bare = [_bare_boot(work, env) for _ in range(runs)]
        minimum = _smallest_memory(env)
    own = [s["prepare"] + s["teardown"] for s in spans]
    print(f"\n{TITLE}: vxn's own spans inside vxnd, median of {runs}:")
    for key in ("prepare", "create", "boot", "guest", "teardown"):
        print(f"  {key:<9} {statistics.median(s.get(key, 0.0) for s in spans) * 1000:7.0f} ms")
    share = statistics.median(own) / statistics.median(bare)
    print(
        f"  vxn's own share: {statistics.median(own) * 1000:.0f} ms = {share:.1%} of the bare boot"
    )
    print(f"  base initramfs: {_initramfs_size(env) / (1 << 20):.2f} MiB; smallest -m: {minimum}")
    return [
        ("vxn run --rm IMG true (CLI, warm)", statistics.median(cli), False),
        ("  of which vxn's own (inside vxnd)", statistics.median(own), False),
        ("bare qemu boot, same guest, to power-off", statistics.median(bare), True),
    ]


def _spans(env: dict[str, str]) -> dict[str, float]:
    """One run through the API (create, start, wait); the timings in its record."""
    from vxn.adapters.statedir import RunDir
    from vxn.cli.client import Client

    with Client(RunDir(Path(env["VXN_RUN_DIR"]))) as client:
        body = {"image": DEMO_NAME, "command": ["true"]}
        cid = client.post("/v1/containers/create", body)["id"]
        client.post(f"/v1/containers/{cid}/start")
        client.post(f"/v1/containers/{cid}/wait")
        timings = client.get(f"/v1/containers/{cid}")["timings"]
        client.delete(f"/v1/containers/{cid}")
    return dict(timings)


def _artefacts(env: dict[str, str]) -> tuple[Path, Path]:
    guest = Path(env["VXN_STATE_DIR"]) / "guest"
    rootfs = sorted((Path(env["VXN_STATE_DIR"]) / "rootfs").glob("*.ext4"))[0]
    return sorted(guest.glob("initramfs-*.cpio"))[0], rootfs


def _initramfs_size(env: dict[str, str]) -> int:
    return _artefacts(env)[0].stat().st_size


def _bare_boot(work: Path, env: dict[str, str]) -> float:
    base, rootfs = _artefacts(env)
    nonce = secrets.token_hex(16)
    spec = GuestSpec(
        argv=("/bin/busybox", "true"),
        env=("PATH=/bin",),
        cwd="/",
        user="",
        hostname="b",
        read_only=True,
    )
    ramdisk = work / "bare.cpio"
    ramdisk.write_bytes(with_spec(base.read_bytes(), protocol.encode_spec(spec, nonce)))
    argv = [
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-cpu", "max", "-m", "256",
        "-nodefaults", "-no-user-config", "-display", "none", "-nic", "none",
        "-kernel", str(KERNEL_DIR / "vmlinux"), "-initrd", str(ramdisk), "-append", CMDLINE_QEMU,
        "-serial", f"file:{work / 'bare-kernel.log'}", "-device", "virtio-serial-pci,id=vs",
        "-chardev", f"file,id=hvc0,path={work / 'bare-console.log'}",
        "-device", "virtconsole,chardev=hvc0,bus=vs.0",
        "-drive", f"file={rootfs},if=none,id=d0,format=raw,readonly=on",
        "-device", "virtio-blk-pci,drive=d0", "-no-reboot",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, check=True, timeout=120, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    assert protocol.exit_frame(0) in (work / "bare-console.log").read_bytes(), "bare boot failed"
    return elapsed


def _smallest_memory(env: dict[str, str]) -> str:
    for mib in MEMORY_STEPS:
        argv = [VXN, "run", "--rm", "-m", f"{mib}m", DEMO_NAME, "true"]
        if subprocess.run(argv, env=env, capture_output=True, timeout=180).returncode == 0:
            return f"{mib} MiB"
    return f"more than {MEMORY_STEPS[-1]} MiB"


if __name__ == "__main__":
    sys.exit("run it through bench/run.py run_guest")
