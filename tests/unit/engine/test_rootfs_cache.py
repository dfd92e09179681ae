"""The rootfs cache: built once per image, reused in O(1), never seen half-built, and
removed with the image (rmi, prune). `vxn image unpack` leaves nothing behind on failure."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib
from data.layerstacks import Stack, d, f, write

from vxn.adapters.content import ContentStore
from vxn.adapters.statedir import StateDir
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.core.rootfs import Key
from vxn.engine import rootfs as rootfs_module
from vxn.engine.images import ImageService
from vxn.engine.rootfs import RootfsCache
from vxn.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)

AMD64 = Platform.parse("linux/amd64")


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    service = ImageService(StateDir(tmp_path / "state"), AMD64)
    _load(service, tmp_path / "demo", "demo:1")
    return service


def _load(svc: ImageService, where: Path, name: str, stack: Stack | None = None) -> None:
    if stack is None:
        ib.simple_layout(where, name="")
    else:
        layout = ib.Layout(where)
        desc, _ = write(layout, stack)
        layout.write_index([(desc, {})])
    with ib.oci_archive(where, where.with_suffix(".tar")).open("rb") as tar:
        svc.load_sync(tar, name=name)


def _cache_files(svc: ImageService) -> list[str]:
    root = svc.state.rootfs
    return sorted(os.listdir(root)) if root.exists() else []


def test_built_once_then_reused_in_constant_time(svc: ImageService) -> None:
    assert svc.inspect_sync("demo:1")["Rootfs"]["Built"] is False
    first = svc.rootfs_sync("demo:1")
    assert first.built
    assert first.path.stat().st_mode & 0o777 == 0o444
    assert Key.parse(first.path.name.removesuffix(".ext4")).manifest.hex in first.path.name
    start = time.perf_counter()
    again = svc.rootfs_sync("demo:1")
    assert time.perf_counter() - start < 0.05
    assert (again.path, again.built) == (first.path, False)
    state = svc.inspect_sync("demo:1")["Rootfs"]
    assert state == {
        "Built": True,
        "Path": str(first.path),
        "Size": first.size,
        "Key": state["Key"],
    }
    assert [n for n in _cache_files(svc) if not n.endswith(".lock")] == [first.path.name]


def test_concurrent_requests_build_it_once(
    svc: ImageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = rootfs_module.flatten

    def slow_flatten(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        time.sleep(0.2)  # long enough for every request to be waiting on the lock
        return real(*args, **kw)

    monkeypatch.setattr(rootfs_module, "flatten", slow_flatten)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(svc.rootfs_sync("demo:1"))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r.built for r in results) == [False, False, False, True]
    assert len({r.path for r in results}) == 1


def test_a_hostile_image_leaves_no_disk_and_no_staging(svc: ImageService, tmp_path: Path) -> None:
    bad = Stack("bad", [[d("x"), f("x")]])
    _load(svc, tmp_path / "bad", "bad:1", bad)
    with pytest.raises(InvalidArgument, match="'x' appears twice in the layer"):
        svc.rootfs_sync("bad:1")
    assert [n for n in _cache_files(svc) if not n.endswith(".lock")] == []


def test_an_image_removed_mid_build_is_not_published(
    svc: ImageService, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rootfs_module.build_ext4

    def rmi_first(*args: Any, **kw: Any) -> None:
        real(*args, **kw)
        svc.remove_sync("demo:1")

    monkeypatch.setattr(rootfs_module, "build_ext4", rmi_first)
    with pytest.raises(NotFound, match="removed while its rootfs was being built"):
        svc.rootfs_sync("demo:1")
    assert [n for n in _cache_files(svc) if not n.endswith(".lock")] == []


def test_rmi_removes_the_disk(svc: ImageService) -> None:
    path = svc.rootfs_sync("demo:1").path
    svc.remove_sync("demo:1")
    assert not path.exists()
    assert _cache_files(svc) == []


def test_prune_removes_disks_of_gone_images_stale_versions_and_abandoned_staging(
    svc: ImageService,
) -> None:
    path = svc.rootfs_sync("demo:1").path
    root = svc.state.rootfs
    manifest = Key.parse(path.name.removesuffix(".ext4")).manifest
    stale = root / f"{Key(manifest=manifest, version=0)}.ext4"
    stale.write_bytes(b"old flattener")
    gone = root / f"{Key(manifest=ib_digest('gone'))}.ext4"
    gone.write_bytes(b"image no longer there")
    abandoned = root / f"{Key(manifest=ib_digest('killed'))}.staging"
    (abandoned / "tree").mkdir(parents=True)
    (root / "unrelated").write_bytes(b"not ours")
    report = svc.prune_sync()
    assert report.reclaimed > 0
    assert sorted(os.listdir(root)) == sorted([path.name, path.name[:-5] + ".lock", "unrelated"])


def test_unpack_writes_a_new_dir_and_refuses_an_existing_one(
    svc: ImageService, tmp_path: Path
) -> None:
    info = svc.unpack_sync("demo:1", tmp_path / "out")
    assert (tmp_path / "out" / "etc" / "motd").read_bytes() == b"welcome to vxn test image\n"
    assert info.entries > 30
    with pytest.raises(AlreadyExists, match="exists; give a new directory"):
        svc.unpack_sync("demo:1", tmp_path / "out")
    with pytest.raises(InvalidArgument, match="must be an absolute path"):
        svc.unpack_sync("demo:1", Path("relative"))
    with pytest.raises(NotFound, match="is not a directory; create it first"):
        svc.unpack_sync("demo:1", tmp_path / "no" / "such")


def test_a_failed_unpack_leaves_nothing(svc: ImageService, tmp_path: Path) -> None:
    _load(svc, tmp_path / "bad", "bad:1", Stack("bad", [[f("a"), f("ok"), f("a")]]))
    with pytest.raises(InvalidArgument, match="appears twice"):
        svc.unpack_sync("bad:1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def ib_digest(seed: str) -> Digest:
    return Digest.parse(ib.sha256(seed.encode()))


def test_unpack_for_a_non_root_client_needs_a_parent_it_owns(
    svc: ImageService, tmp_path: Path
) -> None:
    with pytest.raises(FailedPrecondition, match=r"belongs to uid 0, not to you \(uid 4242\)"):
        svc.unpack_sync("demo:1", tmp_path / "out", uid=4242)
    assert not (tmp_path / "out").exists()
    mine = tmp_path / "home"
    mine.mkdir()
    os.chown(mine, 4242, 4242)
    svc.unpack_sync("demo:1", mine / "out", uid=4242)
    assert (mine / "out" / "etc" / "motd").stat().st_uid == 0  # the image's owners, not 4242


# --- the tree on tmpfs ("scratch") ------------------------------------------------------


@pytest.fixture
def scratchy(tmp_path: Path) -> tuple[ImageService, Path]:
    state = StateDir(tmp_path / "state")
    scratch = tmp_path / "shm"
    scratch.mkdir()
    store = ContentStore(state.content)
    service = ImageService(state, AMD64, rootfs=RootfsCache(state.rootfs, store, scratch=scratch))
    _load(service, tmp_path / "demo", "demo:1")
    return service, scratch


def _trees(monkeypatch: pytest.MonkeyPatch, fail_first: int = 0) -> list[Path]:
    """Record where each flatten puts its tree; fail the first ones as a full fs would."""
    seen: list[Path] = []
    real = rootfs_module.flatten

    def spy(layers: Any, dest: Path, **kw: Any) -> Any:
        seen.append(dest)
        if len(seen) <= fail_first:
            error = Unavailable("full")
            error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
            raise error
        return real(layers, dest, **kw)

    monkeypatch.setattr(rootfs_module, "flatten", spy)
    return seen


def test_the_tree_goes_to_scratch_and_is_removed(
    scratchy: tuple[ImageService, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, scratch = scratchy
    trees = _trees(monkeypatch)
    svc.rootfs_sync("demo:1")
    assert [t.parent.parent for t in trees] == [scratch]
    assert os.listdir(scratch) == []


def test_a_full_scratch_falls_back_to_the_state_dir(
    scratchy: tuple[ImageService, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, scratch = scratchy
    trees = _trees(monkeypatch, fail_first=1)
    assert svc.rootfs_sync("demo:1").built
    assert [t.parent.parent for t in trees] == [scratch, svc.state.rootfs]
    assert os.listdir(scratch) == []


def test_an_image_too_big_for_scratch_or_a_squatted_name_builds_on_disk(
    scratchy: tuple[ImageService, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, scratch = scratchy
    trees = _trees(monkeypatch)
    monkeypatch.setattr(rootfs_module, "EXPANSION", 10**12)
    svc.rootfs_sync("demo:1")
    monkeypatch.setattr(rootfs_module, "EXPANSION", 4)
    key = _key_of(svc)
    svc.remove_sync("demo:1")
    _load(svc, svc.state.root.parent / "again", "demo:1")
    squat = scratch / f"vxn-rootfs-{key}"
    squat.mkdir()
    os.chown(squat, 4242, 4242)
    svc.rootfs_sync("demo:1")
    assert [t.parent.parent for t in trees] == [svc.state.rootfs] * 2
    assert squat.is_dir()  # someone else's: left alone


def test_prune_removes_an_abandoned_scratch_tree(scratchy: tuple[ImageService, Path]) -> None:
    svc, scratch = scratchy
    key = _key_of(svc)
    (svc.state.rootfs / f"{key}.staging").mkdir(parents=True)
    (scratch / f"vxn-rootfs-{key}" / "tree").mkdir(parents=True)
    svc.prune_sync()
    assert os.listdir(scratch) == []
    assert not (svc.state.rootfs / f"{key}.staging").exists()


def _key_of(svc: ImageService) -> str:
    manifest = svc.list_sync()[0].manifest
    return str(Key(manifest=Digest.parse(manifest)))
