"""Nothing a bad input, a full disk, a SIGKILL or a second writer does can leave the
content store with a partial, unverified or unnamed-yet-visible change."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib

from vxn.adapters.content import ContentStore
from vxn.adapters.statedir import StateDir
from vxn.core.catalog import Catalog
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
from vxn.errors import InvalidArgument, NotFound, Unavailable, VxnError

pytestmark = pytest.mark.integration
AMD64 = Platform.parse("linux/amd64")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("inputs")
    good = ib.simple_layout(root / "good", name="")
    ib.multiarch_layout(root / "multi")
    big = ib.simple_layout(root / "big", ib.ImageSpec(big_mb=8, marker="big"))
    return {
        "root": root,
        "good": good,
        "good_tar": ib.oci_archive(root / "good", root / "good.tar"),
        "big": big,
        "big_tar": ib.oci_archive(root / "big", root / "big.tar"),
    }


def snapshot(content: Path) -> dict[str, str]:
    """Every path under the content dir except staging, with a hash of each file."""
    out = {}
    for path in sorted(content.rglob("*")):
        rel = path.relative_to(content)
        if rel.parts[0] == "ingest":
            continue
        out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def load(svc: ImageService, path: Path, **kw: Any) -> None:
    with path.open("rb") as f:
        svc.load_sync(f, **kw)


def seeded(state: Path, inputs: dict[str, Any]) -> ImageService:
    svc = ImageService(StateDir(state), AMD64)
    load(svc, inputs["good_tar"], name="seed:1")
    return svc


def layout_copy(inputs: dict[str, Any], tmp_path: Path, name: str = "good") -> Path:
    return ib.copy_layout(inputs["root"] / name, tmp_path / f"bad-{name}")


def blob_file(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.removeprefix("sha256:")


def corrupt_blob(layout: Path, good: ib.Built) -> str:
    ib.flip_byte(blob_file(layout, good.layers[0]["digest"]), 1000)
    return "digest mismatch"


def wrong_size(layout: Path, good: ib.Built) -> str:
    ib.rewrite_manifest(layout, lambda m: m["layers"][1].update(size=m["layers"][1]["size"] + 1))
    size = good.layers[1]["size"]
    return f"size {size}, descriptor says {size + 1}"


def malformed_json(layout: Path, good: ib.Built) -> str:
    ib.replace_blob_bytes(layout, good.digest, b'{"schemaVersion": 2, "config": ')
    return "malformed JSON"


def unsupported_media_type(layout: Path, good: ib.Built) -> str:
    ib.rewrite_manifest(layout, lambda m: m["layers"][0].update(mediaType="application/x-nope"))
    return "unsupported media type application/x-nope for a layer"


@pytest.mark.parametrize(
    "damage", [corrupt_blob, wrong_size, malformed_json, unsupported_media_type]
)
def test_a_damaged_image_leaves_the_store_as_it_was(
    tmp_path: Path, inputs: dict[str, Any], damage: Callable[[Path, ib.Built], str]
) -> None:
    svc = seeded(tmp_path / "state", inputs)
    before = snapshot(svc.store.root)
    layout = layout_copy(inputs, tmp_path)
    why = damage(layout, inputs["good"])
    with pytest.raises(InvalidArgument, match=why):
        load(svc, ib.oci_archive(layout, tmp_path / "bad.tar"), name="bad:1")
    assert snapshot(svc.store.root) == before
    assert os.listdir(svc.store.ingest_dir) == []


def test_a_missing_platform_leaves_the_store_as_it_was(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    svc = seeded(tmp_path / "state", inputs)
    before = snapshot(svc.store.root)
    tar = ib.oci_archive(inputs["root"] / "multi", tmp_path / "multi.tar")
    with pytest.raises(NotFound, match="no manifest for linux/riscv64"):
        load(svc, tar, platform=Platform.parse("linux/riscv64"))
    assert snapshot(svc.store.root) == before
    assert os.listdir(svc.store.ingest_dir) == []


def test_a_tar_truncated_mid_blob_leaves_the_store_as_it_was(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    svc = seeded(tmp_path / "state", inputs)
    before = snapshot(svc.store.root)
    tar = tmp_path / "big.tar"
    tar.write_bytes(inputs["big_tar"].read_bytes())
    ib.truncate(tar, tar.stat().st_size * 2 // 3)  # inside the big layer
    with pytest.raises(InvalidArgument) as e:
        load(svc, tar, name="big:1")
    assert str(e.value) == (
        "load: archive is truncated (unexpected end of data); copy or save it again"
    )
    assert snapshot(svc.store.root) == before
    assert os.listdir(svc.store.ingest_dir) == []


# --- a full disk -------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_full_disk_while_staging_is_unavailable_and_changes_nothing(
    small_fs: Path, inputs: dict[str, Any]
) -> None:
    svc = seeded(small_fs, inputs)
    before = snapshot(svc.store.root)
    with pytest.raises(Unavailable) as e:
        load(svc, inputs["big_tar"], name="big:1")
    assert str(e.value) == (
        f"load: no space left on device in {small_fs}; free space or move VXN_STATE_DIR"
    )
    assert snapshot(svc.store.root) == before
    assert os.listdir(svc.store.ingest_dir) == []


def fill_disk(path: Path) -> int | None:
    """Write zeros until the filesystem is full; returns the errno that stopped it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        return e.errno
    finally:
        os.close(fd)


