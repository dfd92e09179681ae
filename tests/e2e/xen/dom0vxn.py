"""Real vxnd and vxn CLI processes inside the Dom0, set up from what the host staged.

The host (e2e/vxnguest.py) staged the guest kernel (vmlinux and its module dir), the
helper binary as GuestArtefacts caches it (the Dom0 has no gcc) and the busybox app
image's archive. Here they become a kernel dir, a vxnd state dir with the helper in
its guest cache, and a config that leaves the backend at `auto`: vxnd must find Xen
by itself. vxnd builds the base initramfs from the Dom0's static busybox.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vxn.testing.daemon import VxnDirs, terminate, vxn_argv, vxnd_argv

T_CLI = 180.0  # one CLI call, a guest's whole run included, on a loaded TCG Dom0
T_VXND = 60.0  # vxnd's start: Python imports under TCG


@dataclass
class Ran:
    code: int
    out: bytes
    err: bytes


class Dom0Vxn:
    def __init__(self, staged: Path, root: Path, manifest: dict[str, Any]) -> None:
        self.image = str(manifest["image"])
        self.kernel_dir = root / "kernel"
        shutil.copytree(staged / "kernel", self.kernel_dir)
        shutil.copyfile(staged / "vmlinux", self.kernel_dir / "vmlinux")
        self.dirs = VxnDirs()
        guest = self.dirs.state / "guest"
        guest.mkdir(parents=True)
        shutil.copyfile(staged / manifest["helper"], guest / manifest["helper"])
        os.chmod(guest / manifest["helper"], 0o755)
        self.dirs.config.write_text(f'[guest]\nkernel_dir = "{self.kernel_dir}"\n')
        self.env = self.dirs.env(VXN_NO_AUTOSTART="1")
        self.archive = staged / "app.tar"
        self.vxnd: subprocess.Popen[bytes] | None = None
        self.log = root / "vxnd.log"

    def start_vxnd(self) -> float:
        """Start vxnd; the seconds until its socket answers."""
        t0 = time.monotonic()
        log = self.log.open("ab")
        self.vxnd = subprocess.Popen(vxnd_argv(), env=self.env, stdout=log, stderr=log)
        log.close()
        deadline = t0 + T_VXND
        while self("info").code != 0:
            if self.vxnd.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"vxnd did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        return time.monotonic() - t0

    def kill_vxnd(self) -> None:
        assert self.vxnd is not None
        self.vxnd.kill()
        self.vxnd.wait(30)

    def __call__(self, *args: str, input: bytes | None = None, timeout: float = T_CLI) -> Ran:
        p = subprocess.run(
            vxn_argv(*args), env=self.env, input=input, capture_output=True, timeout=timeout
        )
        return Ran(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(vxn_argv(*args), env=self.env, **kw)

    def inspect(self, ref: str) -> dict[str, Any]:
        ran = self("inspect", ref)
        if ran.code:
            raise RuntimeError(f"vxn inspect {ref}: {ran.err.decode()}")
        doc = json.loads(ran.out)
        return doc[0] if isinstance(doc, list) else doc  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.vxnd is not None and self.vxnd.poll() is None:
            terminate(self.vxnd.pid)
            self.vxnd.wait(30)
        self.dirs.cleanup()


def vxn_domains() -> list[str]:
    """The domains of `xl list` but Domain-0."""
    out = subprocess.run(["xl", "list"], capture_output=True, text=True, timeout=60).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.split()[1:2] != ["0"]]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (every thread), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
