"""The stream side of ContainerService: attach, exec, input, resize and logs.

A client's stream is a Listener that the container's Supervisor fans output out to;
clients come and go at will, and a client going away never stops a container. Input
sent before the start is held (at most supervisor.HELD bytes, as frames) and goes to
the helper once it reads.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from vxn.core import lifecycle
from vxn.engine.containerdoc import exec_spec, label
from vxn.engine.containerlog import ContainerLog, reply
from vxn.engine.containerstate import ContainerState
from vxn.engine.supervisor import HELD, Listener, input_frame
from vxn.errors import FailedPrecondition, NotFound


class ContainerStreams(ContainerState):
    async def attach(self, ref: str, *, stdin: bool, logs: bool) -> tuple[str, Listener]:
        record = self._get(ref)
        lifecycle.transition(record["state"], "attach", label(record))
        listener = Listener(0, stdin=stdin and record["options"]["stdin"])
        if logs:
            for entry in list(ContainerLog(self.store.dir(record["id"])).entries())[-200:]:
                listener.output(entry)
        self._listeners.setdefault(record["id"], set()).add(listener)
        return record["id"], listener

    def detach(self, cid: str, listener: Listener) -> None:
        self._listeners.get(cid, set()).discard(listener)
        sup = self._sups.get(cid)
        if sup is not None and listener.session:
            sup.sessions.pop(listener.session, None)

    async def input(self, cid: str, listener: Listener, line: dict[str, Any]) -> None:
        """A client's line for the session `listener` follows."""
        frame = input_frame(line, listener.session)  # a bad line is the client's error
        if not listener.stdin and ("in" in line or "eof" in line):
            return  # as Docker: stdin of a container created without -i is closed
        sup = self._sups.get(cid)
        if sup is not None:
            await sup.input(listener.session, line)
        elif listener.session == 0 and frame is not None:
            held = self._held.get(cid, 0) + len(frame)
            if held > HELD:
                raise FailedPrecondition(
                    f"container {label(self.store.records[cid])}: not started, and vxnd "
                    f"holds at most {HELD >> 20} MiB of input until it starts; start it first"
                )
            self._held[cid] = held
            self._pending.setdefault(cid, []).append(line)

    async def exec(self, ref: str, body: dict[str, Any]) -> tuple[str, Listener]:
        record = self._get(ref)
        lifecycle.transition(record["state"], "exec", label(record))
        sup = self._sups.get(record["id"])
        if sup is None:
            raise FailedPrecondition(f"container {label(record)}: not supervised by this vxnd")
        spec = exec_spec(record, body)
        listener = Listener(stdin=spec.stdin)
        await sup.exec(spec, listener)
        return record["id"], listener

    async def resize(self, ref: str, rows: int, cols: int, session: int = 0) -> None:
        record = self._get(ref)
        sup = self._sups.get(record["id"])
        if sup is None:
            raise FailedPrecondition(f"container {label(record)}: it is not running")
        if session and session not in sup.sessions:
            raise NotFound(f"exec {session} in container {label(record)}: no such session")
        await sup.input(session, {"winsize": [rows, cols]})

    async def logs(
        self, ref: str, *, follow: bool = False, tail: int | None = None, timestamps: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        record = self._get(ref)
        cid = record["id"]
        listener = None
        if follow and cid in self._sups:
            # Subscribed before the file is read, with no await between: nothing is missed.
            listener = Listener(timestamps=timestamps)
            self._listeners.setdefault(cid, set()).add(listener)
        try:
            entries = list(ContainerLog(self.store.dir(cid)).entries())
            for entry in entries[max(0, len(entries) - tail) :] if tail is not None else entries:
                yield reply(entry, timestamps)
            while listener is not None and (line := await listener.get()) is not None:
                if "out" in line or "err" in line:
                    yield line
        finally:
            if listener is not None:
                self.detach(cid, listener)
