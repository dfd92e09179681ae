"""The image catalog: which images the content store holds, and their names.

Pure data: the content store reads and writes its JSON (images.json), and the image
service plans every change with it — resolve a name or id, untag, delete, prune —
before anything on disk moves. Images are keyed by manifest digest; an image's id is
its config digest, as in Docker. Names are full normalized references: tagged, or
`name@digest` for an image pulled by digest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from vxn.core.digest import Digest
from vxn.core.reference import Reference
from vxn.errors import FailedPrecondition, Internal, InvalidArgument, NotFound

VERSION = 1
MIN_ID_PREFIX = 4
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    manifest: Digest
    config: Digest
    index: Digest | None = None  # the index it was chosen from, if any
    blobs: frozenset[Digest]  # every blob it holds: index(es), manifest, config, layers
    size: int  # config + compressed layers
    created: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "config": str(self.config),
            "index": str(self.index) if self.index else None,
            "blobs": sorted(str(b) for b in self.blobs),
            "size": self.size,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, manifest: str, doc: Any) -> ImageRecord:
        index = doc["index"]
        created = doc["created"]
        if not isinstance(doc["size"], int) or not isinstance(created, str | None):
            raise TypeError("size/created")
        return cls(
            manifest=Digest.parse(manifest),
            config=Digest.parse(doc["config"]),
            index=Digest.parse(index) if index is not None else None,
            blobs=frozenset(Digest.parse(b) for b in doc["blobs"]),
            size=doc["size"],
            created=created,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    image: ImageRecord
    reference: Reference | None  # set when the text named the image by a tag


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    images: Mapping[Digest, ImageRecord] = field(default_factory=dict)
    refs: Mapping[str, Digest] = field(default_factory=dict)  # full reference -> manifest

    # --- serialisation ---------------------------------------------------------------

    @classmethod
    def from_json(cls, data: bytes | None) -> Catalog:
        """Parse images.json (None: no file yet). Raises Internal when it is corrupt."""
        if data is None:
            return cls()
        try:
            doc = json.loads(data)
            if doc["version"] != VERSION:
                raise ValueError(f"version {doc['version']!r}, want {VERSION}")
            images = {
                Digest.parse(m): ImageRecord.from_json(m, rec) for m, rec in doc["images"].items()
            }
            refs = {str(Reference.parse(r)): Digest.parse(m) for r, m in doc["refs"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, InvalidArgument) as e:
            raise Internal(f"image metadata is corrupt ({type(e).__name__}: {e})") from None
        if not set(refs.values()) <= set(images):
            raise Internal("image metadata is corrupt (a name points to a missing image)")
        return cls(images=images, refs=refs)

    def to_json(self) -> bytes:
        doc = {
            "version": VERSION,
            "images": {str(m): r.to_json() for m, r in sorted(self.images.items(), key=_key)},
            "refs": {r: str(m) for r, m in sorted(self.refs.items())},
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    # --- queries ---------------------------------------------------------------------

    def names_of(self, manifest: Digest) -> list[str]:
        return sorted(r for r, m in self.refs.items() if m == manifest)

    def referenced_blobs(self) -> frozenset[Digest]:
        return frozenset().union(*(r.blobs for r in self.images.values()))

    def resolve(self, text: str) -> Resolved:
        """A tagged name (`alpine` = docker.io/library/alpine:latest), `name@digest`, or a
        full or short (>= 4 hex) image id (config digest) or manifest digest."""
        if text.startswith("sha256:"):
            return Resolved(
                image=self._by_prefix(text, text.removeprefix("sha256:")), reference=None
            )
        try:
            ref: Reference | None = Reference.parse(text)
        except InvalidArgument:
            if not set(text) <= _HEX:
                raise
            ref = None  # a 64-hex image id is not a name
        if ref is not None and ref.digest is not None:
            found = self.images.get(ref.digest)
            named = (ref.name + ":", ref.name + "@")  # by tag, or pulled by digest
            if found is not None and any(n.startswith(named) for n in self.refs):
                return Resolved(image=found, reference=None)
        elif ref is not None and str(ref) in self.refs:
            return Resolved(image=self.images[self.refs[str(ref)]], reference=ref)
        if set(text) <= _HEX and len(text) >= MIN_ID_PREFIX:
            return Resolved(image=self._by_prefix(text, text), reference=None)
        raise _no_such(text)

    def _by_prefix(self, text: str, prefix: str) -> ImageRecord:
        if len(prefix) < MIN_ID_PREFIX or not set(prefix) <= _HEX:
            raise InvalidArgument(
                f"image id {text!r}: want sha256:<{MIN_ID_PREFIX} to 64 lowercase hex digits>"
            )
        hits = {
            m: r
            for m, r in self.images.items()
            if r.config.hex.startswith(prefix) or m.hex.startswith(prefix)
        }
        if not hits:
            raise _no_such(text)
        if len(hits) > 1:
            raise InvalidArgument(
                f"image id {text}: matches {len(hits)} images; give more digits or a name"
            )
        return next(iter(hits.values()))

    # --- changes (each returns a new catalog) ----------------------------------------

    def with_image(self, record: ImageRecord) -> Catalog:
        old = self.images.get(record.manifest)
        if old is not None:  # the same manifest again: keep what either load stored
            record = replace(
                record, blobs=old.blobs | record.blobs, index=record.index or old.index
            )
        return replace(self, images={**self.images, record.manifest: record})

    def with_ref(self, reference: str, manifest: Digest) -> Catalog:
        """Name an image; a name moved off another image leaves that one dangling."""
        if manifest not in self.images:
            raise Internal(f"catalog: no image {manifest} to name {reference}")
        return replace(self, refs={**self.refs, reference: manifest})

    def without_ref(self, reference: str) -> Catalog:
        return replace(self, refs={r: m for r, m in self.refs.items() if r != reference})

    def without_image(self, manifest: Digest) -> Catalog:
        return Catalog(
            images={m: r for m, r in self.images.items() if m != manifest},
            refs={r: m for r, m in self.refs.items() if m != manifest},
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A planned change: the new catalog, the lines to print, the images deleted."""

    catalog: Catalog
    lines: tuple[str, ...] = ()
    deleted: tuple[ImageRecord, ...] = ()

    def orphaned_blobs(self) -> list[Digest]:
        """Blobs of deleted images that no remaining image holds."""
        keep = self.catalog.referenced_blobs()
        gone = frozenset().union(*(r.blobs for r in self.deleted))
        return sorted(gone - keep, key=str)


