"""Containers: `run` (boot a guest for an image's command) and a minimal record of each.

    <state dir>/containers/<id>/
        config.json     {"id", "name", "image": <manifest digest>, "ref", "state", ...}
        upper.ext4      the sparse writable disk: the overlay's upper (not with --read-only)
        initrd          this run's ramdisk: the base initramfs + the spec (0600)

Names are unique (AlreadyExists otherwise), as `--name` means in Docker; `--rm`
removes the record and its disks once the guest is gone. The lifecycle commands
(ps, start, stop, rm, logs) come later and build on this record.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from vxn.adapters import process
from vxn.adapters.statedir import RunDir, StateDir, atomic_write
from vxn.config import Settings
from vxn.core.guestspec import RunOptions, build_spec
from vxn.core.manifest import ImageConfig
from vxn.core.vm import Disk, check_resources
from vxn.engine.backends import Backends
from vxn.engine.guest import GuestArtefacts
from vxn.engine.guestrun import Boot, ErrorFn, OutputFn, Timeline, run_guest
from vxn.errors import AlreadyExists, FailedPrecondition, InvalidArgument

MIN_MEMORY_MIB = 96  # measured: 96 boots, 80 panics (TCG, Debian 6.1, this initramfs)
UPPER_SIZE = 8 << 30  # sparse: only what the container writes takes space
EXIT_FAILED = 125  # a run's code when vxn, not the command, failed
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}")


class Images(Protocol):
    """What `run` needs of vxn.engine.images.ImageService."""

    async def inspect(self, ref_or_id: str) -> dict[str, Any]: ...
    async def rootfs(self, ref_or_id: str) -> Any: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    image: str
    options: RunOptions
    name: str | None = None
    remove: bool = False
    memory_mib: int | None = None
    cpus: int | None = None
    backend: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    id: str
    exit_code: int
    timings: dict[str, float]  # seconds: vxn's own spans and the guest's


class ContainerService:
    def __init__(
        self, settings: Settings, state: StateDir, run: RunDir, images: Images, xen: bool = False
    ) -> None:
        self.settings = settings
        self.state = state
        self.images = images
        kernel_dir = Path(settings.guest.kernel_dir) if settings.guest.kernel_dir else None
        self.artefacts = GuestArtefacts(state.guest, kernel_dir)
        self.backends = Backends(settings, self.artefacts, run.guests, xen)
        self._names = asyncio.Lock()

    async def run(self, request: RunRequest, output: OutputFn, error: ErrorFn) -> RunResult:
        timeline = Timeline()
        timeline.mark("request")
        hv = await self.backends.get(request.backend)
        memory = request.memory_mib or self.settings.guest.memory
        cpus = request.cpus or self.settings.guest.cpus
        check_resources(memory, cpus, MIN_MEMORY_MIB, os.cpu_count() or 1)
        doc = await self.images.inspect(request.image)
        config = image_config(doc, request.image)
        cid = secrets.token_hex(32)
        spec = build_spec(config, request.options, container_id=cid)
        record = await self._create(cid, request, doc["Manifest"])
        try:
            boot = await self._boot(cid, request, spec, memory, cpus, record)
            await self._set_state(record, "running")
            try:
                code = await run_guest(hv, boot, output, error, timeline)
            except Exception as e:
                # run_guest destroyed the guest, so the record must not say running. (A
                # cancelled run is left as it is: its guest outlives vxnd by design.)
                await self._set_state(record, "exited", exit_code=EXIT_FAILED, error=str(e))
                raise
            await self._set_state(record, "exited", exit_code=code)
        finally:
            if request.remove:
                await asyncio.to_thread(shutil.rmtree, record, True)
        timeline.mark("done")
        return RunResult(id=cid, exit_code=code, timings=_timings(timeline))

    async def _create(self, cid: str, request: RunRequest, manifest: str) -> Path:
        name = request.name or cid[:12]
        if not _NAME.fullmatch(name):
            raise InvalidArgument(f"container name {name!r}: want [a-zA-Z0-9][a-zA-Z0-9_.-]*")
        async with self._names:
            taken = await asyncio.to_thread(self._find, name)
            if taken:
                raise AlreadyExists(
                    f"container name {name}: already in use by container {taken[:12]}; "
                    "remove that container or pick another name"
                )
            directory = self.state.containers / cid
            directory.mkdir(mode=0o700, parents=True)
            record = {
                "id": cid,
                "name": name,
                "image": manifest,
                "ref": request.image,
                "created": datetime.now(UTC).isoformat(),
                "state": "created",
                "read_only": request.options.read_only,
            }
            await asyncio.to_thread(_write, directory, record)
        return directory

    def _find(self, name: str) -> str | None:
        for path in self.state.containers.glob("*/config.json"):
            try:
                if json.loads(path.read_text()).get("name") == name:
                    return path.parent.name
            except (OSError, ValueError):
                continue
        return None

    async def _boot(
        self, cid: str, request: RunRequest, spec: Any, memory: int, cpus: int, record: Path
    ) -> Boot:
        kernel = await self.artefacts.kernel()
        initramfs = await self.artefacts.initramfs(kernel)
        rootfs = await self.images.rootfs(request.image)
        disks = [Disk(path=str(rootfs.path), read_only=True)]
        if not request.options.read_only:
            disks.append(Disk(path=str(await writable_disk(record)), read_only=False))
        return Boot(
            name=cid[:12],
            spec=spec,
            kernel=kernel.vmlinux,
            initramfs=initramfs,
            ramdisk=record / "initrd",
            disks=tuple(disks),
            memory_mib=memory,
            cpus=cpus,
            boot_timeout=self.settings.guest.boot_timeout,
        )

    async def _set_state(self, record: Path, state: str, **extra: Any) -> None:
        def update() -> None:
            doc = json.loads((record / "config.json").read_text())
            _write(record, doc | {"state": state, **extra})

        await asyncio.to_thread(update)


async def writable_disk(record: Path) -> Path:
    """A sparse ext4 disk for the overlay's upper layer, made once per container."""
    disk = record / "upper.ext4"
    if not disk.exists():
        tmp = record / ".upper.ext4"
        with tmp.open("wb") as f:
            f.truncate(UPPER_SIZE)
        lazy = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
        await process.run(["mkfs.ext4", "-q", "-F", "-E", lazy, str(tmp)], limit=60.0)
        tmp.rename(disk)
    return disk


