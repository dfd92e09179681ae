"""Pulling one image from a registry into staging, ready for one all-or-nothing commit.

Follows the reference through indexes to the platform's manifest (as a load does),
fetches the config, then downloads the layers the store lacks on a pool of its own
(`pull.parallel` threads: the default executor's few workers belong to everyone).
Every document and blob is verified by the registry adapter before it is staged;
the image service commits the result, so nothing is visible until all of it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vxn.adapters.content import ContentStore, Ingest, StagedBlob
from vxn.adapters.registry import (
    Document,
    Endpoint,
    RegistryClient,
    connect as connect_registry,
    default_cert_dir,
)
from vxn.config import PullSettings, RegistrySettings
from vxn.core.catalog import ImageRecord
from vxn.core.credentials import Credentials
from vxn.core.digest import Digest
from vxn.core.manifest import (
    MAX_DOCUMENT_SIZE,
    Descriptor,
    ImageConfig,
    Manifest,
    parse_config,
    parse_document,
    select_manifest,
)
from vxn.core.platform import Platform
from vxn.core.reference import Reference
from vxn.engine.load import MAX_NESTING, Candidate, Staged
from vxn.errors import InvalidArgument, NotFound

PROGRESS_INTERVAL = 0.1  # seconds between two "Downloading" events of one blob
POLICIES = ("always", "missing", "never")


# vxn.adapters.registry.connect's signature; tests pass a fake registry's.
Connect = Callable[..., RegistryClient]


@dataclass(frozen=True, slots=True, kw_only=True)
class PullConfig:
    """The daemon's side: settings from vxn.toml."""

    settings: PullSettings = field(default_factory=PullSettings)
    registries: Mapping[str, RegistrySettings] = field(default_factory=dict)
    connect: Connect = connect_registry


@dataclass(frozen=True, slots=True, kw_only=True)
class PullOptions:
    """The caller's side: who they are and how much TLS they want."""

    credentials: Credentials | None = None
    tls_verify: bool | None = None  # None: as the config says for the registry
    cert_dir: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PullEvent:
    """A progress line: `<id>: <status> [current/total]`, as Docker shows them."""

    id: str  # 12 hex digits of a blob, or the tag
    status: str
    current: int = 0
    total: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "current": self.current, "total": self.total}


