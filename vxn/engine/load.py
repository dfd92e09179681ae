"""What a loaded archive holds, as images ready to commit.

An OCI layout's index.json entries are followed (through indexes, to the platform)
down to manifest, config and layers; a docker-archive's manifest.json entries are
rebuilt as OCI manifests. Every blob is checked against its descriptor (size and
digest) before it is planned for the store, then names are given: from the
archive, and from `--name`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from vxn.adapters.archive import ArchiveContents, diff_id, sniff_compression
from vxn.adapters.content import Ingest, StagedBlob
from vxn.core import mediatypes as mt
from vxn.core.catalog import ImageRecord
from vxn.core.digest import Digest
from vxn.core.manifest import (
    MAX_DOCUMENT_SIZE,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    parse_config,
    parse_document,
    select_manifest,
)
from vxn.core.platform import Platform
from vxn.core.reference import Reference
from vxn.errors import InvalidArgument, NotFound, VxnError

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
MAX_NESTING = 4
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LAYER_TYPES = {"": mt.OCI_LAYER, "gzip": mt.OCI_LAYER_GZIP, "zstd": mt.OCI_LAYER_ZSTD}

Staged = tuple[StagedBlob, Digest, int]  # a staged file, the digest and size it must have


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """One image found in the archive, with its blobs staged and verified."""

    record: ImageRecord
    staged: tuple[Staged, ...]
    names: tuple[str, ...] = ()  # full normalized references
    tag_hint: str | None = None  # a bare tag from ref.name, for `--name REPO`


def plan_load(contents: ArchiveContents, ingest: Ingest, want: Platform) -> list[Candidate]:
    if "index.json" in contents.documents:
        return _oci_images(contents, want)
    if "manifest.json" in contents.documents:
        return _docker_images(contents, ingest)
    raise InvalidArgument(
        "load: the archive has neither index.json (an OCI layout) nor manifest.json "
        "(a docker-archive); give an oci-archive, an OCI layout or a docker save tar"
    )


# --- OCI layouts ---------------------------------------------------------------------


def _oci_images(contents: ArchiveContents, want: Platform) -> list[Candidate]:
    layout = contents.documents.get("oci-layout")
    if layout is not None:
        version = _json(layout, "oci-layout").get("imageLayoutVersion")
        if not isinstance(version, str) or not version.startswith("1."):
            raise InvalidArgument(f"load: oci-layout: imageLayoutVersion {version!r}; want 1.x")
    index = _document(contents.documents["index.json"], None, "index.json")
    if not isinstance(index, Index):
        raise InvalidArgument("load: index.json is a manifest; an OCI layout needs an index")
    if not index.manifests:
        raise InvalidArgument("load: index.json lists no images")
    out = []
    for entry in index.manifests:
        if entry.media_type not in mt.INDEXES | mt.MANIFESTS:
            raise InvalidArgument(
                f"load: index.json entry {entry.digest}: unsupported media type "
                f"{entry.media_type}; vxn loads container images"
            )
        names, hint = _annotated_names(entry.annotations)
        record, staged = _resolve(contents, entry, want, depth=0, platform_known=True)
        out.append(Candidate(record=record, staged=staged, names=names, tag_hint=hint))
    return out


def _resolve(
    contents: ArchiveContents, desc: Descriptor, want: Platform, *, depth: int, platform_known: bool
) -> tuple[ImageRecord, tuple[Staged, ...]]:
    staged = _verified(contents, desc)
    doc = _document(_read(staged), desc.media_type, f"manifest {desc.digest}")
    if isinstance(doc, Manifest):
        record, blobs, config = _image(contents, desc.digest, doc)
        if not platform_known and not config.platform.matches(want):
            raise NotFound(f"load: no manifest for {want} in the index; pick one with --platform")
        return record, ((staged, desc.digest, desc.size), *blobs)
    if depth >= MAX_NESTING:
        raise InvalidArgument(f"load: index {desc.digest}: indexes nest over {MAX_NESTING} deep")
    try:
        chosen = select_manifest(doc, want)
    except NotFound as e:
        raise NotFound(f"load: index {desc.digest}: {e}") from None
    record, blobs = _resolve(
        contents, chosen, want, depth=depth + 1, platform_known=chosen.platform is not None
    )
    record = replace(record, index=desc.digest, blobs=record.blobs | {desc.digest})
    return record, ((staged, desc.digest, desc.size), *blobs)


def _image(
    contents: ArchiveContents, manifest_digest: Digest, manifest: Manifest
) -> tuple[ImageRecord, tuple[Staged, ...], ImageConfig]:
    config = _config(contents, manifest.config)
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"load: image {manifest.config.digest}: the config lists {len(config.diff_ids)} "
            f"diff_ids for {len(manifest.layers)} layers; the image is malformed"
        )
    blobs = [manifest.config, *manifest.layers]
    staged = tuple((_verified(contents, d), d.digest, d.size) for d in blobs)
    record = ImageRecord(
        manifest=manifest_digest,
        config=manifest.config.digest,
        blobs=frozenset({manifest_digest, *(d.digest for d in blobs)}),
        size=sum(d.size for d in blobs),
        created=config.created,
    )
    return record, staged, config


def _config(contents: ArchiveContents, desc: Descriptor) -> ImageConfig:
    data = _read(_verified(contents, desc))
    try:
        return parse_config(data)
    except InvalidArgument as e:
        raise InvalidArgument(f"load: config {desc.digest}: {e}") from None


def _verified(contents: ArchiveContents, desc: Descriptor) -> StagedBlob:
    staged = contents.blob(desc.digest)
    if staged is None:
        raise InvalidArgument(
            f"load: blob {desc.digest}: missing from the archive; save or copy the image again"
        )
    if staged.size != desc.size:
        raise InvalidArgument(
            f"load: blob {desc.digest}: size {staged.size}, descriptor says {desc.size}"
        )
    if staged.digest != desc.digest:
        raise InvalidArgument(f"load: blob {desc.digest}: digest mismatch (got {staged.digest})")
    return staged


def _annotated_names(annotations: Mapping[str, str]) -> tuple[tuple[str, ...], str | None]:
    """A containerd image name, else a ref.name that is a full reference; a bare tag
    in ref.name (skopeo's `oci:dir:v1`) only names the image with `--name REPO`."""
    full = annotations.get(CONTAINERD_NAME)
    ref_name = annotations.get(OCI_REF_NAME)
    hint = ref_name if ref_name and _TAG.fullmatch(ref_name) else None
    if full is None and ref_name and hint is None:
        full = ref_name
    if full is None:
        return (), hint
    return (_reference(full, "index.json annotation"),), hint


# --- docker-archives -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _DockerEntry:
    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def _docker_images(contents: ArchiveContents, ingest: Ingest) -> list[Candidate]:
    entries = _docker_entries(_json_any(contents.documents["manifest.json"], "manifest.json"))
    by_id = _repositories(contents.documents.get("repositories"))
    out = []
    for entry in entries:
        names = entry.repo_tags or by_id.get(_docker_id(entry), ())
        record, blobs = _docker_image(contents, ingest, entry)
        out.append(
            Candidate(
                record=record,
                staged=tuple((b, b.digest, b.size) for b in blobs),
                names=tuple(_reference(n, "manifest.json RepoTags") for n in names),
            )
        )
    return out


def _docker_image(
    contents: ArchiveContents, ingest: Ingest, entry: _DockerEntry
) -> tuple[ImageRecord, tuple[StagedBlob, ...]]:
    """Verify one docker-archive image and stage an OCI manifest for it."""
    config_blob = _docker_config(contents, ingest, entry.config)
    config = _parse_config_named(_read(config_blob), entry.config)
    if len(config.diff_ids) != len(entry.layers):
        raise InvalidArgument(
            f"load: manifest.json: {entry.config} lists {len(config.diff_ids)} diff_ids "
            f"for {len(entry.layers)} layers; the archive is malformed"
        )
    layers = [
        _docker_layer(contents, n, d) for n, d in zip(entry.layers, config.diff_ids, strict=True)
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": _desc(mt.OCI_CONFIG, config_blob),
        "layers": [_desc(media_type, blob) for blob, media_type in layers],
    }
    # Deterministic bytes: loading the same archive twice gives the same digest.
    manifest_blob = ingest.stage_bytes(
        json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    )
    blobs = (manifest_blob, config_blob, *(b for b, _ in layers))
    record = ImageRecord(
        manifest=manifest_blob.digest,
        config=config_blob.digest,
        blobs=frozenset(b.digest for b in blobs),
        size=sum(b.size for b in blobs[1:]),
        created=config.created,
    )
    return record, blobs


def _parse_config_named(data: bytes, name: str) -> ImageConfig:
    try:
        return parse_config(data)
    except InvalidArgument as e:
        raise InvalidArgument(f"load: config {name}: {e}") from None


def _docker_entries(doc: Any) -> list[_DockerEntry]:
    if not isinstance(doc, list) or not doc:
        raise InvalidArgument("load: manifest.json must be a non-empty list of images")
    out = []
    for i, item in enumerate(doc):
        where = f"load: manifest.json[{i}]"
        if not isinstance(item, dict):
            raise InvalidArgument(f"{where} must be an object")
        config, tags, layers = item.get("Config"), item.get("RepoTags") or [], item.get("Layers")
        if not isinstance(config, str) or not isinstance(layers, list):
            raise InvalidArgument(f"{where} needs a Config string and a Layers list")
        if not all(isinstance(s, str) for s in (*tags, *layers)) or not isinstance(tags, list):
            raise InvalidArgument(f"{where}: RepoTags and Layers must be lists of strings")
        out.append(_DockerEntry(config=config, repo_tags=tuple(tags), layers=tuple(layers)))
    return out


def _repositories(data: bytes | None) -> dict[str, tuple[str, ...]]:
    """The legacy `repositories` file: {repo: {tag: id}} -> {id: (repo:tag, ...)}."""
    if data is None:
        return {}
    doc = _json(data, "repositories")
    out: dict[str, tuple[str, ...]] = {}
    for repo, tags in doc.items():
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise InvalidArgument(f"load: repositories: {repo!r} must map tags to ids")
        for tag, image_id in tags.items():
            out[image_id] = (*out.get(image_id, ()), f"{repo}:{tag}")
    return out


def _docker_id(entry: _DockerEntry) -> str:
    # `repositories` names the top layer's directory (legacy) in docker saves.
    return entry.layers[-1].split("/")[0] if entry.layers else ""


def _docker_config(contents: ArchiveContents, ingest: Ingest, name: str) -> StagedBlob:
    data = contents.documents.get(name)
    if data is not None:
        staged = ingest.stage_bytes(data)
        # Legacy saves name the config `<sha256 hex>.json`: hold it to that.
        if staged.digest.hex != name.removesuffix(".json"):
            raise InvalidArgument(f"load: config {name}: digest mismatch (got {staged.digest})")
        return staged
    member = contents.member(name)
    if member is None:
        raise InvalidArgument(f"load: manifest.json names config {name}, not in the archive")
    return member


def _docker_layer(contents: ArchiveContents, name: str, expected: Digest) -> tuple[StagedBlob, str]:
    staged = contents.member(name)
    if staged is None:
        raise InvalidArgument(f"load: manifest.json names layer {name}, not in the archive")
    compression = sniff_compression(staged.head)
    got = diff_id(staged, compression)
    if got != expected:
        raise InvalidArgument(
            f"load: layer {name}: content is {got}, the config's diff_id says {expected}; "
            "the archive is corrupt"
        )
    return staged, _LAYER_TYPES[compression]


def _desc(media_type: str, blob: StagedBlob) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(blob.digest), "size": blob.size}


