"""An in-memory registry with the real client's interface, for engine tests.

Serves one repository from an OCI image layout (tags from `ref.name` annotations,
blobs by digest) and verifies what it stages just as the real client does, so it
passes the same contract (vxn.testing.registry_contract). `connect` is what
PullConfig.connect wants; `fetched` records every blob served, `manifests` every
manifest GET and `heads` every HEAD; `head_digests = False` makes HEADs say no digest.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from vxn.adapters.content import Ingest, StagedBlob
from vxn.adapters.registry import Document, Endpoint, Progress
from vxn.core.digest import Digest
from vxn.core.manifest import MAX_DOCUMENT_SIZE, Descriptor
from vxn.errors import InvalidArgument, NotFound

REF_NAME = "org.opencontainers.image.ref.name"
CHUNK = 64 * 1024


class FakeRegistry:
    def __init__(self, tags: dict[str, Digest], blobs: dict[Digest, bytes]) -> None:
        self.tags = tags
        self.blobs = blobs
        self.op = "pull"
        self.fetched: list[Digest] = []
        self.manifests: list[str] = []
        self.heads: list[str] = []
        self.head_digests = True
        self.endpoints: list[Endpoint] = []
        self._lock = threading.Lock()

    @classmethod
    def from_layout(cls, layout: Path) -> FakeRegistry:
        blobs = {
            Digest.parse(f"sha256:{p.name}"): p.read_bytes()
            for p in (layout / "blobs" / "sha256").iterdir()
        }
        index = json.loads((layout / "index.json").read_bytes())
        tags = {
            m["annotations"][REF_NAME]: Digest.parse(m["digest"])
            for m in index["manifests"]
            if REF_NAME in m.get("annotations", {})
        }
        return cls(tags, blobs)

    def connect(self, endpoint: Endpoint, repository: str, **kw: Any) -> FakeRegistry:
        self.endpoints.append(endpoint)
        self.op = str(kw.get("op", "pull"))
        return self

    def _find(self, obj: str) -> tuple[Digest | None, bytes | None]:
        digest = self.tags.get(obj) or (Digest.parse(obj) if obj.startswith("sha") else None)
        return digest, self.blobs.get(digest) if digest else None

    def head(self, obj: str) -> Digest | None:
        self.heads.append(obj)
        digest, data = self._find(obj)
        return digest if data is not None and self.head_digests else None

    def manifest(self, obj: str) -> Document:
        self.manifests.append(obj)
        digest, data = self._find(obj)
        if digest is None or data is None:
            raise NotFound(f"{self.op}: manifest {obj}: 404 MANIFEST_UNKNOWN: manifest unknown")
        if len(data) > MAX_DOCUMENT_SIZE:
            raise InvalidArgument(f"{self.op}: manifest {obj}: over the size limit")
        media_type = json.loads(data).get("mediaType", "")
        return Document(data=data, media_type=media_type, digest=digest)

    def blob(
        self, desc: Descriptor, ingest: Ingest, progress: Progress | None = None
    ) -> StagedBlob:
        data = self.blobs.get(desc.digest)
        if data is None:
            raise NotFound(f"{self.op}: blob {desc.digest}: 404 BLOB_UNKNOWN: blob unknown")
        with self._lock:
            self.fetched.append(desc.digest)
        if len(data) != desc.size:
            raise InvalidArgument(
                f"{self.op}: blob {desc.digest}: {len(data)} bytes, its descriptor says {desc.size}"
            )
        writer = ingest.writer(desc.digest.algorithm)
        try:
            for i in range(0, len(data), CHUNK):
                writer.write(data[i : i + CHUNK])
                if progress is not None:
                    progress(min(len(data), i + CHUNK))
            staged = writer.finish()
        finally:
            writer.close()
        if staged.digest != desc.digest:
            staged.path.unlink()
            raise InvalidArgument(
                f"{self.op}: blob {desc.digest}: digest mismatch (got {staged.digest})"
            )
        return staged

    def close(self) -> None:
        pass

    def corrupt(self, digest: Digest) -> None:
        """Flip the last byte of a blob, as a bad disk or a bad proxy would."""
        data = bytearray(self.blobs[digest])
        data[-1] ^= 0xFF
        self.blobs[digest] = bytes(data)
