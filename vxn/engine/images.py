"""Images on the Dom0: load, list, inspect, tag, remove, prune.

The engine is daemon-free (vxn-oci-runtime runs it in-process); cross-process safety
comes from the content store's file locks, and every change is planned on the pure
catalog (vxn.core.catalog) before the store applies it. Each async method runs its
`*_sync` core in a thread; the sync cores are what the tests drive directly.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vxn.adapters.archive import read_archive
from vxn.adapters.content import ContentStore, Transaction
from vxn.adapters.statedir import StateDir
from vxn.core.catalog import Catalog, ImageRecord, plan_prune, plan_remove, unreferenced
from vxn.core.digest import Digest
from vxn.core.manifest import MAX_DOCUMENT_SIZE, Manifest, parse_config, parse_document
from vxn.core.platform import Platform
from vxn.core.reference import Reference
from vxn.engine.load import Candidate, apply_name, plan_load
from vxn.engine.pull import (
    POLICIES,
    Fetched,
    ProgressFn,
    PullConfig,
    Puller,
    PullOptions,
    PullResult,
    pull_name,
)
from vxn.engine.rootfs import RootfsCache, RootfsInfo, UnpackInfo
from vxn.errors import Internal, InvalidArgument, NotFound, Unavailable


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
    def __init__(
        self,
        state: StateDir,
        platform: Platform,
        *,
        rootfs: RootfsCache | None = None,
        pull: PullConfig | None = None,
    ) -> None:
        self.state = state
        self.platform = platform
        self.store = ContentStore(state.content)
        self.puller = Puller(self.store, pull or PullConfig())
        self.rootfs_cache = rootfs or RootfsCache(state.rootfs, self.store)

    async def load(
        self, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
    ) -> builtins.list[LoadedImage]:
        """Load every image of an OCI layout (as a tar), oci-archive or docker-archive
        read from `stream` (optionally gzip'd). All or nothing."""
        return await asyncio.to_thread(self.load_sync, stream, name=name, platform=platform)

    async def list(self) -> builtins.list[ImageSummary]:
        return await asyncio.to_thread(self.list_sync)

    async def inspect(self, ref_or_id: str) -> dict[str, Any]:
        """Docker-shaped inspect document for one image."""
        return await asyncio.to_thread(self.inspect_sync, ref_or_id)

    async def tag(self, source: str, target: str) -> None:
        await asyncio.to_thread(self.tag_sync, source, target)

    async def remove(self, ref_or_id: str, *, force: bool = False) -> builtins.list[str]:
        """Untag (and delete when the last name goes); returns Docker's
        `Untagged: ...` / `Deleted: sha256:...` lines."""
        return await asyncio.to_thread(self.remove_sync, ref_or_id, force=force)

    async def prune(self) -> PruneReport:
        return await asyncio.to_thread(self.prune_sync)

    async def store_size(self) -> int:
        return await asyncio.to_thread(self.store_size_sync)

    async def rootfs(self, ref_or_id: str) -> RootfsInfo:
        """The image's read-only base disk, built first if need be."""
        return await asyncio.to_thread(self.rootfs_sync, ref_or_id)

    async def unpack(self, ref_or_id: str, dest: Path, *, uid: int = 0) -> UnpackInfo:
        """The flattened tree in a new directory `dest`, for a client of user id `uid`."""
        return await asyncio.to_thread(self.unpack_sync, ref_or_id, dest, uid=uid)

    async def pull(
        self,
        reference: str,
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> PullResult:
        """Pull from a registry: every blob verified, all or nothing, reusing what the
        store has. `progress` is called from worker threads."""
        return await asyncio.to_thread(
            self.pull_sync,
            reference,
            platform=platform,
            options=options,
            progress=progress,
            cancel=cancel,
        )

    async def ensure(
        self,
        reference: str,
        policy: str = "missing",
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> Digest:
        """The manifest digest of an image to run, pulled first as `policy` says
        (`--pull always|missing|never`)."""
        return await asyncio.to_thread(
            self.ensure_sync,
            reference,
            policy,
            platform=platform,
            options=options,
            progress=progress,
        )

    # --- the sync cores ----------------------------------------------------------------

    def pull_sync(
        self,
        reference: str,
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> PullResult:
        ref = Reference.parse(reference)
        op = f"pull {ref}"
        with self.store.ingest(op) as ingest:
            fetched = self.puller.fetch(
                ref,
                platform or self.platform,
                ingest,
                options or PullOptions(),
                progress or (lambda _: None),
                cancel or threading.Event(),
            )
            up_to_date = self.store.transaction(op, lambda tx: self._commit_pull(tx, fetched))
        record = fetched.candidate.record
        return PullResult(
            reference=pull_name(ref),
            digest=fetched.top,
            manifest=record.manifest,
            id=record.config,
            up_to_date=up_to_date,
        )

    def _commit_pull(self, tx: Transaction, fetched: Fetched) -> bool:
        """Commit a pull; whether its name already pointed at this image."""
        gone = sorted((d for d in fetched.reused if not self.store.has_blob(d)), key=str)
        if gone:
            raise Unavailable(
                f"{tx.op}: blob {gone[0]} was removed while pulling (by a prune?); pull again"
            )
        record, names = fetched.candidate.record, fetched.candidate.names
        before = self._parse(tx.read_metadata()).refs.get(names[0])
        self._commit(tx, [fetched.candidate])
        return before == record.manifest

    def ensure_sync(
        self,
        reference: str,
        policy: str = "missing",
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
    ) -> Digest:
        if policy not in POLICIES:
            raise InvalidArgument(f"--pull {policy}: want {', '.join(POLICIES)}")
        if policy != "always":
            want = platform or self.platform
            try:
                image = self._catalog().resolve(reference).image
            except NotFound:
                image = None
            if image is not None and self._platform_of(image).matches(want):
                return image.manifest
            if policy == "never":
                why = "not in the store" if image is None else f"the stored one is not {want}"
                raise NotFound(f"image {reference}: {why}, and --pull=never; pull or load it first")
        pulled = self.pull_sync(reference, platform=platform, options=options, progress=progress)
        return pulled.manifest

    def _platform_of(self, image: ImageRecord) -> Platform:
        return parse_config(self.store.read_blob(image.config, MAX_DOCUMENT_SIZE)).platform

    def load_sync(
        self, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
    ) -> builtins.list[LoadedImage]:
        want = platform or self.platform
        with self.store.ingest("load") as ingest:
            contents = read_archive(stream, ingest)
            candidates = apply_name(plan_load(contents, ingest, want), name)
            self.store.transaction("load", lambda tx: self._commit(tx, candidates))
        return _loaded(candidates)

    def _commit(self, tx: Transaction, candidates: builtins.list[Candidate]) -> None:
        catalog = self._parse(tx.read_metadata())
        staged = {
            digest: (blob, digest, size) for c in candidates for blob, digest, size in c.staged
        }
        tx.add_blobs(list(staged.values()))
        for c in candidates:
            catalog = catalog.with_image(c.record)
        for c in candidates:
            for reference in c.names:
                catalog = catalog.with_ref(reference, c.record.manifest)
        tx.write_metadata(catalog.to_json())

    def list_sync(self) -> builtins.list[ImageSummary]:
        catalog = self._catalog()
        rows = []
        for manifest, record in catalog.images.items():
            names = catalog.names_of(manifest)
            for n in names:
                ref = Reference.parse(n)
                rows.append(_summary(record, ref.familiar_name, ref.tag or "<none>"))
            if not names:
                rows.append(_summary(record, "<none>", "<none>"))
        # Newest first, as Docker lists them.
        rows.sort(key=lambda r: (r.repository, r.tag))
        rows.sort(key=lambda r: r.created or "", reverse=True)
        return rows

    def inspect_sync(self, ref_or_id: str) -> dict[str, Any]:
        with self.store.locked(exclusive=False, op=f"inspect {ref_or_id}"):
            catalog = self._parse(self.store.read_metadata())
            record = catalog.resolve(ref_or_id).image
            manifest = parse_document(self.store.read_blob(record.manifest, MAX_DOCUMENT_SIZE))
            config = parse_config(self.store.read_blob(record.config, MAX_DOCUMENT_SIZE))
        if not isinstance(manifest, Manifest):
            raise Internal(f"inspect {ref_or_id}: {record.manifest} is not a manifest")
        refs = [Reference.parse(n) for n in catalog.names_of(record.manifest)]
        return {
            "Id": str(record.config),
            "RepoTags": [r.familiar for r in refs if r.digest is None],
            "RepoDigests": sorted({f"{r.familiar_name}@{record.manifest}" for r in refs}),
            "Created": config.created,
            "Os": config.os,
            "Architecture": config.architecture,
            "Variant": config.variant,
            "Size": record.size,
            "Config": {
                "Entrypoint": _list_or_none(config.entrypoint),
                "Cmd": _list_or_none(config.cmd),
                "Env": list(config.env),
                "WorkingDir": config.working_dir,
                "User": config.user,
                "ExposedPorts": {p: {} for p in config.exposed_ports},
                "Volumes": {v: {} for v in config.volumes},
                "Labels": dict(config.labels),
                "StopSignal": config.stop_signal,
            },
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
            "Manifest": str(record.manifest),
            "Index": str(record.index) if record.index else None,
            "Layers": [
                {"Digest": str(d.digest), "MediaType": d.media_type, "Size": d.size}
                for d in manifest.layers
            ],
            "Rootfs": self.rootfs_cache.state(record.manifest),
        }

    def tag_sync(self, source: str, target: str) -> None:
        ref = Reference.parse(target)
        if ref.digest is not None:
            raise InvalidArgument(f"tag {target}: a tag cannot hold a digest; give REPO[:TAG]")

        def body(tx: Transaction) -> None:
            catalog = self._parse(tx.read_metadata())
            record = catalog.resolve(source).image
            tx.write_metadata(catalog.with_ref(str(ref), record.manifest).to_json())

        self.store.transaction(f"tag {source}", body)

    def remove_sync(self, ref_or_id: str, *, force: bool = False) -> builtins.list[str]:
        users = container_users(self.state.containers)

        def body(tx: Transaction) -> builtins.list[str]:
            plan = plan_remove(self._parse(tx.read_metadata()), ref_or_id, force=force, users=users)
            tx.write_metadata(plan.catalog.to_json())
            tx.delete_blobs(plan.orphaned_blobs())  # after the metadata stops naming them
            self.rootfs_cache.remove(r.manifest for r in plan.deleted)
            return builtins.list(plan.lines)

        return self.store.transaction(f"remove {ref_or_id}", body)

    def prune_sync(self) -> PruneReport:
        users = container_users(self.state.containers)

        def body(tx: Transaction) -> PruneReport:
            plan = plan_prune(self._parse(tx.read_metadata()), users=users)
            if plan.deleted:
                tx.write_metadata(plan.catalog.to_json())
            orphans = unreferenced(plan.catalog, self.store.blobs())
            freed = tx.delete_blobs(orphans)
            freed += self.store.prune_staging()
            freed += self.rootfs_cache.prune(plan.catalog.images)
            return PruneReport(deleted=[str(d) for d in orphans], reclaimed=freed)

        return self.store.transaction("prune", body)

    def store_size_sync(self) -> int:
        return self.store.size()

    def rootfs_sync(self, ref_or_id: str) -> RootfsInfo:
        return self.rootfs_cache.ensure(self._catalog().resolve(ref_or_id).image)

    def unpack_sync(self, ref_or_id: str, dest: Path, *, uid: int = 0) -> UnpackInfo:
        return self.rootfs_cache.unpack(self._catalog().resolve(ref_or_id).image, dest, uid=uid)

    # --- helpers -----------------------------------------------------------------------

    def _catalog(self) -> Catalog:
        with self.store.locked(exclusive=False, op="images"):
            return self._parse(self.store.read_metadata())

    def _parse(self, data: bytes | None) -> Catalog:
        try:
            return Catalog.from_json(data)
        except Internal as e:
            raise Internal(
                f"{self.store.metadata_path}: {e}; restore it or remove {self.store.root}"
            ) from None


def container_users(containers: Path) -> dict[Digest, str]:
    """Manifest digest -> a container using it, from `<containers>/<id>/config.json`."""
    users: dict[Digest, str] = {}
    try:
        ids = sorted(os.listdir(containers))
    except FileNotFoundError:
        return users
    for cid in ids:
        try:
            doc = json.loads((containers / cid / "config.json").read_bytes())
            image = Digest.parse(doc["image"])
        except (OSError, ValueError, KeyError, TypeError, InvalidArgument):
            continue  # not (yet) a container record: they are written atomically
        name = doc.get("name")
        users.setdefault(image, name if isinstance(name, str) and name else cid)
    return users


def _summary(record: ImageRecord, repository: str, tag: str) -> ImageSummary:
    return ImageSummary(
        repository=repository,
        tag=tag,
        id=str(record.config),
        manifest=str(record.manifest),
        created=record.created,
        size=record.size,
    )


def _loaded(candidates: list[Candidate]) -> list[LoadedImage]:
    out: list[LoadedImage] = []
    for c in candidates:
        for reference in c.names or (None,):
            item = LoadedImage(reference=reference, id=str(c.record.config))
            if item not in out:
                out.append(item)
    return out


def _list_or_none(value: tuple[str, ...] | None) -> list[str] | None:
    return list(value) if value is not None else None
