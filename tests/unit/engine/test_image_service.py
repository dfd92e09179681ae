"""The image service over a real content store in a temp dir, fed by the test builder."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib

from vxn.adapters.statedir import StateDir
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.engine.images import ImageService, ImageSummary, LoadedImage, PruneReport
from vxn.errors import FailedPrecondition, Internal, InvalidArgument, NotFound

AMD64 = Platform.parse("linux/amd64")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One of each input, built once: the builder is deterministic."""
    root = tmp_path_factory.mktemp("images")
    single = ib.simple_layout(root / "single")
    index, amd, arm = ib.multiarch_layout(root / "multi")
    layout = ib.Layout(root / "two")
    one = layout.add_image(ib.ImageSpec(marker="one"))
    two = layout.add_image(ib.ImageSpec(marker="two"))
    layout.write_index(
        [
            (one.manifest, {"io.containerd.image.name": "docker.io/library/one:1"}),
            (two.manifest, ib.ref_name("example.com/team/two:2")),
        ]
    )
    plain = ib.Layout(root / "plain").add_image(ib.ImageSpec(compression="", marker="p"))
    return {
        "root": root,
        "single": single,
        "single_tar": ib.oci_archive(root / "single", root / "single.tar", prefix="./"),
        "multi_tar": ib.oci_archive(root / "multi", root / "multi.tar", compress=True),
        "index": index,
        "amd": amd,
        "arm": arm,
        "two": (one, two),
        "two_tar": ib.oci_archive(root / "two", root / "two.tar"),
        "plain": plain,
    }


@pytest.fixture
def svc(tmp_path: Path) -> ImageService:
    return ImageService(StateDir(tmp_path / "state"), AMD64)


def load(svc: ImageService, path: Path, **kw: Any) -> list[LoadedImage]:
    with path.open("rb") as f:
        return svc.load_sync(f, **kw)


def snapshot(svc: ImageService) -> dict[str, bytes]:
    root = svc.store.root
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "ingest" not in p.parts
    }


# --- load: OCI layouts -----------------------------------------------------------------


def test_a_bare_tag_ref_name_leaves_the_image_unnamed(
    svc: ImageService, built: dict[str, Any]
) -> None:
    image = built["single"]
    assert load(svc, built["single_tar"]) == [LoadedImage(reference=None, id=image.config_digest)]
    assert svc.list_sync() == [
        ImageSummary(
            repository="<none>",
            tag="<none>",
            id=image.config_digest,
            manifest=image.digest,
            created=ib.CREATED,
            size=image.config["size"] + sum(d["size"] for d in image.layers),
        )
    ]
    assert sorted(map(str, svc.store.blobs())) == sorted(
        [image.digest, image.config_digest, *(d["digest"] for d in image.layers)]
    )
    assert list(svc.store.ingest_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "reference"),
    [("myapp", "docker.io/library/myapp:v1"), ("reg.io:5000/x/app:7", "reg.io:5000/x/app:7")],
)
def test_name_gives_a_repository_to_a_bare_tag_or_names_the_image(
    svc: ImageService, built: dict[str, Any], name: str, reference: str
) -> None:
    got = load(svc, built["single_tar"], name=name)
    assert got == [LoadedImage(reference=reference, id=built["single"].config_digest)]
    assert svc.inspect_sync(reference)["Manifest"] == built["single"].digest


def test_names_come_from_containerd_and_full_ref_name_annotations(
    svc: ImageService, built: dict[str, Any]
) -> None:
    one, two = built["two"]
    assert load(svc, built["two_tar"]) == [
        LoadedImage(reference="docker.io/library/one:1", id=one.config_digest),
        LoadedImage(reference="example.com/team/two:2", id=two.config_digest),
    ]
    assert [(r.repository, r.tag) for r in svc.list_sync()] == [
        ("example.com/team/two", "2"),
        ("one", "1"),
    ]


