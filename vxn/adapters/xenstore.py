"""XenStore, over pyxs 0.4.1 (ARCHITECTURE.md, decision 7).

pyxs is synchronous and has no timeouts, so every call runs in `asyncio.to_thread`
under a deadline. A call that misses it, or a broken connection, drops the client:
its pending requests are failed (so no worker thread stays blocked) and the next
call connects afresh (a closed pyxs client cannot reconnect). Watches use one
dedicated client whose router thread is the watch thread: it hands each event to
the event loop, and its end fails every open watch, which the caller re-arms.

pyxs 0.4.1 bugs worked around here (ENVIRONMENT.md, pyxs pitfalls): `write(path,
b"")` raises ValueError, so an empty value is sent as a raw WRITE; the import reads
/proc/xen/capabilities without closing it, a ResourceWarning, silenced for that
import only; its socket transport leaks the socket when a connect or a shutdown
fails, so vxn brings its own; and its router thread dies with an unhandled
exception when the connection breaks, so vxn's router catches it and fails what
still waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import itertools
import re
import socket as sockets
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from vxn.errors import InvalidArgument, NotFound, Unavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ResourceWarning)
    import pyxs  # type: ignore[import-untyped]  # no stubs
    from pyxs._internal import NUL, Op, Packet  # type: ignore[import-untyped]
    from pyxs.connection import UnixSocketConnection  # type: ignore[import-untyped]

T = TypeVar("T")
LIMIT = 10.0  # xenstored answers in well under a millisecond; 10 s means it is stuck
_PATH = re.compile(r"@?[A-Za-z0-9/_-]{1,3072}")  # pyxs's own path alphabet (no dots)
_VALUE = re.compile(rb"[\x20-\x7e]{0,4096}")  # pyxs sends 7-bit printable values only
_tokens = itertools.count(1)
_CLOSED = object()  # put on a watch's queue when the watch connection ends


class XenStore:
    def __init__(self, socket: str | None = None, *, limit: float = LIMIT) -> None:
        self.socket = socket  # None: pyxs's default ($XENSTORED_PATH or /var/run/xenstored)
        self.limit = limit
        self._client: Any = None
        self._watcher: _Watcher | None = None
        self._lock = asyncio.Lock()

    async def read(self, path: str) -> bytes | None:
        """The value at `path`, or None when there is no such node."""
        try:
            value: bytes = await self._call(f"read {path}", lambda c: c.read(_path(path)))
        except NotFound:
            return None
        return value

    async def write(self, path: str, value: bytes) -> None:
        key, data = _path(path), _value(value)
        await self._call(f"write {path}", lambda c: _write(c, key, data))

    async def write_all(self, values: Mapping[str, bytes]) -> None:
        """All of `values` in one transaction: a reader sees all of them or none."""
        items = [(_path(k), _value(v)) for k, v in values.items()]

        def transact(client: Any) -> None:
            tx = copy.copy(client)  # its own transaction id, the same connection
            for _attempt in range(10):
                tx.transaction()
                try:
                    for key, data in items:
                        _write(tx, key, data)
                except BaseException:
                    tx.rollback()
                    raise
                if tx.commit():
                    return
            raise pyxs.PyXSError(errno.EAGAIN, "transaction kept conflicting")

        await self._call(f"transaction of {len(items)} writes", transact)

    async def mkdir(self, path: str) -> None:
        await self._call(f"mkdir {path}", lambda c: c.mkdir(_path(path)))

    async def rm(self, path: str) -> None:
        """Remove `path` and everything under it; a missing node is not an error."""
        with contextlib.suppress(NotFound):
            await self._call(f"rm {path}", lambda c: c.delete(_path(path)))

    async def directory(self, path: str) -> list[str]:
        """The children's names, or [] when there is no such node."""
        try:
            names: list[bytes] = await self._call(f"list {path}", lambda c: c.list(_path(path)))
        except NotFound:
            return []
        return [n.decode() for n in names]

    async def get_perms(self, path: str) -> list[str]:
        """Permissions as XenStore spells them: the owner first (`n0` = domain 0 owns
        it, others have no access), then one `r`/`w`/`b`/`n` + domid per grant."""
        perms: list[bytes] = await self._call(f"perms {path}", lambda c: c.get_perms(_path(path)))
        return [p.decode() for p in perms if p]

    async def set_perms(self, path: str, perms: Sequence[str]) -> None:
        raw = [p.encode() for p in perms]
        await self._call(f"set perms {path}", lambda c: c.set_perms(_path(path), raw))

    def watch(self, path: str) -> Watch:
        """`async with store.watch(path) as w: await w.next()`. XenStore sends one
        event at once on registration, then one per change at or under `path`
        (`@releaseDomain`: a domain shut down or went away)."""
        return Watch(self, _path(path))

    async def close(self) -> None:
        client, self._client = self._client, None
        watcher, self._watcher = self._watcher, None
        for c in (client, watcher.client if watcher else None):
            if c is not None:
                await asyncio.to_thread(_drop, c)

    async def _call(self, what: str, fn: Callable[[Any], T], client: Any = None) -> T:
        client = client or await self._connected()
        try:
            async with asyncio.timeout(self.limit):
                return await asyncio.to_thread(fn, client)
        except TimeoutError:
            await self._forget(client)
            raise Unavailable(
                f"xenstore {what}: no answer in {self.limit:.0f} s; is xenstored running?"
            ) from None
        except pyxs.PyXSError as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else None
            if code == errno.ENOENT:
                raise NotFound(f"xenstore {what}: no such node") from None
            if code in (errno.EACCES, errno.EPERM, errno.EINVAL, errno.EEXIST, errno.E2BIG):
                raise InvalidArgument(f"xenstore {what}: {errno.errorcode[code]}") from None
            await self._forget(client)
            raise Unavailable(f"xenstore {what}: {e}") from None
        except (OSError, ValueError) as e:  # pyxs's ConnectionError is an OSError
            await self._forget(client)
            raise Unavailable(f"xenstore {what}: {e}") from None

    async def _connected(self) -> Any:
        async with self._lock:
            if self._client is None:
                self._client = await self._connect()
            return self._client

    async def _connect(self, watcher: _Watcher | None = None) -> Any:
        def connect() -> Any:
            client = pyxs.Client(router=_Router(_Connection(self.socket), watcher))
            try:
                client.connect()
            except BaseException:
                _drop(client)
                raise
            return client

        try:
            async with asyncio.timeout(self.limit):
                return await asyncio.to_thread(connect)
        except (OSError, TimeoutError, pyxs.PyXSError) as e:
            where = self.socket or "/var/run/xenstored/socket"
            raise Unavailable(
                f"xenstore: cannot connect to {where} ({e or 'timeout'}); "
                "start xenstored (/etc/init.d/xencommons start)"
            ) from None

    async def _forget(self, client: Any) -> None:
        if self._client is client:
            self._client = None
        await asyncio.to_thread(_drop, client)

    async def _watch_client(self) -> _Watcher:
        async with self._lock:
            if self._watcher is None or self._watcher.dead.is_set():
                watcher = _Watcher()
                watcher.client = await self._connect(watcher)
                self._watcher = watcher
            return self._watcher


