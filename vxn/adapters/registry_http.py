"""HTTP to one registry through oras-py: TLS, timeouts, bounded retries, and the one
translation of requests' exceptions and the registry's error statuses into vxn errors.

oras-py's `Registry` is the client, and its `do_request` (with the auth backend hook)
the request path, but undecorated: its retry decorator sleeps 3+5+11+29+83 s on any
error. Its session is replaced by one with connect and read timeouts on every call
and without ~/.netrc (requests would add those credentials to any host, a foreign
layer's included). Retries are bounded here: backoff with full jitter on 5xx, 429
(Retry-After) and broken connections, within the caller's deadline. Nothing of
requests or oras leaves the registry adapter.
"""

from __future__ import annotations

import functools
import random
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import oras.provider
import requests
import urllib3
from requests.adapters import HTTPAdapter

from vxn.config import PullSettings
from vxn.core.registry import RETRY_STATUSES, backoff, error_message, retry_after
from vxn.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, VxnError

T = TypeVar("T")
MAX_BACKOFF = 8.0
MAX_ERROR_BODY = 64 * 1024


class Transient(Exception):
    """A failure worth another try; becomes Unavailable when the tries run out."""

    def __init__(self, message: str, *, hint: str = "try again later", wait: float | None = None):
        super().__init__(message)
        self.hint = hint
        self.wait = wait


class Deadline:
    """A time budget on the monotonic clock."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._end - time.monotonic()


class _Session(requests.Session):
    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__()
        self.timeout = timeout
        self.auth = _no_auth  # set, so requests never looks in ~/.netrc
        self.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return super().request(*args, **kwargs)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        # $REQUESTS_CA_BUNDLE must not turn verification back on, nor replace the SSL
        # context's CAs (the system's and the cert dir's).
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings["verify"] = self.verify
        return settings

    def rebuild_auth(self, prepared: requests.PreparedRequest, response: requests.Response) -> None:
        # requests' own keeps Authorization across an http -> https hop, then reads
        # ~/.netrc; credentials stay with the exact scheme, host and port they were for.
        old = urlsplit(response.request.url or "")[:2]
        if "Authorization" in prepared.headers and urlsplit(prepared.url or "")[:2] != old:
            del prepared.headers["Authorization"]


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class _TLSAdapter(HTTPAdapter):
    """HTTPS with our SSL context: the system CAs plus a cert dir's, and client certs."""

    def __init__(self, context: ssl.SSLContext, pool: int) -> None:
        self._context = context
        super().__init__(pool_maxsize=pool)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # requests would make urllib3 load certifi's bundle into the context again on
        # every new connection; the context already holds the CAs to trust.
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        conn.ca_certs = conn.ca_cert_dir = None


class _Oras(oras.provider.Registry):  # type: ignore[misc]
    do_request = oras.provider.Registry.do_request.__wrapped__


@functools.cache
def _system_context() -> ssl.SSLContext:
    # Loading the system CAs costs 50-80 ms: once per process, shared by every pull.
    return ssl.create_default_context()


def ssl_context(verify: bool, cert_dir: Path | None) -> ssl.SSLContext:
    """containers-certs.d(5): `*.crt` are CAs, `*.cert` + `*.key` a client certificate."""
    if verify and cert_dir is None:
        return _system_context()
    if verify:
        context = ssl.create_default_context()
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CAs to load: none are checked
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_dir is None:
        return context
    try:
        for ca in sorted(cert_dir.glob("*.crt")):
            context.load_verify_locations(cafile=ca)
        for cert in sorted(cert_dir.glob("*.cert")):
            context.load_cert_chain(cert, cert.with_suffix(".key"))
    except (OSError, ssl.SSLError) as e:
        raise InvalidArgument(f"cert dir {cert_dir}: {_reason(e)}; fix --cert-dir") from None
    return context


