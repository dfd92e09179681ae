"""The layering rules of ARCHITECTURE.md, enforced on the source tree.

vxn/core is pure: it may not import I/O, process, concurrency or outside-system
modules. Nothing anywhere imports vxn.cli (it is the top layer). Imports only
point down: core <- adapters <- engine <- daemon <- cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vxn"

CORE_FORBIDDEN = {
    "asyncio",
    "os",
    "io",
    "subprocess",
    "socket",
    "shutil",
    "tempfile",
    "pathlib",
    "time",
    "threading",
    "fcntl",
    "select",
    "signal",
    "pyxs",
    "oras",
    "aiofiles",
    "aiohttp",
    "requests",
    "urllib",
    "http",
}
LAYERS = ["core", "adapters", "engine", "daemon", "cli"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "vxn" and len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return None


def sources(sub: str = "") -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


@pytest.mark.parametrize("path", sources("core"), ids=lambda p: p.name)
def test_core_imports_no_io(path: Path) -> None:
    bad = {m for m in imports_of(path) if m.split(".")[0] in CORE_FORBIDDEN}
    assert not bad, f"{path.name} is in vxn/core but imports {sorted(bad)}"


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    rel = path.relative_to(PACKAGE)
    # `python -m vxn` is the CLI's own entry point.
    own = "cli" if rel == Path("__main__.py") else layer_of("vxn." + ".".join(rel.parts))
    for module in imports_of(path):
        target = layer_of(module)
        if target == "cli":
            assert own == "cli", f"{path} imports {module}: nothing outside vxn/cli imports it"
        if own and target:
            assert LAYERS.index(target) <= LAYERS.index(own), f"{path} imports up: {module}"


def test_rules_catch_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom vxn.cli import main\n")
    assert imports_of(bad) == {"os", "vxn.cli"}
    assert layer_of("vxn.cli.main") == "cli"
