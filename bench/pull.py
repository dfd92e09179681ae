"""Registry pull of a ~200 MB multi-layer image from a loopback docker-registry:
`vxn pull` into an empty store next to `skopeo copy docker://… oci:…`, which also
verifies every digest. Runs alternate; every run starts from an empty store (and
an empty OCI dir for skopeo).

vxn is measured with a warm vxnd (the daemon case: it pulled once before, then its
store was emptied) and with a fresh vxnd per run (its first pull pays for importing
oras and requests). Both sides fsync what they write; the note under the table says
how much.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import VXN, Row, compile_vxn, stop_daemon, timed

TITLE = "Registry pull (loopback docker-registry)"
BIG_MB = int(os.environ.get("VXN_BENCH_PULL_MB", "200"))
LAYERS = 4  # the big files are spread over this many layers, as real images do
RUNS = 5
REPO = "vxn/bench:big"


def build(root: Path) -> None:
    """An OCI layout, ref `big`: the base layer plus LAYERS layers of BIG_MB in all."""
    from data import imagebuild as ib

    layout = ib.Layout(root)
    contents = [ib.base_entries()]
    contents += [ib.big_entries(BIG_MB // LAYERS, seed=i) for i in range(LAYERS)]
    tars = [ib.tar_bytes(c) for c in contents]
    layers = [layout.add_blob(ib.gzip_bytes(t), ib.LAYER_TYPES["gzip"]) for t in tars]
    config_doc = ib.config_doc(ib.ImageSpec(), [ib.sha256(t) for t in tars])
    config = layout.add_blob(ib.canonical(config_doc), ib.OCI_CONFIG)
    desc = layout.add_manifest(config, layers)
    layout.write_index([(desc, ib.ref_name("big"))])


def rows(runs: int, work: Path) -> list[Row]:
    from vxn.testing.registry import LocalRegistry

    compile_vxn()
    build(work / "layout")
    size = sum(p.stat().st_size for p in (work / "layout/blobs/sha256").iterdir())
    with LocalRegistry(work / "registry") as registry:
        registry.push(work / "layout", "big", REPO)
        ref = f"{registry.host}/{REPO}"
        times = _alternate(min(runs, RUNS), work, registry.host, ref)
        fsyncs = _skopeo_fsyncs(work, ref)
    print(
        f"\n{size / 1e6:.0f} MB compressed in {LAYERS + 1} layers; {min(runs, RUNS)} runs each, "
        f"alternating; load average {os.getloadavg()[0]:.2f} after the runs.\n"
        + "".join(f"{k} runs (ms): {_ms(v)}\n" for k, v in times.items())
        + "fsync: vxn fsyncs every blob, the blob dirs and images.json before a pull returns; "
        f"skopeo made {fsyncs} fsync/fdatasync calls for the same copy (strace)."
    )
    return [
        (f"vxn pull, warm vxnd ({BIG_MB} MB)", statistics.median(times["warm"]), False),
        (f"vxn pull, fresh vxnd ({BIG_MB} MB)", statistics.median(times["fresh"]), False),
        (f"skopeo copy docker:// -> oci: ({BIG_MB} MB)", statistics.median(times["skopeo"]), True),
    ]


def _ms(times: list[float]) -> str:
    return " ".join(f"{t * 1000:.0f}" for t in times)


def _alternate(runs: int, work: Path, host: str, ref: str) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"warm": [], "fresh": [], "skopeo": []}
    warm = _Vxn(work / "warm", host)
    warm.time(ref)  # the warm-up: imports, TLS context, connection pool
    try:
        for _ in range(runs):
            times["warm"].append(warm.time(ref))
            times["skopeo"].append(_skopeo(work, ref))
            fresh = _Vxn(work / "fresh", host)
            try:
                times["fresh"].append(fresh.time(ref))
            finally:
                fresh.stop()
    finally:
        warm.stop()
    return times


class _Vxn:
    """A vxnd on its own state, run and config; `time()` pulls into an empty store."""

    def __init__(self, root: Path, host: str) -> None:
        root.mkdir()
        self.root = root
        config = root / "vxn.toml"
        config.write_text(f'[registries."{host}"]\ninsecure = true\n')
        self.env = os.environ | {
            "VXN_STATE_DIR": str(root / "s"),
            "VXN_RUN_DIR": str(root / "r"),
            "VXN_CONFIG": str(config),
        }
        subprocess.run([VXN, "images"], check=True, env=self.env, stdout=subprocess.DEVNULL)

    def time(self, ref: str) -> float:
        shutil.rmtree(self.root / "s" / "content", ignore_errors=True)
        return timed([VXN, "pull", "-q", ref], self.env)

    def stop(self) -> None:
        stop_daemon(self.root / "r")
        shutil.rmtree(self.root)


def _skopeo(work: Path, ref: str) -> float:
    dest = Path(tempfile.mkdtemp(dir=work))
    try:
        argv = ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}"]
        return timed([*argv, f"oci:{dest}:big"])
    finally:
        shutil.rmtree(dest)


def _skopeo_fsyncs(work: Path, ref: str) -> str:
    if shutil.which("strace") is None:
        return "an unknown number of"
    dest = Path(tempfile.mkdtemp(dir=work))
    argv = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "skopeo", "copy", "-q"]
    argv += ["--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:big"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    shutil.rmtree(dest)
    calls = re.findall(
        r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(?:fsync|fdatasync)$", out, re.M
    )
    return str(sum(int(c) for c in calls))
