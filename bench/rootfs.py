"""Flatten an image and build its base disk: `vxn image rootfs` (through vxnd, the cached
disk removed before each run) against `umoci raw unpack` + `mkfs.ext4 -d` with the same
mkfs options, alternating, 5 runs each after one warm-up of each. vxn puts its short-lived
tree on tmpfs when it fits, so the peer is also timed with its tree on tmpfs (/dev/shm).
This module is the ~200 MB large-files image; rootfs_small.py is the ≥20k small-files one.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from common import VXN, Row, timed, vxn_env

if TYPE_CHECKING:
    from data.imagebuild import ImageSpec

TITLE = "Rootfs disk, ~200 MB of large files"
BIG_MB = int(os.environ.get("VXN_BENCH_ROOTFS_MB", "200"))
RUNS = 5
SHM = "/dev/shm"


def rows(runs: int, work: Path) -> list[Row]:
    from data import imagebuild

    return image_rows(f"{BIG_MB} MB", imagebuild.ImageSpec(big_mb=BIG_MB), runs, work)


def image_rows(label: str, spec: ImageSpec, runs: int, work: Path) -> list[Row]:
    from data import imagebuild

    layout = work / "layout"
    imagebuild.simple_layout(layout, spec, name="img")
    with vxn_env(work / "vxn") as env, tempfile.TemporaryDirectory(dir=SHM) as shm:
        subprocess.run([VXN, "load", "--name", "bench", str(layout)], check=True, env=env)
        disks = work / "vxn" / "s" / "rootfs"

        def vxn_rootfs() -> float:
            for disk in disks.glob("*.ext4"):
                disk.unlink()
            return timed([VXN, "image", "rootfs", "bench:img"], env)

        peer = _umoci_mkfs(layout, work, work)
        peer_tmpfs = _umoci_mkfs(layout, work, Path(shm))
        ours, theirs, theirs_tmpfs = _alternate(min(runs, RUNS), [vxn_rootfs, peer, peer_tmpfs])
        warm = _warm_inside_vxnd(work / "vxn" / "r")
    ratio = statistics.median(ours) / statistics.median(theirs)
    return [
        (f"vxn image rootfs, {label} ({ratio:.2f}x)", statistics.median(ours), False),
        (f"umoci raw unpack + mkfs.ext4 -d, {label}", statistics.median(theirs), True),
        (f"the same, umoci's tree on tmpfs, {label}", statistics.median(theirs_tmpfs), False),
        ("vxn image rootfs, cached (inside vxnd)", warm, False),
    ]


def _umoci_mkfs(layout: Path, work: Path, tree_dir: Path) -> Callable[[], float]:
    from vxn.core.rootfs import ext4_geometry

    tree, disk = tree_dir / "umoci-tree", work / "umoci.ext4"
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:img", str(tree)],
        check=True,
        capture_output=True,
    )
    blocks = inodes = 0
    for dirpath, dirs, files in os.walk(tree):
        inodes += len(dirs) + len(files)
        blocks += sum(-(-os.lstat(os.path.join(dirpath, n)).st_size // 4096) for n in files)
    geometry = ext4_geometry(blocks * 4096 + inodes * 4096 // 8, inodes)
    shutil.rmtree(tree)

    def once() -> float:
        start = time.perf_counter()
        subprocess.run(
            ["umoci", "raw", "unpack", "--image", f"{layout}:img", str(tree)],
            check=True,
            capture_output=True,
        )
        with open(disk, "wb") as f:
            f.truncate(geometry.size)
        subprocess.run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-b",
                "4096",
                "-m",
                "0",
                "-O",
                "^has_journal",
                "-N",
                str(geometry.inodes),
                "-d",
                str(tree),
                str(disk),
            ],
            check=True,
        )
        seconds = time.perf_counter() - start
        shutil.rmtree(tree)
        disk.unlink()
        return seconds

    return once


def _alternate(n: int, contenders: list[Callable[[], float]]) -> list[list[float]]:
    for once in contenders:
        once()  # warm-up: page cache and first-run costs, for each
    times: list[list[float]] = [[] for _ in contenders]
    for _ in range(n):
        for once, seconds in zip(contenders, times, strict=True):
            seconds.append(once())
    runs = "; ".join(" ".join(f"{t:.2f}" for t in ts) for ts in times)
    print(f"  runs (vxn; umoci+mkfs; on tmpfs): {runs}; load {os.getloadavg()[0]:.2f}")
    return times


def _warm_inside_vxnd(run_dir: Path) -> float:
    from vxn.adapters.statedir import RunDir
    from vxn.cli.client import Client

    with Client(RunDir(run_dir)) as client:
        replies = [client.post("/v1/images/rootfs", {"ref": "bench:img"}) for _ in range(11)]
    return statistics.median(r["seconds"] for r in replies)
