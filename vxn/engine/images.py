"""Images on the Dom0: load, list, inspect, tag, remove, prune.

STUB: the interface is fixed; the body is being written. The engine is
daemon-free (vxn-oci-runtime will run it in-process); cross-process safety comes
from the content store's file locks. Bulk work runs in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from vxn.adapters.statedir import StateDir
from vxn.core.platform import Platform


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageSummary:
    """One row of `vxn images`: one per (image, name), or one `<none>` row for an unnamed image."""

    repository: str  # familiar name ("alpine", "localhost:5000/x") or "<none>"
    tag: str  # or "<none>"
    id: str  # config digest, "sha256:..."
    manifest: str  # manifest digest, "sha256:..."
    created: str | None  # RFC 3339 from the image config
    size: int  # bytes: config + compressed layers

    def to_json(self) -> dict[str, Any]:
        return {
            "Repository": self.repository,
            "Tag": self.tag,
            "ID": self.id,
            "Digest": self.manifest,
            "CreatedAt": self.created,
            "Size": self.size,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedImage:
    """What `vxn load` prints: `Loaded image: <ref>` or `Loaded image ID: <id>`."""

    reference: str | None  # full normalized reference, or None for an unnamed image
    id: str  # config digest


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneReport:
    deleted: Sequence[str]  # digests of removed blobs
    reclaimed: int  # bytes


class ImageService:
    def __init__(self, state: StateDir, platform: Platform) -> None:
        self.state = state
        self.platform = platform

    async def load(
        self, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
    ) -> list[LoadedImage]:
        """Load every image of an OCI layout (as a tar), oci-archive or docker-archive
        read from `stream` (optionally gzip'd). All or nothing."""
        raise NotImplementedError

    async def list(self) -> list[ImageSummary]:
        raise NotImplementedError

    async def inspect(self, ref_or_id: str) -> dict[str, Any]:
        """Docker-shaped inspect document for one image."""
        raise NotImplementedError

    async def tag(self, source: str, target: str) -> None:
        raise NotImplementedError

    async def remove(self, ref_or_id: str, *, force: bool = False) -> list[str]:
        """Untag (and delete when the last name goes); returns Docker's
        `Untagged: ...` / `Deleted: sha256:...` lines."""
        raise NotImplementedError

    async def prune(self) -> PruneReport:
        raise NotImplementedError

    async def store_size(self) -> int:
        raise NotImplementedError
