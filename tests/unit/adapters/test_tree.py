"""The executor, once per op type, and its refusal to follow a symlink it did not expect."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vxn.adapters.tree import Tree
from vxn.core.flatten import (
    Hardlink,
    Kind,
    MakeDir,
    MakeNode,
    Meta,
    Remove,
    SetDirMeta,
    SetTimes,
    Symlink,
    WriteFile,
)

LOOP = r"Too many levels of symbolic links|Not a directory"
CAPS = b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    (tmp_path / "root").mkdir()
    fd = os.open(tmp_path / "root", os.O_RDONLY | os.O_DIRECTORY)
    t = Tree(fd)
    yield t
    t.close()
    os.close(fd)


def meta(mode: int, uid: int = 0, gid: int = 0, mtime: float = 1e9, **x: bytes) -> Meta:
    return Meta(mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=x)


def no_data(n: int) -> bytes:
    raise AssertionError("no data expected")


def test_each_op(tree: Tree, tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = iter([b"hel", b"lo"])
    tree.apply(MakeDir(("d",), meta(0o2750, 5, 6, **{"user.d": b"1"})), no_data)
    write = WriteFile(
        ("d", "f"), meta(0o4711, 1000, 1000, mtime=123.5, **{"security.capability": CAPS}), 5
    )
    tree.apply(write, lambda n: next(data))
    tree.apply(Symlink(("d", "s"), "/nowhere", meta(0o777, 7, 8, mtime=99.0)), no_data)
    tree.apply(Hardlink(("h",), ("d", "f")), no_data)
    tree.apply(MakeNode(("null",), Kind.CHAR, 1, 3, meta(0o666)), no_data)
    tree.apply(MakeNode(("fifo",), Kind.FIFO, 0, 0, meta(0o600)), no_data)
    tree.apply(SetDirMeta(("d",), meta(0o700, 9, 9, **{"user.e": b"2"})), no_data)
    tree.apply(SetTimes(("d",), 42.0), no_data)
    f = os.lstat(root / "d" / "f")
    assert (stat.S_IMODE(f.st_mode), f.st_uid, f.st_nlink, f.st_mtime) == (0o4711, 1000, 2, 123.5)
    assert os.getxattr(root / "d" / "f", "security.capability") == CAPS
    assert (root / "h").read_bytes() == b"hello"
    s = os.lstat(root / "d" / "s")
    assert (os.readlink(root / "d" / "s"), s.st_uid, s.st_gid, s.st_mtime) == (
        "/nowhere",
        7,
        8,
        99.0,
    )
    assert os.major(os.lstat(root / "null").st_rdev) == 1
    assert stat.S_ISFIFO(os.lstat(root / "fifo").st_mode)
    d = os.lstat(root / "d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_mtime) == (0o700, 9, 42.0)
    assert os.listxattr(root / "d") == ["user.e"]  # replaced as a set
    tree.apply(Remove(("d",)), no_data)
    tree.apply(Remove(("h",)), no_data)
    assert sorted(os.listdir(root)) == ["fifo", "null"]


def test_a_symlink_where_a_dir_should_be_is_never_followed(tree: Tree, tmp_path: Path) -> None:
    # The planner never plans through a symlink; if one appears anyway (a race), the
    # O_NOFOLLOW walk fails instead of writing outside.
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "root" / "d")
    with pytest.raises(OSError, match=LOOP):
        tree.apply(WriteFile(("d", "f"), meta(0o644), 0), no_data)
    with pytest.raises(OSError, match=LOOP):
        tree.apply(SetDirMeta(("d",), meta(0o777)), no_data)
    assert os.listdir(outside) == []
    assert stat.S_IMODE(outside.stat().st_mode) != 0o777


def test_an_existing_leaf_is_never_written_through(tree: Tree, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"safe")
    os.symlink(target, tmp_path / "root" / "f")
    with pytest.raises(FileExistsError):
        tree.apply(WriteFile(("f",), meta(0o644), 0), no_data)
    assert target.read_bytes() == b"safe"
