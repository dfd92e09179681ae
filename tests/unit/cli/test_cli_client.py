import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from aiohttp import web

from vxn.adapters.statedir import RunDir
from vxn.cli.client import Client, DaemonNotRunning
from vxn.errors import Internal, InvalidArgument, NotFound, Unavailable
from vxn.testing.daemon import serve_app


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return RunDir(tmp_path)


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(
        {"method": request.method, "query": dict(request.query), "body": await request.text()}
    )


async def _pairs(request: web.Request) -> web.Response:
    return web.json_response([[k, v] for k, v in request.query.items()])


async def _not_found(request: web.Request) -> web.Response:
    body = {"error": {"kind": "not_found", "message": "image nope: no such image"}}
    return web.json_response(body, status=404)


async def _plain_500(request: web.Request) -> web.Response:
    return web.Response(status=500, text="oops")


async def _upload(request: web.Request) -> web.StreamResponse:
    """Counts the chunked body, then streams NDJSON (with an error line when asked)."""
    assert request.headers["Transfer-Encoding"] == "chunked"
    data = await request.content.read()
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await response.write(json.dumps({"size": len(data), "head": data[:5].decode()}).encode())
    await response.write(b"\n\n")
    if request.query.get("fail"):
        error = {"error": {"kind": "invalid_argument", "message": "load: not an archive"}}
        await response.write(json.dumps(error).encode() + b"\n")
    await response.write_eof()
    return response


async def _refuse_early(request: web.Request) -> web.Response:
    """Answers without reading the body, like a handler that rejects a query parameter."""
    error = {"error": {"kind": "invalid_argument", "message": "invalid platform 'x'"}}
    return web.json_response(error, status=400)


@pytest.fixture
def server(run: RunDir) -> Iterator[None]:
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/missing", _not_found)
    app.router.add_get("/plain", _plain_500)
    app.router.add_post("/upload", _upload)
    app.router.add_post("/refuse", _refuse_early)
    with serve_app(app, run.socket):
        yield


@pytest.mark.usefixtures("server")
def test_get_and_post_json_on_one_connection(run: RunDir) -> None:
    with Client(run) as client:
        assert client.get("/echo", {"ref": "a b"}) == {
            "method": "GET",
            "query": {"ref": "a b"},
            "body": "",
        }
        reply = client.post("/echo", {"source": "x"})
        assert reply["method"] == "POST"
        assert json.loads(reply["body"]) == {"source": "x"}


@pytest.mark.usefixtures("server")
def test_an_api_error_keeps_its_kind_and_message(run: RunDir) -> None:
    with Client(run) as client, pytest.raises(NotFound, match=r"^image nope: no such image$"):
        client.get("/missing")


@pytest.mark.usefixtures("server")
def test_a_reply_that_is_not_an_api_error_is_internal(run: RunDir) -> None:
    with Client(run) as client, pytest.raises(Internal, match="unexpected reply: HTTP 500"):
        client.get("/plain")


@pytest.mark.usefixtures("server")
def test_upload_streams_a_chunked_body_and_yields_ndjson(run: RunDir) -> None:
    def write(out: BinaryIO) -> None:
        out.write(b"")  # an empty write must not end the chunked body
        for _ in range(100):
            out.write(b"x" * 10_000)

    with Client(run) as client:
        assert list(client.upload("/upload", {}, write)) == [{"size": 1_000_000, "head": "xxxxx"}]
        assert client.get("/echo")["method"] == "GET"  # the connection is still usable


@pytest.mark.usefixtures("server")
def test_an_error_line_ends_the_stream_with_its_kind(run: RunDir) -> None:
    with Client(run) as client:
        lines = client.upload("/upload", {"fail": "1"}, lambda out: out.write(b"abc"))
        assert next(lines) == {"size": 3, "head": "abc"}
        with pytest.raises(InvalidArgument, match=r"^load: not an archive$"):
            next(lines)


@pytest.mark.usefixtures("server")
def test_a_reply_before_the_body_is_read_is_still_reported(run: RunDir) -> None:
    def write(out: BinaryIO) -> None:
        for _ in range(64):
            out.write(b"y" * 65536)

    with Client(run) as client, pytest.raises(InvalidArgument, match="invalid platform"):
        list(client.upload("/refuse", {}, write))


def test_no_socket_means_the_daemon_is_not_running(run: RunDir) -> None:
    with pytest.raises(DaemonNotRunning, match=f"vxnd is not running at {run.socket}"):
        Client(run)


def test_a_stale_socket_means_the_daemon_is_not_running(run: RunDir) -> None:
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(run.socket))
    with pytest.raises(DaemonNotRunning, match="Connection refused"):
        Client(run)


def test_a_socket_path_we_cannot_use_is_not_a_missing_daemon(tmp_path: Path) -> None:
    (tmp_path / "file").touch()
    run = RunDir(tmp_path / "file")  # ENOTDIR: auto-start would not help
    with pytest.raises(
        Unavailable, match="cannot connect: Not a directory; check --run-dir"
    ) as caught:
        Client(run)
    assert not isinstance(caught.value, DaemonNotRunning)


