"""The CLI's HTTP/1.1 client for vxnd's unix socket, on the stdlib only.

The CLI must start fast, so nothing here imports aiohttp or the engine. Requests
and responses are JSON; uploads are chunked request bodies written by a callback
(a tar stream or a file copy, never a temp file); streamed responses are NDJSON.
Errors that crossed the API are rebuilt with their kind, so the CLI prints the
daemon's own one-line message.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode

from vxn.adapters.statedir import RunDir
from vxn.errors import Internal, Unavailable, VxnError, from_kind

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_CHUNK = 1 << 16


class DaemonNotRunning(Unavailable):
    """Nothing listens on the socket (no file, or ECONNREFUSED): auto-start may help."""


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _SendFailed(Exception):
    """The socket failed under a chunk; kept apart from the caller's own (file) OSErrors."""

    def __init__(self, error: OSError) -> None:
        self.error = error


class _ChunkedRaw(io.RawIOBase):
    """Writes each buffer it is given as one HTTP chunk (never an empty one: that ends the body)."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
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


class Client:
    """One keep-alive connection to vxnd. Connects eagerly, so a missing daemon shows at once."""

    def __init__(self, run: RunDir, timeout: float | None = None) -> None:
        self.run = run
        self.socket_path = socket_path = run.socket
        self._conn = UnixHTTPConnection(socket_path, timeout)
        try:
            self._conn.connect()
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise DaemonNotRunning(f"vxnd is not running at {socket_path}: {e.strerror}") from None
        except PermissionError as e:
            raise Unavailable(
                f"vxnd at {socket_path}: cannot connect: {e.strerror}; "
                "join the socket's group (vxn), or use sudo"
            ) from None
        except OSError as e:
            raise Unavailable(
                f"vxnd at {socket_path}: cannot connect: {e.strerror or e}; check --run-dir"
            ) from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return self._call("GET", path, query, None)

    def post(self, path: str, body: Any = None, query: Mapping[str, str] | None = None) -> Any:
        return self._call("POST", path, query, body)

    def stream(
        self, path: str, query: Mapping[str, str], body: Any = None
    ) -> Iterator[dict[str, Any]]:
        """POST a JSON body, then yield the NDJSON reply lines as they come."""
        data = json.dumps(body if body is not None else {}).encode()
        headers = {"Content-Type": "application/json"}
        try:
            self._conn.request("POST", _url(path, query), body=data, headers=headers)
        except OSError as e:
            raise self._lost(e) from None
        yield from self._lines(self._response())

    def upload(
        self, path: str, query: Mapping[str, str], write: Callable[[BinaryIO], object]
    ) -> Iterator[dict[str, Any]]:
        """POST a chunked body produced by `write(file)`, then yield the NDJSON reply lines.

        Errors of `write` itself (reading the archive) propagate as they are.
        """
        raw = _ChunkedRaw(self._conn)
        body = io.BufferedWriter(raw, buffer_size=_CHUNK)
        try:
            try:
                self._conn.putrequest("POST", _url(path, query))
                self._conn.putheader("Transfer-Encoding", "chunked")
                self._conn.putheader("Content-Type", "application/octet-stream")
                self._conn.endheaders()
            except OSError as e:
                raise self._lost(e) from None
            write(body)
            body.flush()
            raw.end()
        except _SendFailed as e:
            if not isinstance(e.error, BrokenPipeError | ConnectionResetError):
                raise self._lost(e.error) from None
            # else vxnd answered before reading it all: its reply says why
        finally:
            raw.discard = True
            body.close()
        yield from self._lines(self._response())

    def _call(self, method: str, path: str, query: Mapping[str, str] | None, body: Any) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        try:
            self._conn.request(method, _url(path, query), body=data, headers=headers)
        except OSError as e:
            raise self._lost(e) from None
        response = self._response()
        try:
            payload = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._lost(e) from None
        return self._decode(payload) if payload else None

    def _response(self) -> http.client.HTTPResponse:
        try:
            response = self._conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            raise self._lost(e) from None
        if response.status >= 400:
            raise _error(response.status, response.read(), self.socket_path)
        return response

    def _lines(self, response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
        try:
            for line in response:
                if not line.strip():
                    continue
                item = self._decode(line)
                if not isinstance(item, dict):
                    raise Internal(f"vxnd at {self.socket_path}: unexpected reply line {line!r}")
                if "error" in item:
                    raise _error(500, line, self.socket_path)
                yield item
        except (OSError, http.client.HTTPException) as e:
            raise self._lost(e) from None

    def _decode(self, payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except ValueError:
            raise Internal(
                f"vxnd at {self.socket_path}: reply is not JSON: {payload[:80]!r}"
            ) from None

    def _lost(self, e: BaseException) -> VxnError:
        self._conn.close()
        detail = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return Unavailable(
            f"vxnd at {self.socket_path}: connection lost: {detail}; see {self.run.log}"
        )


def _url(path: str, query: Mapping[str, str] | None) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def _error(status: int, payload: bytes, socket_path: Path) -> VxnError:
    """Rebuild `{"error": {"kind", "message"}}`; anything else becomes an internal error."""
    try:
        error = json.loads(payload)["error"]
        return from_kind(str(error["kind"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return Internal(f"vxnd at {socket_path}: unexpected reply: HTTP {status}")
