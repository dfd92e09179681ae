"""The container routes of vxnd's API (docs/CONTAINERS.md 3 and 4).

Plain JSON replies, except attach, exec, logs and events, which stream NDJSON. Attach
and exec are full duplex: the request body is NDJSON the client keeps writing
(`{"in"}`, `{"eof"}`, `{"signal"}`, `{"winsize"}`), read by a task of its own while
the reply streams. Ending the body detaches an attach stream (the container's stdin
stays open); an exec stream runs on to its exit. A client that goes away never
stops a container.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from vxn.core.guestspec import RunOptions, parse_memory
from vxn.daemon.api import CONTEXT, error_body, internal, json_body
from vxn.errors import InvalidArgument, Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.engine.containers import ContainerService, CreateRequest
    from vxn.engine.supervisor import Listener

log = logging.getLogger("vxnd.api")
NDJSON = {"Content-Type": "application/x-ndjson"}


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/v1/containers/create", create)
    r.add_post("/v1/containers/resize", resize)
    r.add_get("/v1/containers", list_containers)
    r.add_get("/v1/events", events)
    r.add_get("/v1/containers/{ref}", inspect)
    r.add_delete("/v1/containers/{ref}", remove)
    r.add_post("/v1/containers/{ref}/start", start)
    r.add_post("/v1/containers/{ref}/attach", attach)
    r.add_post("/v1/containers/{ref}/exec", exec_)
    r.add_post("/v1/containers/{ref}/wait", wait)
    r.add_post("/v1/containers/{ref}/stop", stop)
    r.add_post("/v1/containers/{ref}/kill", kill)
    r.add_post("/v1/containers/{ref}/restart", restart)
    r.add_get("/v1/containers/{ref}/logs", logs)


def _svc(request: web.Request) -> ContainerService:
    containers: ContainerService | None = request.app[CONTEXT].containers
    if containers is None:
        raise Unavailable("containers: this vxnd was started without a container engine")
    return containers


def _ref(request: web.Request) -> str:
    return request.match_info["ref"]


async def create(request: web.Request) -> web.Response:
    record = await _svc(request).create(_create_request(await json_body(request)))
    return web.json_response({"id": record["id"], "name": record["name"]})


async def start(request: web.Request) -> web.Response:
    await _svc(request).start(_ref(request))
    return web.json_response({})


async def wait(request: web.Request) -> web.Response:
    return web.json_response({"exit": await _svc(request).wait(_ref(request))})


async def stop(request: web.Request) -> web.Response:
    code = await _svc(request).stop(_ref(request), _seconds(request))
    return web.json_response({"exit": code})


async def kill(request: web.Request) -> web.Response:
    await _svc(request).kill(_ref(request), parse_signal(request.query.get("signal", "KILL")))
    return web.json_response({})


async def restart(request: web.Request) -> web.Response:
    await _svc(request).restart(_ref(request), _seconds(request))
    return web.json_response({})


async def remove(request: web.Request) -> web.Response:
    await _svc(request).remove(_ref(request), force=_flag(request, "force"))
    return web.json_response({})


async def list_containers(request: web.Request) -> web.Response:
    status = tuple(request.query.getall("status", []))
    rows = _svc(request).list(all=_flag(request, "all"), status=status)
    return web.json_response(rows)


async def inspect(request: web.Request) -> web.Response:
    return web.json_response(_svc(request).inspect(_ref(request)))


async def resize(request: web.Request) -> web.Response:
    body = await json_body(request)
    ref, rows, cols = body.get("ref"), body.get("rows"), body.get("cols")
    if not isinstance(ref, str) or not isinstance(rows, int) or not isinstance(cols, int):
        raise InvalidArgument("resize: want {ref: str, rows: int, cols: int, exec?: int}")
    session = body.get("exec") or 0
    await _svc(request).resize(ref, rows, cols, int(session))
    return web.json_response({})


async def logs(request: web.Request) -> web.StreamResponse:
    tail = request.query.get("tail", "all")
    if tail != "all" and not tail.isdigit():
        raise InvalidArgument(f"logs: tail {tail!r}: want a number or all")
    svc = _svc(request)
    cid = svc.inspect(_ref(request))["id"]  # no such container: an error, not a stream
    lines = svc.logs(
        cid,
        follow=_flag(request, "follow"),
        tail=None if tail == "all" else int(tail),
        timestamps=_flag(request, "timestamps"),
    )
    return await _stream(request, lines)


async def events(request: web.Request) -> web.StreamResponse:
    since = request.query.get("since")
    return await _stream(request, _svc(request).events.stream(_since(since) if since else None))


async def _stream(request: web.Request, lines: Any) -> web.StreamResponse:
    response = web.StreamResponse(headers=NDJSON)
    await response.prepare(request)
    try:
        async for line in lines:
            await response.write(_line(line))
        await response.write_eof()
    except ConnectionError:
        log.debug("%s: the client went away", request.path)
    finally:
        await lines.aclose()
    return response


# --- duplex: attach and exec ---------------------------------------------------------


async def attach(request: web.Request) -> web.StreamResponse:
    first = await _first_line(request)
    svc = _svc(request)
    cid, listener = await svc.attach(
        _ref(request), stdin=bool(first.get("stdin")), logs=bool(first.get("logs"))
    )
    return await _duplex(request, svc, cid, listener, detach_on_end=True)


async def exec_(request: web.Request) -> web.StreamResponse:
    first = await _first_line(request)
    command = first.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidArgument("exec: command must be a non-empty list of strings")
    svc = _svc(request)
    cid, listener = await svc.exec(_ref(request), first)
    return await _duplex(request, svc, cid, listener, detach_on_end=False)


async def _duplex(
    request: web.Request,
    svc: ContainerService,
    cid: str,
    listener: Listener,
    *,
    detach_on_end: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(headers=NDJSON)
    pump = asyncio.create_task(_pump(request, svc, cid, listener, detach_on_end))
    try:
        await response.prepare(request)
        while (line := await listener.get()) is not None:
            await response.write(_line(line))
        await response.write_eof()
    except ConnectionError:
        log.debug("%s: the client went away; the container runs on", request.path)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        svc.detach(cid, listener)
    return response


async def _pump(
    request: web.Request,
    svc: ContainerService,
    cid: str,
    listener: Listener,
    detach_on_end: bool,
) -> None:
    """The client's lines, to the container; the body's end detaches (attach)."""
    try:
        while raw := await request.content.readline():
            line = json.loads(raw)
            if not isinstance(line, dict):
                raise InvalidArgument(f"{request.path}: each line must be a JSON object")
            await svc.input(cid, listener, line)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    except (ValueError, VxnError) as e:
        bad = e if isinstance(e, VxnError) else InvalidArgument(f"{request.path}: bad line: {e}")
        listener.end(error_body(bad))
        return
    except Exception as e:
        listener.end(error_body(internal(request, e)))
        return
    if detach_on_end:
        listener.end()


async def _first_line(request: web.Request) -> dict[str, Any]:
    raw = await request.content.readline()
    try:
        first = json.loads(raw) if raw.strip() else None
    except ValueError:
        first = None
    if not isinstance(first, dict):
        raise InvalidArgument(f"{request.path}: the body's first line must be a JSON object")
    return first


# --- parsing ---------------------------------------------------------------------------


def parse_signal(text: str) -> int:
    """KILL, SIGKILL, kill or 9."""
    if text.isascii() and text.isdigit() and 0 < int(text) < 65:  # not "²": int() refuses it
        return int(text)
    name = text.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise InvalidArgument(f"signal {text!r}: want a name like TERM or a number") from None


def _line(line: dict[str, Any]) -> bytes:
    return json.dumps(line).encode() + b"\n"


def _flag(request: web.Request, key: str) -> bool:
    return request.query.get(key, "0").lower() in ("1", "true", "yes")


def _seconds(request: web.Request) -> float:
    text = request.query.get("t", "10")
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:
        raise InvalidArgument(f"{request.path}: t {text!r}: want seconds, 0 to 86400")
    return seconds


def _since(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"events: since {text!r}: want unix seconds or ISO 8601") from None


def _create_request(body: dict[str, Any]) -> CreateRequest:
    from vxn.engine.containers import CreateRequest

    if not isinstance(body.get("image"), str) or not body["image"]:
        raise InvalidArgument("create: want a JSON object with an image")
    memory = _opt(body, "memory", str)
    return CreateRequest(
        image=body["image"],
        options=RunOptions(
            command=tuple(_strings(body, "command")),
            entrypoint=_opt(body, "entrypoint", str),
            env=tuple(_strings(body, "env")),
            workdir=_opt(body, "workdir", str),
            user=_opt(body, "user", str),
            hostname=_opt(body, "hostname", str),
            read_only=bool(_opt(body, "read_only", bool)),
            stdin=bool(_opt(body, "stdin", bool)),
            tty=bool(_opt(body, "tty", bool)),
            rows=_opt(body, "rows", int) or 0,
            cols=_opt(body, "cols", int) or 0,
        ),
        name=_opt(body, "name", str),
        remove=bool(_opt(body, "rm", bool)),
        memory_mib=parse_memory(memory) if memory else None,
        cpus=_opt(body, "cpus", int),
        backend=_opt(body, "backend", str),
    )


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"create: {key} must be a list of strings")
    return value


def _opt(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and (
        not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)
    ):
        raise InvalidArgument(f"create: {key} must be a {kind.__name__}")
    return value