# --- names ---------------------------------------------------------------------------


def apply_name(candidates: list[Candidate], name: str | None) -> list[Candidate]:
    """`--name REPO:TAG` names a one-image archive; `--name REPO` gives bare ref.name tags
    a repository (and names a lone unnamed image REPO:latest)."""
    if name is None:
        return candidates
    if "@" in name:
        raise InvalidArgument(f"load: --name {name}: give REPO or REPO:TAG, not a digest")
    ref = Reference.parse(name)
    images = {c.record.manifest for c in candidates}
    if ":" in name.rsplit("/", 1)[-1]:
        if len(images) != 1:
            raise InvalidArgument(
                f"load: --name {name} with a tag needs an archive holding one image "
                f"(it has {len(images)})"
            )
        return [replace(c, names=(str(ref),)) for c in candidates]
    out = [
        replace(c, names=(*c.names, f"{ref.name}:{c.tag_hint}")) if c.tag_hint else c
        for c in candidates
    ]
    if len(images) == 1 and not any(c.names for c in out):
        out = [replace(c, names=(str(ref),)) for c in out]
    return out


# --- helpers -------------------------------------------------------------------------


def _reference(text: str, where: str) -> str:
    try:
        return str(Reference.parse(text))
    except VxnError as e:
        raise InvalidArgument(f"load: {where}: {e}") from None


def _read(staged: StagedBlob) -> bytes:
    if staged.size > MAX_DOCUMENT_SIZE:
        raise InvalidArgument(
            f"load: blob {staged.digest}: {staged.size} bytes, over the "
            f"{MAX_DOCUMENT_SIZE}-byte limit for a manifest or config"
        )
    return staged.path.read_bytes()


def _document(data: bytes, media_type: str | None, what: str) -> Manifest | Index:
    try:
        return parse_document(data, media_type)
    except InvalidArgument as e:
        raise InvalidArgument(f"load: {what}: {e}") from None


def _json_any(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        msg = str(e).replace("\n", " ")[:200]
        raise InvalidArgument(f"load: {what}: malformed JSON ({msg})") from None


def _json(data: bytes, what: str) -> dict[str, Any]:
    doc = _json_any(data, what)
    if not isinstance(doc, dict):
        raise InvalidArgument(f"load: {what}: malformed JSON (want an object)")
    return doc
