"""The xl contract suite (vxn.testing.xl_contract) against the Dom0's real xl, with configs
from vxn's renderer: xl's own parser accepts them. The guest is a busybox initramfs
that idles once unpaused; each test's domain is destroyed afterwards."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.xen.guest import guest_kernel, initramfs
from vxn.adapters.xl import Xl
from vxn.testing.xl_contract import XlContract


class TestRealXl(XlContract):
    @pytest.fixture
    def xl(self) -> Xl:
        return Xl()

    @pytest.fixture
    def guest(self, tmp_path: Path) -> tuple[Path, Path]:
        ramdisk = tmp_path / "initrd"
        ramdisk.write_bytes(initramfs("#!/bin/busybox sh\n/bin/busybox sleep 600\n"))
        return guest_kernel(), ramdisk

    @pytest.fixture
    def name(self) -> Iterator[str]:
        name = f"vxn-xl-{secrets.token_hex(3)}"
        yield name
        subprocess.run(["xl", "destroy", name], capture_output=True, timeout=60, check=False)
