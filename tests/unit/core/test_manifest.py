"""Manifest and index parsing over real-shaped documents, and every way to refuse one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vxn.core import mediatypes as mt
from vxn.core.digest import Digest
from vxn.core.manifest import (
    MAX_DOCUMENT_SIZE,
    Descriptor,
    Index,
    Manifest,
    parse_document,
)
from vxn.core.platform import Platform
from vxn.errors import InvalidArgument

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
SBOM = "application/vnd.example.sbom.v1+json"
ATTESTATION = {
    "vnd.docker.reference.digest": f"sha256:{1:064x}",
    "vnd.docker.reference.type": "attestation-manifest",
}


def dig(n: int) -> str:
    return f"sha256:{n:064x}"


def entry(media_type: str, n: int, size: int = 500, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": dig(n), "size": size, **extra}


def plat(os: str, arch: str, variant: str = "") -> dict[str, str]:
    return {"os": os, "architecture": arch, **({"variant": variant} if variant else {})}


def desc(media_type: str, n: int, size: int = 500, **extra: Any) -> Descriptor:
    return Descriptor(media_type=media_type, digest=Digest.parse(dig(n)), size=size, **extra)


def P(os: str, arch: str, variant: str = "") -> Platform:
    return Platform(os=os, architecture=arch, variant=variant)


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


# What `docker buildx build --platform linux/amd64,linux/arm64 --push` writes.
BUILDX_INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        entry(mt.OCI_MANIFEST, 10, 1234, platform=plat("linux", "amd64")),
        entry(mt.OCI_MANIFEST, 11, 1235, platform=plat("linux", "arm64", "v8")),
        entry(mt.OCI_MANIFEST, 12, 566, platform=plat("unknown", "unknown"),
              annotations=ATTESTATION),
        entry(mt.OCI_MANIFEST, 13, 566, platform=plat("unknown", "unknown"),
              annotations=ATTESTATION),
    ],
}  # fmt: skip
BUILDX_PARSED = Index(
    media_type=mt.OCI_INDEX,
    manifests=(
        desc(mt.OCI_MANIFEST, 10, 1234, platform=P("linux", "amd64")),
        desc(mt.OCI_MANIFEST, 11, 1235, platform=P("linux", "arm64", "v8")),
        desc(mt.OCI_MANIFEST, 12, 566, platform=P("unknown", "unknown"), annotations=ATTESTATION),
        desc(mt.OCI_MANIFEST, 13, 566, platform=P("unknown", "unknown"), annotations=ATTESTATION),
    ),
)

# Docker Hub's manifest list for an official image (key order as the Hub sends it).
DOCKER_LIST = {
    "manifests": [
        entry(mt.DOCKER_MANIFEST, 20, 528, platform=plat("linux", "amd64")),
        entry(mt.DOCKER_MANIFEST, 21, 528, platform=plat("linux", "arm", "v6")),
        entry(mt.DOCKER_MANIFEST, 22, 528, platform=plat("linux", "arm", "v7")),
        entry(mt.DOCKER_MANIFEST, 23, 528, platform=plat("linux", "arm64", "v8")),
        entry(mt.DOCKER_MANIFEST, 24, 528, platform=plat("linux", "s390x")),
    ],
    "mediaType": mt.DOCKER_LIST,
    "schemaVersion": 2,
}
DOCKER_LIST_PARSED = Index(
    media_type=mt.DOCKER_LIST,
    manifests=(
        desc(mt.DOCKER_MANIFEST, 20, 528, platform=P("linux", "amd64")),
        desc(mt.DOCKER_MANIFEST, 21, 528, platform=P("linux", "arm", "v6")),
        desc(mt.DOCKER_MANIFEST, 22, 528, platform=P("linux", "arm", "v7")),
        desc(mt.DOCKER_MANIFEST, 23, 528, platform=P("linux", "arm64", "v8")),
        desc(mt.DOCKER_MANIFEST, 24, 528, platform=P("linux", "s390x")),
    ),
)

DOCKER_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.DOCKER_MANIFEST,
    "config": entry(mt.DOCKER_CONFIG, 30, 1472),
    "layers": [entry(mt.DOCKER_LAYER_GZIP, 31, 3401967)],
}
DOCKER_MANIFEST_PARSED = Manifest(
    media_type=mt.DOCKER_MANIFEST,
    config=desc(mt.DOCKER_CONFIG, 30, 1472),
    layers=(desc(mt.DOCKER_LAYER_GZIP, 31, 3401967),),
)

OCI_MANIFEST = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": entry(mt.OCI_CONFIG, 40, 800),
    "layers": [
        entry(mt.OCI_LAYER_GZIP, 41, 100),
        entry(mt.OCI_LAYER_ZSTD, 42, 0),
        entry(mt.OCI_LAYER, 43, 10240, annotations={"a": "b"}),
        entry(mt.DOCKER_LAYER_FOREIGN, 44, 9, urls=["https://mcr.example/x"]),
        entry(mt.OCI_LAYER_ND_GZIP, 45, 9),
    ],
    "annotations": {"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
    "subject": entry(mt.OCI_MANIFEST, 46),
}
OCI_MANIFEST_PARSED = Manifest(
    media_type=mt.OCI_MANIFEST,
    config=desc(mt.OCI_CONFIG, 40, 800),
    layers=(
        desc(mt.OCI_LAYER_GZIP, 41, 100),
        desc(mt.OCI_LAYER_ZSTD, 42, 0),
        desc(mt.OCI_LAYER, 43, 10240, annotations={"a": "b"}),
        desc(mt.DOCKER_LAYER_FOREIGN, 44, 9, urls=("https://mcr.example/x",)),
        desc(mt.OCI_LAYER_ND_GZIP, 45, 9),
    ),
    annotations={"org.opencontainers.image.created": "2024-05-01T00:00:00Z"},
)


def without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


def padded(doc: object, total: int) -> bytes:
    data = body(doc)
    return data + b" " * (total - len(data))


# An OCI layout's index.json: old writers leave out mediaType and platform.
LAYOUT_INDEX = {
    "schemaVersion": 2,
    "manifests": [
        entry(mt.OCI_MANIFEST, 50, annotations={"org.opencontainers.image.ref.name": "3.20"})
    ],
}
LAYOUT_PARSED = Index(
    media_type=mt.OCI_INDEX,
    manifests=(
        desc(mt.OCI_MANIFEST, 50, annotations={"org.opencontainers.image.ref.name": "3.20"}),
    ),
)

# Entries vxn cannot use still parse; select_manifest skips them later.
ODD_INDEX = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_INDEX,
    "manifests": [
        entry(SBOM, 60, artifactType="application/spdx+json"),
        {"mediaType": SBOM, "digest": f"sha512:{'ab' * 64}", "size": 7},
        entry(mt.OCI_INDEX, 61),
        entry(mt.OCI_MANIFEST, 62, platform={**plat("windows", "amd64"),
              "os.version": "10.0.17763.1", "os.features": ["win32k"]}),
        entry(mt.OCI_MANIFEST, 63, 2**63 - 1, platform={**plat("linux", "amd64"),
              "variant": None}),
    ],
    "annotations": {"k": "v"},
}  # fmt: skip
ODD_PARSED = Index(
    media_type=mt.OCI_INDEX,
    manifests=(
        desc(SBOM, 60),
        Descriptor(media_type=SBOM, digest=Digest.parse(f"sha512:{'ab' * 64}"), size=7),
        desc(mt.OCI_INDEX, 61),
        desc(mt.OCI_MANIFEST, 62, platform=P("windows", "amd64")),
        desc(mt.OCI_MANIFEST, 63, 2**63 - 1, platform=P("linux", "amd64")),
    ),
    annotations={"k": "v"},
)

VALID: list[tuple[str, bytes, str | None, Manifest | Index]] = [
    ("buildx OCI index", body(BUILDX_INDEX), mt.OCI_INDEX, BUILDX_PARSED),
    ("docker list", body(DOCKER_LIST), mt.DOCKER_LIST, DOCKER_LIST_PARSED),
    ("docker list, no header", body(DOCKER_LIST), None, DOCKER_LIST_PARSED),
    ("docker manifest", body(DOCKER_MANIFEST), mt.DOCKER_MANIFEST, DOCKER_MANIFEST_PARSED),
    ("oci manifest", body(OCI_MANIFEST), mt.OCI_MANIFEST, OCI_MANIFEST_PARSED),
    ("header with params", body(OCI_MANIFEST), f"{mt.OCI_MANIFEST}; charset=utf-8",
     OCI_MANIFEST_PARSED),
    ("header upper case", body(DOCKER_LIST), mt.DOCKER_LIST.upper(), DOCKER_LIST_PARSED),
    ("application/json says nothing", body(DOCKER_MANIFEST), "application/json",
     DOCKER_MANIFEST_PARSED),
    ("octet-stream says nothing", body(DOCKER_LIST), "application/octet-stream",
     DOCKER_LIST_PARSED),
    ("mediaType from the header", body(without(DOCKER_MANIFEST, "mediaType")),
     mt.DOCKER_MANIFEST, DOCKER_MANIFEST_PARSED),
    ("manifest inferred from shape", body(without(OCI_MANIFEST, "mediaType")), None,
     OCI_MANIFEST_PARSED),
    ("layout index.json inferred", body(LAYOUT_INDEX), None, LAYOUT_PARSED),
    ("unknown entries parse", body(ODD_INDEX), None, ODD_PARSED),
    ("empty index", body({"schemaVersion": 2, "manifests": []}), None,
     Index(media_type=mt.OCI_INDEX, manifests=())),
    ("no layers", body({**DOCKER_MANIFEST, "layers": []}), None,
     Manifest(media_type=mt.DOCKER_MANIFEST, config=desc(mt.DOCKER_CONFIG, 30, 1472),
              layers=())),
    ("exactly the size limit", padded(DOCKER_MANIFEST, MAX_DOCUMENT_SIZE), None,
     DOCKER_MANIFEST_PARSED),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "content_type", "want"), [v[1:] for v in VALID], ids=[v[0] for v in VALID]
)
def test_parse_document(data: bytes, content_type: str | None, want: Manifest | Index) -> None:
    assert parse_document(data, content_type) == want


SCHEMA1 = "Docker schema 1 manifests are not supported; re-push the image with a current tool"
SCHEMA1_DOC = {
    "schemaVersion": 1,
    "name": "library/alpine",
    "tag": "3",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": dig(1)}],
    "history": [{"v1Compatibility": "{}"}],
}
DUP = b'{"schemaVersion": 2, "mediaType": "x", "mediaType": "y"}'
HELM = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "config": entry(HELM_CONFIG, 70),
    "layers": [entry(HELM_CHART, 71)],
}
ARTIFACT = {
    "schemaVersion": 2,
    "mediaType": mt.OCI_MANIFEST,
    "artifactType": "application/vnd.example.sig",
    "config": entry("application/vnd.oci.empty.v1+json", 72, 2),
    "layers": [entry(mt.OCI_LAYER_GZIP, 73)],
}


def index_with(*entries: object) -> bytes:
    return body({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": list(entries)})


def manifest_with(**fields: object) -> bytes:
    return body({**OCI_MANIFEST, **fields})


OK = entry(mt.OCI_MANIFEST, 1)
BAD_SHA = "want sha256:<64 lowercase hex digits>"

INVALID: list[tuple[str, bytes, str | None, str]] = [
    # size and syntax
    ("over the limit", padded(DOCKER_MANIFEST, MAX_DOCUMENT_SIZE + 1), None,
     "4194305 bytes is over the 4194304-byte limit"),
    ("not JSON", b"not json", None,
     "malformed JSON (Expecting value: line 1 column 1 (char 0))"),
    ("empty", b"", None, "malformed JSON (Expecting value: line 1 column 1 (char 0))"),
    ("not UTF-8", b"\xff", None, "malformed JSON ('utf-8' codec can't decode byte 0xff "
     "in position 0: invalid start byte)"),
    ("a list", b"[]", None, "malformed JSON (want an object, got list)"),
    ("a string", b'"x"', None, "malformed JSON (want an object, got str)"),
    ("null", b"null", None, "malformed JSON (want an object, got NoneType)"),
    ("too deep", b"[" * 200_000, None, "malformed JSON (maximum recursion depth exceeded "
     "while decoding a JSON array from a unicode string)"),
    ("duplicate keys", DUP, None, "malformed JSON (duplicate key 'mediaType')"),
    ("NaN", b'{"schemaVersion": NaN}', None, "malformed JSON (NaN is not JSON)"),
    # schema version
    ("schema1", body(SCHEMA1_DOC), None, SCHEMA1),
    ("schema1 signed header", body(SCHEMA1_DOC), mt.DOCKER_SCHEMA1_SIGNED, SCHEMA1),
    ("schema1 media type", body({**DOCKER_MANIFEST, "mediaType": mt.DOCKER_SCHEMA1}), None,
     SCHEMA1),
    ("schema1 header only", body(without(DOCKER_MANIFEST, "mediaType")),
     mt.DOCKER_SCHEMA1, SCHEMA1),
    ("fsLayers in a v2 document", body({**SCHEMA1_DOC, "schemaVersion": 2}), None, SCHEMA1),
    ("no schemaVersion", body(without(OCI_MANIFEST, "schemaVersion")), None,
     "schemaVersion is null; want 2"),
    ("schemaVersion string", body({**OCI_MANIFEST, "schemaVersion": "2"}), None,
     'schemaVersion is "2"; want 2'),
    ("schemaVersion bool", body({**OCI_MANIFEST, "schemaVersion": True}), None,
     "schemaVersion is true; want 2"),
    ("schemaVersion float", body({**OCI_MANIFEST, "schemaVersion": 2.0}), None,
     "schemaVersion is 2.0; want 2"),
    ("schemaVersion 3", body({**OCI_MANIFEST, "schemaVersion": 3}), None,
     "schemaVersion is 3; want 2"),
    # CVE-2021-41190: one body, two meanings
    ("manifests and layers", body({**BUILDX_INDEX, "layers": []}), None,
     "ambiguous document: it has both manifests and layers/config"),
    ("manifests and config", body({**without(OCI_MANIFEST, "mediaType"), "manifests": []}),
     mt.OCI_MANIFEST, "ambiguous document: it has both manifests and layers/config"),
    ("header disagrees", body(OCI_MANIFEST), mt.OCI_INDEX,
     f"mediaType {mt.OCI_MANIFEST} disagrees with the content type {mt.OCI_INDEX}"),
    ("docker vs oci", body(DOCKER_MANIFEST), f"{mt.OCI_MANIFEST}; charset=utf-8",
     f"mediaType {mt.DOCKER_MANIFEST} disagrees with the content type {mt.OCI_MANIFEST}"),
    ("index typed as manifest", body({**BUILDX_INDEX, "mediaType": mt.OCI_MANIFEST}), None,
     f"{mt.OCI_MANIFEST} has manifests; want config and layers"),
    ("manifest typed as index", body({**OCI_MANIFEST, "mediaType": mt.OCI_INDEX}), None,
     f"{mt.OCI_INDEX} has config/layers; want manifests only"),
    ("manifest under an index header", body(without(DOCKER_MANIFEST, "mediaType")),
     mt.DOCKER_LIST, f"{mt.DOCKER_LIST} has config/layers; want manifests only"),
    # what the document is
    ("unknown mediaType", body({**OCI_MANIFEST, "mediaType": SBOM}), None,
     f"unsupported media type {SBOM}; want an image index or image manifest"),
    ("unknown header", body(without(OCI_MANIFEST, "mediaType")), "text/html",
     "unsupported media type text/html; want an image index or image manifest"),
    ("mediaType not a string", body({**OCI_MANIFEST, "mediaType": 1}), None,
     "mediaType must be a string"),
    ("no shape", body({"schemaVersion": 2}), None,
     "no mediaType, and neither manifests nor config+layers; cannot tell what it is"),
    ("layers without config", body({"schemaVersion": 2, "layers": []}), None,
     "no mediaType, and neither manifests nor config+layers; cannot tell what it is"),
    # index structure
    ("manifests null", body({**BUILDX_INDEX, "manifests": None}), None,
     "manifests must be a list"),
    ("manifests object", body({"schemaVersion": 2, "manifests": {}}), None,
     "manifests must be a list"),
    ("index annotations", body({**BUILDX_INDEX, "annotations": {"a": 1}}), None,
     "annotations must be an object of strings"),
    # descriptors
    ("entry not an object", index_with(OK, "x"), None, "manifests[1] must be an object"),
    ("no mediaType", index_with(without(OK, "mediaType")), None,
     "manifests[0].mediaType must be a non-empty string"),
    ("empty mediaType", index_with({**OK, "mediaType": ""}), None,
     "manifests[0].mediaType must be a non-empty string"),
    ("no digest", index_with(without(OK, "digest")), None,
     "manifests[0].digest must be a string"),
    ("bad digest", index_with({**OK, "digest": "sha256:abc"}), None,
     f"manifests[0].digest: invalid digest 'sha256:abc': {BAD_SHA}"),
    ("path in digest", index_with({**OK, "digest": f"sha256:../../{'a' * 58}"}), None,
     f"manifests[0].digest: invalid digest 'sha256:../../{'a' * 58}': {BAD_SHA}"),
    ("no size", index_with(without(OK, "size")), None,
     "manifests[0].size is null; want a non-negative integer"),
    ("negative size", index_with({**OK, "size": -1}), None,
     "manifests[0].size is -1; want a non-negative integer"),
    ("string size", index_with({**OK, "size": "5"}), None,
     'manifests[0].size is "5"; want a non-negative integer'),
    ("size over int64", index_with({**OK, "size": 2**63}), None,
     "manifests[0].size is 9223372036854775808; want a non-negative integer"),
    ("bool size", index_with({**OK, "size": True}), None,
     "manifests[0].size is true; want a non-negative integer"),
    ("float size", index_with({**OK, "size": 5.0}), None,
     "manifests[0].size is 5.0; want a non-negative integer"),
    ("platform not object", index_with({**OK, "platform": "linux/amd64"}), None,
     "manifests[0].platform must be an object"),
    ("platform without os", index_with({**OK, "platform": {"architecture": "amd64"}}), None,
     "manifests[0].platform needs string os and architecture (and variant, if any)"),
    ("variant not a string", index_with({**OK, "platform": {**plat("linux", "arm"),
     "variant": 7}}), None,
     "manifests[0].platform needs string os and architecture (and variant, if any)"),
    ("os.version not a string", index_with({**OK, "platform": {**plat("windows", "amd64"),
     "os.version": 10}}), None, "manifests[0].platform.os.version must be a string"),
    ("os.features not a list", index_with({**OK, "platform": {**plat("windows", "amd64"),
     "os.features": "win32k"}}), None,
     "manifests[0].platform.os.features must be a list"),
    ("annotation not a string", index_with({**OK, "annotations": {"a": None}}), None,
     "manifests[0].annotations must be an object of strings"),
    ("urls not a list", index_with({**OK, "urls": "https://x"}), None,
     "manifests[0].urls must be a list"),
    ("urls of numbers", index_with({**OK, "urls": [1]}), None,
     "manifests[0].urls must be a list of strings"),
    # manifest structure: only container images
    ("no config", body({**without(OCI_MANIFEST, "config")}), None, "config is missing"),
    ("config not object", manifest_with(config=[]), None, "config must be an object"),
    ("no layers", body(without(OCI_MANIFEST, "layers")), None, "layers must be a list"),
    ("layers object", manifest_with(layers={}), None, "layers must be a list"),
    ("bad layer digest", manifest_with(layers=[{**OK, "digest": "md5:1"}]), None,
     "layers[0].digest: invalid digest 'md5:1': want sha256:<64 hex digits>"),
    ("helm chart", body(HELM), None, f"unsupported media type {HELM_CONFIG} for a config; "
     "vxn runs container images, not artifacts"),
    ("oci artifact", body(ARTIFACT), None, "unsupported media type "
     "application/vnd.oci.empty.v1+json for a config; vxn runs container images, not artifacts"),
    ("non-layer blob", manifest_with(layers=[entry(mt.OCI_LAYER, 1), entry(HELM_CHART, 2)]),
     None, f"unsupported media type {HELM_CHART} for a layer (layers[1])"),
    ("manifest as layer", manifest_with(layers=[entry(mt.OCI_MANIFEST, 1)]), None,
     f"unsupported media type {mt.OCI_MANIFEST} for a layer (layers[0])"),
    ("manifest annotations", manifest_with(annotations=["a"]), None,
     "annotations must be an object of strings"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("data", "content_type", "why"), [v[1:] for v in INVALID], ids=[v[0] for v in INVALID]
)
def test_parse_document_invalid(data: bytes, content_type: str | None, why: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        parse_document(data, content_type)
    assert str(exc.value) == f"invalid manifest: {why}"
