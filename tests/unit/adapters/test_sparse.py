"""adapters/sparse.py: a copy has the same bytes and the same holes."""

from __future__ import annotations

import os
from pathlib import Path

from vxn.adapters import sparse

MiB = 1 << 20


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_data_and_holes_survive(tmp_path: Path) -> None:
    src = tmp_path / "src"
    with src.open("wb") as f:
        f.truncate(64 * MiB)
        for offset, data in ((0, b"head"), (5 * MiB + 3, os.urandom(MiB)), (40 * MiB, b"x" * 9)):
            f.seek(offset)
            f.write(data)
    dst = tmp_path / "dst"
    dst.write_bytes(b"old content, longer than nothing")  # truncated by the copy
    sparse.copy(src, dst)
    assert dst.read_bytes() == src.read_bytes()
    assert _allocated(dst) <= _allocated(src) < 4 * MiB  # the holes were not written


def test_a_file_that_ends_in_data_or_is_all_hole(tmp_path: Path) -> None:
    tail = tmp_path / "tail"
    with tail.open("wb") as f:
        f.truncate(8 * MiB)
        f.seek(8 * MiB - 5)
        f.write(b"12345")
    hole = tmp_path / "hole"
    with hole.open("wb") as f:
        f.truncate(8 * MiB)
    for src in (tail, hole, tmp_path / "empty"):
        src.touch()
        sparse.copy(src, tmp_path / "out")
        assert (tmp_path / "out").read_bytes() == src.read_bytes()
