"""The fake registry keeps the same contract as the real client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from data import imagebuild as ib

from vxn.adapters.content import ContentStore, Ingest
from vxn.core.digest import Digest
from vxn.testing.fake_registry import FakeRegistry
from vxn.testing.registry_contract import RegistryContract


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ib.Built, ib.Json]:
    root = tmp_path_factory.mktemp("fake-registry")
    layout = ib.Layout(root)
    v1 = layout.add_image()
    arm = layout.add_image(ib.ImageSpec(arch="arm64", variant="v8"))
    index = layout.add_index([v1, arm])
    layout.write_index([(v1.manifest, ib.ref_name("v1")), (index, ib.ref_name("multi"))])
    return root, v1, index


@pytest.fixture
def registry(layout: tuple[Path, ib.Built, ib.Json]) -> FakeRegistry:
    return FakeRegistry.from_layout(layout[0])


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Ingest]:
    with ContentStore(tmp_path / "content").ingest("pull t") as i:
        yield i


@pytest.fixture
def v1(layout: tuple[Path, ib.Built, ib.Json]) -> dict[str, Any]:
    built = layout[1]
    return {"digest": built.digest, "config": built.config, "layers": built.layers}


@pytest.fixture
def multi(layout: tuple[Path, ib.Built, ib.Json]) -> str:
    return str(layout[2]["digest"])


@pytest.fixture
def corrupt(registry: FakeRegistry) -> Callable[[Digest], Any]:
    @contextmanager
    def flip(digest: Digest) -> Iterator[None]:
        registry.corrupt(digest)
        yield

    return flip


class TestFakeRegistry(RegistryContract):
    pass
