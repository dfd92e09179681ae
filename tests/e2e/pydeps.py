"""vxn's Python dependencies for the Dom0, installed on the host, used offline there.

Dom0 has no network, so the host's pip (configured index) installs the
dependencies into a plain directory, which becomes a small ext4 disk (label
vxndeps) that the Dom0 mounts read-only and puts on PYTHONPATH. Host and Dom0
are both Debian 12 with CPython 3.11, so the same wheels fit; binary wheels
only, so nothing is compiled against the host. Both are cached under a key
that hashes the pinned requirement list.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from e2e import ext4
from e2e.cache import REPO, cache_root, digest, locked, publish

NOT_IN_DOM0 = re.compile(r"^(mypy|ruff|types-)")  # linters are host-only
EXTRA = ["pyxs"]  # the XenStore client the Xen tests (and later the backend) use
PIP_TIMEOUT = 300  # idle: 5-10 s from the local index


def requirements() -> list[str]:
    """The project's runtime and test requirements, pinned to the host venv's versions."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project.get("dependencies", []), *project["optional-dependencies"].get("test", [])]
    names = [re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0] for r in wanted]
    pins = []
    for name in sorted({n for n in names if not NOT_IN_DOM0.match(n)} | set(EXTRA)):
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pins.append(name)
    return pins


def ensure_deps(echo: bool = True) -> Path:
    """A disk image holding `requirements()`, built with pip if not cached."""
    t0 = time.monotonic()
    reqs = requirements()
    code = [Path(f).read_bytes() for f in (__file__, ext4.__file__)]
    key = digest(*code, "\n".join(reqs), sys.version[:4])[:16]
    final = cache_root() / f"pydeps-{key}"
    with locked("pydeps", timeout=PIP_TIMEOUT * 2):
        if not (final / "deps.img").is_file():
            partial = final.with_name(final.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            cmd = [sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
            cmd += ["--only-binary=:all:", "--target", str(partial / "site"), *reqs]
            subprocess.run(cmd, check=True, timeout=PIP_TIMEOUT)
            ext4.make_ext4(partial / "site", partial / "deps.img", "vxndeps")
            (partial / "requirements.txt").write_text("\n".join(reqs) + "\n")
            publish(partial, final, "pydeps-")
            verb = "built"
        else:
            verb = "cached"
    if echo:
        print(f"dom0 python deps {key}: {verb}, {time.monotonic() - t0:.2f} s", file=sys.stderr)
    return final / "deps.img"
