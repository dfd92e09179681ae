"""Shared pieces of the container API tests: a fake image service, a vxnd app on the
fake hypervisor, and a duplex client (the request body written while the reply is read)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from aiohttp.test_utils import TestClient

from vxn.config import GuestSettings, Settings
from vxn.core.platform import Platform
from vxn.daemon import api
from vxn.engine.containers import ContainerService
from vxn.errors import NotFound
from vxn.testing.fake_backend import fake_containers
from vxn.testing.fake_hypervisor import FakeHypervisor

IMAGE_ID = "sha256:" + "b1" * 32
MANIFEST = "sha256:" + "d4" * 32


class Images:
    async def inspect(self, ref: str) -> dict[str, Any]:
        if ref not in ("busybox", IMAGE_ID):
            raise NotFound(f"image {ref}: no such image")
        config = {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/srv"}
        return {
            "Id": IMAGE_ID,
            "Manifest": MANIFEST,
            "Os": "linux",
            "Architecture": "amd64",
            "Config": config,
        }

    async def rootfs(self, ref: str) -> Any:
        return SimpleNamespace(path=Path("/dev/null"))

    async def store_size(self) -> int:
        return 0


def settings(root: Path) -> Settings:
    return Settings(state_dir=root / "s", run_dir=root / "r", guest=GuestSettings(boot_timeout=5.0))


def service(root: Path, hv: FakeHypervisor) -> ContainerService:
    return fake_containers(settings(root), Images(), hv)


def context(root: Path, svc: ContainerService) -> api.Context:
    return api.Context(
        settings=settings(root),
        images=Images(),  # type: ignore[arg-type]
        platform=Platform.parse("linux/amd64"),
        containers=svc,
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Duplex:
    """One attach or exec request: `send` lines while reading `next` replies."""

    def __init__(self, client: TestClient[Any, Any], path: str, first: dict[str, Any]) -> None:
        self.client, self.path = client, path
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.outbox.put_nowait(first)
        self.response: Any = None

    async def _body(self) -> AsyncIterator[bytes]:
        while (line := await self.outbox.get()) is not None:
            yield json.dumps(line).encode() + b"\n"

    async def open(self) -> Duplex:
        self.response = await self.client.post(self.path, data=self._body())
        return self

    def send(self, line: dict[str, Any]) -> None:
        self.outbox.put_nowait(line)

    def end(self) -> None:
        self.outbox.put_nowait(None)

    async def next(self) -> dict[str, Any] | None:
        async with asyncio.timeout(5.0):
            raw = await self.response.content.readline()
        return json.loads(raw) if raw else None

    async def until_exit(self) -> tuple[bytes, list[dict[str, Any]]]:
        """Everything written on stdout, and the other lines, to the end."""
        out, other = b"", []
        while (line := await self.next()) is not None:
            if "out" in line:
                out += base64.b64decode(line["out"])
            else:
                other.append(line)
        return out, other