class HttpClient:
    """One registry host; `connect()` picks the scheme, then `get()` / `retrying()`."""

    def __init__(
        self,
        host: str,
        *,
        insecure: bool,
        cert_dir: Path | None,
        limits: PullSettings,
        op: str,
        cancel: threading.Event | None = None,
    ) -> None:
        self.host = host
        self.limits = limits
        self.op = op
        self.insecure = insecure
        self._cancel = cancel or threading.Event()
        if insecure:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self.oras = _Oras(hostname=host, insecure=False, tls_verify=not insecure)
        self.session = _Session((limits.connect_timeout, limits.read_timeout))
        self.session.verify = not insecure
        # A connection per parallel download, and one for the token endpoint.
        pool = limits.parallel + 1
        self.session.mount("https://", _TLSAdapter(ssl_context(not insecure, cert_dir), pool))
        self.session.mount("http://", HTTPAdapter(pool_maxsize=pool))
        self.oras.session = self.session
        self.scheme = "https"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def close(self) -> None:
        self.session.close()

    def connect(self) -> None:
        """`GET /v2/`: is it a registry, and (when insecure) does it speak TLS at all?"""
        deadline = Deadline(self.limits.blob_timeout)
        schemes = ("https", "http") if self.insecure else ("https",)
        for scheme in schemes:
            self.scheme = scheme
            try:
                self.retrying("GET /v2/", deadline, self._ping)
                return
            except _PlainHTTP:
                continue

    def _ping(self) -> None:
        try:
            response = self.session.get(f"{self.base}/v2/", stream=True)
        except requests.exceptions.SSLError as e:
            if self.insecure and self.scheme == "https":
                raise _PlainHTTP from None
            raise self.translate(e, "GET /v2/") from None
        except requests.RequestException as e:
            raise self.translate(e, "GET /v2/") from None
        with response:
            if response.status_code in (200, 401):
                return
            raise self.status_error(response, "GET /v2/", f"is {self.host} a registry?")

    def get(self, url: str, headers: dict[str, str], subject: str, *, auth: bool) -> Any:
        """One GET, streamed, redirects followed; anything but 200/206 raises.

        With `auth`, through oras's request path and its auth hook; without, straight
        on the session, so no credentials go with it.
        """
        self.check_cancel()
        try:
            if auth:
                response = self._authorized("GET", url, headers)
            else:
                response = self.session.get(url, headers=headers, stream=True)
        except requests.RequestException as e:
            raise self.translate(e, subject) from None
        if response.status_code in (200, 206):
            return response
        with response:
            raise self.status_error(response, subject)

    def head(self, url: str, headers: dict[str, str], subject: str) -> Mapping[str, str] | None:
        """One HEAD through oras's request path and auth hook: the headers of a 200, or
        None for any other status (a HEAD has no body to explain it: the GET will)."""
        self.check_cancel()
        try:
            response = self._authorized("HEAD", url, headers)
        except requests.RequestException as e:
            raise self.translate(e, subject) from None
        with response:
            return response.headers if response.status_code == 200 else None

    def _authorized(self, method: str, url: str, headers: dict[str, str]) -> Any:
        """oras's request path, which answers one 401 with a token. That token may be
        one a parallel download just fetched, and already refused (used up, revoked):
        a second 401 gets one more round, which fetches a token of its own."""
        response = self.oras.do_request(url, method, headers=dict(headers), stream=True)
        if response.status_code != 401:
            return response
        response.close()
        return self.oras.do_request(url, method, headers=dict(headers), stream=True)

    def retrying(self, subject: str, deadline: Deadline, attempt: Callable[[], T]) -> T:
        """Run `attempt` until it succeeds, raises a non-transient error, or the tries or
        the deadline run out."""
        tries = 0
        while True:
            tries += 1
            try:
                return attempt()
            except Transient as e:
                if tries >= self.limits.attempts:
                    raise Unavailable(
                        f"{self.op}: {subject}: {e} (tried {tries} times); {e.hint}"
                    ) from None
                rand = random.random()
                base, cap = self.limits.retry_delay, MAX_BACKOFF
                delay = (
                    e.wait if e.wait is not None else backoff(tries, base=base, cap=cap, rand=rand)
                )
                if delay >= deadline.remaining():
                    raise Unavailable(
                        f"{self.op}: {subject}: {e}; gave up after {deadline.seconds:.0f} s "
                        "(pull.blob_timeout); try again later"
                    ) from None
                self.sleep(delay)

    def sleep(self, seconds: float) -> None:
        if self._cancel.wait(seconds):
            self.check_cancel()

    def check_cancel(self) -> None:
        if self._cancel.is_set():
            raise Unavailable(f"{self.op}: cancelled")

    def translate(self, e: Exception, subject: str) -> VxnError | Transient:
        """requests' exceptions: TLS failures end the pull, the rest are worth a retry."""
        where = self.host
        if isinstance(e, requests.exceptions.SSLError):
            return Unavailable(
                f"{self.op}: {subject}: TLS with {where} failed: {_reason(e)}; pass --cert-dir "
                f'with its CA, or for plain HTTP set [registries."{where}"] insecure = true '
                "in vxn.toml (or --tls-verify=false)"
            )
        if isinstance(e, requests.exceptions.ConnectTimeout):
            return Transient(f"cannot connect to {where} in {self.limits.connect_timeout:g} s")
        if isinstance(e, requests.exceptions.ReadTimeout):
            return Transient(
                f"no answer from {where} in {self.limits.read_timeout:g} s (pull.read_timeout)",
                hint="the registry stalled; try again later",
            )
        if isinstance(
            e, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError
        ):
            return Transient(f"cannot reach {where}: {_reason(e)}", hint="is the registry up?")
        return Unavailable(f"{self.op}: {subject}: {type(e).__name__}: {_reason(e)}")

    def status_error(self, response: Any, subject: str, fix: str = "") -> VxnError | Transient:
        status = response.status_code
        text = f"{status} {error_message(_body(response), response.reason or '')}"
        if status in RETRY_STATUSES:
            wait = retry_after(response.headers.get("Retry-After"), datetime.now(UTC))
            return Transient(text, hint=fix or "the registry failed; try again later", wait=wait)
        if status == 401:
            return FailedPrecondition(
                f"{self.op}: {subject}: {text}; log in (docker login {self.host}) "
                "or pass --authfile"
            )
        if status == 403:
            return FailedPrecondition(
                f"{self.op}: {subject}: {text}; check that these credentials may pull it"
            )
        if status == 404:
            return NotFound(f"{self.op}: {subject}: {text}; {fix or 'check the name and tag'}")
        return InvalidArgument(f"{self.op}: {subject}: {text}" + (f"; {fix}" if fix else ""))


class _PlainHTTP(Exception):
    """TLS failed against an insecure registry: try plain HTTP."""


def _body(response: Any) -> bytes:
    try:
        data: bytes = response.raw.read(MAX_ERROR_BODY, decode_content=True)
        return data
    except (urllib3.exceptions.HTTPError, OSError):
        return b""


def _reason(e: BaseException) -> str:
    """The innermost useful words of an exception chain (`Connection refused`)."""
    seen: list[BaseException] = []
    current: BaseException | None = e
    while current is not None and current not in seen:
        seen.append(current)
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException) and current.args:
            first = current.args[0]
            inner = first if isinstance(first, BaseException) else None
        current = inner or current.__cause__ or current.__context__
    for err in reversed(seen):
        if isinstance(err, ssl.SSLError) and err.reason:
            return str(getattr(err, "verify_message", "") or err.reason).replace("_", " ").lower()
        if isinstance(err, OSError) and err.strerror:
            return str(err.strerror)
    return " ".join(str(seen[-1]).split())[:200] or type(seen[-1]).__name__
