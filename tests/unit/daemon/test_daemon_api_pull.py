"""POST /v1/images/pull: NDJSON progress (when asked for), then the result or the error."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vxn.config import Settings
from vxn.core.credentials import Credentials
from vxn.core.platform import Platform
from vxn.daemon import api
from vxn.engine.pull import PullEvent, PullOptions
from vxn.testing.fake_images import FakeImage, FakeImageService

ID, MANIFEST = "sha256:" + "a1" * 32, "sha256:" + "d4" * 32
REF = "reg.example/app:1"


@pytest.fixture
def fake() -> FakeImageService:
    fake = FakeImageService()
    fake.remote[REF] = FakeImage(id=ID, manifest=MANIFEST, size=2000)
    return fake


@pytest.fixture
async def client(fake: FakeImageService, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    ctx = api.Context(settings=settings, images=fake, platform=Platform.parse("linux/amd64"))
    async with TestClient(TestServer(api.make_app(ctx))) as client:
        yield client


async def lines(response: Any) -> list[dict[str, Any]]:
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/x-ndjson"
    return [json.loads(line) for line in (await response.text()).splitlines()]


PULLED = {
    "pulled": {
        "reference": REF,
        "digest": MANIFEST,
        "manifest": MANIFEST,
        "id": ID,
        "up_to_date": False,
    }
}


async def test_progress_lines_then_the_result(
    client: TestClient[Any, Any], fake: FakeImageService
) -> None:
    query = {"ref": REF, "progress": "1", "platform": "linux/arm64"}
    got = await lines(await client.post("/v1/images/pull", params=query))
    short = ID[7:19]
    assert got == [
        {"progress": {"id": short, "status": "Downloading", "current": 1000, "total": 2000}},
        {"progress": {"id": short, "status": "Downloading", "current": 2000, "total": 2000}},
        PULLED,
    ]
    assert fake.pulls == [(REF, Platform.parse("linux/arm64"), PullOptions())]


async def test_no_progress_unless_asked(client: TestClient[Any, Any]) -> None:
    assert await lines(await client.post("/v1/images/pull", params={"ref": REF})) == [PULLED]


async def test_credentials_and_tls_options_reach_the_engine(
    client: TestClient[Any, Any], fake: FakeImageService, tmp_path: Path
) -> None:
    query = {"ref": REF, "tls_verify": "false", "cert_dir": str(tmp_path)}
    body = {"auth": {"username": "u", "password": "p"}}
    await lines(await client.post("/v1/images/pull", params=query, json=body))
    creds = Credentials(username="u", password="p")
    assert fake.pulls[0][2] == PullOptions(credentials=creds, tls_verify=False, cert_dir=tmp_path)


async def test_a_failed_pull_is_the_last_line(client: TestClient[Any, Any]) -> None:
    got = await lines(await client.post("/v1/images/pull", params={"ref": "reg.example/nope:1"}))
    assert got == [
        {
            "error": {
                "kind": "not_found",
                "message": "pull reg.example/nope:1: manifest: 404 MANIFEST_UNKNOWN: "
                "manifest unknown",
            }
        }
    ]


@pytest.mark.parametrize(
    ("query", "body", "message"),
    [
        ({}, None, "query parameter 'ref' is required"),
        ({"ref": REF, "tls_verify": "no"}, None, "tls_verify must be true or false"),
        ({"ref": REF, "cert_dir": "certs"}, None, "cert dir certs must be an absolute path"),
        ({"ref": REF, "platform": "x"}, None, "invalid platform 'x'"),
        ({"ref": REF}, {"auth": {"password": "p"}}, "need a username or an identity token"),
    ],
)
async def test_bad_requests_are_refused_before_pulling(
    client: TestClient[Any, Any],
    fake: FakeImageService,
    query: dict[str, str],
    body: Any,
    message: str,
) -> None:
    response = await client.post("/v1/images/pull", params=query, json=body)
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]
    assert fake.pulls == []


async def test_a_client_that_goes_away_stops_the_pull(tmp_path: Path) -> None:
    """At the next progress line, which no longer finds anyone to read it."""
    cancelled = threading.Event()

    class Slow(FakeImageService):
        async def pull(self, reference: str, **kw: Any) -> Any:
            def work() -> None:
                for _ in range(200):
                    kw["progress"](PullEvent(id="abc", status="Downloading", current=1, total=2))
                    if kw["cancel"].wait(0.05):
                        cancelled.set()
                        return

            await asyncio.to_thread(work)
            raise AssertionError("the pull was not cancelled")

    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    ctx = api.Context(settings=settings, images=Slow(), platform=Platform.parse("linux/amd64"))
    async with TestClient(TestServer(api.make_app(ctx))) as client:
        response = await client.post("/v1/images/pull", params={"ref": REF, "progress": "1"})
        await response.content.readline()
        response.close()
        for _ in range(100):
            if cancelled.is_set():
                break
            await asyncio.sleep(0.05)
    assert cancelled.is_set()