ProgressFn = Callable[[PullEvent], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class PullResult:
    reference: str  # the full name the image now has
    digest: Digest  # what the reference resolved to (an index for multi-arch images)
    manifest: Digest  # the platform's manifest
    id: Digest  # the config digest
    up_to_date: bool  # the name already pointed at this image

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "manifest": str(self.manifest),
            "id": str(self.id),
            "up_to_date": self.up_to_date,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """A pulled image in staging: the candidate to commit, and the blobs it reuses from
    the store (which must still be there when it commits)."""

    candidate: Candidate
    reused: frozenset[Digest]
    top: Digest


def pull_name(ref: Reference) -> str:
    """The name a pull gives: `name:tag`, or `name@digest` (then the tag is ignored)."""
    return f"{ref.name}@{ref.digest}" if ref.digest is not None else str(ref)


class Puller:
    def __init__(self, store: ContentStore, config: PullConfig) -> None:
        self.store = store
        self.config = config

    def endpoint(self, ref: Reference, options: PullOptions) -> Endpoint:
        conf = self.config.registries.get(ref.registry) or self.config.registries.get(ref.domain)
        insecure = conf is not None and conf.insecure
        if options.tls_verify is not None:
            insecure = not options.tls_verify
        return Endpoint(
            host=ref.registry,
            insecure=insecure,
            cert_dir=options.cert_dir or default_cert_dir(ref.registry),
            credentials=options.credentials,
        )

    def fetch(
        self,
        ref: Reference,
        want: Platform,
        ingest: Ingest,
        options: PullOptions,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> Fetched:
        progress(PullEvent(id=ref.tag or ref.object[:19], status=f"Pulling from {ref.path}"))
        endpoint = self.endpoint(ref, options)
        limits = self.config.settings
        registry = self.config.connect(
            endpoint, ref.path, limits=limits, op=ingest.op, cancel=cancel
        )
        try:
            return self._fetch(registry, ref, want, ingest, progress, cancel)
        finally:
            registry.close()

    def _fetch(
        self,
        registry: RegistryClient,
        ref: Reference,
        want: Platform,
        ingest: Ingest,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> Fetched:
        top = self._top(registry, ref)
        docs, stored, digest, manifest, platform_known = self._resolve(registry, top, want, ingest)
        if manifest.config.size > MAX_DOCUMENT_SIZE:
            raise InvalidArgument(f"{ingest.op}: config {manifest.config.digest} is too big")
        staged, reused = self._blobs(registry, manifest, ingest, progress, cancel)
        config = self._config(ingest.op, manifest.config, staged)
        _check(ingest.op, manifest, config, want if not platform_known else None)
        blobs = [manifest.config, *manifest.layers]
        record = ImageRecord(
            manifest=digest,
            config=manifest.config.digest,
            index=top.digest if top.digest != digest else None,
            blobs=frozenset({d for _, d, _ in docs} | {d.digest for d in blobs}),
            size=sum(d.size for d in blobs),
            created=config.created,
        )
        candidate = Candidate(record=record, staged=(*docs, *staged), names=(pull_name(ref),))
        return Fetched(candidate=candidate, reused=frozenset(reused | stored), top=top.digest)

    def _top(self, registry: RegistryClient, ref: Reference) -> Document:
        """The document `ref` names. By tag, a HEAD asks for its digest first, so a
        repeat pull (`--pull always`) GETs no manifest the store has; when the registry
        does not say, or names one the store lacks, the GET verifies what it gets."""
        digest = ref.digest or registry.head(ref.object)
        stored = self._stored(digest) if digest is not None else None
        return stored or registry.manifest(ref.object)

    def _stored(self, digest: Digest) -> Document | None:
        """A document from the store, which verified it when it came in."""
        try:
            data = self.store.read_blob(digest, MAX_DOCUMENT_SIZE)
        except NotFound:
            return None
        return Document(data=data, media_type="", digest=digest)  # its mediaType says

    def _resolve(
        self, registry: RegistryClient, doc: Document, want: Platform, ingest: Ingest
    ) -> tuple[list[Staged], set[Digest], Digest, Manifest, bool]:
        """From the top document down indexes to the manifest for `want`; the documents
        to stage, and those the store has."""
        op, staged, media_type, platform_known = ingest.op, [], doc.media_type, True
        stored: set[Digest] = set()
        for _ in range(MAX_NESTING + 1):
            parsed = _parse(doc.data, media_type, f"{op}: manifest {doc.digest}")
            if self.store.has_blob(doc.digest):
                stored.add(doc.digest)
            else:
                staged.append((ingest.stage_bytes(doc.data), doc.digest, len(doc.data)))
            if isinstance(parsed, Manifest):
                return staged, stored, doc.digest, parsed, platform_known
            try:
                chosen = select_manifest(parsed, want)
            except NotFound as e:
                raise NotFound(f"{op}: index {doc.digest}: {e}") from None
            doc = self._stored(chosen.digest) or registry.manifest(str(chosen.digest))
            media_type = chosen.media_type
            platform_known = chosen.platform is not None
            if len(doc.data) != chosen.size:
                raise InvalidArgument(
                    f"{op}: manifest {chosen.digest}: {len(doc.data)} bytes, its index says "
                    f"{chosen.size}"
                )
        raise InvalidArgument(f"{op}: indexes nest over {MAX_NESTING} deep")

    def _config(self, op: str, desc: Descriptor, staged: list[Staged]) -> ImageConfig:
        mine = next((blob for blob, digest, _ in staged if digest == desc.digest), None)
        if mine is not None:
            data = mine.path.read_bytes()
        else:
            data = self.store.read_blob(desc.digest, MAX_DOCUMENT_SIZE)
        try:
            return parse_config(data)
        except InvalidArgument as e:
            raise InvalidArgument(f"{op}: config {desc.digest}: {e}") from None

    def _blobs(
        self,
        registry: RegistryClient,
        manifest: Manifest,
        ingest: Ingest,
        progress: ProgressFn,
        cancel: threading.Event,
    ) -> tuple[list[Staged], set[Digest]]:
        """Download the config and the layers the store lacks, all at once; stop them
        all at the first failure and raise it. Also returns the blobs the store had."""
        layers = list({d.digest: d for d in manifest.layers}.values())
        wanted = [manifest.config, *(d for d in layers if d.digest != manifest.config.digest)]
        present = {d.digest for d in wanted if self.store.has_blob(d.digest)}
        for d in layers:
            status = "Already exists" if d.digest in present else "Waiting"
            progress(PullEvent(id=d.digest.short, status=status, total=d.size))
        missing = [d for d in wanted if d.digest not in present]
        if not missing:
            return [], present
        with ThreadPoolExecutor(min(self.config.settings.parallel, len(missing))) as pool:
            futures = [
                pool.submit(_download, registry, d, ingest, progress if d in layers else None)
                for d in missing
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f in done and f.exception()), None)
            if failed is not None:
                cancel.set()  # the others stop at their next chunk
                wait(futures)
                raise _error(failed)
        staged = [(f.result(), d.digest, d.size) for f, d in zip(futures, missing, strict=True)]
        return staged, present


def _check(op: str, manifest: Manifest, config: ImageConfig, want: Platform | None) -> None:
    """The config agrees with its manifest (and with `want`, when no index entry said)."""
    if want is not None and not config.platform.matches(want):
        raise NotFound(f"{op}: no manifest for {want} in the index; pick one with --platform")
    if len(config.diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"{op}: config {manifest.config.digest} lists {len(config.diff_ids)} diff_ids "
            f"for {len(manifest.layers)} layers; the image is malformed"
        )


def _download(
    registry: RegistryClient, desc: Descriptor, ingest: Ingest, progress: ProgressFn | None
) -> StagedBlob:
    """One blob; progress lines (throttled) when `progress` is given: layers, not configs."""
    if progress is None:
        return registry.blob(desc, ingest)
    short, last = desc.digest.short, 0.0

    def meter(received: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL:
            last = now
            progress(PullEvent(id=short, status="Downloading", current=received, total=desc.size))

    staged = registry.blob(desc, ingest, meter)
    progress(PullEvent(id=short, status="Download complete", current=desc.size, total=desc.size))
    return staged


def _error(future: Future[StagedBlob]) -> BaseException:
    error = future.exception()
    assert error is not None
    return error


def _parse(data: bytes, media_type: str, what: str) -> Any:
    try:
        return parse_document(data, media_type)
    except InvalidArgument as e:
        raise InvalidArgument(f"{what}: {e}") from None
