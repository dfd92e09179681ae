"""Client.duplex against a real aiohttp server on a unix socket: the handler reads the
request body line by line while it writes its reply, as vxnd's attach and exec do."""

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from vxn.adapters.statedir import RunDir
from vxn.cli.client import Client
from vxn.errors import InvalidArgument, NotFound, Unavailable
from vxn.testing.daemon import serve_app

seen: list[dict[str, object]] = []  # what the server read, for the detach test


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _line(response: web.StreamResponse, item: dict[str, object]) -> None:
    await response.write(json.dumps(item).encode() + b"\n")


async def _echo(request: web.Request) -> web.StreamResponse:
    """Answers only after the options line; echoes each `in` at once; `eof` ends it."""
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert request.headers["Content-Type"] == "application/x-ndjson"
    first = json.loads(await request.content.readline())
    seen.append(first)
    if first.get("container") == "nope":
        error = {"error": {"kind": "not_found", "message": "container nope: no such container"}}
        return web.json_response(error, status=404)
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await _line(response, {"options": first})
    while line := await request.content.readline():
        item = json.loads(line)
        seen.append(item)
        if "in" in item:
            data = base64.b64decode(item["in"])
            if data == b"fail":
                error = {"error": {"kind": "invalid_argument", "message": "exec: bad input"}}
                await _line(response, error)
                break
            if data == b"twice":  # two lines in one write: the second waits in the buffer
                await response.write(b'{"out": "1"}\n{"out": "2"}\n')
                continue
            await _line(response, {"out": _b64(data.upper())})
        elif item.get("eof"):
            await _line(response, {"exit": 0})
            break
    else:
        await _line(response, {"message": "detached"})
    await response.write_eof()
    return response


async def _hang_up(request: web.Request) -> web.StreamResponse:
    """Reads the first line, answers one line, and drops the connection mid-reply."""
    await request.content.readline()
    response = web.StreamResponse()
    await response.prepare(request)
    await _line(response, {"out": ""})
    assert request.transport is not None
    request.transport.close()
    return response


@pytest.fixture
def run(tmp_path: Path) -> Iterator[RunDir]:
    app = web.Application()
    app.router.add_post("/duplex", _echo)
    app.router.add_post("/hangup", _hang_up)
    seen.clear()
    with serve_app(app, tmp_path / "vxn.sock"):
        yield RunDir(tmp_path)


def test_each_line_is_answered_before_the_next_is_sent(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/duplex", {"tty": False}, {"id": "c 1"}) as d:
        lines = d.lines()
        assert next(lines) == {"options": {"tty": False}}
        for word in (b"one", b"two", b"three"):
            d.send({"in": _b64(word)})
            assert next(lines) == {"out": _b64(word.upper())}
        d.send({"eof": True})
        d.end()
        assert list(lines) == [{"exit": 0}]


def test_one_thread_sends_while_another_reads(run: RunDir) -> None:
    words = [f"word {i}".encode() * 50 for i in range(200)]
    with Client(run) as client, client.duplex("/duplex", {}) as d:

        def send() -> None:
            for word in words:
                d.send({"in": _b64(word)})
            d.send({"eof": True})
            d.end()

        sender = threading.Thread(target=send)
        sender.start()
        got = list(d.lines())
        sender.join()
    assert got[0] == {"options": {}}
    assert got[1:-1] == [{"out": _b64(w.upper())} for w in words]
    assert got[-1] == {"exit": 0}


def test_ending_the_body_without_eof_is_a_detach(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/duplex", {"detach": 1}) as d:
        d.send({"in": _b64(b"x")})
        d.end()
        d.end()  # twice is harmless
        assert list(d.lines())[1:] == [{"out": _b64(b"X")}, {"message": "detached"}]
        with pytest.raises(ValueError, match="after end"):
            d.send({"in": ""})
    assert seen == [{"detach": 1}, {"in": _b64(b"x")}]


def test_an_error_status_is_raised_with_its_kind(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/duplex", {"container": "nope"}) as d:
        with pytest.raises(NotFound, match=r"^container nope: no such container$"):
            next(d.lines())
        d.send({"in": ""})  # vxnd no longer reads: dropped, not raised


def test_an_error_line_is_raised_with_its_kind(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/duplex", {}) as d:
        lines = d.lines()
        next(lines)
        d.send({"in": _b64(b"fail")})
        with pytest.raises(InvalidArgument, match=r"^exec: bad input$"):
            next(lines)


def test_pending_tells_a_select_loop_about_buffered_lines(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/duplex", {}) as d:
        lines = d.lines()
        next(lines)
        assert not d.pending()
        d.send({"in": _b64(b"twice")})
        assert next(lines) == {"out": "1"}
        assert d.pending()  # select() on fileno() would not fire for this one
        assert next(lines) == {"out": "2"}
        assert d.fileno() >= 0


def test_close_from_another_thread_stops_a_blocked_reader(run: RunDir) -> None:
    with Client(run) as client:
        d = client.duplex("/duplex", {})
        got: list[dict[str, object]] = []
        reader = threading.Thread(target=lambda: got.extend(d.lines()))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive()  # blocked: the session is idle
        d.close()
        reader.join(5)
        assert not reader.is_alive()
        assert got == [{"options": {}}]
        d.send({"in": ""})  # after close: dropped
        assert d.fileno() == -1


def test_a_hangup_mid_reply_is_a_lost_connection(run: RunDir) -> None:
    with Client(run) as client, client.duplex("/hangup", {}) as d:
        lines = d.lines()
        assert next(lines) == {"out": ""}
        with pytest.raises(Unavailable, match=f"connection lost: .*; see {run.log}"):
            next(lines)
