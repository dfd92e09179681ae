"""`POST /v1/containers/run`: boot a container and stream it back as NDJSON.

The body is JSON (the fields of `_request` below). The reply's lines are `{"out": b64}`
and `{"err": b64}` as the guest writes them (live, and separate), `{"message": text}`
when the command could not run (why), and last `{"exit": code, "id", "timings"}` or
`{"error": {kind, message}}`. A client that goes away stops the run: the guest is
destroyed.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from vxn.core.guestspec import RunOptions, parse_memory
from vxn.daemon.api import CONTEXT, error_body, internal
from vxn.errors import InvalidArgument, Unavailable, VxnError

if TYPE_CHECKING:
    from vxn.engine.containers import RunRequest, RunResult
    from vxn.engine.guestrun import ErrorFn, OutputFn

log = logging.getLogger("vxnd.api")


class ContainerAPI(Protocol):
    async def run(self, request: RunRequest, output: OutputFn, error: ErrorFn) -> RunResult: ...


async def containers_run(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    containers: ContainerAPI | None = ctx.containers
    if containers is None:
        raise Unavailable("containers: this vxnd was started without a container engine")
    try:
        body = await request.json()
    except ValueError:
        raise InvalidArgument("run: the request body is not JSON") from None
    run = _request(body)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)

    async def send(line: dict[str, Any]) -> None:
        await response.write(json.dumps(line).encode() + b"\n")

    async def output(stream: int, data: bytes) -> None:
        await send({"out" if stream == 1 else "err": base64.b64encode(data).decode()})

    async def error(message: str) -> None:
        await send({"message": message})

    try:
        result = await containers.run(run, output, error)
        last = {"exit": result.exit_code, "id": result.id, "timings": result.timings}
    except ConnectionError:
        log.info("run %s: the client went away; the guest was destroyed", run.image)
        return response
    except VxnError as e:
        last = error_body(e)
    except Exception as e:
        last = error_body(internal(request, e))
    try:
        await send(last)
        await response.write_eof()
    except ConnectionError:
        log.info("run %s: the client went away before the exit code", run.image)
    return response


def _request(body: Any) -> RunRequest:
    from vxn.engine.containers import RunRequest

    if not isinstance(body, dict) or not isinstance(body.get("image"), str):
        raise InvalidArgument("run: want a JSON object with an image")
    memory = _opt(body, "memory", str)
    return RunRequest(
        image=body["image"],
        options=RunOptions(
            command=tuple(_strings(body, "command")),
            entrypoint=_opt(body, "entrypoint", str),
            env=tuple(_strings(body, "env")),
            workdir=_opt(body, "workdir", str),
            user=_opt(body, "user", str),
            hostname=_opt(body, "hostname", str),
            read_only=bool(_opt(body, "read_only", bool)),
        ),
        name=_opt(body, "name", str),
        remove=bool(_opt(body, "rm", bool)),
        memory_mib=parse_memory(memory) if memory else None,
        cpus=_opt(body, "cpus", int),
        backend=_opt(body, "backend", str),
    )


def _strings(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"run: {key} must be a list of strings")
    return value


def _opt(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and (
        not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)
    ):
        raise InvalidArgument(f"run: {key} must be a {kind.__name__}")
    return value
