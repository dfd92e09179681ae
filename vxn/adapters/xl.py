"""The `xl` toolstack command, through the one process helper (STYLE.md 7).

Each call runs `xl` to completion with a deadline and is stopped if cancelled; a
failure is `Unavailable` carrying what xl said on stderr. Output is parsed here and
nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vxn.adapters import process
from vxn.core.vm import State
from vxn.errors import Unavailable

BINARY = "xl"
# Under TCG a PV create takes 4-9 s idle (XEN-IN-QEMU.md 4.3), 3x that when loaded.
CREATE_LIMIT = 120.0
LIMIT = 60.0
_MISSING = re.compile(r"does not exist|invalid domain identifier|not found", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    domid: int
    memory_mib: int
    flags: str  # xl's state column: r b p s c d, e.g. "-b----"

    @property
    def state(self) -> State:
        if "s" in self.flags or "c" in self.flags:
            return State.SHUTDOWN  # powered off or crashed, kept by on_*="preserve"
        if "d" in self.flags:
            return State.GONE  # dying: on its way out
        return State.PAUSED if "p" in self.flags else State.RUNNING


@dataclass(frozen=True, slots=True)
class XenInfo:
    free_memory_mib: int
    xen_version: str


class Xl:
    def __init__(self, binary: str = BINARY) -> None:
        self.binary = binary

    async def create(self, config: Path, *, paused: bool = True) -> None:
        await self._run("create", *(["-p"] if paused else []), str(config), limit=CREATE_LIMIT)

    async def unpause(self, name: str) -> None:
        await self._run("unpause", name)

    async def pause(self, name: str) -> None:
        await self._run("pause", name)

    async def shutdown(self, name: str) -> None:
        """Ask the guest to power off (PV: through XenStore control/shutdown)."""
        await self._run("shutdown", name)

    async def destroy(self, name: str) -> None:
        await self._run("destroy", name)

    async def list(self) -> list[Domain]:
        return parse_list(await self._run("list"))

    async def domain(self, name: str) -> Domain | None:
        """`xl list NAME`, or None when there is no such domain."""
        done = await process.run(
            [self.binary, "list", name], limit=LIMIT, check=False, subject=f"xl list {name}"
        )
        if done.returncode != 0:
            if _MISSING.search(done.stderr.decode(errors="replace")):
                return None
            raise _failure(["list", name], done)
        found = parse_list(done.stdout.decode(errors="replace"))
        return found[0] if found else None

    async def domid(self, name: str) -> int | None:
        domain = await self.domain(name)
        return None if domain is None else domain.domid

    async def info(self) -> XenInfo:
        return parse_info(await self._run("info"))

    async def _run(self, *args: str, limit: float = LIMIT) -> str:
        done = await process.run(
            [self.binary, *args], limit=limit, check=False, subject=f"xl {' '.join(args)}"
        )
        if done.returncode != 0:
            raise _failure(list(args), done)
        return done.stdout.decode(errors="replace")


def _failure(args: list[str], done: process.Completed) -> Unavailable:
    said = " ".join(done.stderr.decode(errors="replace").split())
    return Unavailable(f"xl {' '.join(args)} failed (exit {done.returncode}): {said[-600:]}")


def parse_list(text: str) -> list[Domain]:
    """`xl list`: a header, then `Name ID Mem VCPUs State Time(s)` per domain. The
    name is everything before the last five columns."""
    domains = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6:
            continue
        try:
            domid, memory = int(fields[-5]), int(fields[-4])
        except ValueError:
            raise Unavailable(f"xl list: cannot parse the line {line!r}") from None
        domains.append(Domain(" ".join(fields[:-5]), domid, memory, fields[-2]))
    return domains


def parse_info(text: str) -> XenInfo:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    try:
        free = int(values["free_memory"])
        version = values["xen_version"]
    except (KeyError, ValueError):
        raise Unavailable("xl info: no free_memory or xen_version in its output") from None
    return XenInfo(free, version)
