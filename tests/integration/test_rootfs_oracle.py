"""umoci as the oracle for the flattener, and debugfs as the witness for the disk.

Every stack of the corpus (tests/data/layerstacks.py) and every test image is
flattened by vxn and by `umoci raw unpack` (umoci unpack's rootfs step); the trees
must agree in names, types, modes, owners, link targets, contents, xattrs and
hardlink groups. The ext4 disk built from vxn's tree must hold the same tree, read
back with debugfs, without mounting. Layers reach vxn gzip'd, plain and zstd'd
in turn (umoci 0.4.7 reads no zstd, so it always gets gzip: the tars are the same).
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
import zstandard
from data import imagebuild as ib, treediff as td
from data.layerstacks import STACKS, Stack, write

from vxn.adapters.diskimage import build_ext4
from vxn.adapters.statedir import StateDir
from vxn.adapters.unpack import Layer, flatten
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.core.rootfs import ext4_geometry
from vxn.engine.images import ImageService

pytestmark = pytest.mark.integration
PACK = {0: lambda t: ib.gzip_bytes(t, 1), 1: bytes, 2: zstandard.ZstdCompressor().compress}


def umoci_unpack(layout: Path, tag: str, out: Path) -> Path:
    subprocess.run(
        ["umoci", "raw", "unpack", "--image", f"{layout}:{tag}", str(out)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[bytes]]]:
    root = tmp_path_factory.mktemp("corpus") / "layout"
    layout = ib.Layout(root)
    entries, tars = [], {}
    for stack in STACKS:
        desc, tars[stack.name] = write(layout, stack)
        entries.append((desc, ib.ref_name(stack.name)))
    layout.write_index(entries)
    return root, tars


def test_the_corpus_is_big_enough() -> None:
    assert len(STACKS) >= 40
    assert len({s.name for s in STACKS}) == len(STACKS)


@pytest.mark.parametrize("stack", STACKS, ids=[s.name for s in STACKS])
def test_stack_flattens_like_umoci_and_the_disk_holds_it(
    stack: Stack, corpus: tuple[Path, dict[str, list[bytes]]], tmp_path: Path
) -> None:
    layout, tars = corpus
    pack = PACK[STACKS.index(stack) % 3]
    layers = [
        Layer(digest=Digest.parse(ib.sha256(t)), diff_id=Digest.parse(ib.sha256(t)), blob=blob)
        for t in tars[stack.name]
        for blob in [io.BytesIO(pack(t))]
    ]
    stats = flatten(layers, tmp_path / "vxn")
    ours = td.snapshot(tmp_path / "vxn")
    td.assert_same(ours, td.snapshot(umoci_unpack(layout, stack.name, tmp_path / "umoci")), "umoci")
    geometry = ext4_geometry(stats.data_bytes, stats.inodes)
    build_ext4(tmp_path / "vxn", tmp_path / "disk", geometry, label=stack.name)
    td.assert_same(td.image_snapshot(tmp_path / "disk"), td.disk_view(ours), "the ext4 image")


@pytest.mark.parametrize(
    "spec",
    [ib.ImageSpec(), ib.ImageSpec(compression="", big_mb=2), ib.ImageSpec(small_files=300)],
    ids=["demo", "plain-tar-big", "small-files"],
)
def test_test_images_through_the_engine(spec: ib.ImageSpec, tmp_path: Path) -> None:
    ib.simple_layout(tmp_path / "layout", spec, name="t")
    svc = ImageService(StateDir(tmp_path / "state"), Platform.parse("linux/amd64"))
    with ib.oci_archive(tmp_path / "layout", tmp_path / "img.tar").open("rb") as f:
        svc.load_sync(f, name="t:1")
    theirs = td.snapshot(umoci_unpack(tmp_path / "layout", "t", tmp_path / "umoci"))
    svc.unpack_sync("t:1", tmp_path / "unpacked")
    td.assert_same(td.snapshot(tmp_path / "unpacked"), theirs, "umoci")
    disk = svc.rootfs_sync("t:1").path
    td.assert_same(td.image_snapshot(disk), td.disk_view(theirs), "the ext4 image")
