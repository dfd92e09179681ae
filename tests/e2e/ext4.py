"""Read-only ext4 disks for the Dom0, made from a directory without mounting anything."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_ext4(tree: Path, image: Path, label: str) -> None:
    """`mkfs.ext4 -d`: the Dom0 finds it by `label` (dom0/init.sh)."""
    du = subprocess.run(["du", "-sm", str(tree)], check=True, capture_output=True, text=True)
    size_mb = int(int(du.stdout.split()[0]) * 1.3) + 32  # metadata for many small files
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), str(image), f"{size_mb}M"],
        check=True,
        timeout=120,
        stdout=subprocess.DEVNULL,  # "Creating regular file ..." even with -q
    )
