"""What ContainerService keeps beside the records, shared by its two halves: the
lifecycle (vxn.engine.containers) and the streams of attach, exec, input and logs
(vxn.engine.streams).

Per container: the Supervisor of its run, the listeners of its streams, stdin that a
client sent before the start (held, within a cap), waiters for its exit, and the lock
that makes its start, stop, restart and rm run one at a time. Every state change goes
through the table of vxn.core.lifecycle (`_move`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vxn.adapters.hypervisor import Hypervisor
from vxn.adapters.statedir import RunDir, StateDir
from vxn.config import Settings
from vxn.core import lifecycle, names
from vxn.engine.backends import Backends
from vxn.engine.containerdoc import label
from vxn.engine.events import EventBus
from vxn.engine.guest import GuestArtefacts
from vxn.engine.records import Record, RecordStore
from vxn.engine.supervisor import Listener, Supervisor
from vxn.errors import NotFound


class Images(Protocol):
    """What containers need of vxn.engine.images.ImageService."""

    async def inspect(self, ref_or_id: str) -> dict[str, Any]: ...
    async def rootfs(self, ref_or_id: str) -> Any: ...


class BackendSource(Protocol):
    def resolve(self, name: str | None) -> str: ...
    async def get(self, name: str | None = None) -> Hypervisor: ...


class GuestFiles(Protocol):
    """The kernel and base initramfs every guest boots (GuestArtefacts)."""

    async def files(self) -> tuple[Path, Path]: ...


@dataclass(frozen=True, slots=True)
class _Artefacts:
    artefacts: GuestArtefacts

    async def files(self) -> tuple[Path, Path]:
        kernel = await self.artefacts.kernel()
        return kernel.vmlinux, await self.artefacts.initramfs(kernel)


class ContainerState:
    def __init__(
        self,
        settings: Settings,
        state: StateDir,
        run: RunDir,
        images: Images,
        xen: bool = False,
        *,
        backends: BackendSource | None = None,
        files: GuestFiles | None = None,
    ) -> None:
        self.settings = settings
        self.images = images
        kernel_dir = Path(settings.guest.kernel_dir) if settings.guest.kernel_dir else None
        artefacts = GuestArtefacts(state.guest, kernel_dir)
        self.backends = backends or Backends(settings, artefacts, run.guests, xen)
        self.files = files or _Artefacts(artefacts)
        self.store = RecordStore(state.containers)
        self.templates = state.guest  # the empty upper disk every container copies
        self.events = EventBus()
        self._sups: dict[str, Supervisor] = {}
        self._listeners: dict[str, set[Listener]] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}  # stdin before the start
        self._held: dict[str, int] = {}  # its bytes, as frames
        self._ops: dict[str, asyncio.Lock] = {}
        self._keep: set[str] = set()  # exits that must not auto-remove (rm -f, restart)
        self._waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._loaded = False
        self.owner = ""  # this state dir's identity, set by _load

    def _load(self) -> None:
        if not self._loaded:
            self.store.load()
            self.owner = self.store.owner()
            self._loaded = True

    def _get(self, ref: str) -> Record:
        self._load()
        return self.store.resolve(ref)

    def _current(self, cid: str, ref: str) -> Record:
        """The record as it is once its lock is held: an op waiting on an rm finds it gone."""
        record = self.store.records.get(cid)
        if record is None:
            raise NotFound(f"container {ref}: no such container (it was just removed)")
        return record

    def _op(self, cid: str) -> asyncio.Lock:
        return self._ops.setdefault(cid, asyncio.Lock())

    def _free_name(self) -> str:
        return names.generate({r["name"] for r in self.store.records.values()})

    async def _move(self, cid: str, op: str, **changes: Any) -> Record:
        """Apply `op` to the record's state (the lifecycle table decides) and `changes`."""
        record = self.store.records[cid]
        after = lifecycle.transition(record["state"], op, label(record))
        return await self.store.update(cid, state=after.value, **changes)