def test_a_full_disk_at_commit_rolls_the_new_blobs_back(
    small_fs: Path, inputs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = seeded(small_fs, inputs)
    layout = ib.Layout(tmp_path / "other")
    other = layout.add_image(ib.ImageSpec(marker="other"))
    layout.write_index([(other.manifest, {})])
    before = snapshot(svc.store.root)
    real = ContentStore.transaction

    def fill_then_commit(self: ContentStore, op: str, body: Any) -> Any:
        # Staging is done: fill the disk so that committing is what fails.
        assert fill_disk(small_fs / "filler") == errno.ENOSPC
        return real(self, op, body)

    monkeypatch.setattr(ContentStore, "transaction", fill_then_commit)
    try:
        with pytest.raises(Unavailable, match=r"^load: no space left on device in "):
            load(svc, ib.oci_archive(tmp_path / "other", tmp_path / "o.tar"), name="o:1")
    finally:
        (small_fs / "filler").unlink()
    assert snapshot(svc.store.root) == before
    assert os.listdir(svc.store.ingest_dir) == []


# --- processes: SIGKILL at random moments, and two writers at once -----------------------

CHURN = """
import sys, pathlib
from vxn.adapters.statedir import StateDir
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
svc = ImageService(StateDir(pathlib.Path(sys.argv[1])), Platform.parse("linux/amd64"))
n = 0
while True:
    for tar in sys.argv[2:]:
        with open(tar, "rb") as f:
            svc.load_sync(f, name=f"churn:{n}")
        n += 1
    svc.remove_sync(f"churn:{n - 1}", force=True)
    if sys.argv[0] == "once":
        break
"""

LOAD_ONCE = """
import sys, pathlib, time
from vxn.adapters.statedir import StateDir
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
svc = ImageService(StateDir(pathlib.Path(sys.argv[1])), Platform.parse("linux/amd64"))
while not pathlib.Path(sys.argv[3]).exists():
    time.sleep(0.001)
with open(sys.argv[2], "rb") as f:
    print(svc.load_sync(f, name="same:1")[0].id)
"""


def assert_consistent(store: ContentStore) -> Catalog:
    """Every blob hashes to its name; the metadata parses and names only present blobs."""
    present = set(store.blobs())
    for digest in present:
        with store.open_blob(digest) as f:
            assert hashlib.file_digest(f, "sha256").hexdigest() == digest.hex
    strays = [p for p in (store.blobs_dir / "sha256").iterdir() if p.name.startswith(".")]
    assert strays == []
    catalog = Catalog.from_json(store.read_metadata())
    assert catalog.referenced_blobs() <= present
    return catalog


def test_sigkill_at_random_moments_never_leaves_a_partial_blob(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    state = tmp_path / "state"
    svc = seeded(state, inputs)
    rng = random.Random(1234)
    tars = [str(inputs["good_tar"]), str(inputs["big_tar"])]
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", CHURN, str(state), *tars])
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        assert_consistent(svc.store)
    report = svc.prune_sync()
    assert os.listdir(svc.store.ingest_dir) == []
    assert list(svc.store.root.glob(".images.json.tmp*")) == []
    catalog = assert_consistent(svc.store)
    assert set(svc.store.blobs()) == catalog.referenced_blobs()
    assert report.reclaimed >= 0
    assert svc.inspect_sync("seed:1")["Id"] == inputs["good"].config_digest


def test_two_processes_loading_the_same_image_both_succeed(
    tmp_path: Path, inputs: dict[str, Any]
) -> None:
    state = tmp_path / "state"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", LOAD_ONCE, str(state), str(inputs["big_tar"]), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(0.5)  # both are waiting at the start line
    go.touch()
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [inputs["big"].config_digest] * 2
    svc = ImageService(StateDir(state), AMD64)
    catalog = assert_consistent(svc.store)
    assert set(svc.store.blobs()) == catalog.referenced_blobs()
    assert json.loads(svc.store.metadata_path.read_bytes())["refs"] == {
        "docker.io/library/same:1": inputs["big"].digest
    }
    assert os.listdir(svc.store.ingest_dir) == []


def test_errors_are_vxn_errors_only(tmp_path: Path, inputs: dict[str, Any]) -> None:
    svc = seeded(tmp_path / "state", inputs)
    tar = tmp_path / "t.tar"
    for cut in (0, 100, 512, 700, 1536, 10_000):
        tar.write_bytes(inputs["good_tar"].read_bytes()[:cut])
        with pytest.raises(VxnError):
            load(svc, tar)