def test_a_tagged_name_needs_a_one_image_archive(svc: ImageService, built: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as e:
        load(svc, built["two_tar"], name="x:1")
    assert str(e.value) == (
        "load: --name x:1 with a tag needs an archive holding one image (it has 2)"
    )
    assert svc.list_sync() == []


def test_a_digest_cannot_be_a_load_name(svc: ImageService, built: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument, match=r"^load: --name x@sha256:.*give REPO or REPO:TAG"):
        load(svc, built["single_tar"], name="x@sha256:" + "a" * 64)


def test_an_index_resolves_to_the_dom0_platform(svc: ImageService, built: dict[str, Any]) -> None:
    amd = built["amd"]
    assert load(svc, built["multi_tar"], name="multi") == [
        LoadedImage(reference="docker.io/library/multi:multi", id=amd.config_digest)
    ]
    doc = svc.inspect_sync("multi:multi")
    assert (doc["Architecture"], doc["Variant"]) == ("amd64", "")
    assert doc["Manifest"] == amd.digest
    assert doc["Index"] == built["index"]["digest"]
    arm = built["arm"]
    assert not svc.store.has_blob(ib_digest(arm.config_digest))


def test_platform_picks_another_entry(svc: ImageService, built: dict[str, Any]) -> None:
    load(svc, built["multi_tar"], name="m:arm", platform=Platform.parse("linux/arm64"))
    doc = svc.inspect_sync("m:arm")
    assert (doc["Architecture"], doc["Variant"], doc["Id"]) == (
        "arm64",
        "v8",
        built["arm"].config_digest,
    )


def test_a_missing_platform_is_not_found(svc: ImageService, built: dict[str, Any]) -> None:
    with pytest.raises(NotFound) as e:
        load(svc, built["multi_tar"], platform=Platform.parse("linux/s390x"))
    assert str(e.value) == (
        f"load: index {built['index']['digest']}: no manifest for linux/s390x in the index "
        "(it has: linux/amd64, linux/arm64/v8); pick one with --platform"
    )


def test_a_second_bad_image_makes_the_whole_load_fail(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    layout = ib.copy_layout(built["root"] / "two", tmp_path / "two")
    _, two = built["two"]
    ib.flip_byte(layout / "blobs" / "sha256" / two.layers[1]["digest"].removeprefix("sha256:"))
    load(svc, built["single_tar"])
    before = snapshot(svc)
    with pytest.raises(InvalidArgument, match="digest mismatch"):
        load(svc, ib.oci_archive(layout, tmp_path / "two.tar"))
    assert snapshot(svc) == before


def test_diff_ids_must_match_the_layer_count(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    layout = ib.copy_layout(built["root"] / "single", tmp_path / "l")
    doc = ib.rewrite_manifest(layout, lambda m: m["layers"].pop())
    with pytest.raises(InvalidArgument) as e:
        load(svc, ib.oci_archive(layout, tmp_path / "l.tar"))
    assert str(e.value) == (
        f"load: image {doc['config']['digest']}: the config lists 2 diff_ids for 1 layers; "
        "the image is malformed"
    )


def test_an_index_json_entry_of_another_kind_is_refused(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    layout = ib.copy_layout(built["root"] / "single", tmp_path / "l")
    index = json.loads((layout / "index.json").read_bytes())
    index["manifests"][0]["mediaType"] = "application/vnd.example.thing"
    (layout / "index.json").write_bytes(json.dumps(index).encode())
    with pytest.raises(InvalidArgument) as e:
        load(svc, ib.oci_archive(layout, tmp_path / "l.tar"))
    assert str(e.value) == (
        f"load: index.json entry {built['single'].digest}: unsupported media type "
        "application/vnd.example.thing; vxn loads container images"
    )


def test_an_archive_of_neither_kind_is_refused(svc: ImageService, tmp_path: Path) -> None:
    tar = tmp_path / "x.tar"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hello").write_bytes(b"hi")
    ib.oci_archive(tmp_path / "d", tar)
    with pytest.raises(InvalidArgument, match=r"^load: the archive has neither index.json"):
        load(svc, tar)


# --- load: docker-archives -------------------------------------------------------------


def test_a_docker_archive_loads_with_shared_and_symlinked_layers(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    one, two = built["two"]
    tar = ib.docker_archive(tmp_path / "d.tar", [(one, ["alpine:3.20"]), (two, ["me/two"])])
    assert load(svc, tar) == [
        LoadedImage(reference="docker.io/library/alpine:3.20", id=one.config_digest),
        LoadedImage(reference="docker.io/me/two:latest", id=two.config_digest),
    ]
    doc = svc.inspect_sync("alpine:3.20")
    assert doc["RootFS"]["Layers"] == one.diff_ids
    assert [(x["Digest"], x["MediaType"]) for x in doc["Layers"]] == [
        (d, "application/vnd.oci.image.layer.v1.tar") for d in one.diff_ids
    ]
    manifest = svc.store.read_blob(ib_digest(doc["Manifest"]), 1 << 20)
    assert manifest == ib.canonical(json.loads(manifest))  # stored deterministically
    assert ib.sha256(manifest) == doc["Manifest"]


def test_docker_names_fall_back_to_repositories(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    one, _ = built["two"]
    tar = ib.docker_archive(tmp_path / "d.tar", [(one, ["legacy/name:old"])])
    _strip_repo_tags(tar, tmp_path)
    assert load(svc, tar) == [
        LoadedImage(reference="docker.io/legacy/name:old", id=one.config_digest)
    ]


def test_name_names_a_lone_unnamed_image_repo_latest(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    one, _ = built["two"]
    tar = ib.docker_archive(tmp_path / "d.tar", [(one, [])], repositories=False)
    assert load(svc, tar, name="solo") == [
        LoadedImage(reference="docker.io/library/solo:latest", id=one.config_digest)
    ]


def test_gzip_layers_in_a_docker_archive_are_verified_uncompressed(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    one, _ = built["two"]
    gz = ib.Built(
        one.manifest,
        one.config,
        one.config_bytes,
        one.layers,
        [ib.gzip_bytes(t) for t in one.layer_tars],
        one.diff_ids,
    )
    load(svc, ib.docker_archive(tmp_path / "d.tar", [(gz, ["gz:1"])]))
    layers = svc.inspect_sync("gz:1")["Layers"]
    assert [x["MediaType"] for x in layers] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2


def test_a_docker_layer_that_does_not_match_its_diff_id_is_refused(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    one, _ = built["two"]
    bad = ib.Built(
        one.manifest,
        one.config,
        one.config_bytes,
        one.layers,
        [one.layer_tars[0], one.layer_tars[0]],
        one.diff_ids,
    )
    with pytest.raises(InvalidArgument) as e:
        load(svc, ib.docker_archive(tmp_path / "d.tar", [(bad, ["x:1"])]))
    assert str(e.value).endswith(
        f"content is {one.diff_ids[0]}, the config's diff_id says {one.diff_ids[1]}; "
        "the archive is corrupt"
    )
    assert svc.list_sync() == []


def test_a_docker_25_save_loads_through_its_oci_layout(
    svc: ImageService, built: dict[str, Any], tmp_path: Path
) -> None:
    layout = ib.Layout(tmp_path / "l")
    image = layout.add_image(ib.ImageSpec(compression=""))
    layout.write_index(
        [
            (
                image.manifest,
                {"io.containerd.image.name": "docker.io/library/new:25"} | ib.ref_name("25"),
            )
        ]
    )
    tar = ib.docker_oci_archive(tmp_path / "l", tmp_path / "d.tar", image, ["new:25"])
    assert load(svc, tar) == [
        LoadedImage(reference="docker.io/library/new:25", id=image.config_digest)
    ]
    assert svc.inspect_sync("new:25")["Manifest"] == image.digest  # the OCI manifest, as is


def test_malformed_manifest_json_is_one_clear_line(svc: ImageService, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_bytes(b"[{")
    with pytest.raises(InvalidArgument) as e:
        load(svc, ib.oci_archive(tmp_path / "d", tmp_path / "d.tar"))
    assert str(e.value).startswith("load: manifest.json: malformed JSON (Expecting")
    assert "\n" not in str(e.value)


# --- list, inspect, tag ----------------------------------------------------------------


def test_inspect_is_docker_shaped(svc: ImageService, built: dict[str, Any]) -> None:
    image = built["single"]
    load(svc, built["single_tar"], name="alpine:latest")
    assert svc.inspect_sync("alpine") == {
        "Id": image.config_digest,
        "RepoTags": ["alpine:latest"],
        "RepoDigests": [f"alpine@{image.digest}"],
        "Created": ib.CREATED,
        "Os": "linux",
        "Architecture": "amd64",
        "Variant": "",
        "Size": image.config["size"] + sum(d["size"] for d in image.layers),
        "Config": {
            "Entrypoint": ["/bin/busybox"],
            "Cmd": ["sh", "-c", "echo hello"],
            "Env": ["PATH=/usr/bin:/bin", "VXN_TEST=1"],
            "WorkingDir": "/data",
            "User": "1000:1000",
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
            "Labels": {"org.example.test": "yes"},
            "StopSignal": "SIGTERM",
        },
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Manifest": image.digest,
        "Index": None,
        "Layers": [
            {"Digest": d["digest"], "MediaType": d["mediaType"], "Size": d["size"]}
            for d in image.layers
        ],
        "Rootfs": {
            "Built": False,
            "Path": None,
            "Size": None,
            "Key": f"{image.digest.replace(':', '-')}.f1.create.ext4",
        },
    }


def test_inspect_finds_ids_and_digests_full_and_short(
    svc: ImageService, built: dict[str, Any]
) -> None:
    image = built["single"]
    load(svc, built["single_tar"], name="a:1")
    config_hex = image.config_digest.removeprefix("sha256:")
    for text in (
        image.config_digest,
        config_hex,
        config_hex[:4],
        "sha256:" + config_hex[:12],
        image.digest,
        image.digest.removeprefix("sha256:")[:8],
        f"a@{image.digest}",
        "docker.io/library/a:1",
    ):
        assert svc.inspect_sync(text)["Id"] == image.config_digest, text


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [
        ("nope", NotFound, "image nope: no such image; see `vxn images`, or load or pull it"),
        (
            "sha256:12",
            InvalidArgument,
            "image id 'sha256:12': want sha256:<4 to 64 lowercase hex digits>",
        ),
        (
            "Bad Name",
            InvalidArgument,
            'invalid reference "Bad Name": repository name must be lowercase',
        ),
    ],
)
def test_inspect_errors(
    svc: ImageService, built: dict[str, Any], text: str, kind: type[Exception], message: str
) -> None:
    load(svc, built["single_tar"], name="a:1")
    with pytest.raises(kind) as e:
        svc.inspect_sync(text)
    assert str(e.value) == message


def test_tag_adds_a_name_and_moving_a_name_leaves_a_dangling_image(
    svc: ImageService, built: dict[str, Any]
) -> None:
    one, two = built["two"]
    load(svc, built["two_tar"])
    svc.tag_sync("one:1", "shared:x")
    assert svc.inspect_sync("one:1")["RepoTags"] == ["one:1", "shared:x"]
    svc.tag_sync("example.com/team/two:2", "one:1")
    rows = {(r.repository, r.tag): r.id for r in svc.list_sync()}
    assert rows == {
        ("shared", "x"): one.config_digest,
        ("one", "1"): two.config_digest,
        ("example.com/team/two", "2"): two.config_digest,
    }
    with pytest.raises(InvalidArgument, match=r"^tag x@sha256:.*: a tag cannot hold a digest"):
        svc.tag_sync("one:1", "x@sha256:" + "b" * 64)


# --- remove and prune ------------------------------------------------------------------


def test_remove_by_name_untags_then_deletes_with_unshared_blobs(
    svc: ImageService, built: dict[str, Any]
) -> None:
    one, two = built["two"]
    load(svc, built["two_tar"])
    svc.tag_sync("one:1", "alias:1")
    assert svc.remove_sync("alias:1") == ["Untagged: alias:1"]
    assert svc.remove_sync("one:1") == ["Untagged: one:1", f"Deleted: {one.config_digest}"]
    shared = one.layers[0]["digest"]  # both images have the same base layer
    assert shared == two.layers[0]["digest"]
    assert svc.store.has_blob(ib_digest(shared))
    assert not svc.store.has_blob(ib_digest(one.layers[1]["digest"]))
    assert not svc.store.has_blob(ib_digest(one.digest))
    assert [r.tag for r in svc.list_sync()] == ["2"]


def test_remove_by_id_refuses_several_names_unless_forced(
    svc: ImageService, built: dict[str, Any]
) -> None:
    image = built["single"]
    load(svc, built["single_tar"], name="a:1")
    svc.tag_sync("a:1", "b:2")
    with pytest.raises(FailedPrecondition) as e:
        svc.remove_sync(image.config_digest[:15])
    assert str(e.value) == (
        f"image {image.config_digest} is referenced in 2 names (a:1, b:2); "
        "remove them by name or use -f"
    )
    assert svc.remove_sync(image.config_digest[:15], force=True) == [
        "Untagged: a:1",
        "Untagged: b:2",
        f"Deleted: {image.config_digest}",
    ]
    assert svc.store.blobs() == []


def test_remove_refuses_an_image_in_use_unless_forced(
    svc: ImageService, built: dict[str, Any]
) -> None:
    image = built["single"]
    load(svc, built["single_tar"], name="alpine:latest")
    record = svc.state.containers / "0123abcd"
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps({"name": "web1", "image": image.digest}))
    with pytest.raises(FailedPrecondition) as e:
        svc.remove_sync("alpine")
    assert str(e.value) == (
        "image alpine:latest is in use by container web1; stop and remove it first or use -f"
    )
    assert svc.remove_sync("alpine", force=True)[-1] == f"Deleted: {image.config_digest}"


def test_prune_removes_dangling_images_stray_blobs_and_dead_staging(
    svc: ImageService, built: dict[str, Any]
) -> None:
    one, two = built["two"]
    load(svc, built["two_tar"])
    load(svc, built["single_tar"])  # unnamed
    svc.tag_sync("example.com/team/two:2", "one:1")  # image one is now dangling
    record = svc.state.containers / "c1"
    record.mkdir(parents=True)
    (record / "config.json").write_text(json.dumps({"image": built["single"].digest}))
    stale = svc.store.ingest_dir / "feedface"
    stale.mkdir()
    (stale / "1").write_bytes(b"s" * 7)
    (svc.store.ingest_dir / "feedface.lock").touch()
    stray = svc.store.blobs_dir / "sha256" / ("0" * 64)
    stray.write_bytes(b"xyz")
    gone = sorted({one.digest, one.config_digest, one.layers[1]["digest"], "sha256:" + "0" * 64})
    freed = sum(svc.store.blob_path(ib_digest(d)).stat().st_size for d in gone) + 7
    assert svc.prune_sync() == PruneReport(deleted=gone, reclaimed=freed)
    assert {r.manifest for r in svc.list_sync()} == {two.digest, built["single"].digest}
    assert list(svc.store.ingest_dir.iterdir()) == []
    assert svc.prune_sync() == PruneReport(deleted=[], reclaimed=0)


def test_store_size_counts_the_content_dir(svc: ImageService, built: dict[str, Any]) -> None:
    load(svc, built["single_tar"])
    files = [p for p in svc.store.root.rglob("*") if p.is_file()]
    assert svc.store_size_sync() == sum(p.stat().st_size for p in files)
    assert svc.store_size_sync() > built["single_tar"].stat().st_size // 2


def test_corrupt_metadata_is_internal_and_names_the_file(svc: ImageService) -> None:
    svc.store.ensure()
    svc.store.metadata_path.write_bytes(b"{not json")
    with pytest.raises(Internal) as e:
        svc.list_sync()
    assert str(e.value).startswith(f"{svc.store.metadata_path}: image metadata is corrupt (")
    assert str(e.value).endswith(f"; restore it or remove {svc.store.root}")


async def test_the_async_api_runs_the_same_cores(svc: ImageService, built: dict[str, Any]) -> None:
    data = built["single_tar"].read_bytes()
    loaded = await svc.load(io.BytesIO(data), name="x")
    assert loaded == [
        LoadedImage(reference="docker.io/library/x:v1", id=built["single"].config_digest)
    ]
    await svc.tag("x:v1", "y:1")
    assert [r.repository for r in await svc.list()] == ["x", "y"]
    assert (await svc.inspect("y:1"))["Id"] == built["single"].config_digest
    assert await svc.remove("y:1") == ["Untagged: y:1"]
    assert await svc.prune() == PruneReport(deleted=[], reclaimed=0)
    assert await svc.store_size() == svc.store_size_sync()


# --- helpers ---------------------------------------------------------------------------


def ib_digest(text: str) -> Digest:
    return Digest.parse(text)


def _strip_repo_tags(tar: Path, tmp_path: Path) -> None:
    """Rewrite a docker-archive with RepoTags null, as old `docker save <id>` did."""
    out = tmp_path / "stripped.tar"
    with tarfile.open(tar) as src, tarfile.open(out, "w") as dst:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isreg() else None
            if m.name == "manifest.json" and f is not None:
                doc = json.loads(f.read())
                f.close()
                for entry in doc:
                    entry["RepoTags"] = None
                data = json.dumps(doc).encode()
                m.size = len(data)
                f = io.BytesIO(data)  # type: ignore[assignment]
            dst.addfile(m, f)
            if f is not None:
                f.close()
    out.replace(tar)
