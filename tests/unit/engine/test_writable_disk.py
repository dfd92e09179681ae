"""The upper disk: mkfs once into the template, then a sparse copy per container."""

from __future__ import annotations

from pathlib import Path

from vxn.adapters import process
from vxn.engine.containers import UPPER_SIZE, writable_disk


async def test_each_container_gets_its_own_copy_of_one_mkfs(tmp_path: Path) -> None:
    cache = tmp_path / "guest"
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    disk_a = await writable_disk(a, cache)
    (template,) = cache.iterdir()
    made = template.stat().st_mtime_ns
    disk_b = await writable_disk(b, cache)
    assert template.stat().st_mtime_ns == made  # made once
    assert [p.name for p in cache.iterdir()] == [template.name]  # no staging file left
    for disk in (disk_a, disk_b):
        assert disk.stat().st_size == UPPER_SIZE
        assert disk.stat().st_blocks * 512 < 64 << 20  # sparse
        check = await process.run(["e2fsck", "-fn", str(disk)], limit=60.0, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(p.name for p in a.iterdir()) == ["upper.ext4"]


async def test_a_kept_disk_is_kept(tmp_path: Path) -> None:
    (tmp_path / "upper.ext4").write_bytes(b"what the container wrote")
    disk = await writable_disk(tmp_path, tmp_path / "cache")
    assert disk.read_bytes() == b"what the container wrote"
    assert not (tmp_path / "cache").exists()
