"""One running container's supervisor: the only reader and writer of its console.

It feeds hvc0 to the protocol parser and routes every event: the main session's
output to log.jsonl and to the attached listeners, exec sessions' output to their
own listener, the main session's EXIT to the end of the run. Input from clients
(stdin, EOF, signals, window size, new exec sessions) is written back as frames; what
arrives before the start marker waits for it, since the helper is not reading yet.

A listener has a bounded queue and is cut off when it falls behind (Listener.put):
the console is never left unread, because QEMU drops what a virtconsole cannot
deliver. The guest is destroyed when the run ends, whatever ended it; `detach`
(vxnd stopping) leaves it running for the next vxnd to adopt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from vxn.adapters.hypervisor import Console, Hypervisor
from vxn.core import protocol
from vxn.core.vm import console_tail
from vxn.engine.containerlog import ContainerLog, reply
from vxn.engine.guestrun import Timeline
from vxn.errors import FailedPrecondition, InvalidArgument, Unavailable, VxnError

log = logging.getLogger("vxnd.containers")

QUEUE = 256  # chunks (<= 64 KiB each) a listener may lag behind before it is cut off
EXIT_FAILED = 125  # vxn, not the command, failed
EXIT_KILLED = 137  # a hard stop, as Docker reports SIGKILL
DRAIN = 0.5  # seconds to read what a stopped guest wrote before it stopped
HELD = 1 << 20  # bytes of frames held for a guest that has not started yet
Line = dict[str, Any]
ExitFn = Callable[[int, str | None], Awaitable[None]]
StartedFn = Callable[[], Awaitable[None]]  # the start marker: the frames have begun


class Listener:
    """One client's view of a session: reply lines, then None."""

    def __init__(self, session: int = 0, *, stdin: bool = False, timestamps: bool = False) -> None:
        self.session = session
        self.stdin = stdin  # its input is forwarded
        self.timestamps = timestamps
        self.queue: asyncio.Queue[Line | None] = asyncio.Queue(QUEUE + 2)
        self.ended = False

    def output(self, entry: Line) -> None:
        self.put(reply(entry, self.timestamps))

    def put(self, line: Line) -> None:
        if self.ended:
            return
        if self.queue.qsize() >= QUEUE:
            self.end(
                {
                    "message": f"vxnd: this client fell {QUEUE} chunks behind and was detached; "
                    "the container keeps running (see `vxn logs`)"
                }
            )
            return
        self.queue.put_nowait(line)

    def end(self, last: Line | None = None) -> None:
        if not self.ended:
            self.ended = True
            if last is not None:
                self.queue.put_nowait(last)
            self.queue.put_nowait(None)

    async def get(self) -> Line | None:
        return await self.queue.get()


