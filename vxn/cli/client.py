"""The CLI's HTTP/1.1 client for vxnd's unix socket, on a raw socket.

The CLI must start fast, so nothing here imports aiohttp, the engine, or even the
stdlib's http.client (with its email and ssl baggage): vxnd is the only peer, on a
unix socket, and the little HTTP it speaks is framed here. Requests and responses
are JSON; uploads are chunked request bodies written by a callback (a tar stream
or a file copy, never a temp file); streamed responses are NDJSON; a duplex
request (attach, exec: docs/CONTAINERS.md §4) keeps sending NDJSON lines while its
reply is read. Errors that crossed the API are rebuilt with their kind, so the CLI
prints the daemon's own one-line message.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from typing import TYPE_CHECKING, Any, BinaryIO

from vxn.errors import Internal, Unavailable, VxnError, from_kind

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from _typeshed import ReadableBuffer

    from vxn.adapters.statedir import RunDir

    Query = Mapping[str, str | Sequence[str]]  # a sequence repeats its key

_CHUNK = 1 << 16
_MAX_HEAD = 1 << 16  # status line plus headers; vxnd's are a few hundred bytes
_MAX_CHUNK_LINE = 1 << 10
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class DaemonNotRunning(Unavailable):
    """Nothing listens on the socket (no file, or ECONNREFUSED): auto-start may help."""


class _BadReply(Exception):
    """The reply broke HTTP/1.1 framing."""


class _TooLong(_BadReply):
    """A line longer than the reader allows."""


class _Hangup(Exception):
    """vxnd closed the connection before its reply was complete."""


class _Conn:
    """One AF_UNIX stream to vxnd, and the bytes read from it but not yet consumed.

    `sock` is None while closed; `open()` (re)connects, as http.client's did, so a
    keep-alive connection vxnd dropped while idle is simply made again.
    """

    def __init__(self, path: Path, timeout: float | None) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buf = bytearray()

    def open(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(str(self.path))
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            self.buf.clear()
        return self.sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def send(self, data: ReadableBuffer) -> None:
        if self.sock is None:
            raise BrokenPipeError(32, "Broken pipe")
        self.sock.sendall(data)

    def _fill(self) -> None:
        """Wait for more bytes; a closed stream is a hangup."""
        if self.sock is None:
            raise _Hangup
        data = self.sock.recv(_CHUNK)
        if not data:
            raise _Hangup
        self.buf += data

    def readline(self, limit: int) -> bytes:
        """One line, with its b"\\n"; longer than `limit` bytes is a bad reply."""
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) >= limit:
                raise _TooLong(f"a line over {limit} bytes")
            start = len(self.buf)
            self._fill()
        if end >= limit:
            raise _TooLong(f"a line over {limit} bytes")
        line = bytes(self.buf[: end + 1])
        del self.buf[: end + 1]
        return line

    def pieces(self, size: int) -> Iterator[bytes]:
        """The next `size` bytes, as they arrive."""
        while size:
            if not self.buf:
                self._fill()
            piece = bytes(self.buf[:size])
            del self.buf[:size]
            size -= len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        """Everything until vxnd closes the stream (a reply with no length)."""
        while True:
            if self.buf:
                yield bytes(self.buf)
                self.buf.clear()
            try:
                self._fill()
            except _Hangup:
                return


class _Response:
    """A reply's status and headers; `pieces()` reads its body, framed by length or chunks."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.done = False
        try:
            version = self._read_head()
        except _TooLong:
            raise _BadReply(f"reply headers over {_MAX_HEAD} bytes") from None
        self.keep_alive = version == b"HTTP/1.1" and "close" not in self.header("connection")
        self.chunked = False
        self.length: int | None = None
        if self.status in (204, 304):
            self.length = 0
        elif encoding := self.header("transfer-encoding"):
            if encoding != "chunked":
                raise _BadReply(f"an unsupported Transfer-Encoding {encoding!r}")
            self.chunked = True
        elif "content-length" in self.headers:
            length = self.headers["content-length"]
            if not length.isdigit():
                raise _BadReply(f"a bad Content-Length {length!r}")
            self.length = int(length)
        else:
            self.keep_alive = False  # the body ends when vxnd closes the stream

    def _read_head(self) -> bytes:
        """Read the status line and headers, skipping 1xx interim replies; return the version."""
        while True:
            budget = _MAX_HEAD
            line = self._conn.readline(budget)
            budget -= len(line)
            version, _, rest = line.partition(b" ")
            code = rest[:3]
            if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise _BadReply(f"a bad status line {line[:80]!r}")
            self.status = int(code)
            self.headers = _read_headers(self._conn, budget)
            if self.status >= 200:
                return version

    def header(self, name: str) -> str:
        return self.headers.get(name, "").lower()

    def pieces(self) -> Iterator[bytes]:
        conn = self._conn
        if self.chunked:
            while size := _chunk_size(conn.readline(_MAX_CHUNK_LINE)):
                last = b""
                for piece in conn.pieces(size):
                    if last:
                        yield last
                    last = piece
                # The chunk's CRLF is read before its end is handed on, so that
                # bytes left in the buffer mean data (see Duplex.pending).
                if b"".join(conn.pieces(2)) != b"\r\n":
                    raise _BadReply("a chunk longer than its size")
                yield last
            _read_headers(conn, _MAX_HEAD)  # trailers
        elif self.length is not None:
            yield from conn.pieces(self.length)
        else:
            yield from conn.rest()
        self.done = True
        if not self.keep_alive:
            conn.close()

    def read(self) -> bytes:
        return b"".join(self.pieces())


