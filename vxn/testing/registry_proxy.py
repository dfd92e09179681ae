"""A loopback HTTP proxy in front of a test registry: a token server and faults.

docker-registry speaks Bearer auth only with a separate token server, so the proxy
plays both parts when `bearer` is set: `/v2/…` without a valid token gets a 401
challenge naming its own `/token` endpoint, which hands out tokens (for a Basic
login from `users`, or an identity token by OAuth2 refresh_token POST), each good
for `token_uses` requests. `fault()` arms one misbehaviour for requests whose path
contains a string: an error status with a registry-style body, a flipped byte, a
stall, a trickle, a connection dropped mid-body, an oversize manifest, a wrong or
missing Docker-Content-Digest, a redirect to another host (`localhost` for
`127.0.0.1`), or a Range header ignored; `method` aims one at GETs or HEADs only.
Every request is logged, headers included. Bodies are held in memory: test images
are small.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import secrets
import socket
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

STALL_LIMIT = 60.0  # a stalled request gives up after this, or when the proxy stops
TRICKLE = (256, 0.05)  # bytes per step, seconds between steps
BIG = 5 * 1024 * 1024
_FORWARD = ("Accept", "Range", "Accept-Encoding")
_BACK = ("Content-Type", "Docker-Content-Digest", "Content-Range", "Accept-Ranges")


@dataclass(slots=True)
class Fault:
    """kind: status, flip, stall, stall_body, trickle, drop, big, wrong_digest, no_digest
    (no Docker-Content-Digest), redirect, ignore_range (answer 200 with the whole body to
    a Range request)."""

    kind: str
    match: str
    times: int = 1  # requests it hits; 0 = every one
    status: int = 500
    code: str = "UNKNOWN"
    message: str = "injected failure"
    retry_after: str = ""  # a Retry-After header for a status fault
    method: str = ""  # only requests of this method ("GET", "HEAD"); "" = every one
    hits: int = 0


@dataclass(frozen=True, slots=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)


class RegistryProxy:
    def __init__(
        self,
        upstream: str,
        *,
        bearer: bool = False,
        users: dict[str, str] | None = None,
        identity_token: str = "",
        token_uses: int = 0,
    ) -> None:
        self.upstream = upstream
        self.bearer = bearer
        self.users = users or {}
        self.identity_token = identity_token
        self.token_uses = token_uses  # 0: unlimited
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.tokens_issued = 0
        self._tokens: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-proxy")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RegistryProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def fault(self, kind: str, match: str, **kw: object) -> Fault:
        fault = Fault(kind, match, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.faults.append(fault)
        return fault

    def requests(self, match: str = "", method: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if match in s.path and method in ("", s.method)]

    # --- serving ----------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.seen.append(Seen(h.command, h.path, dict(h.headers)))
        if h.path.startswith("/token"):
            return self._token(h)
        redirected = "redirected=1" in h.path
        if self.bearer and not redirected and not self._authorized(h):
            return self._challenge(h)
        fault = self._take(h.command, h.path)
        kind = fault.kind if fault else ""
        if fault is not None and kind in ("status", "redirect", "big", "stall"):
            return self._answer_fault(h, fault)
        status, headers, body = self._forward(h, ranged=kind != "ignore_range")
        if kind == "flip" and body:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        if kind == "wrong_digest":
            headers["Docker-Content-Digest"] = "sha256:" + "0" * 64
        if kind == "no_digest":
            headers.pop("Docker-Content-Digest", None)
        _send_head(h, status, headers, len(body))
        _send_body(h, body, kind, self.stopping)

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.match not in path or fault.method not in ("", method):
                    continue
                if fault.times == 0 or fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def _answer_fault(self, h: BaseHTTPRequestHandler, fault: Fault) -> None:
        if fault.kind == "stall":
            self.stopping.wait(STALL_LIMIT)
            h.close_connection = True
            return
        if fault.kind == "redirect":
            sep = "&" if "?" in h.path else "?"
            location = f"http://localhost:{self.port}{h.path}{sep}redirected=1"
            _send_head(h, 307, {"Location": location}, 0)
            return
        if fault.kind == "big":
            # No Content-Length: the client must stop reading by itself.
            h.send_response(200)
            h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            h.send_header("Connection", "close")
            h.end_headers()
            h.close_connection = True
            _write(h, b"{" + b" " * BIG + b"}")
            return
        extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        _error(h, fault.status, fault.code, fault.message, extra)

    def _forward(
        self, h: BaseHTTPRequestHandler, ranged: bool
    ) -> tuple[int, dict[str, str], bytes]:
        path = h.path.replace("?redirected=1", "").replace("&redirected=1", "")
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            headers = {
                k: v for k in _FORWARD if (v := h.headers.get(k)) and (ranged or k != "Range")
            }
            conn.request(h.command, path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            back = {k: v for k in _BACK if (v := response.getheader(k))}
            return response.status, back, body
        finally:
            conn.close()

    # --- auth -------------------------------------------------------------------------

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        scheme, _, token = (h.headers.get("Authorization") or "").partition(" ")
        with self._lock:
            left = self._tokens.get(token, 0) if scheme == "Bearer" else 0
            if left <= 0:
                return False
            self._tokens[token] = left - 1
            return True

    def _challenge(self, h: BaseHTTPRequestHandler) -> None:
        parts = h.path.split("?")[0].split("/")
        kinds = ("manifests", "blobs")
        repo = next(("/".join(parts[2:i]) for i, p in enumerate(parts) if p in kinds), "")
        scope = f',scope="repository:{repo}:pull"' if repo else ""
        value = f'Bearer realm="http://{self.host}/token",service="vxn-proxy"{scope}'
        _error(h, 401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": value})

    def _token(self, h: BaseHTTPRequestHandler) -> None:
        if self.users and not self._logged_in(h):
            return _error(h, 401, "UNAUTHORIZED", "bad credentials for the token server")
        token = secrets.token_hex(16)
        with self._lock:
            self.tokens_issued += 1
            self._tokens[token] = self.token_uses or 1_000_000
        body = json.dumps({"token": token, "expires_in": 300}).encode()
        _send_head(h, 200, {"Content-Type": "application/json"}, len(body))
        h.wfile.write(body)

    def _logged_in(self, h: BaseHTTPRequestHandler) -> bool:
        if h.command == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            form = parse_qs(h.rfile.read(length).decode())
            return bool(self.identity_token) and form.get("refresh_token") == [self.identity_token]
        scheme, _, value = (h.headers.get("Authorization") or "").partition(" ")
        if scheme != "Basic":
            return False
        user, _, password = base64.b64decode(value).decode().partition(":")
        return self.users.get(user) == password


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: RegistryProxy

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up (a timed-out pull, a killed vxnd) are part of the tests.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self.server.proxy.handle(self)

    do_POST = do_GET
    do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass  # the tests read `seen`


def _send_head(
    h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], length: int
) -> None:
    h.send_response(status)
    for key, value in headers.items():
        h.send_header(key, value)
    h.send_header("Content-Length", str(length))
    h.end_headers()


def _error(
    h: BaseHTTPRequestHandler,
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    _send_head(h, status, {"Content-Type": "application/json", **(headers or {})}, len(body))
    _write(h, body)


def _send_body(
    h: BaseHTTPRequestHandler, body: bytes, kind: str, stopping: threading.Event
) -> None:
    if kind == "drop":
        _write(h, body[: len(body) // 2])
        _hang_up(h)
    elif kind == "stall_body":
        _write(h, body[: len(body) // 2])
        stopping.wait(STALL_LIMIT)
        _hang_up(h)
    elif kind == "trickle":
        step, pause = TRICKLE
        for i in range(0, len(body), step):
            if stopping.wait(pause) or not _write(h, body[i : i + step]):
                return _hang_up(h)
    else:
        _write(h, body)


def _write(h: BaseHTTPRequestHandler, data: bytes) -> bool:
    if h.command == "HEAD":  # the head says how long the body would be; none follows
        return True
    try:
        h.wfile.write(data)
        return True
    except OSError:
        return False


def _hang_up(h: BaseHTTPRequestHandler) -> None:
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)
