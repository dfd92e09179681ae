"""CLI startup: `vxn --version` and `vxn images` (warm vxnd) next to the peers' Go CLIs.

vxn's budget is 150 ms; the ratio is against `skopeo --version`.
"""

from __future__ import annotations

from pathlib import Path

from common import VXN, Row, compile_vxn, median_of, timed, vxn_env

TITLE = "CLI startup"


def rows(runs: int, work: Path) -> list[Row]:
    compile_vxn()
    commands = [
        ("vxn --version", [VXN, "--version"], False),
        ("vxn images (warm vxnd)", [VXN, "images"], False),
        ("skopeo --version", ["skopeo", "--version"], True),
        ("umoci --version", ["umoci", "--version"], False),
    ]
    with vxn_env(work) as env:
        return [
            (name, median_of(runs, lambda argv=argv: timed(argv, env)), peer)
            for name, argv, peer in commands
        ]