class Supervisor:
    def __init__(
        self,
        hv: Hypervisor,
        guest: str,
        console: Console,
        parser: protocol.ConsoleParser,
        *,
        output: ContainerLog,
        listeners: set[Listener],
        on_exit: ExitFn,
        on_started: StartedFn,
        boot_timeout: float,
        timeline: Timeline,
        memory_mib: int,
        consumed: int = 0,
    ) -> None:
        self.hv, self.guest, self.console, self.parser = hv, guest, console, parser
        self.output, self.listeners, self.on_exit = output, listeners, on_exit
        self.on_started = on_started
        self.boot_timeout, self.timeline = boot_timeout, timeline
        self.memory_mib = memory_mib  # named in a boot failure's hint
        self.consumed = consumed  # console bytes fed to the parser, for an adopter
        self.sessions: dict[int, Listener] = {}
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.message: str | None = None  # the main command's ERROR frame
        self._forced: int | None = None
        self._waiting: list[bytes] = []  # frames for a helper that has not started yet
        self._held = 0  # their bytes
        self._ending = False  # the console loop is over: no new sessions
        self._next_session = 1
        self._task: asyncio.Task[None] | None = None
        self._kill_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.parser.started:  # adopted past its start marker (replayed or resumed)
            self._set_ready()
        self._task = asyncio.create_task(self._run(), name=f"supervise {self.guest}")

    def _set_ready(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def replay(self, log: bytes) -> None:
        """Feed what an earlier vxnd missed: `log` is the console from its start; the
        first `consumed` bytes were already handled (and logged) by that vxnd."""
        self.parser.feed(log[: self.consumed])
        self._handle(self.parser.feed(log[self.consumed :]), len(log))

    # --- input from clients ---------------------------------------------------------

    async def input(self, session: int, line: dict[str, Any]) -> None:
        """A client line (checked by `input_frame`) for `session`."""
        frame = input_frame(line, session)
        if frame is not None:
            await self._send(frame)

    async def exec(self, spec: protocol.ExecSpec, listener: Listener) -> int:
        if self._ending or self.done.done():
            raise FailedPrecondition(f"guest {self.guest}: cannot exec: the container exited")
        session = self._next_session
        self._next_session += 1
        listener.session = session
        self.sessions[session] = listener
        await self._send(protocol.exec_frame(session, spec))
        return session

    async def _send(self, frame: bytes) -> None:
        if self.done.done():
            return
        if not self.parser.started:
            if self._held + len(frame) > HELD:
                raise FailedPrecondition(
                    f"guest {self.guest}: not started yet, and vxnd holds at most "
                    f"{HELD >> 20} MiB of input for it; send the rest once it runs"
                )
            self._held += len(frame)
            self._waiting.append(frame)
            return
        try:
            await self.console.write(frame)
        except (OSError, ConnectionError) as e:
            log.info("guest %s: console write failed: %s", self.guest, e)

    # --- ending -------------------------------------------------------------------

    def kill_after(self, grace: float) -> None:
        """Hard-stop the guest unless it has exited within `grace` s (SIGKILL's backstop)."""
        if self._kill_timer is None and not self.done.done():
            loop = asyncio.get_running_loop()
            self._kill_timer = loop.call_later(
                grace, lambda: None if self.done.done() else loop.create_task(self.hard_stop())
            )

    async def hard_stop(self) -> None:
        """Destroy the guest; the run ends with 137 unless its exit frame came first."""
        if self._forced is None and not self.done.done():
            self._forced = EXIT_KILLED
            await asyncio.shield(self.hv.destroy(self.guest))

    async def detach(self) -> None:
        """vxnd is stopping: stop supervising, leave the guest running."""
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.console.close()
        self.output.close()
        for listener in [*self.listeners, *self.sessions.values()]:
            listener.end()

    # --- the console --------------------------------------------------------------

    async def _run(self) -> None:
        failure: VxnError | None = None
        try:
            code, error = await self._stream()
        except VxnError as e:
            code, error, failure = EXIT_FAILED, str(e), e
        except Exception as e:  # a bug here must still end the run and free the guest
            log.exception("guest %s: supervisor failed", self.guest)
            code, error = EXIT_FAILED, f"vxnd: supervisor failed: {type(e).__name__}: {e}"
        self._ending = True
        self.timeline.mark("exited")
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        await asyncio.shield(self.hv.destroy(self.guest))
        await self.console.close()
        self.output.close()
        if not self.ready.done():
            failure = failure or Unavailable(error or f"guest {self.guest}: exited {code}")
            self.ready.set_exception(failure)
            self.ready.exception()  # retrieved: a start may not be waiting for it
        for listener in self.sessions.values():
            listener.end(
                {"error": {"kind": "unavailable", "message": f"container exited ({code})"}}
            )
        self.sessions.clear()
        await self.on_exit(code, error or (self.message if code in (126, 127) else None))
        self.done.set_result(code)

    async def _stream(self) -> tuple[int, str | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.boot_timeout
        stopped = asyncio.ensure_future(self.hv.wait(self.guest))
        read = asyncio.ensure_future(self.console.read())
        try:
            while self.parser.exit_code is None:
                timeout = None if self.parser.started else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    {read, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if read in done:
                    data = read.result()
                    if not data:
                        return await self._stopped("closed its console")
                    await self._consume(data)
                    read = asyncio.ensure_future(self.console.read())
                elif stopped in done:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(DRAIN):
                            while self.parser.exit_code is None and (data := await read):
                                await self._consume(data)
                                read = asyncio.ensure_future(self.console.read())
                    if self.parser.exit_code is None:
                        return await self._stopped("stopped")
                else:
                    raise await self._failure(f"did not start in {self.boot_timeout:.0f} s")
            return self.parser.exit_code, None
        finally:
            for task in (read, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _consume(self, data: bytes) -> None:
        self.consumed += len(data)
        was_started = self.parser.started
        self._handle(self.parser.feed(data), self.consumed)
        if self.parser.started and not was_started:
            waiting, self._waiting = self._waiting, []
            for frame in waiting:  # before anything else can be sent
                await self._send(frame)
            await self.on_started()
            self._set_ready()  # a start returns with the record saying so

    def _handle(self, events: list[protocol.Event], consumed: int) -> None:
        for event in events:
            if isinstance(event, protocol.Output):
                self._output(event, consumed)
            elif isinstance(event, protocol.GuestError):
                self._error(event)
            elif isinstance(event, protocol.Exited) and event.session:
                if (listener := self.sessions.pop(event.session, None)) is not None:
                    listener.end({"exit": event.code})
            elif isinstance(event, protocol.Hello):
                self.timeline.mark("hello")
            elif isinstance(event, protocol.Started):
                self.timeline.mark("started")

    def _output(self, event: protocol.Output, consumed: int) -> None:
        if event.session:
            if (listener := self.sessions.get(event.session)) is not None:
                listener.output({"s": event.stream, "b": base64.b64encode(event.data).decode()})
            return
        entry = self.output.append(event.stream, event.data, consumed)
        for listener in list(self.listeners):
            listener.output(entry)
            if listener.ended:
                self.listeners.discard(listener)

    def _error(self, event: protocol.GuestError) -> None:
        if event.session:
            if (listener := self.sessions.get(event.session)) is not None:
                listener.put({"message": event.message})
            return
        self.message = event.message
        for listener in self.listeners:
            listener.put({"message": event.message})

    async def _stopped(self, what: str) -> tuple[int, str | None]:
        """The guest ended without its exit frame: hard-stopped, witnessed, or a failure."""
        if self._forced is not None:
            return self._forced, None
        witness = await self.hv.exit_witness(self.guest)
        if witness is not None:
            return witness, None
        raise await self._failure(what)

    async def _failure(self, what: str) -> Unavailable:
        stage = (
            "after the start marker"
            if self.parser.started
            else "after guest-init's hello"
            if self.parser.greeted
            else "before guest-init said hello"
        )
        kernel = console_tail(await self.hv.boot_log(self.guest))
        noise = console_tail(self.parser.noise, 6)
        tail = "".join(f"\n  | {line}" for line in [*kernel, *noise])
        return Unavailable(
            f"guest {self.guest}: {what} {stage}; see its console below, "
            f"and check the kernel and memory ({self.memory_mib} MiB){tail}"
        )


def input_frame(line: dict[str, Any], session: int) -> bytes | None:
    """The frame for a client's line (`in`, `eof`, `signal`, `winsize`; others are
    ignored, for clients newer than this vxnd); InvalidArgument for a malformed one."""
    try:
        if "in" in line:
            data = base64.b64decode(line["in"], validate=True)
            if len(data) > protocol.MAX_PAYLOAD:
                raise InvalidArgument(
                    f"input: {len(data)} bytes in one line; send at most {protocol.MAX_PAYLOAD}"
                )
            return protocol.frame(protocol.Frame.STDIN, data, session)
        if line.get("eof") is True:
            return protocol.frame(protocol.Frame.EOF, b"", session)
        if "signal" in line:
            return protocol.signal_frame(_integer(line["signal"]), session)
        if "winsize" in line:
            rows, cols = line["winsize"]
            return protocol.winsize_frame(_integer(rows), _integer(cols), session)
    except (TypeError, ValueError) as e:  # binascii.Error is a ValueError
        raise InvalidArgument(
            f"input line {str(line)[:60]}: {e}; want {{in: base64}}, {{eof: true}}, "
            "{signal: N} or {winsize: [rows, cols]}"
        ) from None
    return None


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not an integer")
    return value
