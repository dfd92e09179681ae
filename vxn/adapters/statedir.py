"""The owners of vxn's on-disk layouts: the state dir and the run dir.

Every path under them is computed here and nowhere else.

    <state_dir>/            (/var/lib/vxn)
        content/            the content store (vxn.adapters.content owns its inside)
        rootfs/             base disks, one per image (vxn.engine.rootfs owns its inside)
        containers/<id>/    one directory per container; config.json names its image
        guest/              kernel, base initramfs cache (vxn.engine.guest owns its inside)

    <run_dir>/              (/run/vxn)
        vxn.sock            the API socket
        vxnd.lock           held by the running vxnd (one daemon per run dir)
        autostart.lock      serialises CLIs that start a daemon
        vxnd.log            the log of an auto-started vxnd
        guests/<name>/      a running guest's sockets and logs (the backend owns its inside)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StateDir:
    root: Path

    @property
    def content(self) -> Path:
        return self.root / "content"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def guest(self) -> Path:
        return self.root / "guest"

    def ensure(self) -> None:
        for path in (self.root, self.content, self.containers, self.rootfs):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class RunDir:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "vxn.sock"

    @property
    def daemon_lock(self) -> Path:
        return self.root / "vxnd.lock"

    @property
    def autostart_lock(self) -> Path:
        return self.root / "autostart.lock"

    @property
    def log(self) -> Path:
        return self.root / "vxnd.log"

    @property
    def guests(self) -> Path:
        return self.root / "guests"

    def ensure(self) -> None:
        self.root.mkdir(mode=0o755, parents=True, exist_ok=True)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
