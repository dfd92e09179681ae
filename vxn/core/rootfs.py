"""The rootfs cache's names and the base disk's geometry: pure rules, no files.

One read-only base disk per image, named by everything that decides its content:
the manifest digest, the flattener's version and the device-node policy. A name
that parses to an older flattener version is stale and pruned.

    sha256-<hex>.f<version>.<policy>.ext4
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vxn.core import flatten
from vxn.core.digest import Digest
from vxn.errors import InvalidArgument

SUFFIX = ".ext4"
MIB = 1 << 20
BLOCK = 4096
INODE_SIZE = 256
_NAME = re.compile(r"(sha256|sha512)-([0-9a-f]+)\.f(\d+)\.([a-z]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    manifest: Digest
    version: int = flatten.VERSION
    devices: flatten.DevicePolicy = flatten.DevicePolicy.CREATE

    def __str__(self) -> str:
        m = self.manifest
        return f"{m.algorithm}-{m.hex}.f{self.version}.{self.devices.value}"

    @classmethod
    def parse(cls, text: str) -> Key:
        """The inverse of str(); InvalidArgument for anything else (a stray file)."""
        match = _NAME.fullmatch(text)
        if match is None:
            raise InvalidArgument(f"rootfs cache: {text!r} is not a cache name")
        try:
            devices = flatten.DevicePolicy(match[4])
        except ValueError:
            raise InvalidArgument(f"rootfs cache: {text!r} has an unknown policy") from None
        return cls(
            manifest=Digest.parse(f"{match[1]}:{match[2]}"),
            version=int(match[3]),
            devices=devices,
        )

    @property
    def current(self) -> bool:
        return self.version == flatten.VERSION


@dataclass(frozen=True, slots=True, kw_only=True)
class Geometry:
    size: int  # bytes, whole MiB
    inodes: int


def ext4_geometry(data_bytes: int, inodes: int) -> Geometry:
    """Room for the tree plus headroom (ENVIRONMENT.md §6: +20 % + 64 MiB).

    `data_bytes` is file data and directories in whole 4 KiB blocks; the inode table
    is counted on top, since a small-file tree needs more inodes than mke2fs's
    default ratio gives.
    """
    want_inodes = inodes + inodes // 10 + 1024
    raw = data_bytes + want_inodes * INODE_SIZE
    size = raw + raw // 5 + 64 * MIB
    return Geometry(size=-(-size // MIB) * MIB, inodes=want_inodes)
