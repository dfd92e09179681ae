"""A stub vxnd that speaks the container API of docs/CONTAINERS.md §3 and §4, for the CLI.

Its containers are scripted by their command's first word, so a test can see exactly
what the CLI sent (stdin, eof, signals, window sizes, a detach) and what it did with
the replies:

    echo A B   prints "A B", exits 0          cat     echoes stdin; exits 0 at eof
    sha256     prints its stdin's digest at eof size    prints rows cols, again on resize
    trap       prints each signal, exits with it exit N  exits N (at once)
    nope       cannot run: a message, exit 127   wait    runs until stopped or killed
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientPayloadError, web

from vxn.adapters.statedir import RunDir
from vxn.cli.main import invoke as vxn_cli
from vxn.testing.clirunner import Result, invoke as invoke_cli
from vxn.testing.daemon import serve_app


@dataclass
class StubContainer:
    id: str
    name: str
    options: dict[str, Any]
    state: str = "created"
    exit_code: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[dict[str, Any]] = field(default_factory=list)  # what the client sent it
    ended_body: bool = False  # the request body finished (its final chunk) rather than broke

    @property
    def argv(self) -> list[str]:
        return list(self.options.get("command") or ["wait"])


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _error(kind: str, message: str, status: int) -> web.Response:
    return web.json_response({"error": {"kind": kind, "message": message}}, status=status)


class StubVxnd:
    def __init__(self) -> None:
        self.containers: dict[str, StubContainer] = {}
        self.images = {"img"}
        self.calls: list[str] = []  # "METHOD path?query", in order

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/v1/version", self.version)
        r.add_get("/v1/images/inspect", self.image_inspect)
        r.add_post("/v1/images/pull", self.pull)
        r.add_post("/v1/containers/create", self.create)
        r.add_get("/v1/containers", self.list)
        r.add_post("/v1/containers/{ref}/attach", self.attach)
        r.add_post("/v1/containers/{ref}/exec", self.exec)
        r.add_post("/v1/containers/{ref}/{op}", self.op)
        r.add_get("/v1/containers/{ref}", self.inspect)
        r.add_delete("/v1/containers/{ref}", self.remove)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.calls.append(f"{request.method} {request.path_qs}")
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except LookupError as e:
            return _error("not_found", f"container {e.args[0]}: no such container", 404)

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0", "api": 1})

    def find(self, ref: str) -> StubContainer:
        for c in self.containers.values():
            if ref in (c.id, c.name) or c.id.startswith(ref):
                return c
        raise LookupError(ref)

    async def image_inspect(self, request: web.Request) -> web.Response:
        ref = request.query["ref"]
        if ref not in self.images:
            return _error("not_found", f"image {ref}: no such image", 404)
        return web.json_response({"Id": "sha256:" + "ab" * 32, "RepoTags": [ref]})

    async def pull(self, request: web.Request) -> web.StreamResponse:
        ref = request.query["ref"]
        self.images.add(ref)
        pulled = {"reference": f"docker.io/library/{ref}:latest", "digest": "sha256:" + "cd" * 32}
        return web.Response(text=json.dumps({"pulled": pulled}) + "\n")

    async def create(self, request: web.Request) -> web.Response:
        options = await request.json()
        if options["image"] not in self.images:
            return _error("not_found", f"image {options['image']}: no such image", 404)
        n = len(self.containers) + 1
        cid = hashlib.sha256(str(n).encode()).hexdigest()
        name = options.get("name") or f"stub_{n}"
        self.containers[cid] = StubContainer(cid, name, options)
        return web.json_response({"id": cid, "name": name})

    async def list(self, request: web.Request) -> web.Response:
        rows = [
            {"id": c.id, "name": c.name, "image": c.options["image"], "state": c.state}
            for c in self.containers.values()
            if request.query.get("all") == "1" or c.state == "running"
        ]
        for row in rows:
            row |= {"command": " ".join(self.find(row["id"]).argv), "exit_code": 0}
            row |= {"created": "2024-06-01T12:00:00+00:00", "started_at": None}
        return web.json_response(rows)

    async def inspect(self, request: web.Request) -> web.Response:
        c = self.find(request.match_info["ref"])
        return web.json_response({"id": c.id, "name": c.name, "options": c.options})

    async def remove(self, request: web.Request) -> web.Response:
        c = self.find(request.match_info["ref"])
        if c.state == "running" and request.query.get("force") != "1":
            return _error("failed_precondition", f"container {c.name}: it is running", 409)
        del self.containers[c.id]
        return web.json_response({})

    async def op(self, request: web.Request) -> web.Response:
        c = self.find(request.match_info["ref"])
        op = request.match_info["op"]
        if op == "start":
            c.state = "running"
            c.started.set()
        elif op in ("stop", "kill"):
            c.state, c.exit_code = "exited", 137
        elif op == "wait":
            return web.json_response({"exit": c.exit_code})
        return web.json_response({"exit": c.exit_code} if op == "stop" else {})

    async def attach(self, request: web.Request) -> web.StreamResponse:
        return await self._duplex(request, main=True)

    async def exec(self, request: web.Request) -> web.StreamResponse:
        return await self._duplex(request, main=False)

    async def _duplex(self, request: web.Request, *, main: bool) -> web.StreamResponse:
        """An attach to the main session (played once the container starts) or an exec
        of the first line's command: the reply's status goes first, as vxnd's does."""
        c = self.find(request.match_info["ref"])
        first = json.loads(await request.content.readline())
        c.sent.append(first)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        if main:
            await c.started.wait()
        await self.session(request, response, c, c.argv if main else first["command"])
        await _linger(request)
        return response

    async def session(
        self, request: web.Request, response: web.StreamResponse, c: StubContainer, argv: list[str]
    ) -> None:
        """Play the script of argv[0] against the client's lines."""

        async def send(**line: Any) -> None:
            await response.write(json.dumps(line).encode() + b"\n")

        async def out(text: str) -> None:
            await send(out=_b64(text.encode()))

        word, args = argv[0], argv[1:]
        if word == "exit":
            return await send(exit=int(args[0]))
        if word == "echo":
            await out(" ".join(args) + "\n")
            return await send(exit=0)
        if word == "nope":
            await send(message='exec: "nope": executable file not found in $PATH')
            return await send(exit=127)
        if word == "size":
            await out(f"{c.options.get('rows')} {c.options.get('cols')}\n")
        data = bytearray()
        while line := await _readline(request):
            item = json.loads(line)
            c.sent.append(item)
            if "in" in item:
                chunk = base64.b64decode(item["in"])
                data += chunk
                if word == "cat":
                    await send(out=_b64(chunk), err=_b64(b"e"))
            elif "winsize" in item and word == "size":
                await out("{} {}\n".format(*item["winsize"]))
            elif "signal" in item and word == "trap":
                await out(f"signal {item['signal']}\n")
                return await send(exit=item["signal"])
            elif item.get("eof") and word in ("cat", "sha256", "size"):
                if word == "sha256":
                    await out(hashlib.sha256(data).hexdigest() + "\n")
                return await send(exit=0)
        c.ended_body = request.content.is_eof() and request.content.exception() is None
        return None