def _write(directory: Path, record: dict[str, Any]) -> None:
    atomic_write(directory / "config.json", json.dumps(record, indent=1).encode() + b"\n", 0o600)


def image_config(doc: dict[str, Any], ref: str) -> ImageConfig:
    if doc.get("Architecture") != "amd64" or doc.get("Os") != "linux":
        raise FailedPrecondition(
            f"image {ref}: it is {doc.get('Os')}/{doc.get('Architecture')}; "
            "the guest kernel runs linux/amd64 images"
        )
    c = doc.get("Config") or {}
    config = ImageConfig(os="linux", architecture="amd64")
    return replace(
        config,
        entrypoint=tuple(c["Entrypoint"]) if c.get("Entrypoint") is not None else None,
        cmd=tuple(c["Cmd"]) if c.get("Cmd") is not None else None,
        env=tuple(c.get("Env") or ()),
        working_dir=c.get("WorkingDir") or "",
        user=c.get("User") or "",
    )


def _timings(t: Timeline) -> dict[str, float]:
    spans = {
        "prepare": t.span("request", "create"),  # vxn, before the hypervisor starts
        "create": t.span("create", "unpaused"),  # the hypervisor: guest created, started
        "guest": t.span("unpaused", "exited"),  # boot, command, exit frame
        "teardown": t.span("exited", "done"),  # vxn and the hypervisor, after the exit
    }
    if "hello" in t.marks:
        spans["boot"] = t.span("unpaused", "hello")
    return {k: round(v, 4) for k, v in spans.items()}
