"""Build the hypervisor backend a run asks for: `auto`, `qemu` or `xen`.

`auto` is xen when vxnd found a running Xen toolstack (decision 1), else qemu. Each
backend is built once per vxnd and shared by every container.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from vxn.adapters.hypervisor import Hypervisor
from vxn.config import Settings
from vxn.engine.guest import GuestArtefacts
from vxn.errors import InvalidArgument


class Backends:
    def __init__(
        self, settings: Settings, artefacts: GuestArtefacts, guests: Path, xen: bool
    ) -> None:
        self.settings = settings
        self.artefacts = artefacts
        self.guests = guests  # <run dir>/guests: each backend's per-guest files
        self.xen = xen
        self._built: dict[str, Hypervisor] = {}
        self._accel_lock = asyncio.Lock()
        self._accel_found: str | None = None

    def resolve(self, name: str | None) -> str:
        name = name or self.settings.guest.backend
        if name == "auto":
            return "xen" if self.xen else "qemu"
        if name not in ("qemu", "xen"):
            raise InvalidArgument(f"backend {name!r}: want auto, qemu or xen")
        return name

    async def get(self, name: str | None = None) -> Hypervisor:
        name = self.resolve(name)
        if name not in self._built:
            self._built[name] = await (self._qemu() if name == "qemu" else self._xen())
        return self._built[name]

    async def _qemu(self) -> Hypervisor:
        from vxn.adapters.qemu import QemuBackend

        return QemuBackend(self.guests, accel=self._accel)

    async def _accel(self) -> str:
        """Found at the first create, not here: listing and adopting guests (vxnd's start)
        must not wait for a kernel or a KVM probe boot."""
        async with self._accel_lock:
            if self._accel_found is None:
                kernel = await self.artefacts.kernel()
                self._accel_found = await self.artefacts.accel(self.settings.guest.accel, kernel)
            return self._accel_found

    async def _xen(self) -> Hypervisor:
        from vxn.adapters.xen import XenBackend

        return await XenBackend.open(self.guests)
