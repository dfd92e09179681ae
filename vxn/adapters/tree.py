"""The flatten executor: applies the planner's ops under one root, never following a link.

Every directory is reached from the root's fd one component at a time with
O_NOFOLLOW|O_DIRECTORY (a symlink there fails with ELOOP/ENOTDIR instead of being
followed; the planner already resolved archive symlinks inside its model, so that
only happens if something raced us). Leaves are made with *at() calls relative to
their parent's fd: files with O_CREAT|O_EXCL|O_NOFOLLOW, then fchown/fchmod/
fsetxattr/futimens on that fd; symlinks and device nodes with the no-follow
variants (lchown, AT_SYMLINK_NOFOLLOW). chown comes before chmod, which it would
otherwise strip of setuid/setgid. Directory fds are cached, since entries arrive
grouped by directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable

from vxn.core.flatten import (
    IGNORED_XATTRS as IGNORED,
    Hardlink,
    Kind,
    MakeDir,
    MakeNode,
    Meta,
    Op,
    Parts,
    Remove,
    SetDirMeta,
    SetTimes,
    Symlink,
    WriteFile,
)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NODE_TYPES = {Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK, Kind.FIFO: stat.S_IFIFO}
_MAX_CACHED = 512
_CHUNK = 1 << 20

Reader = Callable[[int], bytes]  # read(n): the current entry's data


class Tree:
    """A root directory being filled; `close()` releases every fd."""

    def __init__(self, root_fd: int) -> None:
        self._root = root_fd
        self._dirs: dict[Parts, int] = {}

    def apply(self, op: Op, read: Reader) -> None:
        if len(self._dirs) >= _MAX_CACHED:
            self.close()  # between ops: no fd handed out is in use
        if isinstance(op, WriteFile):
            self._write(op, read)
        elif isinstance(op, MakeDir):
            self._mkdir(op)
        elif isinstance(op, Symlink):
            self._symlink(op)
        elif isinstance(op, SetDirMeta):
            fd = self.dir_fd(op.path)
            _owner_mode(fd, op.meta)
            _replace_xattrs(fd, op.meta)
        elif isinstance(op, Hardlink):
            os.link(
                op.target[-1],
                op.path[-1],
                src_dir_fd=self.dir_fd(op.target[:-1]),
                dst_dir_fd=self.dir_fd(op.path[:-1]),
                follow_symlinks=False,
            )
        elif isinstance(op, MakeNode):
            self._mknod(op)
        elif isinstance(op, Remove):
            self._remove(op.path)
        else:
            self._set_times(op)

    def dir_fd(self, path: Parts) -> int:
        """An fd for a directory of the tree, opened without following any symlink."""
        if not path:
            return self._root
        fd = self._dirs.get(path)
        if fd is None:
            fd = os.open(path[-1], _DIR_FLAGS, dir_fd=self.dir_fd(path[:-1]))
            self._cache(path, fd)
        return fd

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    # --- ops -----------------------------------------------------------------------------

    def _write(self, op: WriteFile, read: Reader) -> None:
        fd = os.open(op.path[-1], _FILE_FLAGS, 0o600, dir_fd=self.dir_fd(op.path[:-1]))
        try:
            left = op.size
            while left:
                data = read(min(left, _CHUNK))
                if not data:
                    raise EOFError(f"the tar ends inside {'/'.join(op.path)}")
                _write_all(fd, data)
                left -= len(data)
            _owner_mode(fd, op.meta)
            for name, value in op.meta.xattrs.items():
                os.setxattr(fd, name, value)
            os.utime(fd, ns=_ns(op.meta.mtime))
        finally:
            os.close(fd)

    def _mkdir(self, op: MakeDir) -> None:
        parent = self.dir_fd(op.path[:-1])
        os.mkdir(op.path[-1], 0o700, dir_fd=parent)
        fd = os.open(op.path[-1], _DIR_FLAGS, dir_fd=parent)
        self._cache(op.path, fd)
        _owner_mode(fd, op.meta)
        for name, value in op.meta.xattrs.items():
            os.setxattr(fd, name, value)

    def _symlink(self, op: Symlink) -> None:
        parent, name = self.dir_fd(op.path[:-1]), op.path[-1]
        os.symlink(op.target, name, dir_fd=parent)
        os.chown(name, op.meta.uid, op.meta.gid, dir_fd=parent, follow_symlinks=False)
        self._leaf_xattrs(parent, name, op.meta)
        os.utime(name, ns=_ns(op.meta.mtime), dir_fd=parent, follow_symlinks=False)

    def _mknod(self, op: MakeNode) -> None:
        parent, name, meta = self.dir_fd(op.path[:-1]), op.path[-1], op.meta
        device = os.makedev(op.major, op.minor) if op.kind is not Kind.FIFO else 0
        os.mknod(name, 0o600 | _NODE_TYPES[op.kind], device, dir_fd=parent)
        os.chown(name, meta.uid, meta.gid, dir_fd=parent, follow_symlinks=False)
        # fchmodat(AT_SYMLINK_NOFOLLOW): opening a fifo or device to fchmod it could block.
        os.chmod(name, meta.mode, dir_fd=parent, follow_symlinks=False)
        self._leaf_xattrs(parent, name, meta)
        os.utime(name, ns=_ns(meta.mtime), dir_fd=parent, follow_symlinks=False)

    def _remove(self, path: Parts) -> None:
        parent = self.dir_fd(path[:-1])
        try:
            os.unlink(path[-1], dir_fd=parent)
        except IsADirectoryError:
            self._forget(path)
            # rmtree with dir_fd walks by fd and never follows symlinks.
            shutil.rmtree(path[-1], dir_fd=parent)

    def _set_times(self, op: SetTimes) -> None:
        if not op.path:
            os.utime(self._root, ns=_ns(op.mtime))
        else:
            parent = self.dir_fd(op.path[:-1])
            os.utime(op.path[-1], ns=_ns(op.mtime), dir_fd=parent, follow_symlinks=False)

    # --- helpers ---------------------------------------------------------------------------

    def _leaf_xattrs(self, parent: int, name: str, meta: Meta) -> None:
        # No fd-relative l*xattr call exists; /proc/self/fd/N names the parent we hold.
        for key, value in meta.xattrs.items():
            os.setxattr(f"/proc/self/fd/{parent}/{name}", key, value, follow_symlinks=False)

    def _cache(self, path: Parts, fd: int) -> None:
        self._dirs[path] = fd

    def _forget(self, top: Parts) -> None:
        for path in [p for p in self._dirs if p[: len(top)] == top]:
            os.close(self._dirs.pop(path))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]  # short only near a full disk; then it raises


def _owner_mode(fd: int, meta: Meta) -> None:
    os.fchown(fd, meta.uid, meta.gid)
    os.fchmod(fd, meta.mode)


def _replace_xattrs(fd: int, meta: Meta) -> None:
    """A dir over a dir takes the new entry's xattrs as a set (as umoci does)."""
    for name in os.listxattr(fd):
        if name not in meta.xattrs and not name.startswith("system.") and name not in IGNORED:
            with contextlib.suppress(OSError):
                os.removexattr(fd, name)
    for name, value in meta.xattrs.items():
        os.setxattr(fd, name, value)


def _ns(mtime: float) -> tuple[int, int]:
    ns = int(mtime * 1_000_000_000)
    return ns, ns
