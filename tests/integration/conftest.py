"""Registries for the pull tests: Debian's docker-registry, started once per session on
free 127.0.0.1 ports (one open, one behind htpasswd Basic auth, one on TLS), holding
test images pushed by skopeo as OCI and as Docker schema 2; and a fresh loopback
proxy in front of the open one for each test that wants faults or Bearer auth.
And the guest kernel, for the tests that boot QEMU guests (integration/qemuguests.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from data import imagebuild as ib
from data.registries import PASSWORD, USER, Images
from integration.qemuguests import guest_kernel

from vxn.testing.registry import LocalRegistry
from vxn.testing.registry_proxy import RegistryProxy


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    root = tmp_path_factory.mktemp("pull-images")
    v1 = ib.simple_layout(root / "single", ib.ImageSpec(marker="pull"), name="v1")
    index, amd, arm = ib.multiarch_layout(root / "multi")
    plain = ib.Layout(root / "plain-multi")
    both = [
        plain.add_image(ib.ImageSpec(arch="amd64")),
        plain.add_image(ib.ImageSpec(arch="arm64", variant="v8")),
    ]
    entry = plain.add_index(both, attestation=False)
    plain.write_index([(entry, ib.ref_name("multi"))])
    return Images(root / "single", root / "multi", root / "plain-multi", v1, index, amd, arm)


@pytest.fixture(scope="session")
def open_registry(
    tmp_path_factory: pytest.TempPathFactory, images: Images
) -> Iterator[LocalRegistry]:
    with LocalRegistry(tmp_path_factory.mktemp("registry")) as reg:
        reg.push(images.single, "v1", "vxn/test:v1")
        reg.push(images.multi, "multi", "vxn/test:multi")
        reg.push(images.single, "v1", "vxn/test:docker-v1", v2s2=True)
        reg.push(images.plain_multi, "multi", "vxn/test:docker-multi", v2s2=True)
        yield reg


@pytest.fixture(scope="session")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, images: Images
) -> Iterator[LocalRegistry]:
    with LocalRegistry(tmp_path_factory.mktemp("basic"), users={USER: PASSWORD}) as reg:
        reg.push(images.single, "v1", "vxn/test:v1")
        yield reg


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, images: Images
) -> Iterator[LocalRegistry]:
    with LocalRegistry(tmp_path_factory.mktemp("tls"), tls=True) as reg:
        reg.push(images.single, "v1", "vxn/test:v1")
        yield reg


@pytest.fixture
def proxy(open_registry: LocalRegistry) -> Iterator[RegistryProxy]:
    with RegistryProxy(open_registry.host) as p:
        yield p


@pytest.fixture(scope="session")
def kernel_dir() -> Path:
    return guest_kernel()
