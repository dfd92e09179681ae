"""Copy a sparse file as sparse: only its data extents are read and written
(SEEK_DATA/SEEK_HOLE, copy_file_range), the holes stay holes."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def copy(src: Path, dst: Path) -> None:
    """`dst` (created, or truncated) becomes a copy of `src` with the same holes."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        for start, end in _extents(fin.fileno(), size):
            offset = start
            while offset < end:
                done = os.copy_file_range(fin.fileno(), fout.fileno(), end - offset, offset, offset)
                if done == 0:
                    raise OSError(errno.EIO, f"{src}: ended early at {offset} of {size} bytes")
                offset += done
        fout.truncate(size)


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    found = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        pos = os.lseek(fd, start, os.SEEK_HOLE)
        found.append((start, pos))
    return found
