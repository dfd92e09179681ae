"""vxnd's HTTP/JSON API (version prefix /v1). Handlers parse, call the engine, return JSON.

Every VxnError becomes `{"error": {"kind", "message"}}` with a status for its kind, so
the CLI can rebuild it; anything unexpected is logged with its traceback here and
reaches the client as one line. Streamed replies are NDJSON whose last line may be
an error, since the status is sent before the work is done.
"""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import logging
import os
import shutil
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from aiohttp import web

from vxn import API_VERSION, __version__
from vxn.adapters.statedir import RunDir
from vxn.config import Settings
from vxn.core.platform import Platform
from vxn.errors import Internal, InvalidArgument, NotFound, Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.engine.images import ImageSummary, LoadedImage, PruneReport
    from vxn.engine.pull import ProgressFn, PullEvent, PullOptions, PullResult
    from vxn.engine.rootfs import RootfsInfo, UnpackInfo

log = logging.getLogger("vxnd.api")

STATUS = {
    "not_found": 404,
    "already_exists": 409,
    "invalid_argument": 400,
    "failed_precondition": 409,
    "unavailable": 503,
    "internal": 500,
}
_XENSTORED_SOCKETS = (Path("/run/xenstored/socket"), Path("/var/run/xenstored/socket"))


class ImageAPI(Protocol):
    """What the API needs of vxn.engine.images.ImageService (and its fakes)."""

    async def load(
        self, stream: BinaryIO, *, name: str | None = None, platform: Platform | None = None
    ) -> builtins.list[LoadedImage]: ...
    async def list(self) -> builtins.list[ImageSummary]: ...
    async def inspect(self, ref_or_id: str) -> dict[str, Any]: ...
    async def tag(self, source: str, target: str) -> None: ...
    async def remove(self, ref_or_id: str, *, force: bool = False) -> builtins.list[str]: ...
    async def prune(self) -> PruneReport: ...
    async def store_size(self) -> int: ...
    async def pull(
        self,
        reference: str,
        *,
        platform: Platform | None = None,
        options: PullOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> PullResult: ...
    async def rootfs(self, ref_or_id: str) -> RootfsInfo: ...
    async def unpack(self, ref_or_id: str, dest: Path, *, uid: int = 0) -> UnpackInfo: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    settings: Settings
    images: ImageAPI
    platform: Platform
    containers: Any = None  # vxn.engine.containers.ContainerService, for /v1/containers


CONTEXT = web.AppKey("context", Context)


def make_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[_errors])
    app[CONTEXT] = ctx
    app.router.add_get("/v1/version", version)
    app.router.add_get("/v1/info", info)
    app.router.add_get("/v1/images", images_list)
    app.router.add_get("/v1/images/inspect", images_inspect)
    app.router.add_post("/v1/images/load", images_load)
    app.router.add_post("/v1/images/pull", images_pull)
    app.router.add_post("/v1/images/tag", images_tag)
    app.router.add_post("/v1/images/remove", images_remove)
    app.router.add_post("/v1/images/prune", images_prune)
    app.router.add_post("/v1/images/rootfs", images_rootfs)
    app.router.add_post("/v1/images/unpack", images_unpack)
    from vxn.daemon.api_containers import add_routes  # it imports this module

    add_routes(app)
    return app


def error_body(e: VxnError) -> dict[str, Any]:
    return {"error": {"kind": e.kind, "message": str(e)}}


