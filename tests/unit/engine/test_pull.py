"""Pulls and `ensure` through the image service, against the fake registry (which keeps
the real client's contract): resolution, reuse, naming, all-or-nothing commits."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib

from vxn.adapters.registry import Endpoint
from vxn.adapters.statedir import StateDir
from vxn.config import RegistrySettings
from vxn.core.credentials import Credentials
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
from vxn.engine.pull import PullConfig, PullEvent, PullOptions
from vxn.errors import InvalidArgument, NotFound, Unavailable
from vxn.testing.fake_registry import FakeRegistry

AMD64 = Platform.parse("linux/amd64")
REPO = "reg.example/team/app"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pull-layout")
    layout = ib.Layout(root)
    v1 = layout.add_image(ib.ImageSpec(marker="one"))
    v2 = layout.add_image(ib.ImageSpec(marker="two"))  # shares layer 1 with v1
    arm = layout.add_image(ib.ImageSpec(arch="arm64", variant="v8", marker="one"))
    index = layout.add_index([v1, arm])
    names = [(v1.manifest, "v1"), (v2.manifest, "v2"), (index, "multi")]
    layout.write_index([(desc, ib.ref_name(tag)) for desc, tag in names])
    return {"root": root, "v1": v1, "v2": v2, "arm": arm, "index": index}


@pytest.fixture
def fake(layout: dict[str, Any]) -> FakeRegistry:
    return FakeRegistry.from_layout(layout["root"])


def service(tmp_path: Path, fake: FakeRegistry, **config: Any) -> ImageService:
    pull = PullConfig(connect=fake.connect, **config)
    return ImageService(StateDir(tmp_path / "state"), AMD64, pull=pull)


def snapshot(svc: ImageService) -> dict[str, bytes]:
    root = svc.store.root
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "lock"
    }


def digests(built: ib.Built) -> list[Digest]:
    return [Digest.parse(d["digest"]) for d in [built.config, *built.layers]]


def test_a_pull_commits_the_image_under_its_name(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    events: list[PullEvent] = []
    result = svc.pull_sync(f"{REPO}:v1", progress=events.append)
    v1 = layout["v1"]
    assert result.to_json() == {
        "reference": f"{REPO}:v1",
        "digest": v1.digest,
        "manifest": v1.digest,
        "id": v1.config_digest,
        "up_to_date": False,
    }
    assert sorted(fake.fetched, key=str) == sorted(digests(v1), key=str)
    assert svc.inspect_sync(f"{REPO}:v1")["Id"] == v1.config_digest
    assert events[0] == PullEvent(id="v1", status="Pulling from team/app")
    layers = [Digest.parse(d["digest"]).short for d in v1.layers]
    assert [e.id for e in events if e.status == "Waiting"] == layers
    assert sorted(e.id for e in events if e.status == "Download complete") == sorted(layers)
    assert svc.pull_sync(f"{REPO}:v1").up_to_date


def test_blobs_the_store_has_are_not_downloaded(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    svc.pull_sync(f"{REPO}:v1")
    fake.fetched.clear()
    events: list[PullEvent] = []
    svc.pull_sync(f"{REPO}:v2", progress=events.append)
    v2 = layout["v2"]
    shared = Digest.parse(v2.layers[0]["digest"])
    assert shared == Digest.parse(layout["v1"].layers[0]["digest"])
    assert sorted(fake.fetched, key=str) == sorted(set(digests(v2)) - {shared}, key=str)
    assert PullEvent(id=shared.short, status="Already exists", total=v2.layers[0]["size"]) in events


def test_an_index_is_followed_to_the_platform(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    arm = svc.pull_sync(f"{REPO}:multi", platform=Platform.parse("linux/arm64/v8"))
    assert (str(arm.digest), str(arm.manifest)) == (layout["index"]["digest"], layout["arm"].digest)
    assert svc.inspect_sync(str(arm.manifest))["Index"] == layout["index"]["digest"]
    with pytest.raises(NotFound, match=r"no manifest for linux/riscv64 in the index"):
        svc.pull_sync(f"{REPO}:multi", platform=Platform.parse("linux/riscv64"))


def test_a_corrupt_blob_leaves_the_store_and_staging_as_they_were(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    svc.pull_sync(f"{REPO}:v1")
    before = snapshot(svc)
    bad = Digest.parse(layout["v2"].layers[1]["digest"])
    fake.corrupt(bad)
    with pytest.raises(InvalidArgument, match=f"pull {REPO}:v2: blob {bad}: digest mismatch"):
        svc.pull_sync(f"{REPO}:v2")
    assert snapshot(svc) == before


def test_a_config_that_disagrees_with_its_manifest_is_refused(
    tmp_path: Path, layout: dict[str, Any]
) -> None:
    root = shutil.copytree(layout["root"], tmp_path / "layout")
    ib.rewrite_manifest(root, lambda doc: doc["layers"].pop())
    svc = service(tmp_path, FakeRegistry.from_layout(root))
    with pytest.raises(
        InvalidArgument, match="lists 2 diff_ids for 1 layers; the image is malformed"
    ):
        svc.pull_sync(f"{REPO}:v1")
    assert not svc.list_sync()


def test_a_reused_blob_pruned_mid_pull_fails_the_commit(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    svc.pull_sync(f"{REPO}:v1")
    shared = Digest.parse(layout["v1"].layers[0]["digest"])

    class Pruning(FakeRegistry):
        def close(self) -> None:  # after the downloads, before the commit
            svc.store.blob_path(shared).unlink()

    racing = Pruning(fake.tags, fake.blobs)
    svc.puller.config = PullConfig(connect=racing.connect)
    with pytest.raises(Unavailable, match=f"blob {shared} was removed while pulling"):
        svc.pull_sync(f"{REPO}:v2")
    assert [r.tag for r in svc.list_sync()] == ["v1"]


def test_a_pull_by_digest_is_named_by_digest(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    ref = f"{REPO}:ignored@{layout['v1'].digest}"
    named = f"{REPO}@{layout['v1'].digest}"
    assert svc.pull_sync(ref).reference == named
    assert svc.ensure_sync(named, "never") == Digest.parse(layout["v1"].digest)
    assert [(r.repository, r.tag) for r in svc.list_sync()] == [(REPO, "<none>")]


def test_ensure_pulls_as_the_policy_says(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    ref, v1 = f"{REPO}:v1", Digest.parse(layout["v1"].digest)
    with pytest.raises(NotFound, match=f"image {ref}: not in the store, and --pull=never"):
        svc.ensure_sync(ref, "never")
    assert svc.ensure_sync(ref, "missing") == v1
    fetched = len(fake.fetched)
    assert svc.ensure_sync(ref, "missing") == v1
    assert svc.ensure_sync(ref, "never") == v1
    assert len(fake.endpoints) == 1  # nothing asked the registry
    assert svc.ensure_sync(ref, "always") == v1
    assert (len(fake.endpoints), len(fake.fetched)) == (2, fetched)  # asked; no blob moved
    with pytest.raises(InvalidArgument, match="--pull sometimes: want always, missing, never"):
        svc.ensure_sync(ref, "sometimes")


@pytest.mark.parametrize("tag", ["v1", "multi"])
def test_pull_always_of_a_stored_image_gets_no_manifest(
    tmp_path: Path, fake: FakeRegistry, tag: str
) -> None:
    svc = service(tmp_path, fake)
    ref = f"{REPO}:{tag}"
    pulled = svc.ensure_sync(ref, "missing")
    gets, fetched = len(fake.manifests), len(fake.fetched)
    assert svc.ensure_sync(ref, "always") == pulled
    assert svc.pull_sync(ref).up_to_date
    assert (len(fake.manifests), len(fake.fetched)) == (gets, fetched)
    assert fake.heads == [tag, tag, tag]


def test_a_registry_that_says_no_digest_on_head_is_asked_with_get(
    tmp_path: Path, fake: FakeRegistry
) -> None:
    fake.head_digests = False
    svc = service(tmp_path, fake)
    svc.pull_sync(f"{REPO}:v1")
    assert svc.pull_sync(f"{REPO}:v1").up_to_date
    assert fake.manifests == ["v1", "v1"]


def test_a_pull_by_digest_of_a_stored_image_asks_the_registry_nothing(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    svc.pull_sync(f"{REPO}:v1")
    assert (
        svc.pull_sync(f"{REPO}@{layout['v1'].digest}").manifest
        == svc.pull_sync(f"{REPO}:v1").manifest
    )
    assert (fake.manifests, fake.heads) == (["v1"], ["v1", "v1"])


def test_ensure_missing_pulls_when_the_stored_image_is_another_platform(
    tmp_path: Path, fake: FakeRegistry, layout: dict[str, Any]
) -> None:
    svc = service(tmp_path, fake)
    ref, arm = f"{REPO}:multi", Platform.parse("linux/arm64/v8")
    amd64 = svc.ensure_sync(ref, "missing")
    assert amd64 == Digest.parse(layout["v1"].digest)
    with pytest.raises(NotFound, match=r"the stored one is not linux/arm64/v8, and --pull=never"):
        svc.ensure_sync(ref, "never", platform=arm)
    assert svc.ensure_sync(ref, "missing", platform=arm) == Digest.parse(layout["arm"].digest)
    assert len(fake.endpoints) == 2
    assert svc.ensure_sync(ref, "missing", platform=arm) == Digest.parse(layout["arm"].digest)
    assert len(fake.endpoints) == 2  # now stored: nothing asked the registry


async def test_the_async_api_runs_the_same_cores(tmp_path: Path, fake: FakeRegistry) -> None:
    svc = service(tmp_path, fake)
    pulled = await svc.pull(f"{REPO}:v1")
    assert await svc.ensure(f"{REPO}:v1", "never") == pulled.manifest


def test_the_endpoint_comes_from_the_config_and_the_options(
    tmp_path: Path, fake: FakeRegistry
) -> None:
    registries = {"reg.example": RegistrySettings(insecure=True)}
    svc = service(tmp_path, fake, registries=registries)
    creds = Credentials(username="u", password="p")
    svc.pull_sync(f"{REPO}:v1", options=PullOptions(credentials=creds))
    svc.pull_sync(f"{REPO}:v1", options=PullOptions(tls_verify=True, cert_dir=tmp_path))
    svc.pull_sync("other.example/x:v1", options=PullOptions(tls_verify=False))
    assert fake.endpoints == [
        Endpoint(host="reg.example", insecure=True, credentials=creds),
        Endpoint(host="reg.example", insecure=False, cert_dir=tmp_path),
        Endpoint(host="other.example", insecure=True),
    ]


def test_docker_hub_names_reach_its_registry_host(tmp_path: Path, fake: FakeRegistry) -> None:
    svc = service(tmp_path, fake)
    fake.tags["latest"] = fake.tags["v1"]
    assert svc.pull_sync("app").reference == "docker.io/library/app:latest"
    assert fake.endpoints[-1].host == "registry-1.docker.io"