def _read_headers(conn: _Conn, budget: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := conn.readline(budget)) not in (b"\r\n", b"\n"):
        budget -= len(line)
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise _BadReply(f"a bad header line {line[:80]!r}")
        key, text = name.decode("latin-1").lower(), value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


def _chunk_size(line: bytes) -> int:
    digits = line.partition(b";")[0].strip()
    if not digits or digits.strip(b"0123456789abcdefABCDEF"):
        raise _BadReply(f"a bad chunk size line {line[:80]!r}")
    return int(digits, 16)


class _LineReader:
    """Splits a body into NDJSON lines; `pending()` tells whether one is ready already."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self._buf = bytearray()

    def pending(self) -> bool:
        return b"\n" in self._buf

    def __iter__(self) -> Iterator[bytes]:
        while True:
            while (end := self._buf.find(b"\n")) < 0:
                piece = next(self._pieces, None)
                if piece is None:
                    if self._buf.strip():
                        yield bytes(self._buf)
                    return
                self._buf += piece
            line = bytes(self._buf[: end + 1])
            del self._buf[: end + 1]
            if line.strip():
                yield line


class _ChunkedRaw(io.RawIOBase):
    """Writes each buffer it is given as one HTTP chunk (never an empty one: that ends the body)."""

    def __init__(self, conn: _Conn) -> None:
        self._conn = conn
        self.discard = False  # set once the body is over, so a late flush sends nothing

    def writable(self) -> bool:
        return True

    def write(self, b: ReadableBuffer) -> int:
        data = memoryview(b).cast("B")
        if data.nbytes and not self.discard:
            self._send(b"".join((b"%X\r\n" % data.nbytes, data, b"\r\n")))
        return data.nbytes

    def end(self) -> None:
        self._send(b"0\r\n\r\n")

    def _send(self, data: bytes) -> None:
        try:
            self._conn.send(data)
        except OSError as e:
            raise _SendFailed(e) from e


class _SendFailed(Exception):
    """The socket failed under a chunk; kept apart from the caller's own (file) OSErrors."""

    def __init__(self, error: OSError) -> None:
        self.error = error