def internal(request: web.Request, e: Exception) -> Internal:
    """Log the traceback here; the client gets one line pointing at the log."""
    log.error("%s %s: unexpected error", request.method, request.path, exc_info=e)
    first_line = str(e).split("\n")[0]
    detail = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
    return Internal(
        f"{request.method} {request.path}: internal error: {detail}; the vxnd log has the traceback"
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VxnError as e:
        return web.json_response(error_body(e), status=STATUS.get(e.kind, 500))
    except web.HTTPException as e:
        kind = "not_found" if e.status == 404 else "invalid_argument"
        what = f"{request.method} {request.path}: {e.reason}; is vxn newer than vxnd?"
        return web.json_response(error_body(_kind(kind, what)), status=e.status)
    except Exception as e:
        return web.json_response(error_body(internal(request, e)), status=500)


def _kind(kind: str, message: str) -> VxnError:
    return NotFound(message) if kind == "not_found" else InvalidArgument(message)


def _ctx(request: web.Request) -> Context:
    return request.app[CONTEXT]


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": __version__, "api": API_VERSION})


async def info(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    run = RunDir(ctx.settings.run_dir)
    config = ctx.settings.config_file
    return web.json_response(
        {
            "version": __version__,
            "api": API_VERSION,
            "pid": os.getpid(),
            "platform": str(ctx.platform),
            "paths": {
                "state_dir": str(ctx.settings.state_dir),
                "run_dir": str(run.root),
                "socket": str(run.socket),
                "config_file": str(config) if config else None,
            },
            "backends": await asyncio.to_thread(detect_backends),
            "store_size": await ctx.images.store_size(),
        }
    )


def detect_backends() -> dict[str, bool]:
    """xen: a Xen toolstack runs here (xl plus a control domain or xenstored); qemu: on PATH."""
    xen = shutil.which("xl") is not None and (
        "control_d" in _read_text(Path("/proc/xen/capabilities"))
        or any(p.exists() for p in _XENSTORED_SOCKETS)
    )
    qemu = any(shutil.which(q) for q in ("qemu-system-x86_64", "qemu-system-aarch64"))
    return {"xen": xen, "qemu": qemu}


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def images_list(request: web.Request) -> web.Response:
    return web.json_response([s.to_json() for s in await _ctx(request).images.list()])


async def images_inspect(request: web.Request) -> web.Response:
    return web.json_response(await _ctx(request).images.inspect(_query(request, "ref")))


async def images_tag(request: web.Request) -> web.Response:
    body = await json_body(request)
    await _ctx(request).images.tag(_field(body, "source"), _field(body, "target"))
    return web.json_response({})


async def images_remove(request: web.Request) -> web.Response:
    body = await json_body(request)
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise InvalidArgument("remove: force must be true or false")
    lines = await _ctx(request).images.remove(_field(body, "ref"), force=force)
    return web.json_response({"lines": lines})


async def images_prune(request: web.Request) -> web.Response:
    report = await _ctx(request).images.prune()
    return web.json_response({"deleted": list(report.deleted), "reclaimed": report.reclaimed})


async def images_rootfs(request: web.Request) -> web.Response:
    """Build the image's base disk if need be; reply with its path and the time taken here."""
    ref = _field(await json_body(request), "ref")
    start = time.perf_counter()
    info = await _ctx(request).images.rootfs(ref)
    return web.json_response(info.to_json() | {"seconds": time.perf_counter() - start})


async def images_unpack(request: web.Request) -> web.Response:
    """Flatten the image into a new directory, written by vxnd (as root) on this host,
    inside a directory the client's user owns (its uid comes from SO_PEERCRED)."""
    body = await json_body(request)
    dest = Path(_field(body, "dir"))
    if not dest.is_absolute():
        raise InvalidArgument(f"unpack: {dest} must be an absolute path")
    uid = _peer_uid(request)
    info = await _ctx(request).images.unpack(_field(body, "ref"), dest, uid=uid)
    return web.json_response({"dir": str(info.dir), "entries": info.entries})


def _peer_uid(request: web.Request) -> int:
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is None or sock.family != socket.AF_UNIX:
        raise InvalidArgument(f"{request.path}: only for clients on the unix socket")
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return int(uid)


async def images_load(request: web.Request) -> web.StreamResponse:
    """The archive is the request body; the reply is one NDJSON line per loaded image."""
    name = request.query.get("name") or None
    text = request.query.get("platform")
    platform = Platform.parse(text) if text else None
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    body = io.BufferedReader(BodyReader(request, asyncio.get_running_loop()), 1 << 16)
    try:
        loaded = await _ctx(request).images.load(body, name=name, platform=platform)
        lines = [{"loaded": i.reference} if i.reference else {"loaded_id": i.id} for i in loaded]
    except VxnError as e:
        lines = [error_body(e)]
    except Exception as e:
        lines = [error_body(internal(request, e))]
    try:
        for line in lines:
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
    except ConnectionError:
        log.info("load: the client went away before the reply")
    return response


async def images_pull(request: web.Request) -> web.StreamResponse:
    """Query: ref, platform, tls_verify, cert_dir, progress=1; body: {"auth": credentials}.
    The reply is NDJSON: `{"progress": …}` lines when asked for, then `{"pulled": …}`."""
    ref, platform = _query(request, "ref"), _platform(request)
    options = await _pull_options(request)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    events: asyncio.Queue[PullEvent | None] = asyncio.Queue()
    loop, cancel = asyncio.get_running_loop(), threading.Event()

    def progress(event: PullEvent) -> None:
        loop.call_soon_threadsafe(events.put_nowait, event)

    pull = _ctx(request).images.pull(
        ref,
        platform=platform,
        options=options,
        progress=progress if request.query.get("progress") == "1" else None,
        cancel=cancel,
    )
    task = asyncio.ensure_future(pull)
    task.add_done_callback(lambda _: events.put_nowait(None))
    try:
        while (event := await events.get()) is not None:
            await response.write(json.dumps({"progress": event.to_json()}).encode() + b"\n")
        await _finish(request, response, {"pulled": task.result().to_json()})
    except VxnError as e:
        await _finish(request, response, error_body(e))
    except ConnectionError:
        log.info("pull %s: the client went away; stopping the pull", ref)
    except Exception as e:
        await _finish(request, response, error_body(internal(request, e)))
    finally:
        cancel.set()  # a no-op once the pull is done; else it stops at the next chunk
        await asyncio.gather(task, return_exceptions=True)
    return response


async def _finish(request: web.Request, response: web.StreamResponse, line: Any) -> None:
    try:
        await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
    except ConnectionError:
        log.info("%s: the client went away before the reply", request.path)


def _platform(request: web.Request) -> Platform | None:
    text = request.query.get("platform")
    return Platform.parse(text) if text else None


async def _pull_options(request: web.Request) -> PullOptions:
    from vxn.core.credentials import Credentials
    from vxn.engine.pull import PullOptions

    tls = request.query.get("tls_verify")
    if tls not in (None, "true", "false"):
        raise InvalidArgument("pull: tls_verify must be true or false")
    cert_dir = request.query.get("cert_dir")
    if cert_dir is not None and not Path(cert_dir).is_absolute():
        raise InvalidArgument(f"pull: cert dir {cert_dir} must be an absolute path")
    auth = (await json_body(request)).get("auth") if request.can_read_body else None
    return PullOptions(
        credentials=Credentials.from_json(auth) if auth is not None else None,
        tls_verify=None if tls is None else tls == "true",
        cert_dir=Path(cert_dir) if cert_dir else None,
    )


class BodyReader(io.RawIOBase):
    """The request body as a blocking file, for an engine that reads it in a worker thread.

    Each hop to the event loop fetches up to _FETCH bytes, whatever size the reader
    asks for, so small reads do not each pay for a thread switch.
    """

    _FETCH = 1 << 20

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop) -> None:
        self._content = request.content
        self._loop = loop
        self._pending = memoryview(b"")  # a view: no copying of what is left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._pending or memoryview(self._fetch())
        n = min(len(view), len(data))
        view[:n] = data[:n]
        self._pending = data[n:]
        return n

    def readall(self) -> bytes:
        chunks = [bytes(self._pending)]
        while chunk := self._fetch():
            chunks.append(chunk)
        self._pending = memoryview(b"")
        return b"".join(chunks)

    def _fetch(self) -> bytes:
        if _running_loop() is self._loop:
            raise RuntimeError("read the load stream in a worker thread (asyncio.to_thread)")
        read = self._content.read(self._FETCH)
        try:
            return asyncio.run_coroutine_threadsafe(read, self._loop).result()
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            raise Unavailable(f"load: the client went away mid-upload: {e}") from None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's body, which must be a JSON object."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument(f"{request.path}: request body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument(f"{request.path}: request body must be a JSON object")
    return body


def _field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"request: {key!r} must be a non-empty string")
    return value


def _query(request: web.Request, key: str) -> str:
    value = request.query.get(key)
    if not value:
        raise InvalidArgument(f"{request.path}: query parameter {key!r} is required")
    return value
