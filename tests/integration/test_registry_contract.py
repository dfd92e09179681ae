"""The registry client against a real docker-registry keeps the RegistryClient contract."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from data.registries import Images

from vxn.adapters.content import ContentStore, Ingest
from vxn.adapters.registry import Endpoint, RegistryClient, connect
from vxn.config import PullSettings
from vxn.core.digest import Digest
from vxn.testing.registry import LocalRegistry
from vxn.testing.registry_contract import RegistryContract

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(open_registry: LocalRegistry) -> Iterator[RegistryClient]:
    endpoint = Endpoint(host=open_registry.host, insecure=True)
    client = connect(endpoint, "vxn/test", limits=PullSettings(), op="pull t")
    yield client
    client.close()


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    with ContentStore(tmp_path / "content").ingest("pull t") as i:
        yield i


@pytest.fixture
def v1(images: Images) -> dict[str, Any]:
    return {"digest": images.v1.digest, "config": images.v1.config, "layers": images.v1.layers}


@pytest.fixture
def multi(images: Images) -> str:
    return str(images.index["digest"])


@pytest.fixture
def corrupt(open_registry: LocalRegistry) -> Callable[[Digest], Any]:
    @contextmanager
    def flip(digest: Digest) -> Iterator[None]:
        # docker-registry does not re-verify what it serves.
        data = open_registry.root / "data/docker/registry/v2/blobs" / digest.algorithm
        path = data / digest.hex[:2] / digest.hex / "data"
        original = path.read_bytes()
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
        try:
            yield
        finally:
            path.write_bytes(original)

    return flip


class TestDockerRegistry(RegistryContract):
    pass
