"""Loading what real tools write (skopeo), and umoci as an oracle for the test builder."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib

from vxn.adapters.statedir import StateDir
from vxn.core.platform import Platform
from vxn.engine.images import ImageService, LoadedImage

pytestmark = pytest.mark.integration
AMD64 = Platform.parse("linux/amd64")


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    return ImageService(StateDir(tmp_path / "state"), AMD64)


def load(svc: ImageService, path: Path, **kw: Any) -> list[LoadedImage]:
    with path.open("rb") as f:
        return svc.load_sync(f, **kw)


def test_umoci_unpacks_the_builders_layout_as_intended(tmp_path: Path) -> None:
    ib.simple_layout(tmp_path / "layout")
    run("umoci", "unpack", "--image", f"{tmp_path / 'layout'}:v1", str(tmp_path / "bundle"))
    rootfs = tmp_path / "bundle" / "rootfs"
    assert not (rootfs / "etc" / "toremove").exists()  # whiteout applied
    assert sorted(os.listdir(rootfs / "opt" / "opaque")) == ["c"]  # opaque dir applied
    assert (rootfs / "data" / "hl-dst").stat().st_nlink == 2
    assert (rootfs / "data" / "hl-dst").stat().st_ino == (rootfs / "data" / "hl-src").stat().st_ino
    assert os.readlink(rootfs / "usr" / "local" / "bin" / "hello") == "/bin/busybox"
    assert os.readlink(rootfs / "data" / "rel-link") == "../etc/hostname"
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert stat.S_IMODE((rootfs / "data" / "setuid").stat().st_mode) == 0o4755
    assert stat.S_ISCHR((rootfs / "dev" / "null").lstat().st_mode)
    assert os.getxattr(rootfs / "data" / "with-xattr", "user.vxn") == b"hello"
    assert (rootfs / "bin" / "busybox").read_bytes() == ib.BUSYBOX.read_bytes()
    assert (rootfs / "etc" / "motd").read_bytes() == b"welcome to vxn test image\n"


def test_a_layout_converted_to_docker_media_types_by_skopeo_loads(
    svc: ImageService, tmp_path: Path
) -> None:
    image = ib.simple_layout(tmp_path / "oci")
    run(
        "skopeo",
        "copy",
        "--format",
        "v2s2",
        f"oci:{tmp_path / 'oci'}:v1",
        f"oci:{tmp_path / 'd'}:v1",
    )
    tar = ib.oci_archive(tmp_path / "d", tmp_path / "d.tar")
    assert load(svc, tar, name="docker/media") == [
        LoadedImage(reference="docker.io/docker/media:v1", id=image.config_digest)
    ]
    doc = svc.inspect_sync("docker/media:v1")
    assert doc["Manifest"] != image.digest  # skopeo rewrote the manifest
    assert [x["MediaType"] for x in doc["Layers"]] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ] * 2
    assert [x["Digest"] for x in doc["Layers"]] == [d["digest"] for d in image.layers]
    assert doc["RootFS"]["Layers"] == image.diff_ids


def test_skopeos_oci_archive_of_a_multi_arch_index_picks_the_platform(
    tmp_path: Path,
) -> None:
    index, amd, arm = ib.multiarch_layout(tmp_path / "multi")
    tar = tmp_path / "multi.tar"
    run("skopeo", "copy", "--all", f"oci:{tmp_path / 'multi'}:multi", f"oci-archive:{tar}:multi")
    default = ImageService(StateDir(tmp_path / "s1"), AMD64)
    assert load(default, tar, name="m") == [
        LoadedImage(reference="docker.io/library/m:multi", id=amd.config_digest)
    ]
    assert default.inspect_sync("m:multi")["Index"] == index["digest"]
    other = ImageService(StateDir(tmp_path / "s2"), AMD64)
    arm64 = Platform.parse("linux/arm64/v8")
    assert load(other, tar, name="m", platform=arm64) == [
        LoadedImage(reference="docker.io/library/m:multi", id=arm.config_digest)
    ]
    doc = other.inspect_sync("m:multi")
    assert (doc["Architecture"], doc["Variant"]) == ("arm64", "v8")


def test_a_gzipped_layout_tar_and_a_docker_archive_load(svc: ImageService, tmp_path: Path) -> None:
    image = ib.simple_layout(tmp_path / "l", name="")
    gz = ib.oci_archive(tmp_path / "l", tmp_path / "l.tar.gz", compress=True)
    assert load(svc, gz, name="gz:1") == [
        LoadedImage(reference="docker.io/library/gz:1", id=image.config_digest)
    ]
    docker = ib.docker_archive(tmp_path / "d.tar", [(image, ["localhost:5000/app:2"])])
    assert load(svc, docker) == [
        LoadedImage(reference="localhost:5000/app:2", id=image.config_digest)
    ]
    assert {(r.repository, r.tag) for r in svc.list_sync()} == {
        ("gz", "1"),
        ("localhost:5000/app", "2"),
    }
