"""A fake xenstored: the real XenStore wire protocol (xs_wire.h) on a unix socket.

Every message is a 16-byte header (type, request id, transaction id, payload length,
each a native u32) and a payload of NUL-separated fields. Every connection is domain
0 (privileged), so permissions are stored and inherited but not enforced. It covers
what vxn uses: READ, WRITE, MKDIR, RM, DIRECTORY, GET_PERMS, SET_PERMS,
TRANSACTION_START/END (a transaction works on a copy of the tree and fails with
EAGAIN if the tree changed meanwhile), WATCH/UNWATCH with the initial event, and
GET_DOMAIN_PATH. `release_domain()` fires `@releaseDomain`, as xenstored does when a
domain shuts down or dies; `drop_connections()` and `freeze()` simulate a broken or a
stuck daemon.

    async with FakeXenstored(tmp_path / "socket") as xs:
        XenStore(str(xs.socket)) ...
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import posixpath
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HEADER = struct.Struct("=IIII")
(DIRECTORY, READ, GET_PERMS, WATCH, UNWATCH, TX_START, TX_END) = range(1, 8)
GET_DOMAIN_PATH, WRITE, MKDIR, RM, SET_PERMS, WATCH_EVENT, ERROR = range(10, 17)


@dataclass
class _Node:
    value: bytes = b""
    perms: list[bytes] = field(default_factory=lambda: [b"n0"])


class _Error(Exception):
    """An errno name (ENOENT, EAGAIN, ...) sent back as an ERROR reply."""


class FakeXenstored:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self.tree: dict[str, _Node] = {"/": _Node()}
        self.generation = 0
        self._tx: dict[int, tuple[int, dict[str, _Node], set[str]]] = {}
        self._tx_ids = itertools.count(1)
        self._watches: list[tuple[asyncio.StreamWriter, str, bytes]] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._frozen = asyncio.Event()
        self._frozen.set()  # set: answering

    async def __aenter__(self) -> FakeXenstored:
        self._server = await asyncio.start_unix_server(self._serve, str(self.socket))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._frozen.set()
        assert self._server is not None
        self._server.close()
        await self.drop_connections()
        await self._server.wait_closed()

    # Test hooks.
    def release_domain(self) -> None:
        self._fire("@releaseDomain")

    def put(self, path: str, value: bytes, perms: list[str]) -> None:
        """Write a node with its own permissions, as a toolstack does; fires watches."""
        node = _make(self.tree, path)
        node.value, node.perms = value, [p.encode() for p in perms]
        self.generation += 1
        self._fire(path)

    def remove(self, path: str) -> None:
        """Remove a subtree, as a toolstack does when a domain goes; fires watches."""
        for key in [k for k in self.tree if k == path or k.startswith(path + "/")]:
            del self.tree[key]
        self.generation += 1
        self._fire(path)

    async def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    @contextlib.contextmanager
    def freeze(self) -> Iterator[None]:
        """Read requests but answer none until the block ends."""
        self._frozen.clear()
        try:
            yield
        finally:
            self._frozen.set()

    # The protocol.
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                op, rq, tx, size = HEADER.unpack(header)
                payload = await reader.readexactly(size)
                await self._frozen.wait()
                try:
                    reply_op, reply = op, self._handle(writer, op, tx, payload)
                except _Error as e:
                    reply_op, reply = ERROR, str(e).encode() + b"\0"
                writer.write(HEADER.pack(reply_op, rq, tx, len(reply)) + reply)
                if op == WATCH and reply_op == WATCH:  # the initial event, after the ack
                    path, token = payload.split(b"\0")[:2]
                    self._event(writer, path.decode(), token)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            self._watches = [w for w in self._watches if w[0] is not writer]
            writer.close()

    def _handle(self, writer: asyncio.StreamWriter, op: int, tx: int, payload: bytes) -> bytes:
        fields = payload.split(b"\0")
        arg = fields[0].decode()
        if op == TX_START:
            tid = next(self._tx_ids)
            self._tx[tid] = (self.generation, _copy(self.tree), set())
            return f"{tid}\0".encode()
        if op == TX_END:
            return self._end(tx, commit=arg == "T")
        if op == WATCH:
            self._watches.append((writer, arg, fields[1]))
            return b"OK\0"
        if op == UNWATCH:
            self._watches = [w for w in self._watches if w != (writer, arg, fields[1])]
            return b"OK\0"
        if op == GET_DOMAIN_PATH:
            return f"/local/domain/{int(arg)}\0".encode()
        if tx and tx not in self._tx:
            raise _Error("ENOENT")
        tree, touched = (self._tx[tx][1], self._tx[tx][2]) if tx else (self.tree, None)
        path = _absolute(arg)
        changed = self._data_op(tree, op, path, payload[len(fields[0]) + 1 :], fields)
        if changed is None:
            return self._read_op(tree, op, path)
        if touched is not None:
            touched.add(path)
        else:
            self.generation += 1
            self._fire(path)
        return b"OK\0"

    def _data_op(
        self, tree: dict[str, _Node], op: int, path: str, rest: bytes, fields: list[bytes]
    ) -> bool | None:
        if op == WRITE:
            _make(tree, path).value = rest
        elif op == MKDIR:
            _make(tree, path)
        elif op == RM:
            if posixpath.dirname(path) not in tree:
                raise _Error("ENOENT")
            for key in [k for k in tree if k == path or k.startswith(path + "/")]:
                del tree[key]
        elif op == SET_PERMS:
            _node(tree, path).perms = [p for p in fields[1:] if p]
        else:
            return None
        return True

    def _read_op(self, tree: dict[str, _Node], op: int, path: str) -> bytes:
        if op == READ:
            return _node(tree, path).value
        if op == DIRECTORY:
            _node(tree, path)
            prefix = path.rstrip("/") + "/"
            kids = [k[len(prefix) :] for k in tree if k.startswith(prefix) and k != prefix]
            return b"".join(k.encode() + b"\0" for k in kids if "/" not in k)
        if op == GET_PERMS:
            return b"".join(p + b"\0" for p in _node(tree, path).perms)
        raise _Error("ENOSYS")

    def _end(self, tx: int, *, commit: bool) -> bytes:
        if tx not in self._tx:
            raise _Error("ENOENT")
        base, tree, touched = self._tx.pop(tx)
        if commit:
            if base != self.generation:
                raise _Error("EAGAIN")
            self.tree = tree
            self.generation += 1
            for path in sorted(touched):
                self._fire(path)
        return b"OK\0"

    def _fire(self, path: str) -> None:
        for writer, watched, token in list(self._watches):
            if path == watched or path.startswith(watched.rstrip("/") + "/"):
                self._event(writer, path, token)
            elif watched.startswith(path + "/"):  # a removed parent takes the watched node
                self._event(writer, watched, token)

    def _event(self, writer: asyncio.StreamWriter, path: str, token: bytes) -> None:
        body = path.encode() + b"\0" + token + b"\0"
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(HEADER.pack(WATCH_EVENT, 0, 0, len(body)) + body)


def _absolute(path: str) -> str:
    """A relative path is under the connection's domain: always 0 here."""
    if path.startswith("@"):
        return path
    return path if path.startswith("/") else f"/local/domain/0/{path}"


def _node(tree: dict[str, _Node], path: str) -> _Node:
    node = tree.get(path)
    if node is None:
        raise _Error("ENOENT")
    return node


def _make(tree: dict[str, _Node], path: str) -> _Node:
    """The node, created with its missing parents; each new node inherits its parent's
    permissions, as xenstored does for nodes domain 0 creates."""
    if path not in tree:
        parent = _make(tree, posixpath.dirname(path)) if path != "/" else _Node()
        tree[path] = _Node(perms=list(parent.perms))
    return tree[path]


def _copy(tree: dict[str, _Node]) -> dict[str, _Node]:
    return {k: _Node(n.value, list(n.perms)) for k, n in tree.items()}
