"""Every process vxn starts goes through here (STYLE.md 7).

`run` runs a tool to completion with a deadline; `Spawned` owns a long-lived one.
Both stop their process on cancellation: SIGTERM, a grace period, SIGKILL, reap.
`run_blocking` is `run` for code that already runs on a worker thread (a disk build
under its flocks): the same deadline and the same stop when it is missed or the caller
fails.
A guest's QEMU is the one deliberate exception: `Spawned.release()` hands it over to
outlive vxnd (ARCHITECTURE.md, decision 5) once it is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vxn.errors import Internal, Unavailable

GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run(
    argv: Sequence[str],
    *,
    limit: float,
    check: bool = True,
    cwd: Path | None = None,
    input: bytes | None = None,
    subject: str = "",
) -> Completed:
    """Run `argv` to completion within `limit` seconds; a failure names the tool and
    its stderr (unless `check` is off). `subject` (default: the tool) names the run
    when it overstays."""
    async with Spawned.start(argv, cwd=cwd, capture=True) as proc:
        try:
            async with asyncio.timeout(limit):
                out, err = await proc.process.communicate(input)
        except TimeoutError:
            raise Internal(f"{subject or argv[0]}: no result in {limit:.0f} s") from None
    done = Completed(proc.process.returncode or 0, out, err)
    if check and done.returncode != 0:
        said = err.decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"{argv[0]} failed (exit {done.returncode}): {' '.join(said)}")
    return done


def run_blocking(
    argv: Sequence[str], *, limit: float, input: bytes = b"", subject: str = ""
) -> Completed:
    """Run `argv` to completion within `limit` seconds, whatever its exit status; for a
    worker thread, never the event loop. `subject` (default: the tool) names the run in
    the error when it overstays."""
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
    except OSError as e:
        raise _not_started(argv, e) from None
    with proc:
        try:
            out, err = proc.communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            raise Internal(f"{subject or argv[0]}: no result in {limit:.0f} s") from None
        finally:
            _stop_blocking(proc)
    return Completed(proc.returncode, out, err)


class Spawned:
    """A started process that is stopped and reaped when the `async with` block exits."""

    def __init__(self, process: asyncio.subprocess.Process, argv: Sequence[str]) -> None:
        self.process = process
        self.argv = list(argv)
        self._released = False

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        capture: bool = False,
        session: bool = False,
        stderr: Path | None = None,
    ) -> _Starter:
        return _Starter(cls, argv, cwd, capture, session, stderr)

    def release(self) -> None:
        """Leave the process running after the block (its own session keeps it alive)."""
        self._released = True

    async def stop(self, grace: float = GRACE) -> None:
        await stop(self.process, grace)

    async def __aenter__(self) -> Spawned:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._released:
            await asyncio.shield(self.stop())


class _Starter:
    def __init__(
        self,
        cls: type[Spawned],
        argv: Sequence[str],
        cwd: Path | None,
        capture: bool,
        session: bool,
        stderr: Path | None,
    ) -> None:
        self._args = (cls, argv, cwd, capture, session, stderr)
        self._spawned: Spawned | None = None

    async def __aenter__(self) -> Spawned:
        cls, argv, cwd, capture, session, stderr = self._args
        pipe = asyncio.subprocess.PIPE if capture else asyncio.subprocess.DEVNULL
        with contextlib.ExitStack() as files:
            err = files.enter_context(stderr.open("ab")) if stderr else pipe
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    cwd=cwd,
                    stdin=pipe,
                    stdout=pipe,
                    stderr=err,
                    start_new_session=session,
                )
            except OSError as e:
                raise _not_started(argv, e) from None
        self._spawned = cls(process, argv)
        return self._spawned

    async def __aexit__(self, *exc: object) -> None:
        if self._spawned is not None:
            await self._spawned.__aexit__(*exc)


async def stop(process: asyncio.subprocess.Process, grace: float = GRACE) -> None:
    """SIGTERM, wait `grace`, SIGKILL, reap. Safe on a process that already ended."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await process.wait()
        return
    except TimeoutError:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def _stop_blocking(process: subprocess.Popen[bytes]) -> None:
    """`stop` for a process run by `run_blocking`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(GRACE)
        return
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()


def _not_started(argv: Sequence[str], e: OSError) -> Unavailable:
    if isinstance(e, FileNotFoundError):
        return Unavailable(f"{argv[0]}: not installed; run scripts/setup.sh")
    return Unavailable(f"{argv[0]}: cannot start: {e.strerror or e}")
