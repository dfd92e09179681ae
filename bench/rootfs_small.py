"""The rootfs benchmark (see rootfs.py) on an image of ≥20k small files."""

from __future__ import annotations

import os
from pathlib import Path

from common import Row
from rootfs import image_rows

FILES = int(os.environ.get("VXN_BENCH_ROOTFS_FILES", "20000"))
TITLE = f"Rootfs disk, {FILES} small files"


def rows(runs: int, work: Path) -> list[Row]:
    from data import imagebuild

    return image_rows(f"{FILES} files", imagebuild.ImageSpec(small_files=FILES), runs, work)