class Watch:
    def __init__(self, store: XenStore, path: bytes) -> None:
        self.store = store
        self.path = path
        self.token = f"vxn{next(_tokens)}".encode()
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._watcher: _Watcher | None = None

    async def next(self) -> str:
        """The path of the next event; Unavailable if the watch connection ended."""
        item = await self._queue.get()
        if item is _CLOSED:
            raise Unavailable("xenstore: the watch connection ended; watch again")
        assert isinstance(item, str)
        return item

    async def __aenter__(self) -> Watch:
        watcher = self._watcher = await self.store._watch_client()
        loop = asyncio.get_running_loop()
        watcher.add(
            self.token, lambda item: loop.call_soon_threadsafe(self._queue.put_nowait, item)
        )
        what = f"watch {self.path.decode()}"
        try:
            await self.store._call(
                what, lambda c: c.ack(Op.WATCH, self.path + NUL, self.token + NUL), watcher.client
            )
        except BaseException:
            watcher.remove(self.token)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        watcher = self._watcher
        if watcher is None:
            return
        watcher.remove(self.token)
        if not watcher.dead.is_set():
            what = f"unwatch {self.path.decode()}"
            args = (self.path + NUL, self.token + NUL)
            with contextlib.suppress(Unavailable, NotFound, InvalidArgument):
                call = self.store._call(what, lambda c: c.ack(Op.UNWATCH, *args), watcher.client)
                await asyncio.shield(call)


