from __future__ import annotations

import pytest

from vxn.core import flatten
from vxn.core.digest import Digest
from vxn.core.rootfs import MIB, Key, ext4_geometry
from vxn.errors import InvalidArgument

M = Digest.parse("sha256:" + "ab" * 32)


def test_key_round_trips_and_covers_version_and_policy() -> None:
    key = Key(manifest=M, devices=flatten.DevicePolicy.SKIP)
    assert str(key) == f"sha256-{'ab' * 32}.f{flatten.VERSION}.skip"
    assert Key.parse(str(key)) == key
    assert key.current
    assert not Key(manifest=M, version=0).current
    assert str(Key(manifest=M)) != str(key)


@pytest.mark.parametrize("text", ["x", f"sha256-{'ab' * 32}.f1.maybe", "sha256-ab.f1.create"])
def test_other_names_are_not_keys(text: str) -> None:
    with pytest.raises(InvalidArgument):
        Key.parse(text)


def test_geometry_has_headroom_and_enough_inodes() -> None:
    g = ext4_geometry(data_bytes=100 * MIB, inodes=20_000)
    assert g.inodes == 20_000 + 2_000 + 1024
    assert g.size % MIB == 0
    assert g.size >= 100 * MIB * 1.2 + 64 * MIB
    assert ext4_geometry(0, 0).size == 65 * MIB
