"""Shared pieces of the benchmarks: timing, vxn on throwaway state, and the table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent
VXN = str(BIN / "vxn")

Row = tuple[str, float, bool]  # what, median seconds, is the table's reference peer


def compile_vxn() -> None:
    """Byte-compile vxn, as installing a package does. scripts/setup.sh compiles the
    editable install once, but sources edited since then have stale .pyc files, and
    with PYTHONDONTWRITEBYTECODE set (as in these sessions) every vxn process would
    compile them again from source: ~15 ms per CLI start."""
    import compileall

    compileall.compile_dir(Path(__file__).resolve().parent.parent / "vxn", quiet=1)


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def median_of(runs: int, once: Callable[[], float]) -> float:
    return statistics.median(once() for _ in range(runs))


@contextmanager
def vxn_env(root: Path, **extra: str) -> Iterator[dict[str, str]]:
    """Env for vxn on its own state and run dirs under `root` (plus `extra` variables,
    which the daemon sees too), with a warm vxnd."""
    env = os.environ | {"VXN_STATE_DIR": str(root / "s"), "VXN_RUN_DIR": str(root / "r")} | extra
    subprocess.run([VXN, "images"], check=True, env=env, stdout=subprocess.DEVNULL)
    try:
        yield env
    finally:
        stop_daemon(root / "r")


def stop_daemon(run_dir: Path) -> None:
    try:
        pid = int((run_dir / "vxnd.lock").read_text())
    except (OSError, ValueError):
        return
    os.kill(pid, 15)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.01)


def print_table(title: str, rows: list[Row]) -> None:
    peer_name, peer_time = next((name, t) for name, t, peer in rows if peer)
    print(f"\n{title} (ratio: time / {peer_name})\n")
    print(f"| {'what':<42} | {'median':>9} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 11}|{'-' * 8}|")
    for name, seconds, _ in rows:
        print(f"| {name:<42} | {seconds * 1000:>6.0f} ms | {seconds / peer_time:>6.2f} |")


def load_demo(work: Path, env: dict[str, str]) -> None:
    """`vxn load` the demo image (DEMO_NAME) into the vxnd of `env`."""
    from data.imagebuild import DEMO_NAME, Layout, oci_archive

    layout = Layout(work / "demo")
    built = layout.add_image()
    layout.write_index([(built.manifest, {"io.containerd.image.name": DEMO_NAME})])
    subprocess.run(
        [VXN, "load", str(oci_archive(work / "demo", work / "demo.tar"))],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
