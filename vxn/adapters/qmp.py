"""A small asyncio QMP client: commands, and the events vxn waits on.

One reader task owns the socket: replies go to the oldest waiting command, events
to `stopped` (SHUTDOWN, or the connection ending with QEMU). Every call is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from pathlib import Path
from typing import Any

from vxn.errors import Unavailable

TIMEOUT = 10.0


class Qmp:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._pending: deque[asyncio.Future[Any]] = deque()
        self.stopped: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, path: Path, limit: float = TIMEOUT) -> Qmp:
        try:
            async with asyncio.timeout(limit):
                reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
                await reader.readline()  # the greeting
                qmp = cls(reader, writer)
                qmp._task = asyncio.create_task(qmp._read(), name=f"qmp {path}")
                await qmp.execute("qmp_capabilities")
                return qmp
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            raise Unavailable(f"qemu monitor {path}: cannot connect: {e or 'timed out'}") from None

    async def execute(self, command: str, limit: float = TIMEOUT, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(reply)
        try:
            self._writer.write(json.dumps(request).encode() + b"\n")
            async with asyncio.timeout(limit):
                await self._writer.drain()
                return await reply
        except (OSError, TimeoutError) as e:
            raise Unavailable(f"qemu monitor: {command}: {e or 'no reply'}") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                self._dispatch(json.loads(line))
        except (OSError, ValueError):
            pass
        finally:
            self._stop("monitor closed")
            while self._pending:
                self._pending.popleft().set_exception(ConnectionError("qemu monitor closed"))

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "event" in message:
            if message["event"] == "SHUTDOWN":
                self._stop(str(message.get("data", {}).get("reason", "shutdown")))
            return
        if not self._pending:
            return
        reply = self._pending.popleft()
        if "error" in message:
            reply.set_exception(ConnectionError(message["error"].get("desc", "error")))
        else:
            reply.set_result(message.get("return"))

    def _stop(self, reason: str) -> None:
        if not self.stopped.done():
            self.stopped.set_result(reason)