class Client:
    """One keep-alive connection to vxnd. Connects eagerly, so a missing daemon shows at once."""

    def __init__(self, run: RunDir, timeout: float | None = None) -> None:
        self.run = run
        self.socket_path = run.socket
        self._conn = _Conn(self.socket_path, timeout)
        self._response: _Response | None = None  # the last reply, until its body is read
        _connect(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, query: Query | None = None) -> Any:
        return self._call("GET", path, query, None)

    def post(self, path: str, body: Any = None, query: Query | None = None) -> Any:
        return self._call("POST", path, query, body)

    def delete(self, path: str, query: Query | None = None) -> Any:
        return self._call("DELETE", path, query, None)

    def get_lines(self, path: str, query: Query | None = None) -> Iterator[dict[str, Any]]:
        """GET, then yield the NDJSON reply lines as vxnd writes them (logs, events)."""
        self._send("GET", path, query)
        yield from self._lines(self._reply())

    def stream(self, path: str, query: Query, body: Any = None) -> Iterator[dict[str, Any]]:
        """POST a JSON body, then yield the NDJSON reply lines as they come."""
        self._send("POST", path, query, body if body is not None else {})
        yield from self._lines(self._reply())

    def upload(
        self, path: str, query: Query, write: Callable[[BinaryIO], object]
    ) -> Iterator[dict[str, Any]]:
        """POST a chunked body produced by `write(file)`, then yield the NDJSON reply lines.

        Errors of `write` itself (reading the archive) propagate as they are.
        """
        raw = _ChunkedRaw(self._conn)
        body = io.BufferedWriter(raw, buffer_size=_CHUNK)
        try:
            self._send("POST", path, query, chunked="application/octet-stream")
            write(body)
            body.flush()
            raw.end()
        except _SendFailed as e:
            if not isinstance(e.error, BrokenPipeError | ConnectionResetError):
                raise _lost(self._conn, self.run, e.error) from None
            # else vxnd answered before reading it all: its reply says why
        finally:
            raw.discard = True
            body.close()
        yield from self._lines(self._reply())

    def duplex(self, path: str, first: dict[str, Any], query: Query | None = None) -> Duplex:
        """Open a full-duplex request on a connection of its own (docs/CONTAINERS.md §4).

        `first` is the options line. The connection has no timeout: a session may idle.
        """
        conn = _Conn(self.socket_path, None)
        _connect(conn)
        head = _head("POST", path, query, chunked="application/x-ndjson")
        try:
            conn.send(head + _ndjson_chunk(first))
        except OSError as e:
            raise _lost(conn, self.run, e) from None
        return Duplex(conn, self.run)

    def _call(self, method: str, path: str, query: Query | None, body: Any) -> Any:
        self._send(method, path, query, body)
        response = self._reply()
        try:
            payload = response.read()
        except (OSError, _Hangup) as e:
            raise _lost(self._conn, self.run, e) from None
        except _BadReply as e:
            raise _bad(self._conn, self.socket_path, e) from None
        return _decode(payload, self.socket_path) if payload else None

    def _send(
        self,
        method: str,
        path: str,
        query: Query | None,
        body: Any = None,
        chunked: str | None = None,
    ) -> None:
        """Send a request head (and its JSON body, if any) on a connection free for it."""
        if self._response is not None and not self._response.done:
            self._conn.close()  # an abandoned reply is still on it: start afresh
        self._response = None
        data = b""
        if chunked is None and body is not None:
            data = json.dumps(body).encode()
        try:
            self._conn.open()
            self._conn.send(_head(method, path, query, chunked, data if body is not None else None))
            if data:
                self._conn.send(data)
        except OSError as e:
            raise _lost(self._conn, self.run, e) from None

    def _reply(self) -> _Response:
        response = _read_response(self._conn, self.run)
        self._response = response
        if response.status >= 400:
            raise _error(response.status, self._body(response), self.socket_path)
        return response

    def _body(self, response: _Response) -> bytes:
        try:
            return response.read()
        except (OSError, _Hangup) as e:
            raise _lost(self._conn, self.run, e) from None
        except _BadReply as e:
            raise _bad(self._conn, self.socket_path, e) from None

    def _lines(self, response: _Response) -> Iterator[dict[str, Any]]:
        try:
            yield from _items(_LineReader(response.pieces()), self.socket_path)
        except (OSError, _Hangup) as e:
            raise _lost(self._conn, self.run, e) from None
        except _BadReply as e:
            raise _bad(self._conn, self.socket_path, e) from None


