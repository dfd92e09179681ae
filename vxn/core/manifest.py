"""Manifests, indexes and image configs: parsing and validation of untrusted JSON.

Everything here comes from a registry or an archive, so every field is type-checked
and every way to make a document mean two things (CVE-2021-41190) is refused. Platform
selection over an index lives here too: it is a pure function of the parsed index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vxn.core import mediatypes as mt
from vxn.core.digest import Digest
from vxn.core.platform import Platform
from vxn.errors import InvalidArgument, NotFound

# Documents larger than this are refused before parsing (containerd uses 4 MiB too).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024

# Registries store sizes as int64; anything larger is a lie meant to overflow someone.
_MAX_BLOB_SIZE = 2**63 - 1
# Content types that say nothing about which document a body is.
_NO_INFORMATION = frozenset({"", "application/json", "application/octet-stream"})
ATTESTATION_ANNOTATION = "vnd.docker.reference.type"
ATTESTATION_VALUE = "attestation-manifest"
_SCHEMA1_ERROR = (
    "Docker schema 1 manifests are not supported; re-push the image with a current tool"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """An image manifest (OCI or Docker schema2)."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An image index (OCI) or manifest list (Docker)."""

    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageConfig:
    """The parts of an image config vxn uses; `raw` keeps the whole document."""

    os: str
    architecture: str
    variant: str = ""
    created: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    diff_ids: tuple[Digest, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def platform(self) -> Platform:
        return Platform(os=self.os, architecture=self.architecture, variant=self.variant)


# --- documents ---------------------------------------------------------------------


def parse_document(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index.

    `content_type` is the HTTP Content-Type, or the media type of the descriptor that
    pointed here; it must agree with the document's own `mediaType` when both say.
    Raises InvalidArgument for: oversize, malformed JSON, schema1, unknown media types,
    ambiguous documents (both `manifests` and `layers`/`config`, CVE-2021-41190),
    a mediaType that disagrees with content_type, and bad descriptors.
    """
    doc = _load(data, "manifest")
    declared = _media_type(doc)
    header = _content_type(content_type)
    version = doc.get("schemaVersion")
    # `type is int`, not `==`: JSON true and 1.0 are not schema versions.
    schema1 = type(version) is int and version == 1
    if schema1 or "fsLayers" in doc or {declared, header} & mt.SCHEMA1:
        raise _bad(_SCHEMA1_ERROR)
    if type(version) is not int or version != 2:
        raise _bad(f"schemaVersion is {_short(version)}; want 2")
    if "manifests" in doc and ("layers" in doc or "config" in doc):
        raise _bad("ambiguous document: it has both manifests and layers/config")
    if declared and header and declared != header:
        raise _bad(f"mediaType {declared} disagrees with the content type {header}")
    kind = declared or header or _infer(doc)
    if kind in mt.INDEXES:
        return _index(doc, kind)
    if kind in mt.MANIFESTS:
        return _manifest(doc, kind)
    raise _bad(f"unsupported media type {kind}; want an image index or image manifest")


def _infer(doc: dict[str, Any]) -> str:
    # Old OCI writers omit mediaType; the shape is then the only witness.
    if "manifests" in doc:
        return mt.OCI_INDEX
    if "config" in doc and "layers" in doc:
        return mt.OCI_MANIFEST
    raise _bad("no mediaType, and neither manifests nor config+layers; cannot tell what it is")


def _index(doc: dict[str, Any], kind: str) -> Index:
    if "config" in doc or "layers" in doc:
        raise _bad(f"{kind} has config/layers; want manifests only")
    entries = _list(doc.get("manifests"), "manifests", "manifest", required=True)
    return Index(
        media_type=kind,
        manifests=tuple(_descriptor(e, f"manifests[{i}]") for i, e in enumerate(entries)),
        annotations=_str_map(doc.get("annotations"), "annotations", "manifest"),
    )


def _manifest(doc: dict[str, Any], kind: str) -> Manifest:
    if "manifests" in doc:
        raise _bad(f"{kind} has manifests; want config and layers")
    if "config" not in doc:
        raise _bad("config is missing")
    config = _descriptor(doc["config"], "config")
    if config.media_type not in mt.CONFIGS:
        raise _bad(
            f"unsupported media type {config.media_type} for a config; "
            "vxn runs container images, not artifacts"
        )
    layers = []
    for i, entry in enumerate(_list(doc.get("layers"), "layers", "manifest", required=True)):
        layer = _descriptor(entry, f"layers[{i}]")
        if layer.media_type not in mt.LAYERS:
            raise _bad(f"unsupported media type {layer.media_type} for a layer (layers[{i}])")
        layers.append(layer)
    return Manifest(
        media_type=kind,
        config=config,
        layers=tuple(layers),
        annotations=_str_map(doc.get("annotations"), "annotations", "manifest"),
    )


def _descriptor(obj: object, where: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be an object")
    media_type = obj.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _bad(f"{where}.mediaType must be a non-empty string")
    digest = obj.get("digest")
    if not isinstance(digest, str):
        raise _bad(f"{where}.digest must be a string")
    try:
        parsed = Digest.parse(digest)
    except InvalidArgument as e:
        raise _bad(f"{where}.digest: {e}") from None
    size = obj.get("size")
    if type(size) is not int or not 0 <= size <= _MAX_BLOB_SIZE:
        raise _bad(f"{where}.size is {_short(size)}; want a non-negative integer")
    return Descriptor(
        media_type=media_type,
        digest=parsed,
        size=size,
        platform=_platform(obj.get("platform"), f"{where}.platform"),
        annotations=_str_map(obj.get("annotations"), f"{where}.annotations", "manifest"),
        urls=_str_list(obj.get("urls"), f"{where}.urls", "manifest"),
    )


def _platform(obj: object, where: str) -> Platform | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise _bad(f"{where} must be an object")
    os_, arch, variant = obj.get("os"), obj.get("architecture"), obj.get("variant")
    variant = "" if variant is None else variant
    if not isinstance(os_, str) or not isinstance(arch, str) or not isinstance(variant, str):
        raise _bad(f"{where} needs string os and architecture (and variant, if any)")
    # os.version / os.features matter only to Windows images; checked for type, not used.
    if not isinstance(obj.get("os.version", ""), str):
        raise _bad(f"{where}.os.version must be a string")
    _str_list(obj.get("os.features"), f"{where}.os.features", "manifest")
    return Platform(os=os_, architecture=arch, variant=variant)


# --- platform selection -------------------------------------------------------------


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The first entry of `index` that matches `want`; skips attestation manifests
    and unknown media types. Nested indexes are returned as is (the caller follows).

    When nothing names `want`, the first entry without a platform (a nested index, or
    a bare manifest as in an OCI layout's index.json) is returned; the caller must then
    check the platform of what it finds there.

    Raises NotFound: "no manifest for linux/amd64 in the index (it has: linux/arm64/v8,
    linux/s390x); pick one with --platform".
    """
    fallback: Descriptor | None = None
    seen: list[str] = []
    for entry in index.manifests:
        if entry.media_type not in mt.MANIFESTS | mt.INDEXES or is_attestation(entry):
            continue
        if entry.platform is None:
            if fallback is None:
                fallback = entry
            continue
        if entry.platform.matches(want):
            return entry
        if str(entry.platform) not in seen:
            seen.append(str(entry.platform))
    if fallback is not None:
        return fallback
    has = ", ".join(seen) or "none"
    raise NotFound(f"no manifest for {want} in the index (it has: {has}); pick one with --platform")


def is_attestation(entry: Descriptor) -> bool:
    """BuildKit's provenance/SBOM entries: not runnable, and never a platform match."""
    if entry.annotations.get(ATTESTATION_ANNOTATION) == ATTESTATION_VALUE:
        return True
    p = entry.platform
    return p is not None and p.os == "unknown" and p.architecture == "unknown"


# --- image config -------------------------------------------------------------------


def parse_config(data: bytes) -> ImageConfig:
    """Parse an image config blob (OCI and Docker share the shape).

    Raises InvalidArgument when malformed.
    """
    doc = _load(data, "image config")
    c = doc.get("config")
    if c is None:
        c = {}  # FROM-scratch images built with no settings may omit it
    elif not isinstance(c, dict):
        raise _bad("config must be an object", "image config")
    return ImageConfig(
        os=_required_str(doc.get("os"), "os"),
        architecture=_required_str(doc.get("architecture"), "architecture"),
        variant=_opt_str(doc.get("variant"), "variant") or "",
        created=_opt_str(doc.get("created"), "created"),
        entrypoint=_argv(c.get("Entrypoint"), "config.Entrypoint"),
        cmd=_argv(c.get("Cmd"), "config.Cmd"),
        env=_str_list(c.get("Env"), "config.Env", "image config"),
        working_dir=_opt_str(c.get("WorkingDir"), "config.WorkingDir") or "",
        user=_opt_str(c.get("User"), "config.User") or "",
        exposed_ports=_keys(c.get("ExposedPorts"), "config.ExposedPorts"),
        volumes=_keys(c.get("Volumes"), "config.Volumes"),
        labels=_str_map(c.get("Labels"), "config.Labels", "image config"),
        stop_signal=_opt_str(c.get("StopSignal"), "config.StopSignal") or "",
        diff_ids=_diff_ids(doc.get("rootfs")),
        raw=doc,
    )


def _argv(value: object, where: str) -> tuple[str, ...] | None:
    # None and [] differ: a null Cmd means "inherit", an empty one means "none".
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)  # Docker's strslice accepts a bare string as one element
    return _str_list(value, where, "image config")


def _diff_ids(rootfs: object) -> tuple[Digest, ...]:
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise _bad('rootfs must be an object with type "layers"', "image config")
    ids = _list(rootfs.get("diff_ids"), "rootfs.diff_ids", "image config", required=True)
    out = []
    for i, d in enumerate(ids):
        if not isinstance(d, str):
            raise _bad(f"rootfs.diff_ids[{i}] must be a string", "image config")
        try:
            out.append(Digest.parse(d))
        except InvalidArgument as e:
            raise _bad(f"rootfs.diff_ids[{i}]: {e}", "image config") from None
    return tuple(out)


def _keys(value: object, where: str) -> tuple[str, ...]:
    # ExposedPorts and Volumes are Go sets: only the keys carry meaning.
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object", "image config")
    return tuple(value)


def _required_str(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{where} must be a non-empty string", "image config")
    return value


def _opt_str(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad(f"{where} must be a string", "image config")


# --- shared JSON helpers ------------------------------------------------------------


def _load(data: bytes, subject: str) -> dict[str, Any]:
    if len(data) > MAX_DOCUMENT_SIZE:
        raise _bad(f"{len(data)} bytes is over the {MAX_DOCUMENT_SIZE}-byte limit", subject)
    try:
        doc = json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise _bad(f"malformed JSON ({_one_line(e)})", subject) from None
    if not isinstance(doc, dict):
        raise _bad(f"malformed JSON (want an object, got {type(doc).__name__})", subject)
    return doc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which duplicate wins, which is another way to be ambiguous.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _media_type(doc: dict[str, Any]) -> str:
    value = doc.get("mediaType", "")
    if not isinstance(value, str):
        raise _bad("mediaType must be a string")
    return value


def _content_type(value: str | None) -> str:
    """The bare media type, or "" when the header carries no information."""
    bare = (value or "").split(";", 1)[0].strip().lower()
    return "" if bare in _NO_INFORMATION else bare


def _list(value: object, where: str, subject: str, *, required: bool = False) -> list[Any]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise _bad(f"{where} must be a list", subject)
    return value


def _str_list(value: object, where: str, subject: str) -> tuple[str, ...]:
    items = _list(value, where, subject)
    if not all(isinstance(s, str) for s in items):
        raise _bad(f"{where} must be a list of strings", subject)
    return tuple(items)


def _str_map(value: object, where: str, subject: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad(f"{where} must be an object of strings", subject)
    return value


def _short(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "…"


def _one_line(e: BaseException) -> str:
    return str(e).replace("\n", " ")[:200]


def _bad(why: str, subject: str = "manifest") -> InvalidArgument:
    return InvalidArgument(f"invalid {subject}: {why}")
