"""vxn benchmarks: one command, one table, ratios against peers measured in the same run.

    .venv/bin/python bench/run.py [--runs N] [--big-mb MB]

What is measured:
- CLI startup: `vxn --version`, and `vxn images` against a running vxnd, next to the
  Go CLIs of the peers (`skopeo --version`, `umoci --version`). vxn's budget is 150 ms.
- Offline load of one image (`--big-mb` of layers): `vxn load` of an OCI layout dir and of
  an oci-archive, each into an empty store, next to `skopeo copy oci:A oci:B` of the same
  layout, which also reads and verifies every blob.

Each figure is the median of `--runs` runs; the machine is shared, so trust ratios more
than absolute times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))

from data import imagebuild  # noqa: E402


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def median_of(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


Row = tuple[str, float, bool]  # what, median seconds, is the table's reference peer


def startup_rows(runs: int, work: Path) -> list[Row]:
    env = os.environ | {"VXN_STATE_DIR": str(work / "s"), "VXN_RUN_DIR": str(work / "r")}
    vxn = str(BIN / "vxn")
    subprocess.run([vxn, "images"], check=True, env=env, stdout=subprocess.DEVNULL)  # start vxnd
    commands = [
        ("vxn --version", [vxn, "--version"], False),
        ("vxn images (warm vxnd)", [vxn, "images"], False),
        ("skopeo --version", ["skopeo", "--version"], True),
        ("umoci --version", ["umoci", "--version"], False),
    ]
    try:
        return [
            (name, median_of(runs, lambda argv=argv: timed(argv, env)), peer)
            for name, argv, peer in commands
        ]
    finally:
        stop_daemon(work / "r")


def stop_daemon(run_dir: Path) -> None:
    try:
        pid = int((run_dir / "vxnd.lock").read_text())
    except (OSError, ValueError):
        return
    os.kill(pid, 15)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.01)


def load_rows(runs: int, big_mb: int, work: Path) -> list[Row]:
    layout = work / "layout"
    imagebuild.simple_layout(layout, imagebuild.ImageSpec(big_mb=big_mb), name="big")
    archive = imagebuild.oci_archive(layout, work / "big.tar")
    vxn = str(BIN / "vxn")

    def vxn_load(source: Path) -> float:
        store = Path(tempfile.mkdtemp(dir=work))
        env = os.environ | {"VXN_STATE_DIR": str(store / "s"), "VXN_RUN_DIR": str(store / "r")}
        subprocess.run([vxn, "images"], check=True, env=env, stdout=subprocess.DEVNULL)
        try:
            return timed([vxn, "load", str(source)], env)
        finally:
            stop_daemon(store / "r")
            shutil.rmtree(store)

    def skopeo_copy() -> float:
        dest = Path(tempfile.mkdtemp(dir=work))
        try:
            return timed(["skopeo", "copy", "-q", f"oci:{layout}:big", f"oci:{dest}:big"])
        finally:
            shutil.rmtree(dest)

    return [
        (f"vxn load, layout dir ({big_mb} MB)", median_of(runs, lambda: vxn_load(layout)), False),
        (f"vxn load, oci-archive ({big_mb} MB)", median_of(runs, lambda: vxn_load(archive)), False),
        (f"skopeo copy oci: -> oci: ({big_mb} MB)", median_of(runs, skopeo_copy), True),
    ]


def print_table(title: str, rows: list[Row]) -> None:
    peer_name, peer_time = next((name, t) for name, t, peer in rows if peer)
    print(f"\n{title} (ratio: time / {peer_name})\n")
    print(f"| {'what':<42} | {'median':>9} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 8}|")
    for name, seconds, _ in rows:
        print(f"| {name:<42} | {seconds * 1000:>6.0f} ms | {seconds / peer_time:>6.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--big-mb", type=int, default=100)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus")
    with tempfile.TemporaryDirectory(prefix="vxnbench") as tmp:
        print_table("CLI startup", startup_rows(args.runs, Path(tmp)))
        print_table("Offline image load", load_rows(max(3, args.runs // 3), args.big_mb, Path(tmp)))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
