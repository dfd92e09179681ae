"""Manifests, indexes and image configs: parsing and validation of untrusted JSON.

STUB: the interface is fixed; the body is being written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vxn.core.digest import Digest
from vxn.core.platform import Platform

# Documents larger than this are refused before parsing (containerd uses 4 MiB too).
MAX_DOCUMENT_SIZE = 4 * 1024 * 1024


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


def parse_document(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index; `content_type` is the HTTP Content-Type if any.

    Raises InvalidArgument for: oversize, malformed JSON, schema1 ("... schema 1 ...
    is not supported; re-push the image with a current tool"), unknown media types,
    ambiguous documents (both `manifests` and `layers`/`config`, CVE-2021-41190),
    a mediaType that disagrees with content_type, and bad descriptors.
    """
    raise NotImplementedError


def parse_config(data: bytes) -> ImageConfig:
    """Parse an image config blob. Raises InvalidArgument when malformed."""
    raise NotImplementedError


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The first entry of `index` that matches `want`; skips attestation manifests
    and unknown media types. Nested indexes are returned as is (the caller follows).

    Raises NotFound: "no manifest for linux/amd64 in the index (it has: linux/arm64/v8,
    linux/s390x); pick one with --platform".
    """
    raise NotImplementedError
