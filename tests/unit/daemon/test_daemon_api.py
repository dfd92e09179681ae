import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from vxn.config import Settings
from vxn.core.platform import Platform
from vxn.daemon import api
from vxn.engine.images import ImageSummary
from vxn.errors import from_kind
from vxn.testing.fake_images import FakeImage, FakeImageService

A = "sha256:" + "a1" * 32


@pytest.fixture
def fake() -> FakeImageService:
    image = FakeImage(id=A, manifest="sha256:" + "d4" * 32, size=100)
    image.names = ["docker.io/library/alpine:3.19"]
    return FakeImageService([image])


def _ctx(images: api.ImageAPI, tmp_path: Path) -> api.Context:
    settings = Settings(state_dir=tmp_path / "s", run_dir=tmp_path / "r")
    return api.Context(settings=settings, images=images, platform=Platform.parse("linux/amd64"))


@pytest.fixture
async def client(fake: FakeImageService, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(api.make_app(_ctx(fake, tmp_path)))) as client:
        yield client


async def _json(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def test_version(client: TestClient[Any, Any]) -> None:
    assert await _json(await client.get("/v1/version")) == {"version": "0.1.0", "api": 1}


async def test_info(client: TestClient[Any, Any], tmp_path: Path) -> None:
    info = await _json(await client.get("/v1/info"))
    assert info["pid"] == os.getpid()
    assert info["platform"] == "linux/amd64"
    assert info["store_size"] == 100
    assert info["paths"] == {
        "state_dir": str(tmp_path / "s"),
        "run_dir": str(tmp_path / "r"),
        "socket": str(tmp_path / "r" / "vxn.sock"),
        "config_file": None,
    }
    assert set(info["backends"]) == {"xen", "qemu"}


async def test_images_and_inspect(client: TestClient[Any, Any]) -> None:
    rows = await _json(await client.get("/v1/images"))
    assert [(r["Repository"], r["Tag"], r["ID"]) for r in rows] == [("alpine", "3.19", A)]
    inspect = await _json(await client.get("/v1/images/inspect", params={"ref": "alpine:3.19"}))
    assert inspect["Id"] == A


async def test_a_vxn_error_is_its_kind_and_message(client: TestClient[Any, Any]) -> None:
    body = await _json(await client.get("/v1/images/inspect", params={"ref": "x"}), 404)
    assert body == {
        "error": {"kind": "not_found", "message": "image x: no such image; see `vxn images`"}
    }
    body = await _json(await client.get("/v1/images/inspect"), 400)
    assert body["error"]["kind"] == "invalid_argument"


@pytest.mark.parametrize(("kind", "status"), sorted(api.STATUS.items()))
async def test_every_kind_has_its_status(tmp_path: Path, kind: str, status: int) -> None:
    class Failing(FakeImageService):
        async def list(self) -> list[ImageSummary]:
            raise from_kind(kind, f"images: {kind}")

    async with TestClient(TestServer(api.make_app(_ctx(Failing(), tmp_path)))) as client:
        body = await _json(await client.get("/v1/images"), status)
    assert body == {"error": {"kind": kind, "message": f"images: {kind}"}}


async def test_an_unexpected_error_is_one_line_out_and_a_traceback_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(FakeImageService):
        async def store_size(self) -> int:
            raise ZeroDivisionError("division by zero")

    async with TestClient(TestServer(api.make_app(_ctx(Broken(), tmp_path)))) as client:
        body = await _json(await client.get("/v1/info"), 500)
    assert body["error"] == {
        "kind": "internal",
        "message": "GET /v1/info: internal error: ZeroDivisionError: division by zero; "
        "the vxnd log has the traceback",
    }
    record = next(r for r in caplog.records if r.name == "vxnd.api")
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None


async def test_unknown_routes_and_methods_are_json_errors(client: TestClient[Any, Any]) -> None:
    body = await _json(await client.get("/v1/nope"), 404)
    assert body["error"]["message"] == "GET /v1/nope: Not Found; is vxn newer than vxnd?"
    body = await _json(await client.get("/v1/images/tag"), 405)
    assert body["error"]["kind"] == "invalid_argument"


async def test_tag_remove_prune(client: TestClient[Any, Any], fake: FakeImageService) -> None:
    tag = {"source": "alpine:3.19", "target": "mine:1"}
    assert await _json(await client.post("/v1/images/tag", json=tag)) == {}
    body = await _json(await client.post("/v1/images/remove", json={"ref": A}), 409)
    assert body["error"]["kind"] == "failed_precondition"
    reply = await _json(await client.post("/v1/images/remove", json={"ref": A, "force": True}))
    assert reply == {"lines": ["Untagged: alpine:3.19", "Untagged: mine:1", f"Deleted: {A}"]}
    assert await _json(await client.post("/v1/images/prune")) == {"deleted": [], "reclaimed": 0}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "/v1/images/remove: request body is not JSON"),
        (b"[1]", "/v1/images/remove: request body must be a JSON object"),
        (b'{"ref": ""}', "request: 'ref' must be a non-empty string"),
        (b'{"ref": "a", "force": "yes"}', "remove: force must be true or false"),
    ],
)
async def test_bad_bodies_are_invalid_arguments(
    client: TestClient[Any, Any], body: bytes, message: str
) -> None:
    reply = await _json(await client.post("/v1/images/remove", data=body), 400)
    assert reply == {"error": {"kind": "invalid_argument", "message": message}}