class _Watcher:
    """The dedicated watch connection: its router thread delivers the events."""

    def __init__(self) -> None:
        self.client: Any = None
        self.dead = threading.Event()
        self._sinks: dict[bytes, Callable[[object], object]] = {}
        self._mutex = threading.Lock()

    def add(self, token: bytes, sink: Callable[[object], object]) -> None:
        with self._mutex:
            self._sinks[token] = sink
        if self.dead.is_set():
            sink(_CLOSED)

    def remove(self, token: bytes) -> None:
        with self._mutex:
            self._sinks.pop(token, None)

    def put(self, token: bytes, path: str) -> None:
        with self._mutex:
            sink = self._sinks.get(token)
        if sink is not None:
            sink(path)

    def close(self) -> None:
        self.dead.set()
        with self._mutex:
            sinks = list(self._sinks.values())
        for sink in sinks:
            sink(_CLOSED)


class _Router(pyxs.Router):  # type: ignore[misc]
    """pyxs's router, whose thread survives a broken connection: it then fails every
    pending request and, on the watch connection, every watch."""

    def __init__(self, connection: Any, watcher: _Watcher | None) -> None:
        super().__init__(connection)
        self.watcher = watcher
        if watcher is not None:
            self.monitors = _Monitors(watcher)

    def __call__(self) -> None:
        try:
            super().__call__()
        except Exception:  # a broken connection: handled just below
            pass
        finally:
            for rq_id, rvar in list(self.rvars.items()):
                rvar.set(Packet(Op.ERROR, b"EIO\0", rq_id, 0))
            if self.watcher is not None:
                self.watcher.close()


class _Monitors(dict[bytes, list[Any]]):
    """Where pyxs's router looks up who gets a watch event: the watcher, by token."""

    def __init__(self, watcher: _Watcher) -> None:
        super().__init__()
        self.watcher = watcher

    def __missing__(self, token: bytes) -> list[Any]:
        return [_Sink(self.watcher, token)]


class _Sink:
    def __init__(self, watcher: _Watcher, token: bytes) -> None:
        self.watcher, self.token = watcher, token
        self.events = self  # pyxs calls monitor.events.put(event)

    def put(self, event: Any) -> None:
        self.watcher.put(self.token, event.path.decode(errors="replace"))


class _Connection(UnixSocketConnection):  # type: ignore[misc]
    def create_transport(self) -> _Transport:
        return _Transport(self.path)


class _Transport:
    """pyxs's unix socket transport, minus its leaks."""

    def __init__(self, path: str) -> None:
        self.sock = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise pyxs.ConnectionError(f"error connecting to {path!r}: {e.strerror}") from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise OSError(errno.ECONNRESET, "xenstored closed the connection")
            data += chunk
        return bytes(data)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(sockets.SHUT_RDWR)
        self.sock.close()


def _write(client: Any, key: bytes, data: bytes) -> None:
    if data:
        client.write(key, data)
    else:  # pyxs 0.4.1 refuses b"" (its value regex wants one character)
        client.ack(Op.WRITE, key + NUL)


def _drop(client: Any) -> None:
    """Close a client and fail whatever still waits on it, so no thread hangs."""
    router = client.router
    if router.thread.is_alive():
        router.terminate()
    elif router.thread.ident is None:  # never started: nothing else closes these
        router.connection.close()
        router.r_terminator.close()
        router.w_terminator.close()
    for rq_id, rvar in list(router.rvars.items()):
        rvar.set(Packet(Op.ERROR, b"EIO\0", rq_id, 0))
    router.rvars.clear()


def _path(path: str) -> bytes:
    if not _PATH.fullmatch(path):
        raise InvalidArgument(f"xenstore path {path!r}: want [A-Za-z0-9/_-] (no dots)")
    return path.encode()


def _value(value: bytes) -> bytes:
    if not _VALUE.fullmatch(value):
        raise InvalidArgument(f"xenstore value {value[:40]!r}: want printable ASCII, <= 4096")
    return value
