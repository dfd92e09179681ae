"""Base disk images from a directory tree: `mkfs.ext4 -d`, no mount, no loop device.

mke2fs copies owners, modes (setuid too), xattrs, hardlinks, device nodes, symlinks
and mtimes from the tree (ENVIRONMENT.md §6), so the tree must be flattened as root.
It sets the root directory's own metadata and adds a lost+found the image never
had; debugfs puts both right afterwards.
The disk is read-only in every guest (each container's writes go to its own
overlay disk), so it has no journal and no reserved blocks, and its UUID and hash
seed come from the cache key: the same image gives the same filesystem identity.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from vxn.adapters import process
from vxn.core.rootfs import Geometry
from vxn.errors import Unavailable

MKFS = "mkfs.ext4"
LOST_FOUND = "lost+found"  # mke2fs makes it; an image that did not ask for it should not see it
TIMEOUT = 30 * 60.0  # a build of tens of GB on a slow disk; a hung mkfs is a bug


def build_ext4(tree: Path, out: Path, geometry: Geometry, *, label: str) -> None:
    """Write the ext4 image `out` (created here, 0444) holding `tree`."""
    ident = uuid.UUID(bytes=hashlib.sha256(label.encode()).digest()[:16])
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, geometry.size)  # sparse: only what mke2fs writes takes space
    finally:
        os.close(fd)
    argv = [
        MKFS,
        *("-q", "-F", "-b", "4096", "-m", "0", "-L", "vxn-rootfs"),
        *("-N", str(geometry.inodes), "-O", "^has_journal", "-U", str(ident)),
        *("-E", f"hash_seed={ident},nodiscard", "-d", str(tree), str(out)),
    ]
    _run(argv, out)
    _run(["debugfs", "-w", "-f", "-", str(out)], out, _root_fixes(tree))
    fd = os.open(out, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
        os.fchmod(fd, 0o444)
    finally:
        os.close(fd)


def _root_fixes(tree: Path) -> str:
    """debugfs commands for what mke2fs -d leaves out: the root's own owner, mode and
    mtime (it copies only what is below the root), and a lost+found it adds."""
    st = tree.lstat()
    commands = [
        f"sif / mode 0{st.st_mode:o}",
        f"sif / uid {st.st_uid}",
        f"sif / gid {st.st_gid}",
        f"sif / mtime @{int(st.st_mtime)}",
    ]
    if not os.path.lexists(tree / LOST_FOUND):
        commands.append(f"rmdir {LOST_FOUND}")
    return "".join(c + "\n" for c in commands)


def _run(argv: list[str], out: Path, stdin: str = "") -> None:
    done = process.run_blocking(
        argv, limit=TIMEOUT, input=stdin.encode(), subject=f"{argv[0]} for {out.name}"
    )
    stderr = done.stderr.decode(errors="replace")
    # debugfs exits 0 on failure; any stderr line past its banner is an error.
    lines = [line for line in stderr.splitlines() if line and not line.startswith("debugfs ")]
    if done.returncode != 0 or lines:
        said = " ".join(lines) or " ".join(done.stdout.decode(errors="replace").split())
        raise Unavailable(
            f"{argv[0]} for {out.name} failed (exit {done.returncode}): {said[-400:]}"
        )
