"""The contract every RegistryClient keeps: the real one against docker-registry, and
vxn.testing.fake_registry's. Subclass `RegistryContract` and provide the fixtures:

    registry   a RegistryClient for a repository holding tag `v1` (one image) and
               tag `multi` (an index)
    v1         {"digest": the v1 manifest digest, "config": …, "layers": […]} with
               descriptors as JSON
    multi      the index digest
    corrupt    corrupt(digest) -> a context manager during which that blob's stored
               bytes have one byte flipped
    ingest     a content-store Ingest to stage into
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from vxn.adapters.content import Ingest
from vxn.adapters.registry import RegistryClient
from vxn.core.digest import Digest
from vxn.core.manifest import Descriptor, Index, Manifest, parse_document
from vxn.errors import InvalidArgument, NotFound

Corrupt = Callable[[Digest], AbstractContextManager[None]]


def descriptor(doc: dict[str, Any]) -> Descriptor:
    return Descriptor(
        media_type=doc["mediaType"], digest=Digest.parse(doc["digest"]), size=doc["size"]
    )


class RegistryContract:
    def test_a_manifest_by_tag_comes_with_its_digest(
        self, registry: RegistryClient, v1: dict[str, Any]
    ) -> None:
        doc = registry.manifest("v1")
        assert str(doc.digest) == v1["digest"]
        parsed = parse_document(doc.data, doc.media_type)
        assert isinstance(parsed, Manifest)
        assert [str(d.digest) for d in parsed.layers] == [d["digest"] for d in v1["layers"]]

    def test_a_manifest_by_digest_is_the_same(
        self, registry: RegistryClient, v1: dict[str, Any]
    ) -> None:
        assert registry.manifest(v1["digest"]).data == registry.manifest("v1").data

    def test_an_index_by_tag(self, registry: RegistryClient, multi: str) -> None:
        doc = registry.manifest("multi")
        assert str(doc.digest) == multi
        assert isinstance(parse_document(doc.data, doc.media_type), Index)

    def test_a_head_gives_the_digest_of_a_tag_or_a_digest(
        self, registry: RegistryClient, v1: dict[str, Any], multi: str
    ) -> None:
        assert str(registry.head("v1")) == v1["digest"]
        assert str(registry.head(v1["digest"])) == v1["digest"]
        assert str(registry.head("multi")) == multi

    def test_a_head_of_an_unknown_tag_says_no_digest(self, registry: RegistryClient) -> None:
        assert registry.head("nope") is None

    def test_an_unknown_tag_is_not_found(self, registry: RegistryClient) -> None:
        with pytest.raises(NotFound, match="manifest nope: 404 MANIFEST_UNKNOWN"):
            registry.manifest("nope")

    def test_a_blob_is_staged_verified_with_progress(
        self, registry: RegistryClient, v1: dict[str, Any], ingest: Ingest
    ) -> None:
        desc = descriptor(v1["layers"][0])
        seen: list[int] = []
        staged = registry.blob(desc, ingest, seen.append)
        assert (staged.digest, staged.size) == (desc.digest, desc.size)
        assert staged.path.stat().st_size == desc.size
        assert seen[-1] == desc.size

    def test_a_corrupt_blob_is_refused_and_thrown_away(
        self, registry: RegistryClient, v1: dict[str, Any], ingest: Ingest, corrupt: Corrupt
    ) -> None:
        desc = descriptor(v1["config"])
        with corrupt(desc.digest), pytest.raises(InvalidArgument) as info:
            registry.blob(desc, ingest)
        assert f"blob {desc.digest}: digest mismatch (got sha256:" in str(info.value)
        assert list(ingest.dir.iterdir()) == []

    def test_a_missing_blob_is_not_found(self, registry: RegistryClient, ingest: Ingest) -> None:
        desc = Descriptor(media_type="x", digest=Digest.parse("sha256:" + "ab" * 32), size=3)
        with pytest.raises(NotFound, match=f"blob {desc.digest}: 404"):
            registry.blob(desc, ingest)
