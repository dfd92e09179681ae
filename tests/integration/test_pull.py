"""Pulls through the image service from a real docker-registry, directly or through the
loopback proxy that injects faults. Every failure leaves the store as it was."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from data.registries import Images

from vxn.adapters import registry_client
from vxn.adapters.statedir import StateDir
from vxn.config import PullSettings, RegistrySettings
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.engine.images import ImageService
from vxn.engine.pull import PullConfig, PullEvent
from vxn.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, VxnError
from vxn.testing.registry import LocalRegistry, free_port
from vxn.testing.registry_proxy import RegistryProxy

pytestmark = pytest.mark.integration
AMD64 = Platform.parse("linux/amd64")
# Short enough for a fast suite, long enough for a busy machine.
LIMITS = PullSettings(
    connect_timeout=2, read_timeout=2, blob_timeout=5, attempts=2, retry_delay=0.01
)


def service(tmp_path: Path, host: str, limits: PullSettings = LIMITS) -> ImageService:
    pull = PullConfig(settings=limits, registries={host: RegistrySettings(insecure=True)})
    return ImageService(StateDir(tmp_path / "state"), AMD64, pull=pull)


def snapshot(svc: ImageService) -> dict[str, bytes]:
    """Everything visible in the store (staging is not)."""
    root = svc.store.root
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "ingest" and p.name != "lock"
    }


def fails(svc: ImageService, ref: str, kind: type[VxnError], *parts: str) -> str:
    """Pull, expect `kind` with every part in its one-line message, and no change."""
    before = snapshot(svc)
    with pytest.raises(kind) as info:
        svc.pull_sync(ref)
    message = str(info.value)
    assert message.startswith(f"pull {ref}: "), message
    assert "\n" not in message
    for part in parts:
        assert part in message, message
    assert snapshot(svc) == before
    return message


def blob_path(digest: str) -> str:
    return f"/blobs/{digest}"


# --- what a pull gives -----------------------------------------------------------------


@pytest.mark.parametrize("tag", ["v1", "docker-v1"])
def test_oci_and_docker_images_pull_verified_and_named(
    tmp_path: Path, open_registry: LocalRegistry, images: Images, tag: str
) -> None:
    svc = service(tmp_path, open_registry.host)
    ref = f"{open_registry.host}/vxn/test:{tag}"
    events: list[PullEvent] = []
    result = svc.pull_sync(ref, progress=events.append)
    assert (result.reference, result.up_to_date) == (ref, False)
    assert str(result.id) == images.v1.config_digest
    if tag == "v1":
        assert str(result.digest) == images.v1.digest
    for d in images.v1.layers:
        assert svc.store.has_blob(Digest.parse(d["digest"]))
    assert svc.inspect_sync(ref)["RepoTags"] == [ref]
    assert events[0] == PullEvent(id=tag, status="Pulling from vxn/test")
    assert events[-1].status == "Download complete"


def test_the_disk_starts_writing_a_blob_while_it_arrives(
    tmp_path: Path, open_registry: LocalRegistry, images: Images, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync = registry_client._sync_file_range()
    assert sync is not None  # glibc has it
    calls: dict[str, list[tuple[int, int]]] = {}

    def record(fd: int, offset: int, length: int, flags: int) -> int:
        calls.setdefault(os.readlink(f"/proc/self/fd/{fd}"), []).append((offset, length))
        return sync(fd, offset, length, flags)

    monkeypatch.setattr(registry_client, "WRITEBACK_STEP", 1024)
    monkeypatch.setattr(registry_client, "_sync_file_range", lambda: record)
    svc = service(tmp_path, open_registry.host)
    svc.pull_sync(f"{open_registry.host}/vxn/test:v1")
    sizes = [d["size"] for d in [images.v1.config, *images.v1.layers] if d["size"] >= 1024]
    assert sizes
    assert len(calls) == len(sizes)  # each blob of a step or more, in its own staged file
    for ranges in calls.values():
        ends = [offset + length for offset, length in ranges]
        assert [offset for offset, _ in ranges] == [0, *ends[:-1]]  # in order, no gaps
        assert any(size - 1024 < ends[-1] <= size for size in sizes)  # up to the tail


def test_a_second_pull_is_up_to_date_and_downloads_no_blob(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    svc = service(tmp_path, proxy.host)
    ref = f"{proxy.host}/vxn/test:v1"
    svc.pull_sync(ref)
    blobs = len(proxy.requests("/blobs/"))
    assert blobs == 1 + len(images.v1.layers)
    again = svc.pull_sync(ref)
    assert again.up_to_date
    # The Docker-typed image shares the config and layers: only manifests move.
    svc.pull_sync(f"{proxy.host}/vxn/test:docker-v1")
    assert len(proxy.requests("/blobs/")) == blobs


@pytest.mark.parametrize("tag", ["v1", "multi"])
def test_a_repeat_pull_asks_by_head_and_gets_no_manifest(
    tmp_path: Path, proxy: RegistryProxy, tag: str
) -> None:
    svc = service(tmp_path, proxy.host)
    ref = f"{proxy.host}/vxn/test:{tag}"
    first = svc.pull_sync(ref)
    gets = len(proxy.requests("/manifests/", "GET"))
    assert gets == (1 if tag == "v1" else 2)  # an index, then its amd64 manifest
    assert svc.ensure_sync(ref, "always") == first.manifest
    assert len(proxy.requests("/manifests/", "GET")) == gets
    assert len(proxy.requests(f"/manifests/{tag}", "HEAD")) == 2
    assert len(proxy.requests("/blobs/")) == len(svc.inspect_sync(ref)["RootFS"]["Layers"]) + 1


def test_without_a_digest_on_head_the_manifest_is_got(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    proxy.fault("no_digest", "/manifests/v1", times=0, method="HEAD")
    svc = service(tmp_path, proxy.host)
    ref = f"{proxy.host}/vxn/test:v1"
    svc.pull_sync(ref)
    again = svc.pull_sync(ref)
    assert (str(again.digest), again.up_to_date) == (images.v1.digest, True)
    assert len(proxy.requests("/manifests/v1", "GET")) == 2


def test_a_wrong_digest_on_head_is_caught_by_the_get(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    proxy.fault("wrong_digest", "/manifests/v1", method="HEAD")
    svc = service(tmp_path, proxy.host)
    assert str(svc.pull_sync(f"{proxy.host}/vxn/test:v1").digest) == images.v1.digest


@pytest.mark.parametrize("tag", ["multi", "docker-multi"])
def test_an_index_resolves_to_the_platform(
    tmp_path: Path, open_registry: LocalRegistry, tag: str
) -> None:
    svc = service(tmp_path, open_registry.host)
    ref = f"{open_registry.host}/vxn/test:{tag}"
    amd = svc.pull_sync(ref)
    arm = svc.pull_sync(ref, platform=Platform.parse("linux/arm64"))
    assert amd.digest == arm.digest != amd.manifest != arm.manifest
    assert svc.inspect_sync(str(arm.manifest))["Architecture"] == "arm64"
    assert svc.inspect_sync(str(amd.manifest))["Index"] == str(amd.digest)


def test_a_platform_the_index_lacks_is_not_found(
    tmp_path: Path, open_registry: LocalRegistry
) -> None:
    svc = service(tmp_path, open_registry.host)
    ref = f"{open_registry.host}/vxn/test:multi"
    before = snapshot(svc)
    with pytest.raises(NotFound, match=r"no manifest for linux/s390x in the index \(it has: "):
        svc.pull_sync(ref, platform=Platform.parse("linux/s390x"))
    assert snapshot(svc) == before


def test_a_pull_by_digest_is_named_by_digest(
    tmp_path: Path, open_registry: LocalRegistry, images: Images
) -> None:
    svc = service(tmp_path, open_registry.host)
    ref = f"{open_registry.host}/vxn/test@{images.v1.digest}"
    assert svc.pull_sync(ref).reference == ref
    assert svc.inspect_sync(ref)["RepoDigests"] == [ref]
    assert [(r.tag, r.manifest) for r in svc.list_sync()] == [("<none>", images.v1.digest)]


# --- what the registry gets wrong --------------------------------------------------------


def test_a_flipped_byte_is_refused_naming_the_blob_and_never_retried(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]["digest"]
    proxy.fault("flip", blob_path(layer), times=0)
    svc = service(tmp_path, proxy.host)
    fails(
        svc,
        f"{proxy.host}/vxn/test:v1",
        InvalidArgument,
        f"blob {layer}: digest mismatch (got sha256:",
    )
    assert len(proxy.requests(blob_path(layer))) == 1


def test_a_stalled_registry_hits_the_read_timeout(tmp_path: Path, proxy: RegistryProxy) -> None:
    proxy.fault("stall", "/manifests/v1", times=0)
    svc = service(
        tmp_path, proxy.host, PullSettings(read_timeout=0.3, attempts=2, retry_delay=0.01)
    )
    start = time.monotonic()
    fails(
        svc,
        f"{proxy.host}/vxn/test:v1",
        Unavailable,
        "no answer from",
        "in 0.3 s (pull.read_timeout)",
        "tried 2 times",
    )
    assert time.monotonic() - start < 3


def test_a_stall_mid_blob_hits_the_read_timeout(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]["digest"]
    proxy.fault("stall_body", blob_path(layer), times=0)
    svc = service(
        tmp_path, proxy.host, PullSettings(read_timeout=0.3, attempts=2, retry_delay=0.01)
    )
    fails(svc, f"{proxy.host}/vxn/test:v1", Unavailable, f"blob {layer}: no data for 0.3 s after")


def test_a_trickle_hits_the_blob_deadline(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]["digest"]
    proxy.fault("trickle", blob_path(layer), times=0)
    limits = PullSettings(read_timeout=2, blob_timeout=0.5, min_rate=1e9, retry_delay=0.01)
    svc = service(tmp_path, proxy.host, limits)
    start = time.monotonic()
    fails(
        svc,
        f"{proxy.host}/vxn/test:v1",
        Unavailable,
        f"blob {layer}: not done after 0.5 s",
        "raise pull.blob_timeout",
    )
    assert time.monotonic() - start < 3


def test_a_dropped_connection_resumes_with_range_and_is_verified(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]
    proxy.fault("drop", blob_path(layer["digest"]))
    svc = service(tmp_path, proxy.host)
    svc.pull_sync(f"{proxy.host}/vxn/test:v1")
    first, second = proxy.requests(blob_path(layer["digest"]))
    assert "Range" not in first.headers
    start = int(second.headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start < layer["size"]
    with svc.store.open_blob(Digest.parse(layer["digest"])) as f:
        assert f.read() == (images.single / "blobs/sha256" / layer["digest"][7:]).read_bytes()


def test_a_registry_that_ignores_range_is_read_again_from_the_top(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    layer = images.v1.layers[0]["digest"]
    proxy.fault("drop", blob_path(layer))
    proxy.fault("ignore_range", blob_path(layer))
    svc = service(tmp_path, proxy.host)
    svc.pull_sync(f"{proxy.host}/vxn/test:v1")
    assert "Range" in proxy.requests(blob_path(layer))[1].headers
    assert svc.store.has_blob(Digest.parse(layer))


@pytest.mark.parametrize(
    ("status", "code", "kind", "fix"),
    [
        (401, "UNAUTHORIZED", FailedPrecondition, "log in (docker login"),
        (403, "DENIED", FailedPrecondition, "check that these credentials may pull it"),
        (404, "MANIFEST_UNKNOWN", NotFound, "check the name and tag"),
        (500, "INTERNAL", Unavailable, "tried 2 times"),
    ],
)
def test_error_statuses_carry_the_registry_message(
    tmp_path: Path, proxy: RegistryProxy, status: int, code: str, kind: type[VxnError], fix: str
) -> None:
    said = f"the registry says {status}"
    proxy.fault("status", "/manifests/v1", times=0, status=status, code=code, message=said)
    svc = service(tmp_path, proxy.host)
    fails(svc, f"{proxy.host}/vxn/test:v1", kind, f"manifest v1: {status} {code}: {said}", fix)


def test_a_passing_5xx_and_429_are_retried(
    tmp_path: Path, proxy: RegistryProxy, images: Images
) -> None:
    proxy.fault("status", "/manifests/v1", status=503, method="GET")
    proxy.fault("status", blob_path(images.v1.layers[0]["digest"]), status=429, retry_after="0")
    svc = service(tmp_path, proxy.host)
    svc.pull_sync(f"{proxy.host}/vxn/test:v1")
    assert len(proxy.requests("/manifests/v1", "GET")) == 2


def test_a_retry_after_past_the_deadline_gives_up_at_once(
    tmp_path: Path, proxy: RegistryProxy
) -> None:
    proxy.fault(
        "status", "/manifests/v1", times=0, status=429, code="TOOMANYREQUESTS", retry_after="3600"
    )
    svc = service(tmp_path, proxy.host)
    start = time.monotonic()
    fails(svc, f"{proxy.host}/vxn/test:v1", Unavailable, "429 TOOMANYREQUESTS", "gave up after 5 s")
    assert time.monotonic() - start < 2


def test_a_manifest_over_4_mib_is_refused(tmp_path: Path, proxy: RegistryProxy) -> None:
    proxy.fault("big", "/manifests/v1", method="GET")
    svc = service(tmp_path, proxy.host)
    fails(svc, f"{proxy.host}/vxn/test:v1", InvalidArgument, "over the 4194304-byte limit")


def test_a_wrong_docker_content_digest_is_refused(tmp_path: Path, proxy: RegistryProxy) -> None:
    proxy.fault("wrong_digest", "/manifests/v1", method="GET")
    svc = service(tmp_path, proxy.host)
    fails(
        svc,
        f"{proxy.host}/vxn/test:v1",
        InvalidArgument,
        f"Docker-Content-Digest says sha256:{'0' * 64}, the content is sha256:",
    )


def test_a_dead_registry_fails_in_seconds(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    svc = service(tmp_path, host)
    start = time.monotonic()
    fails(svc, f"{host}/vxn/test:v1", Unavailable, f"cannot reach {host}: Connection refused")
    assert time.monotonic() - start < 2


# --- TLS ---------------------------------------------------------------------------------


def test_tls_needs_the_ca_or_no_verification(tmp_path: Path, tls_registry: LocalRegistry) -> None:
    from vxn.engine.pull import PullOptions

    host = tls_registry.host
    ref = f"{host}/vxn/test:v1"
    strict = ImageService(StateDir(tmp_path / "s"), AMD64, pull=PullConfig(settings=LIMITS))
    fails(strict, ref, Unavailable, f"TLS with {host} failed: ", "pass --cert-dir")
    assert tls_registry.cert is not None
    strict.pull_sync(ref, options=PullOptions(cert_dir=tls_registry.cert.parent))
    loose = ImageService(StateDir(tmp_path / "l"), AMD64, pull=PullConfig(settings=LIMITS))
    loose.pull_sync(ref, options=PullOptions(tls_verify=False))


def test_plain_http_needs_insecure(tmp_path: Path, open_registry: LocalRegistry) -> None:
    host = open_registry.host
    svc = ImageService(StateDir(tmp_path / "s"), AMD64, pull=PullConfig(settings=LIMITS))
    fails(
        svc,
        f"{host}/vxn/test:v1",
        Unavailable,
        "wrong version number",
        f'[registries."{host}"] insecure = true',
    )