class Duplex:
    """One request whose NDJSON body is sent while its NDJSON reply is read.

    `send`/`end` may run on one thread while `lines()` runs on another; `close()`
    from either wakes the other. Once vxnd stops reading (it answered, or the
    session ended), `send` drops its line: the reply says what happened.
    """

    def __init__(self, conn: _Conn, run: RunDir) -> None:
        import threading  # only duplex users pay for it

        self._conn = conn
        self._run = run
        self._lock = threading.Lock()
        self._ended = False  # end() was called: the body is complete
        self._gone = False  # vxnd stopped reading, or close() was called: sends are dropped
        self._closed = False
        self._reader: _LineReader | None = None

    def send(self, line: dict[str, Any]) -> None:
        """Send one NDJSON line, as one chunk."""
        if self._ended:
            raise ValueError("Duplex.send after end()")
        self._write(_ndjson_chunk(line))

    def end(self) -> None:
        """Finish the request body (without an `eof` line, vxnd takes it as a detach)."""
        if not self._ended:
            self._ended = True
            self._write(b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._gone:
                return
            try:
                self._conn.send(data)
            except (BrokenPipeError, ConnectionResetError):
                self._gone = True
            except OSError as e:
                raise _lost(self._conn, self._run, e) from None

    def lines(self) -> Iterator[dict[str, Any]]:
        """The reply's lines; its status and headers are read on the first call.

        vxnd answers only once it has read the first line, so this must not run
        before `send` could have happened. Error lines raise their `VxnError` kind;
        after `close()` the iteration just stops.
        """
        path = self._run.socket
        try:
            response = _read_response(self._conn, self._run)
            if response.status >= 400:
                raise _error(response.status, response.read(), path)
            self._reader = _LineReader(response.pieces())
            yield from _items(self._reader, path)
        except (OSError, _Hangup) as e:
            if not self._closed:
                raise _lost(self._conn, self._run, e) from None
        except _BadReply as e:
            if not self._closed:
                raise _bad(self._conn, path, e) from None

    def pending(self) -> bool:
        """True when bytes already read await `lines()`: select() on fileno() won't show them."""
        return bool(self._conn.buf) or (self._reader is not None and self._reader.pending())

    def fileno(self) -> int:
        sock = self._conn.sock
        return sock.fileno() if sock is not None else -1

    def close(self) -> None:
        """Drop the connection (a detach, unless `eof` was sent); wakes a blocked `lines()`."""
        self._gone = self._closed = True
        sock = self._conn.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # vxnd may have closed it already
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:  # a send in flight fails at once after the shutdown
            self._conn.close()

    def __enter__(self) -> Duplex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _connect(conn: _Conn) -> None:
    path = conn.path
    try:
        conn.open()
    except (FileNotFoundError, ConnectionRefusedError) as e:
        raise DaemonNotRunning(f"vxnd is not running at {path}: {e.strerror}") from None
    except PermissionError as e:
        raise Unavailable(
            f"vxnd at {path}: cannot connect: {e.strerror}; "
            "join the socket's group (vxn), or use sudo"
        ) from None
    except OSError as e:
        raise Unavailable(
            f"vxnd at {path}: cannot connect: {e.strerror or e}; check --run-dir"
        ) from None


def _read_response(conn: _Conn, run: RunDir) -> _Response:
    try:
        return _Response(conn)
    except (OSError, _Hangup) as e:
        raise _lost(conn, run, e) from None
    except _BadReply as e:
        raise _bad(conn, run.socket, e) from None


def _items(lines: _LineReader, socket_path: Path) -> Iterator[dict[str, Any]]:
    for line in lines:
        item = _decode(line, socket_path)
        if not isinstance(item, dict):
            raise Internal(f"vxnd at {socket_path}: unexpected reply line {line!r}")
        if "error" in item:
            raise _error(500, line, socket_path)
        yield item


def _head(
    method: str,
    path: str,
    query: Query | None,
    chunked: str | None = None,
    body: bytes | None = None,
) -> bytes:
    encoded = _urlencode(query) if query else ""
    target = f"{path}?{encoded}" if encoded else path
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost"]
    if chunked is not None:
        lines += ["Transfer-Encoding: chunked", f"Content-Type: {chunked}"]
    elif body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _urlencode(query: Query) -> str:
    """Percent-encode all but RFC 3986's unreserved bytes (urllib.parse costs ms to import);
    a list value repeats its key."""
    return "&".join(
        f"{_quote(k)}={_quote(v)}"
        for k, values in query.items()
        for v in ([values] if isinstance(values, str) else values)
    )


def _quote(text: str) -> str:
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode())


def _ndjson_chunk(line: dict[str, Any]) -> bytes:
    data = json.dumps(line, separators=(",", ":")).encode() + b"\n"
    return b"%X\r\n%s\r\n" % (len(data), data)


def _decode(payload: bytes, socket_path: Path) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise Internal(f"vxnd at {socket_path}: reply is not JSON: {payload[:80]!r}") from None


def _lost(conn: _Conn, run: RunDir, e: BaseException) -> VxnError:
    conn.close()
    if isinstance(e, _Hangup):
        detail = "vxnd closed the connection mid-reply"
    else:
        detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return Unavailable(f"vxnd at {run.socket}: connection lost: {detail}; see {run.log}")


def _bad(conn: _Conn, socket_path: Path, e: _BadReply) -> VxnError:
    conn.close()
    return Internal(f"vxnd at {socket_path}: malformed HTTP reply: {e}")


def _error(status: int, payload: bytes, socket_path: Path) -> VxnError:
    """Rebuild `{"error": {"kind", "message"}}`; anything else becomes an internal error."""
    try:
        error = json.loads(payload)["error"]
        return from_kind(str(error["kind"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return Internal(f"vxnd at {socket_path}: unexpected reply: HTTP {status}")