async def _linger(request: web.Request) -> None:
    """Like vxnd, keep reading the body (the client closes it once it has the exit)."""
    while await _readline(request):
        pass


async def _readline(request: web.Request) -> bytes:
    """The next body line; b"" at its end, or when the client broke the connection."""
    try:
        return await request.content.readline()
    except (OSError, ClientPayloadError):
        return b""


@dataclass
class Stub:
    vxnd: StubVxnd
    run_dir: Path
    env: dict[str, str]

    def __call__(self, *args: str, input: bytes | str | None = None) -> Result:
        """The CLI in this process: exit codes are in `result.return_value`."""
        flags = ["--run-dir", str(self.run_dir)]
        return invoke_cli(vxn_cli, [*flags, *args], input=input, env=self.env)

    def only(self) -> StubContainer:
        (container,) = self.vxnd.containers.values()
        return container


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Stub]:
    (tmp_path / "vxn.toml").write_text("")
    env = {"VXN_NO_AUTOSTART": "1", "VXN_CONFIG": str(tmp_path / "vxn.toml")}
    env |= {"VXN_RUN_DIR": str(tmp_path / "r"), "VXN_STATE_DIR": str(tmp_path / "s")}
    vxnd = StubVxnd()
    run = RunDir(tmp_path / "r")
    run.root.mkdir()
    with serve_app(vxnd.app(), run.socket):
        yield Stub(vxnd, run.root, env)
