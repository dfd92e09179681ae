"""The newc writer: headers, 4-byte padding, and archives that can be appended."""

from __future__ import annotations

import stat

import pytest

from vxn.core.cpio import Member, archive, pad4, parents
from vxn.errors import InvalidArgument


def read_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """A strict reader: (name, mode, data, rdev) per member, across appended archives."""
    out, at = [], 0
    while at < len(data):
        assert data[at : at + 6] == b"070701", f"no header at {at}"
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = data[at + 110 : at + 110 + namesize - 1].decode()
        start = at + 110 + namesize + (-(110 + namesize) % 4)
        body = data[start : start + filesize]
        at = start + filesize + (-filesize % 4)
        if name != "TRAILER!!!":
            out.append((name, fields[1], body, (fields[9], fields[10])))
    return out


def test_members_round_trip_and_everything_is_4_byte_aligned() -> None:
    members = [
        Member.directory("bin"),
        Member.file("bin/x", b"abc", 0o755),
        Member.symlink("bin/sh", "x"),
        Member.chardev("dev/console", 5, 1),
    ]
    data = archive(members)
    assert len(data) % 4 == 0
    assert read_newc(data) == [
        ("bin", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("bin/x", stat.S_IFREG | 0o755, b"abc", (0, 0)),
        ("bin/sh", stat.S_IFLNK | 0o777, b"x", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
    ]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5])
def test_an_archive_appended_after_padding_is_read(size: int) -> None:
    first = b"x" * size  # any base, such as a compressed one of odd length
    second = archive([Member.file("vxn/spec", b"k=v\0", 0o600)])
    joined = pad4(first) + second
    assert len(pad4(first)) % 4 == 0
    assert joined.index(b"070701") % 4 == 0


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "..", "TRAILER!!!", "a\0b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="cpio member"):
        archive([Member.file(name, b"")])


def test_only_files_and_symlinks_carry_data() -> None:
    with pytest.raises(InvalidArgument, match="only files and symlinks"):
        archive([Member(name="d", mode=stat.S_IFDIR | 0o755, data=b"x")])


def test_parents_are_listed_parents_first() -> None:
    assert parents(["a/b/c", "a/d", "e"]) == ["a", "a/b"]
