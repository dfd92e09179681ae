"""Platform selection over an index: first match wins; attestations and unknowns never do."""

from __future__ import annotations

import pytest

from vxn.core import mediatypes as mt
from vxn.core.digest import Digest
from vxn.core.manifest import Descriptor, Index, is_attestation, select_manifest
from vxn.core.platform import Platform
from vxn.errors import NotFound

SBOM = "application/vnd.example.sbom.v1+json"
ATTESTATION = {"vnd.docker.reference.type": "attestation-manifest"}


def e(
    n: int,
    platform: str | None,
    media_type: str = mt.OCI_MANIFEST,
    annotations: dict[str, str] | None = None,
) -> Descriptor:
    return Descriptor(
        media_type=media_type,
        digest=Digest.parse(f"sha256:{n:064x}"),
        size=100,
        platform=_platform(platform),
        annotations=annotations or {},
    )


def _platform(text: str | None) -> Platform | None:
    if text is None:
        return None
    os, arch, *variant = text.split("/")
    return Platform(os=os, architecture=arch, variant=variant[0] if variant else "")


def idx(*entries: Descriptor) -> Index:
    return Index(media_type=mt.OCI_INDEX, manifests=entries)


BUILDX = idx(
    e(1, "linux/amd64"),
    e(2, "linux/arm64/v8"),
    e(3, "unknown/unknown", annotations=ATTESTATION),
    e(4, "unknown/unknown", annotations=ATTESTATION),
)
HUB = Index(
    media_type=mt.DOCKER_LIST,
    manifests=(
        e(10, "linux/arm/v6", mt.DOCKER_MANIFEST),
        e(11, "linux/arm/v7", mt.DOCKER_MANIFEST),
        e(12, "linux/amd64", mt.DOCKER_MANIFEST),
        e(13, "linux/arm64/v8", mt.DOCKER_MANIFEST),
        e(14, "linux/386", mt.DOCKER_MANIFEST),
    ),
)

FOUND: list[tuple[str, Index, str, int]] = [
    ("buildx amd64", BUILDX, "linux/amd64", 1),
    ("buildx arm64 without variant", BUILDX, "linux/arm64", 2),
    ("buildx aarch64", BUILDX, "linux/aarch64", 2),
    ("hub arm means v7", HUB, "linux/arm", 11),
    ("hub arm v6", HUB, "linux/arm/v6", 10),
    ("hub 386", HUB, "linux/386", 14),
    ("first match wins", idx(e(1, "linux/amd64"), e(2, "linux/amd64")), "linux/amd64", 1),
    ("index entry lacks variant", idx(e(1, "linux/arm64")), "linux/arm64/v8", 1),
    (
        "annotated attestation skipped",
        idx(e(1, "linux/amd64", annotations=ATTESTATION), e(2, "linux/amd64")),
        "linux/amd64",
        2,
    ),
    ("unknown media type skipped", idx(e(1, "linux/amd64", SBOM), e(2, "linux/amd64")),
     "linux/amd64", 2),
    ("docker list inside OCI index", idx(e(1, "linux/amd64", mt.DOCKER_MANIFEST)),
     "linux/amd64", 1),
    ("nested index as a fallback", idx(e(1, "linux/arm64"), e(2, None, mt.OCI_INDEX)),
     "linux/amd64", 2),
    ("direct match beats nested index",
     idx(e(1, None, mt.DOCKER_LIST), e(2, "linux/amd64")), "linux/amd64", 2),
    ("nested index with a platform", idx(e(1, "linux/amd64", mt.OCI_INDEX)), "linux/amd64", 1),
    ("first fallback wins", idx(e(1, None, mt.OCI_INDEX), e(2, None)), "linux/amd64", 1),
    ("layout index.json", idx(e(1, None)), "linux/arm64", 1),
    ("unknown fallback skipped", idx(e(1, None, SBOM), e(2, None)), "linux/amd64", 2),
]  # fmt: skip


@pytest.mark.parametrize(
    ("index", "want", "digest"), [f[1:] for f in FOUND], ids=[f[0] for f in FOUND]
)
def test_select(index: Index, want: str, digest: int) -> None:
    got = select_manifest(index, Platform.parse(want))
    assert got.digest == Digest.parse(f"sha256:{digest:064x}")


NOT_FOUND: list[tuple[str, Index, str, str]] = [
    ("the documented example", idx(e(1, "linux/arm64/v8"), e(2, "linux/s390x")), "linux/amd64",
     "linux/arm64/v8, linux/s390x"),
    ("attestations not listed", BUILDX, "linux/s390x", "linux/amd64, linux/arm64/v8"),
    ("nothing for riscv64", HUB, "linux/riscv64",
     "linux/arm/v6, linux/arm/v7, linux/amd64, linux/arm64/v8, linux/386"),
    ("empty index", idx(), "linux/amd64", "none"),
    ("only attestations", idx(e(1, "unknown/unknown")), "linux/amd64", "none"),
    ("only unknown media types", idx(e(1, None, SBOM), e(2, "linux/amd64", SBOM)),
     "linux/amd64", "none"),
    ("platforms listed once", idx(e(1, "linux/arm64"), e(2, "linux/arm64")), "linux/amd64",
     "linux/arm64"),
    ("windows image", idx(e(1, "windows/amd64")), "linux/amd64", "windows/amd64"),
    ("variant must match", idx(e(1, "linux/arm/v6")), "linux/arm/v7", "linux/arm/v6"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("index", "want", "has"), [n[1:] for n in NOT_FOUND], ids=[n[0] for n in NOT_FOUND]
)
def test_select_not_found(index: Index, want: str, has: str) -> None:
    with pytest.raises(NotFound) as exc:
        select_manifest(index, Platform.parse(want))
    assert str(exc.value) == (
        f"no manifest for {want} in the index (it has: {has}); pick one with --platform"
    )


@pytest.mark.parametrize(
    ("entry", "attestation"),
    [
        (e(1, "unknown/unknown"), True),
        (e(1, None, annotations=ATTESTATION), True),
        (e(1, "linux/amd64", annotations=ATTESTATION), True),
        (e(1, "linux/amd64", annotations={"vnd.docker.reference.type": "other"}), False),
        (e(1, "linux/unknown"), False),
        (e(1, None), False),
    ],
)
def test_is_attestation(entry: Descriptor, attestation: bool) -> None:
    assert is_attestation(entry) is attestation
