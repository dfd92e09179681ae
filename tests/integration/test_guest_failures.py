"""Guests that fail, on real QEMU: vxn's error (exit 125) comes with the console tail,
within the boot timeout; and the KVM probe falls back to TCG where KVM does not work."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from data import imagebuild
from data.imagebuild import DEMO_NAME

from vxn.adapters.qemu import QemuBackend
from vxn.core.guestspec import GuestSpec
from vxn.engine.guest import PROBE_TIMEOUT, GuestArtefacts
from vxn.engine.guestrun import Boot, Timeline, run_guest
from vxn.errors import Unavailable
from vxn.testing.daemon import VxnDirs, vxn_argv

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = Path(os.environ.get("VXN_TEST_KERNEL_DIR", REPO / ".cache" / "guest-kernel"))
PVM = Path("/sys/module/kvm_pvm").exists()
SPEC = GuestSpec(argv=("true",), env=(), cwd="/", user="", hostname="h", read_only=True)


async def boot(tmp: Path, initramfs: Path | None, boot_timeout: float) -> str:
    artefacts = GuestArtefacts(tmp / "guest", KERNEL_DIR)
    kernel = await artefacts.kernel()
    hv = QemuBackend(tmp / "guests", accel="tcg")
    spec_boot = Boot(
        name="fails",
        spec=SPEC,
        kernel=kernel.vmlinux,
        initramfs=initramfs or await artefacts.initramfs(kernel),
        ramdisk=tmp / "initrd",
        disks=(),
        memory_mib=128,
        cpus=1,
        boot_timeout=boot_timeout,
    )

    async def ignore(*_: object) -> None:
        pass

    with pytest.raises(Unavailable) as caught:
        await run_guest(hv, spec_boot, ignore, ignore, Timeline())
    assert not (tmp / "guests" / "fails").exists()  # destroyed all the same
    return str(caught.value)


async def test_a_kernel_panic_is_reported_with_the_console_tail(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.cpio"
    garbage.write_bytes(b"not an archive" * 100)
    start = time.monotonic()
    message = await boot(tmp_path, garbage, boot_timeout=60)
    assert message.startswith("guest fails: stopped before guest-init said hello")
    assert "Kernel panic" in message
    assert time.monotonic() - start < 60


async def test_a_guest_that_does_not_start_in_time_is_stopped(tmp_path: Path) -> None:
    start = time.monotonic()
    message = await boot(tmp_path, None, boot_timeout=1.0)
    assert message.startswith("guest fails: did not start in 1 s before guest-init said hello")
    assert time.monotonic() - start < 15


async def test_kvm_is_used_only_after_a_probe_proves_it(tmp_path: Path) -> None:
    artefacts = GuestArtefacts(tmp_path, KERNEL_DIR)
    kernel = await artefacts.kernel()
    start = time.monotonic()
    accel = await artefacts.accel("auto", kernel)
    assert time.monotonic() - start < PROBE_TIMEOUT + 10
    assert accel in ("kvm", "tcg")
    if PVM:  # here: /dev/kvm answers but hangs a guest
        assert accel == "tcg"
    start = time.monotonic()
    assert await artefacts.accel("auto", kernel) == accel  # cached
    assert time.monotonic() - start < 1
    assert await artefacts.accel("tcg", kernel) == "tcg"
    await asyncio.sleep(0)


def test_a_failed_run_leaves_its_record_exited_with_the_reason(tmp_path: Path) -> None:
    with VxnDirs() as dirs:
        dirs.config.write_text(
            f'[guest]\nkernel_dir = "{KERNEL_DIR}"\naccel = "tcg"\nboot_timeout = 1\n'
        )
        env = dirs.env()
        imagebuild.main(["demo", str(tmp_path / "d.tar")])
        assert subprocess.run(vxn_argv("load", str(tmp_path / "d.tar")), env=env).returncode == 0
        ran = subprocess.run(
            vxn_argv("run", "--name", "late", DEMO_NAME, "true"),
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert ran.returncode == 125
        (record,) = (dirs.state / "containers").glob("*/config.json")
        doc = json.loads(record.read_text())
        assert (doc["name"], doc["state"], doc["exit_code"]) == ("late", "exited", 125)
        assert "did not start in 1 s" in doc["error"]