def plan_remove(catalog: Catalog, text: str, *, force: bool, users: Mapping[Digest, str]) -> Plan:
    """Docker's rmi: untag a name; delete the image when no name is left. By id, refuse
    an image with several names unless forced. Refuse an image a container uses."""
    found = catalog.resolve(text)
    image, names = found.image, catalog.names_of(found.image.manifest)
    if found.reference is not None and len(names) > 1:
        return Plan(
            catalog=catalog.without_ref(str(found.reference)),
            lines=(f"Untagged: {found.reference.familiar}",),
        )
    if found.reference is None and len(names) > 1 and not force:
        shown = ", ".join(_familiar(n) for n in names)
        raise FailedPrecondition(
            f"image {image.config} is referenced in {len(names)} names ({shown}); "
            "remove them by name or use -f"
        )
    user = users.get(image.manifest)
    if user is not None and not force:
        label = _familiar(names[0]) if names else str(image.config)
        raise FailedPrecondition(
            f"image {label} is in use by container {user}; stop and remove it first or use -f"
        )
    lines = [f"Untagged: {_familiar(n)}" for n in names]
    lines.append(f"Deleted: {image.config}")
    return Plan(catalog=catalog.without_image(image.manifest), lines=tuple(lines), deleted=(image,))


def plan_prune(catalog: Catalog, *, users: Mapping[Digest, str]) -> Plan:
    """Delete every unnamed image no container uses."""
    named = set(catalog.refs.values())
    doomed = [
        r for m, r in sorted(catalog.images.items(), key=_key) if m not in named and m not in users
    ]
    out = catalog
    for record in doomed:
        out = out.without_image(record.manifest)
    return Plan(catalog=out, deleted=tuple(doomed))


def unreferenced(catalog: Catalog, present: Iterable[Digest]) -> list[Digest]:
    keep = catalog.referenced_blobs()
    return sorted((d for d in present if d not in keep), key=str)


def _familiar(reference: str) -> str:
    return Reference.parse(reference).familiar


def _no_such(text: str) -> NotFound:
    return NotFound(f"image {text}: no such image; see `vxn images`, or load or pull it")


def _key(item: tuple[Digest, ImageRecord]) -> str:
    return str(item[0])
