"""vxn installed from its wheel, not run from the checkout: the console scripts work
and guest-init's sources are where the engine looks for them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUEST_INIT = ("init", "vxn-helper.c", "PROTOCOL.md")
TIMEOUT = 300


def _run(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=TIMEOUT, env=env, cwd=cwd, check=False
    )
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout


def test_the_wheel_carries_guest_init_and_the_engine_finds_it(tmp_path: Path) -> None:
    src = tmp_path / "src"  # a copy: a build in the checkout would leave build/ behind
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("vxn", "guest-init"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)])
    (wheel,) = (tmp_path / "dist").glob("vxn-*.whl")

    venv = tmp_path / "venv"  # its own pip: this environment's would swap its vxn out
    _run([sys.executable, "-m", "venv", str(venv)])
    venv_pip = [str(venv / "bin/python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    _run([*venv_pip, "install", "--no-deps", "--no-index", str(wheel)])
    # The dependencies come from this environment's site-packages, vxn from the venv.
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": "/usr/bin:/bin"}
    probe = "import vxn, vxn.engine.guest as g; print(vxn.__file__); print(g.GUEST_INIT)"
    where, guest_init = _run([str(venv / "bin/python"), "-c", probe], env=env, cwd=tmp_path).split()
    assert Path(where).is_relative_to(venv)
    assert Path(guest_init) == venv / "share/vxn/guest-init"
    for name in GUEST_INIT:
        assert (Path(guest_init) / name).read_bytes() == (ROOT / "guest-init" / name).read_bytes()
    version = _run([str(venv / "bin/vxn"), "--version"], env=env, cwd=tmp_path)
    assert version.startswith("vxn version ")
