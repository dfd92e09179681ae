"""A pure cpio "newc" writer: the guest's base initramfs and its per-run spec archive.

Linux unpacks concatenated archives, but only when each one starts on a 4-byte
boundary; otherwise the appended one is silently ignored (XEN-IN-QEMU.md 9). Every
member, and so the whole archive, is padded to 4 bytes here, so any archive this
writes can be appended to any other.
"""

from __future__ import annotations

import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vxn.errors import InvalidArgument

MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One archive member. `mode` includes the type bits; a symlink's `data` is its target."""

    name: str  # relative, without a leading "/"
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)  # (major, minor) of a device node

    @classmethod
    def directory(cls, name: str, perm: int = 0o755) -> Member:
        return cls(name=name, mode=stat.S_IFDIR | perm)

    @classmethod
    def file(cls, name: str, data: bytes, perm: int = 0o644) -> Member:
        return cls(name=name, mode=stat.S_IFREG | perm, data=data)

    @classmethod
    def symlink(cls, name: str, target: str) -> Member:
        return cls(name=name, mode=stat.S_IFLNK | 0o777, data=target.encode())

    @classmethod
    def chardev(cls, name: str, major: int, minor: int, perm: int = 0o600) -> Member:
        return cls(name=name, mode=stat.S_IFCHR | perm, rdev=(major, minor))


def archive(members: Iterable[Member]) -> bytes:
    """The newc archive of `members` (owned by root, mtime 0), with its trailer, 4-byte padded."""
    out = bytearray()
    for ino, member in enumerate(members, start=1):
        _check(member)
        out += _header(member, ino)
    out += _header(Member(name=TRAILER, mode=0), 0)
    return bytes(out)


def pad4(data: bytes) -> bytes:
    """`data` zero-padded to a multiple of 4 bytes, ready to have an archive appended."""
    return data + b"\0" * (-len(data) % 4)


def parents(names: Sequence[str]) -> list[str]:
    """Every directory above `names`, parents first: the directories an archive must list."""
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _header(member: Member, ino: int) -> bytes:
    name = member.name.encode() + b"\0"
    nlink = 2 if stat.S_ISDIR(member.mode) else 1
    fields = (ino, member.mode, 0, 0, nlink, 0, len(member.data), 0, 0, *member.rdev, len(name), 0)
    head = MAGIC + b"".join(b"%08X" % f for f in fields) + name
    return pad4(head) + pad4(member.data)


def _check(member: Member) -> None:
    parts = member.name.split("/")
    if not member.name or "\0" in member.name or member.name.startswith("/") or ".." in parts:
        raise InvalidArgument(f"cpio member {member.name!r}: want a relative path without '..'")
    if member.name == TRAILER:
        raise InvalidArgument(f"cpio member {member.name!r}: the name is reserved")
    if member.data and not (stat.S_ISREG(member.mode) or stat.S_ISLNK(member.mode)):
        raise InvalidArgument(f"cpio member {member.name!r}: only files and symlinks have data")