def test_a_daemon_that_hangs_up_is_a_lost_connection(run: RunDir) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(run.socket))
        listener.listen()
        with Client(run) as client:
            peer, _ = listener.accept()
            peer.close()
            with pytest.raises(Unavailable, match=f"connection lost: .*; see {run.log}"):
                client.get("/v1/version")


@pytest.mark.usefixtures("server")
def test_the_writers_own_errors_propagate_and_nothing_more_is_sent(run: RunDir) -> None:
    def write(out: BinaryIO) -> None:
        out.write(b"partial")  # still buffered when the failure comes
        raise FileNotFoundError(2, "No such file or directory", "layout/index.json")

    with Client(run) as client, pytest.raises(FileNotFoundError, match=r"layout/index\.json"):
        list(client.upload("/upload", {}, write))
    # The server is unharmed; and once it has answered a later connection it has also
    # accepted the aborted one, so its shutdown cannot race that accept (a 3.11 leak).
    with Client(run) as client:
        assert client.get("/echo")["method"] == "GET"


async def _lines(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    for i in range(3):
        await response.write(b'{"n": %d}\n' % i)
    await response.write_eof()
    return response


async def _gone(request: web.Request) -> web.Response:
    return web.json_response({"deleted": request.query["id"]})


async def _close_after(request: web.Request) -> web.Response:
    response = web.json_response({"closing": True})
    response.force_close()
    return response


@pytest.fixture
def more(run: RunDir) -> Iterator[None]:
    app = web.Application()
    app.router.add_get("/echo", _echo)
    app.router.add_get("/pairs", _pairs)
    app.router.add_route("*", "/lines", _lines)
    app.router.add_delete("/gone", _gone)
    app.router.add_get("/close", _close_after)
    with serve_app(app, run.socket):
        yield


@pytest.mark.usefixtures("more")
def test_a_query_is_percent_encoded(run: RunDir) -> None:
    query = {"ref": "reg:5000/a b&c=d+é", "x y": "~._-/"}
    with Client(run) as client:
        assert client.get("/echo", query)["query"] == query


@pytest.mark.usefixtures("more")
def test_a_list_in_a_query_repeats_its_key_and_an_empty_one_sends_nothing(run: RunDir) -> None:
    with Client(run) as client:
        got = client.get("/pairs", {"status": ["exited", "running"], "all": "1"})
        assert got == [["status", "exited"], ["status", "running"], ["all", "1"]]
        assert client.get("/pairs", {"status": []}) == []


@pytest.mark.usefixtures("more")
def test_an_abandoned_stream_does_not_spoil_the_next_request(run: RunDir) -> None:
    with Client(run) as client:
        lines = client.stream("/lines", {})
        assert next(lines) == {"n": 0}
        assert client.get("/echo")["method"] == "GET"
        assert list(client.stream("/lines", {})) == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.usefixtures("more")
def test_a_connection_vxnd_closes_is_made_again(run: RunDir) -> None:
    with Client(run) as client:
        assert client.get("/close") == {"closing": True}
        assert client._conn.sock is None
        assert client.get("/echo")["method"] == "GET"


def _serve_raw(run: RunDir, reply: bytes) -> threading.Thread:
    """A one-shot peer: reads one request head, writes `reply`, and closes."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(run.socket))
    listener.listen()

    def serve() -> None:
        with listener, listener.accept()[0] as peer:
            head = b""
            while b"\r\n\r\n" not in head:
                head += peer.recv(4096)
            peer.sendall(reply)

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        (b'HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{"a":1}', {"a": 1}),
        (b'HTTP/1.0 200 OK\r\n\r\n{"until": "eof"}', {"until": "eof"}),
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
            b'\r\n3;ext=1\r\n{"a\r\n4\r\n":2}\r\n0\r\nTrailer: x\r\n\r\n',
            {"a": 2},
        ),
        (b"HTTP/1.1 204 No Content\r\n\r\n", None),
    ],
    ids=["length", "until-eof", "chunked-after-100", "no-content"],
)
def test_reply_framings(run: RunDir, reply: bytes, body: object) -> None:
    thread = _serve_raw(run, reply)
    with Client(run) as client:
        assert client.get("/x") == body
    thread.join()


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (b"SMTP ready\r\n\r\n", "a bad status line"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 20000, "reply headers over 65536 bytes"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "a bad header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "a bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "an unsupported Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "a bad chunk size"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            "a chunk longer than its size",
        ),
    ],
)
def test_a_malformed_reply_is_an_internal_error(run: RunDir, reply: bytes, why: str) -> None:
    thread = _serve_raw(run, reply)
    with Client(run) as client, pytest.raises(Internal, match=f"malformed HTTP reply: {why}"):
        client.get("/x")
    thread.join()


def test_a_reply_cut_short_is_a_lost_connection(run: RunDir) -> None:
    thread = _serve_raw(run, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{")
    with Client(run) as client, pytest.raises(Unavailable, match="connection lost: vxnd closed"):
        client.get("/x")
    thread.join()


@pytest.mark.usefixtures("more")
def test_get_lines_and_delete(run: RunDir) -> None:
    with Client(run) as client:
        assert list(client.get_lines("/lines")) == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert client.delete("/gone", {"id": "c1"}) == {"deleted": "c1"}
