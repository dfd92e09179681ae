"""The `Hypervisor` interface every backend implements (ARCHITECTURE.md, decision 1).

A guest is created paused, its console (the hvc0 channel) attached, then unpaused;
vxn waits for it to stop and destroys it. Guests outlive vxnd: `list` and `adopt`
find them again from the backend's own records, and `labels` (written by vxn where
the guest cannot write) say which guests are vxn's and whose. `signal` goes through
the guest channel, as a SIGNAL frame to the helper, on the console the backend has open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from vxn.core.vm import GuestConfig, State


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestInfo:
    name: str
    state: State
    backend: str
    pid: int | None = None  # the hypervisor-side process (qemu), when there is one
    labels: Mapping[str, str] = field(default_factory=dict)  # GuestConfig.labels; {} if foreign


class Console(Protocol):
    """The guest's hvc0, raw, as a byte stream."""

    async def read(self) -> bytes:
        """Some bytes, or b"" once the channel is closed."""
        ...

    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class Hypervisor(Protocol):
    name: str
    cmdline: str  # the kernel command line this backend's guests boot with

    async def create(self, config: GuestConfig) -> GuestInfo:
        """Create the guest paused. AlreadyExists if the name is taken."""
        ...

    async def console(self, name: str) -> Console: ...
    async def unpause(self, name: str) -> None: ...

    async def pause(self, name: str) -> None:
        """Stop the guest's vCPUs (so an adopter can read console_log and attach the
        console with nothing written in between); `unpause` resumes it."""
        ...

    async def wait(self, name: str) -> GuestInfo:
        """Until the guest has stopped: powered off, crashed, or its process ended."""
        ...

    async def signal(self, name: str, signum: int) -> None: ...

    async def destroy(self, name: str) -> None:
        """Remove the guest and everything the backend kept for it. Idempotent."""
        ...

    async def list(self) -> list[GuestInfo]: ...
    async def adopt(self, name: str) -> GuestInfo: ...
    async def info(self, name: str) -> GuestInfo: ...

    async def boot_log(self, name: str) -> bytes:
        """The kernel's console so far (for error messages)."""
        ...

    async def exit_witness(self, name: str) -> int | None:
        """An exit code seen outside the console (Xen: data/vxn-exit-code, validated
        0..255, untrusted), or None (QEMU, or nothing written)."""
        ...

    async def console_log(self, name: str) -> bytes | None:
        """Everything the guest wrote to hvc0 so far (QEMU: console.log), or None when
        the backend keeps no copy (Xen): an adopted guest's missed output and exit."""
        ...
