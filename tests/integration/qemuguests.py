"""What the real-QEMU integration modules share: the guest kernel (provisioned on first
use), a vxnd of a module's own whose guests boot on TCG with its images loaded, and
the QEMU processes of that vxnd's guests. Each module keeps its own vxnd, so what one
module leaves behind cannot pass or fail another's checks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vxn.testing.daemon import VxnDirs, vxn_argv

REPO = Path(__file__).resolve().parents[2]
KERNEL_DIR = Path(os.environ.get("VXN_TEST_KERNEL_DIR", REPO / ".cache" / "guest-kernel"))


def guest_kernel() -> Path:
    """The kernel directory, provisioned from Debian's package if it is not there yet."""
    if not (KERNEL_DIR / "vmlinux").exists():
        argv = [sys.executable, "-m", "vxn.engine.guest", "provision", str(KERNEL_DIR)]
        subprocess.run(argv, check=True)
    return KERNEL_DIR


@contextmanager
def tcg_vxnd(*archives: Path, guest_config: str = "") -> Iterator[VxnDirs]:
    """Dirs for a vxnd of its own, on TCG, with `archives` loaded (vxnd starts with the
    first load). On a clean exit no QEMU and no guest dir may be left."""
    with VxnDirs() as dirs:
        settings = f'kernel_dir = "{guest_kernel()}"\naccel = "tcg"\n{guest_config}'
        dirs.config.write_text(f"[guest]\n{settings}")
        for archive in archives:
            subprocess.run(vxn_argv("load", "-i", str(archive)), env=dirs.env(), check=True)
        yield dirs
        leftovers = qemus(dirs)
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert leftovers == []
        assert not list((dirs.run.root / "guests").iterdir())


def qemus(dirs: VxnDirs) -> list[int]:
    """The QEMU processes of these dirs' guests (their command lines name the run dir)."""
    mine = os.fsencode(dirs.run.root)
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and b"qemu-system" in argv and mine in argv:
            found.append(int(proc.name))
    return found
