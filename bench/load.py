"""Offline load of one image: `vxn load` of an OCI layout dir and of an oci-archive, each
into an empty store, next to `skopeo copy oci:A oci:B` of the same layout, which also
reads and verifies every blob.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from common import VXN, Row, median_of, timed, vxn_env

TITLE = "Offline image load"
BIG_MB = int(os.environ.get("VXN_BENCH_BIG_MB", "100"))


def rows(runs: int, work: Path) -> list[Row]:
    from data import imagebuild

    layout = work / "layout"
    imagebuild.simple_layout(layout, imagebuild.ImageSpec(big_mb=BIG_MB), name="big")
    archive = imagebuild.oci_archive(layout, work / "big.tar")

    def vxn_load(source: Path) -> float:
        store = Path(tempfile.mkdtemp(dir=work))
        try:
            with vxn_env(store) as env:
                return timed([VXN, "load", str(source)], env)
        finally:
            shutil.rmtree(store)

    def skopeo_copy() -> float:
        dest = Path(tempfile.mkdtemp(dir=work))
        try:
            return timed(["skopeo", "copy", "-q", f"oci:{layout}:big", f"oci:{dest}:big"])
        finally:
            shutil.rmtree(dest)

    runs = max(3, runs // 3)
    return [
        (f"vxn load, layout dir ({BIG_MB} MB)", median_of(runs, lambda: vxn_load(layout)), False),
        (f"vxn load, oci-archive ({BIG_MB} MB)", median_of(runs, lambda: vxn_load(archive)), False),
        (f"skopeo copy oci: -> oci: ({BIG_MB} MB)", median_of(runs, skopeo_copy), True),
    ]