async def _chunks(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_load_streams_the_body_to_the_engine(
    client: TestClient[Any, Any], fake: FakeImageService
) -> None:
    data = os.urandom(200_000)
    response = await client.post(
        "/v1/images/load", params={"name": "app:1", "platform": "linux/arm64"}, data=_chunks(data)
    )
    assert response.headers["Content-Type"] == "application/x-ndjson"
    assert await response.text() == '{"loaded": "docker.io/library/app:1"}\n'
    assert fake.loads == [(data, "app:1", Platform.parse("linux/arm64"))]
    response = await client.post("/v1/images/load", data=_chunks(b"other"))
    assert json.loads(await response.text())["loaded_id"].startswith("sha256:")


async def test_load_errors_are_the_last_line(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/images/load", data=b"")
    assert response.status == 200  # sent before the engine ran
    line = json.loads(await response.text())
    assert line["error"]["kind"] == "invalid_argument"


async def test_a_bad_platform_is_refused_before_the_load(client: TestClient[Any, Any]) -> None:
    response = await client.post("/v1/images/load", params={"platform": "x"}, data=b"abc")
    assert (await _json(response, 400))["error"]["message"].startswith("invalid platform 'x'")


async def test_a_crashing_load_is_an_internal_error_line(tmp_path: Path) -> None:
    class Crashing(FakeImageService):
        async def load(self, stream: Any, **kw: Any) -> Any:
            raise KeyError("boom")

    async with TestClient(TestServer(api.make_app(_ctx(Crashing(), tmp_path)))) as client:
        response = await client.post("/v1/images/load", data=b"abc")
        line = json.loads(await response.text())
    assert line["error"]["kind"] == "internal"
    assert "KeyError" in line["error"]["message"]


async def test_the_body_reader_refuses_to_block_the_event_loop(tmp_path: Path) -> None:
    class OnTheLoop(FakeImageService):
        async def load(self, stream: Any, **kw: Any) -> Any:
            return stream.read()  # wrong: would deadlock without the guard

    async with TestClient(TestServer(api.make_app(_ctx(OnTheLoop(), tmp_path)))) as client:
        response = await client.post("/v1/images/load", data=b"abc")
        line = json.loads(await response.text())
    assert "read the load stream in a worker thread" in line["error"]["message"]


def test_backend_detection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    on_path = {"xl", "qemu-system-aarch64"}
    monkeypatch.setattr("shutil.which", lambda name: name if name in on_path else None)
    monkeypatch.setattr(api, "_XENSTORED_SOCKETS", (tmp_path / "socket",))
    assert api.detect_backends() == {"xen": False, "qemu": True}
    (tmp_path / "socket").touch()
    assert api.detect_backends() == {"xen": True, "qemu": True}
    on_path.clear()
    assert api.detect_backends() == {"xen": False, "qemu": False}


async def test_small_reads_see_every_byte_in_order(tmp_path: Path) -> None:
    seen: list[bytes] = []

    class Sipping(FakeImageService):
        async def load(self, stream: Any, **kw: Any) -> Any:
            def sip() -> None:
                while piece := stream.read(1000):
                    seen.append(piece)

            await asyncio.to_thread(sip)
            return []

    data = os.urandom(3_000_001)
    async with TestClient(TestServer(api.make_app(_ctx(Sipping(), tmp_path)))) as client:
        response = await client.post("/v1/images/load", data=_chunks(data, 65_536))
        assert await response.text() == ""
    assert b"".join(seen) == data
    assert max(map(len, seen)) == 1000
