"""The registry adapter's face: what the engine may know of a registry.

`connect()` gives a `RegistryClient` for one repository of one registry. The client
(registry_client, on oras-py: registry_http for HTTP, TLS and retries,
registry_auth for challenges and tokens) is imported only when a pull starts, so a
process that never pulls never loads oras and requests. No oras or requests type
leaves the adapter; every failure is a vxn error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vxn.adapters.content import Ingest, StagedBlob
from vxn.config import PullSettings
from vxn.core.credentials import Credentials
from vxn.core.digest import Digest
from vxn.core.manifest import Descriptor

Progress = Callable[[int], None]  # bytes of the blob received so far
CERT_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    host: str  # host[:port] to contact
    insecure: bool = False  # plain HTTP, or HTTPS without certificate checks
    cert_dir: Path | None = None  # containers-certs.d(5): *.crt CAs, *.cert/*.key client
    credentials: Credentials | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A manifest or index as the registry served it, its digest verified."""

    data: bytes
    media_type: str  # the Content-Type
    digest: Digest


class RegistryClient(Protocol):
    """One repository: vxn.testing.fake_registry has a fake that passes the same contract."""

    def manifest(self, obj: str) -> Document:
        """By tag or digest, verified (digest asked for, Docker-Content-Digest, 4 MiB)."""
        ...

    def head(self, obj: str) -> Digest | None:
        """The digest of the manifest `obj` names, as a HEAD's Docker-Content-Digest says;
        None when the registry does not say (then only a GET can tell)."""
        ...

    def blob(
        self, desc: Descriptor, ingest: Ingest, progress: Progress | None = None
    ) -> StagedBlob:
        """Staged in `ingest`, its size and digest verified."""
        ...

    def close(self) -> None: ...


def connect(
    endpoint: Endpoint,
    repository: str,
    *,
    limits: PullSettings,
    op: str,
    cancel: threading.Event | None = None,
) -> RegistryClient:
    """Reach the registry (GET /v2/); errors start with `op`."""
    from vxn.adapters.registry_client import Registry

    return Registry(endpoint, repository, limits=limits, op=op, cancel=cancel)


def default_cert_dir(host: str) -> Path | None:
    """The per-registry dir of containers-certs.d(5) or Docker, when there is one."""
    return next((d / host for d in CERT_DIRS if (d / host).is_dir()), None)
