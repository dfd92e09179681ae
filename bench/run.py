"""vxn benchmarks: one command, one table per section, ratios against peers measured in
the same run.

    .venv/bin/python bench/run.py [--runs N] [SECTION ...]

Sections: startup, load, pull, rootfs, rootfs_small, run_guest, daemon (each is a module
here with TITLE and rows(runs, workdir)).
Each figure is a median; the machine is shared, so trust ratios more than absolute
times. The load average is printed before and after.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from common import print_table  # noqa: E402

SECTIONS = ["startup", "load", "pull", "rootfs", "rootfs_small", "run_guest", "daemon"]


def main() -> None:
    parser = argparse.ArgumentParser(description="vxn benchmarks")
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("sections", nargs="*", choices=SECTIONS, default=SECTIONS)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, {os.cpu_count()} cpus")
    for name in args.sections:
        section = importlib.import_module(name)
        with tempfile.TemporaryDirectory(prefix=f"vxnbench-{name}") as tmp:
            print_table(section.TITLE, section.rows(args.runs, Path(tmp)))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
