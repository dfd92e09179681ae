"""The registry client: manifests and blobs from one repository, verified.

Owns what the registry protocol asks of a careful client (PEERS.md §4):
- every manifest and blob is checked for size and digest before the caller sees
  it; a by-tag manifest must match the Docker-Content-Digest the registry sent;
- a blob streams into the content store's staging, never past its descriptor's
  size, within a deadline of `blob_timeout + size / min_rate` (so a trickle fails
  too), and a broken download resumes with `Range: bytes=N-` (a 200 answer starts
  it over); the whole file is verified once complete; a mismatch is thrown away and
  never retried;
- the disk starts writing a blob while it arrives (every WRITEBACK_STEP bytes), so
  the fsync that ends it waits for the tail only, not for the whole blob at once;
- a foreign layer's `urls` are tried only when the registry lacks the blob, and
  never with credentials.
HTTP, TLS, retries and error translation live in registry_http, auth in
registry_auth.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import Callable
from typing import Any

import urllib3

from vxn.adapters.content import BlobWriter, Ingest, StagedBlob
from vxn.adapters.registry import Document, Endpoint, Progress
from vxn.adapters.registry_auth import Auth
from vxn.adapters.registry_http import Deadline, HttpClient, Transient
from vxn.config import PullSettings
from vxn.core.digest import Digest
from vxn.core.manifest import MAX_DOCUMENT_SIZE, Descriptor
from vxn.core.mediatypes import ACCEPTED_DOCUMENTS
from vxn.core.registry import content_range_start, pull_scope
from vxn.errors import InvalidArgument, NotFound, Unavailable

CHUNK = 1024 * 1024
WRITEBACK_STEP = 8 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages; do not wait for it
_MANIFEST_HEADERS = {"Accept": ", ".join(ACCEPTED_DOCUMENTS), "Accept-Encoding": "identity"}


class Registry:
    """One repository of one registry. Thread-safe: blobs download in parallel."""

    def __init__(
        self,
        endpoint: Endpoint,
        repository: str,
        *,
        limits: PullSettings,
        op: str,
        cancel: threading.Event | None = None,
    ) -> None:
        self.repository = repository
        self.op = op
        self.limits = limits
        self.http = HttpClient(
            endpoint.host,
            insecure=endpoint.insecure,
            cert_dir=endpoint.cert_dir,
            limits=limits,
            op=op,
            cancel=cancel,
        )
        self.http.oras.auth = Auth(self.http, endpoint.credentials, pull_scope(repository))
        try:
            self.http.connect()
        except BaseException:
            self.http.close()
            raise

    def close(self) -> None:
        self.http.close()

    def _url(self, kind: str, obj: str) -> str:
        return f"{self.http.base}/v2/{self.repository}/{kind}/{obj}"

    # --- manifests -------------------------------------------------------------------

    def head(self, obj: str) -> Digest | None:
        """The Docker-Content-Digest of a HEAD; None when the registry does not say, or
        says something that is no digest (the GET that follows checks it)."""
        subject = f"manifest {obj}"
        url, deadline = self._url("manifests", obj), Deadline(self.limits.blob_timeout)
        headers = self.http.retrying(
            subject, deadline, lambda: self.http.head(url, _MANIFEST_HEADERS, subject)
        )
        said = (headers or {}).get("Docker-Content-Digest", "").strip()
        try:
            return Digest.parse(said) if said else None
        except InvalidArgument:
            return None

    def manifest(self, obj: str) -> Document:
        """By tag or digest; refused over 4 MiB, or when its digest is not what was
        asked for or what Docker-Content-Digest says."""
        subject = f"manifest {obj}"
        url, deadline = self._url("manifests", obj), Deadline(self.limits.blob_timeout)

        def attempt() -> tuple[bytes, str, str | None]:
            with self.http.get(url, _MANIFEST_HEADERS, subject, auth=True) as r:
                data = self._read_document(r, subject, deadline)
                return (
                    data,
                    r.headers.get("Content-Type", ""),
                    r.headers.get("Docker-Content-Digest"),
                )

        data, media_type, header = self.http.retrying(subject, deadline, attempt)
        return Document(data=data, media_type=media_type, digest=self._verify(obj, data, header))

    def _read_document(self, response: Any, subject: str, deadline: Deadline) -> bytes:
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_DOCUMENT_SIZE:
            raise self._too_big(subject, int(length))
        chunks, size = [], 0
        while chunk := self._read1(response, subject, size, None, deadline):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DOCUMENT_SIZE:
                raise self._too_big(subject, size)
        return b"".join(chunks)

    def _too_big(self, subject: str, size: int) -> InvalidArgument:
        return InvalidArgument(
            f"{self.op}: {subject}: {size} bytes or more, over the {MAX_DOCUMENT_SIZE}-byte "
            "limit for a manifest; refusing it"
        )

    def _verify(self, obj: str, data: bytes, header: str | None) -> Digest:
        subject = f"{self.op}: manifest {obj}"
        asked = Digest.parse(obj) if obj.startswith(("sha256:", "sha512:")) else None
        got = _digest(data, asked.algorithm) if asked is not None else None
        if got != asked:
            raise InvalidArgument(f"{subject}: digest mismatch (got {got})")
        if header:
            try:
                said = Digest.parse(header.strip())
            except InvalidArgument:
                raise InvalidArgument(
                    f"{subject}: Docker-Content-Digest {header[:80]!r} is not a digest"
                ) from None
            got = _digest(data, said.algorithm)
            if got != said:
                raise InvalidArgument(
                    f"{subject}: Docker-Content-Digest says {said}, the content is {got}; "
                    "the registry or a proxy is corrupting data"
                )
            return asked or said
        return asked or _digest(data, "sha256")

    # --- blobs -----------------------------------------------------------------------

    def blob(
        self, desc: Descriptor, ingest: Ingest, progress: Progress | None = None
    ) -> StagedBlob:
        """Stage one blob, verified; the registry first, then any foreign `urls`."""
        sources = [(self._url("blobs", str(desc.digest)), True)]
        sources += [(u, False) for u in desc.urls if u.startswith(("https://", "http://"))]
        download = _Download(ingest, desc, progress)
        download.restart()
        try:
            for url, auth in sources[:-1]:
                try:
                    return self._fetch(url, auth, download)
                except NotFound:
                    download.restart()
            return self._fetch(*sources[-1], download)
        finally:
            download.discard()

    def _fetch(self, url: str, auth: bool, download: _Download) -> StagedBlob:
        deadline = Deadline(self.limits.blob_timeout + download.desc.size / self.limits.min_rate)
        return self.http.retrying(
            f"blob {download.desc.digest}",
            deadline,
            lambda: self._attempt(url, auth, download, deadline),
        )

    def _attempt(self, url: str, auth: bool, download: _Download, deadline: Deadline) -> StagedBlob:
        subject = f"blob {download.desc.digest}"
        headers = {"Accept-Encoding": "identity"}
        if download.received:
            headers["Range"] = f"bytes={download.received}-"
        with self.http.get(url, headers, subject, auth=auth) as response:
            if response.status_code == 206:
                range_ = response.headers.get("Content-Range")
                if content_range_start(range_, download.desc.size) != download.received:
                    download.restart()
                    raise Transient(f"the registry answered another range ({range_})")
            elif download.received:
                download.restart()  # it ignored the Range: hash it all again, from the top
            self._check_length(response, download)
            self._read_body(response, download, deadline)
        return download.finish(self.op)

    def _check_length(self, response: Any, download: _Download) -> None:
        length = response.headers.get("Content-Length", "")
        left = download.desc.size - download.received
        if length.isdigit() and int(length) > left:
            raise InvalidArgument(
                f"{self.op}: blob {download.desc.digest}: the registry sends {length} bytes where "
                f"{left} are due; its descriptor says {download.desc.size}"
            )

    def _read_body(self, response: Any, download: _Download, deadline: Deadline) -> None:
        desc = download.desc
        subject = f"blob {desc.digest}"
        while chunk := self._read1(response, subject, download.received, desc.size, deadline):
            download.write(chunk, self.op)
        if download.received < desc.size:
            raise Transient(f"connection closed after {download.received} of {desc.size} bytes")

    def _read1(
        self, response: Any, subject: str, got: int, size: int | None, deadline: Deadline
    ) -> bytes:
        """What the socket has (at most CHUNK), so a trickle still meets the deadline."""
        self.http.check_cancel()
        of = f" of {size}" if size is not None else ""
        if deadline.remaining() <= 0:
            raise Unavailable(
                f"{self.op}: {subject}: not done after {deadline.seconds:.1f} s ({got}{of} bytes); "
                "the registry is too slow: raise pull.blob_timeout or lower pull.min_rate"
            )
        try:
            chunk: bytes = response.raw.read1(CHUNK, decode_content=False)
        except urllib3.exceptions.ReadTimeoutError:
            raise Transient(
                f"no data for {self.limits.read_timeout:g} s after {got}{of} bytes "
                "(pull.read_timeout)",
                hint="the registry stalled; try again later",
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Transient(f"connection lost after {got}{of} bytes ({type(e).__name__})") from None
        return chunk


class _Download:
    """The staged file of one blob: kept across resumed attempts, verified at the end."""

    def __init__(self, ingest: Ingest, desc: Descriptor, progress: Progress | None) -> None:
        self.ingest = ingest
        self.desc = desc
        self.progress = progress
        self.writer: BlobWriter | None = None
        self.received = 0
        self.written_back = 0  # bytes the disk was told to start writing
        self._fd: int | None = None  # the staged file, for sync_file_range

    def restart(self) -> None:
        self.discard()
        self.writer = self.ingest.writer(self.desc.digest.algorithm)

    def write(self, chunk: bytes, op: str) -> None:
        assert self.writer is not None
        if self.received + len(chunk) > self.desc.size:
            raise InvalidArgument(
                f"{op}: blob {self.desc.digest}: more than the {self.desc.size} bytes "
                "its descriptor says"
            )
        with self.ingest.translated():
            self.writer.write(chunk)
        self.received += len(chunk)
        if self.received - self.written_back >= WRITEBACK_STEP:
            self._write_back(self.writer)
        if self.progress is not None:
            self.progress(self.received)

    def _write_back(self, writer: BlobWriter) -> None:
        """Have the kernel start writing what arrived since the last call. Only a head
        start for the fsync in `finish`, which still checks every byte reached the disk:
        a failure here is ignored."""
        sync = _sync_file_range()
        if sync is None:
            return
        if self._fd is None:
            with self.ingest.translated():
                self._fd = os.open(writer.path, os.O_RDONLY | os.O_CLOEXEC)
        length = self.received - self.written_back
        sync(self._fd, self.written_back, length, _SYNC_FILE_RANGE_WRITE)
        self.written_back = self.received

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self, op: str) -> StagedBlob:
        assert self.writer is not None
        self._close_fd()
        with self.ingest.translated():
            staged = self.writer.finish()
        self.writer = None
        if staged.digest != self.desc.digest:
            staged.path.unlink(missing_ok=True)
            raise InvalidArgument(
                f"{op}: blob {self.desc.digest}: digest mismatch (got {staged.digest})"
            )
        return staged

    def discard(self) -> None:
        self._close_fd()
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                self.writer.path.unlink()
        self.writer = None
        self.received = self.written_back = 0


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's sync_file_range(2), which Python's os lacks; None where libc has none."""
    import ctypes  # the first pull pays for it, not every vxnd start

    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    sync: Callable[[int, int, int, int], int] = function
    return sync


def _digest(data: bytes, algorithm: str) -> Digest:
    return Digest(algorithm=algorithm, hex=hashlib.new(algorithm, data).hexdigest())
