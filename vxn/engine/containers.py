"""Containers owned by vxnd, as dockerd owns them (docs/CONTAINERS.md 1-3).

    <state dir>/containers/<id>/
        config.json     the record (vxn.engine.records)
        upper.ext4      the sparse writable disk, kept across starts until rm
        initrd          this run's ramdisk: the base initramfs + the spec (0600)
        log.jsonl       the output log (vxn.engine.containerlog)

A running container has a Supervisor (vxn.engine.supervisor) that owns its console.
Clients attach and detach at will: a client going away never stops a container; only
stop, kill, rm -f, or the command's own exit do. The states follow vxn.core.lifecycle.
On start, `reconcile` adopts the guests a previous vxnd left running.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from vxn.adapters import process
from vxn.adapters.hypervisor import Hypervisor
from vxn.adapters.statedir import RunDir, StateDir
from vxn.config import Settings
from vxn.core import lifecycle, names, protocol
from vxn.core.guestspec import GuestSpec, RunOptions, build_spec, merge_env
from vxn.core.manifest import ImageConfig
from vxn.core.vm import (
    LABEL_CREATED,
    LABEL_ID,
    LABEL_IMAGE,
    LABEL_ORIGIN,
    ORIGIN_VXN,
    Disk,
    GuestConfig,
    State,
    check_resources,
)
from vxn.engine.backends import Backends
from vxn.engine.containerlog import ContainerLog, reply
from vxn.engine.events import EventBus
from vxn.engine.guest import GuestArtefacts
from vxn.engine.guestrun import Timeline, write_ramdisk
from vxn.engine.records import Record, RecordStore
from vxn.engine.supervisor import EXIT_FAILED, Listener, Supervisor
from vxn.errors import FailedPrecondition, NotFound, VxnError

log = logging.getLogger("vxnd.containers")

MIN_MEMORY_MIB = 96  # measured: 96 boots, 80 panics (TCG, Debian 6.1, this initramfs)
UPPER_SIZE = 8 << 30  # sparse: only what the container writes takes space
EXIT_VANISHED = 255  # its guest vanished while no vxnd watched, with no witness
KILL_GRACE = 2.0  # s: SIGKILL goes through the helper; then the guest is destroyed
_LIVE = (lifecycle.St.RUNNING, lifecycle.St.PAUSED, lifecycle.St.RESTARTING)


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateRequest:
    image: str
    options: RunOptions
    name: str | None = None
    remove: bool = False
    memory_mib: int | None = None
    cpus: int | None = None
    backend: str | None = None


@dataclass(frozen=True, slots=True)
class _Artefacts:
    artefacts: GuestArtefacts

    async def files(self) -> tuple[Path, Path]:
        kernel = await self.artefacts.kernel()
        return kernel.vmlinux, await self.artefacts.initramfs(kernel)


class ContainerService:
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
        self.events = EventBus()
        self._sups: dict[str, Supervisor] = {}
        self._listeners: dict[str, set[Listener]] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}  # stdin before the start
        self._ops: dict[str, asyncio.Lock] = {}
        self._keep: set[str] = set()  # exits that must not auto-remove (rm -f, restart)
        self._waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._loaded = False

    # --- create, start ------------------------------------------------------------

    async def create(self, request: CreateRequest) -> Record:
        self._load()
        backend = self.backends.resolve(request.backend)
        memory = request.memory_mib or self.settings.guest.memory
        cpus = request.cpus or self.settings.guest.cpus
        check_resources(memory, cpus, MIN_MEMORY_MIB, os.cpu_count() or 1)
        doc = await self.images.inspect(request.image)
        config = image_config(doc, request.image)
        cid = secrets.token_hex(32)
        options = request.options  # with a tty, build_spec adds TERM=xterm as Docker does
        spec = build_spec(config, options, container_id=cid)
        name = names.check_name(request.name) if request.name else self._free_name()
        record: Record = {
            "id": cid,
            "name": name,
            "image": doc.get("Manifest") or doc["Id"],
            "image_id": doc["Id"],
            "ref": request.image,
            "created": _now(),
            "state": lifecycle.St.CREATED.value,
            "exit_code": None,
            "error": None,
            "started_at": None,
            "finished_at": None,
            "options": asdict(options) | {"command": list(options.command)},
            "argv": list(spec.argv),
            "config": _config_json(config),
            "rm": request.remove,
            "memory_mib": memory,
            "cpus": cpus,
            "backend": backend,
            "guest": cid[:12],
            "nonce": None,
            "origin": ORIGIN_VXN,
        }
        await self.store.add(record)
        self.events.publish("create", record)
        return record

    async def start(self, ref: str) -> None:
        record = self._get(ref)
        cid = record["id"]
        async with self._op(cid):
            record = self.store.records[cid]
            if record["state"] == lifecycle.St.RUNNING:
                return  # as Docker: starting a running container is a no-op
            lifecycle.transition(record["state"], "start", _label(record))
            sup = await self._boot(record)
        await sup.ready  # the start marker, or the boot's failure (recorded as exit 125)

    async def _boot(self, record: Record) -> Supervisor:
        timeline = Timeline()
        timeline.mark("request")
        cid, guest = record["id"], record["guest"]
        hv = await self.backends.get(record["backend"])
        kernel, initramfs = await self.files.files()
        rootfs = await self.images.rootfs(record["image_id"])
        disks = [Disk(path=str(rootfs.path), read_only=True)]
        directory = self.store.dir(cid)
        if not record["options"]["read_only"]:
            disks.append(Disk(path=str(await writable_disk(directory)), read_only=False))
        nonce = secrets.token_hex(16)
        spec = protocol.encode_spec(self._spec(record), nonce)
        await asyncio.to_thread(write_ramdisk, initramfs, directory / "initrd", spec)
        config = GuestConfig(
            name=guest,
            kernel=str(kernel),
            initrd=str(directory / "initrd"),
            cmdline=hv.cmdline,
            disks=tuple(disks),
            memory_mib=record["memory_mib"],
            cpus=record["cpus"],
            labels={
                LABEL_ID: cid,
                LABEL_IMAGE: record["image"],
                LABEL_ORIGIN: ORIGIN_VXN,
                LABEL_CREATED: record["created"],
            },
        )
        timeline.mark("create")
        await hv.destroy(guest)  # a leftover of this container's last run, if any
        await hv.create(config)
        try:
            console = await hv.console(guest)
            record = await self.store.update(
                cid,
                state=lifecycle.St.RUNNING.value,
                nonce=nonce,
                started_at=_now(),
                exit_code=None,
                error=None,
                finished_at=None,
            )
            sup = self._supervise(record, hv, console, protocol.ConsoleParser(nonce), timeline)
            for line in self._pending.pop(cid, []):
                await sup.input(0, line)
            sup.start()
            await hv.unpause(guest)
            timeline.mark("unpaused")
        except BaseException as e:
            await asyncio.shield(hv.destroy(guest))
            if cid in self._sups:
                await self._sups[cid].done  # its destroy ended the run: exit recorded
            else:
                await self.store.update(cid, state="exited", exit_code=EXIT_FAILED, error=str(e))
            raise
        self.events.publish("start", record)
        return sup

    def _supervise(
        self,
        record: Record,
        hv: Hypervisor,
        console: Any,
        parser: protocol.ConsoleParser,
        timeline: Timeline,
        consumed: int = 0,
    ) -> Supervisor:
        cid = record["id"]

        async def on_exit(code: int, error: str | None) -> None:
            await self._exited(cid, code, error, timeline)

        sup = Supervisor(
            hv,
            record["guest"],
            console,
            parser,
            output=ContainerLog(self.store.dir(cid)),
            listeners=self._listeners.setdefault(cid, set()),
            on_exit=on_exit,
            boot_timeout=self.settings.guest.boot_timeout,
            timeline=timeline,
            consumed=consumed,
        )
        self._sups[cid] = sup
        return sup

    async def _exited(self, cid: str, code: int, error: str | None, timeline: Timeline) -> None:
        record = await self.store.update(
            cid,
            state=lifecycle.St.EXITED.value,
            exit_code=code,
            error=error,
            finished_at=_now(),
            timings=_timings(timeline),
        )
        self.events.publish("die", record, exit_code=code)
        for listener in self._listeners.pop(cid, set()):
            listener.end({"exit": code})
        for waiter in self._waiters.pop(cid, []):
            if not waiter.done():
                waiter.set_result(code)
        self._sups.pop(cid, None)
        if record["rm"] and cid not in self._keep:
            await self._delete(record)

    # --- attach, exec, input --------------------------------------------------------

    async def attach(self, ref: str, *, stdin: bool, logs: bool) -> tuple[str, Listener]:
        record = self._get(ref)
        lifecycle.transition(record["state"], "attach", _label(record))
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
        if not listener.stdin and ("in" in line or "eof" in line):
            return  # as Docker: stdin of a container created without -i is closed
        sup = self._sups.get(cid)
        if sup is not None:
            await sup.input(listener.session, line)
        elif listener.session == 0:
            self._pending.setdefault(cid, []).append(line)

    async def exec(self, ref: str, body: dict[str, Any]) -> tuple[str, Listener]:
        record = self._get(ref)
        lifecycle.transition(record["state"], "exec", _label(record))
        sup = self._sups.get(record["id"])
        if sup is None:
            raise FailedPrecondition(f"container {_label(record)}: not supervised by this vxnd")
        base = self._spec(record)
        spec = protocol.ExecSpec(
            argv=tuple(body["command"]),
            env=merge_env(base.env, body.get("env") or ()),
            cwd=body.get("workdir") or base.cwd,
            user=str(body["user"]) if body.get("user") is not None else base.user,
            tty=bool(body.get("tty")),
            stdin=bool(body.get("stdin")),
            rows=int(body.get("rows") or 0),
            cols=int(body.get("cols") or 0),
        )
        listener = Listener(stdin=spec.stdin)
        await sup.exec(spec, listener)
        return record["id"], listener

    async def resize(self, ref: str, rows: int, cols: int, session: int = 0) -> None:
        record = self._get(ref)
        sup = self._sups.get(record["id"])
        if sup is None:
            raise FailedPrecondition(f"container {_label(record)}: it is not running")
        if session and session not in sup.sessions:
            raise NotFound(f"exec {session} in container {_label(record)}: no such session")
        await sup.input(session, {"winsize": [rows, cols]})

    # --- wait, stop, kill, restart, remove --------------------------------------------

    async def wait(self, ref: str) -> int:
        record = self._get(ref)
        if record["state"] == lifecycle.St.EXITED:
            return int(record["exit_code"])
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(record["id"], []).append(waiter)
        return await waiter

    async def stop(self, ref: str, grace: float = 10.0) -> int:
        record = self._get(ref)
        lifecycle.transition(record["state"], "stop", _label(record))
        sup = self._sups.get(record["id"])
        if sup is None:
            return int(record["exit_code"] or 0)
        await sup.input(0, {"signal": 15})
        try:
            async with asyncio.timeout(grace):
                return await asyncio.shield(sup.done)
        except TimeoutError:
            await sup.hard_stop()
            return await sup.done

    async def kill(self, ref: str, signum: int = 9) -> None:
        record = self._get(ref)
        if record["state"] not in _LIVE:
            raise FailedPrecondition(
                f"container {_label(record)}: cannot kill: it is {record['state']}; start it first"
            )
        sup = self._sups.get(record["id"])
        if sup is not None:
            await sup.input(0, {"signal": signum})
            if signum == 9:
                sup.kill_after(KILL_GRACE)

    async def restart(self, ref: str, grace: float = 10.0) -> None:
        record = self._get(ref)
        lifecycle.transition(record["state"], "restart", _label(record))
        self._keep.add(record["id"])
        try:
            if record["id"] in self._sups:
                await self.stop(record["id"], grace)
        finally:
            self._keep.discard(record["id"])
        await self.start(record["id"])

    async def remove(self, ref: str, *, force: bool = False) -> None:
        record = self._get(ref)
        if record["state"] in _LIVE and not force:
            raise FailedPrecondition(
                f"container {_label(record)}: cannot remove: it is {record['state']}; "
                "stop it first, or use force (rm -f)"
            )
        lifecycle.transition(record["state"], "remove", _label(record))
        cid = record["id"]
        sup = self._sups.get(cid)
        if sup is not None:
            self._keep.add(cid)
            try:
                await sup.hard_stop()
                await sup.done
            finally:
                self._keep.discard(cid)
        if cid in self.store.records:
            await self._delete(self.store.records[cid])

    async def _delete(self, record: Record) -> None:
        cid = record["id"]
        self.store.records[cid] = record | {"state": lifecycle.St.REMOVING.value}
        hv = await self.backends.get(record["backend"])
        await hv.destroy(record["guest"])
        await self.store.delete(cid)
        self._ops.pop(cid, None)
        self._pending.pop(cid, None)
        self.events.publish("destroy", record)

    # --- list, inspect, logs, events -----------------------------------------------

    def list(self, *, all: bool = False, status: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        self._load()
        rows = []
        for r in sorted(self.store.records.values(), key=lambda r: r["created"], reverse=True):
            if (status and r["state"] not in status) or (
                not all and not status and r["state"] != lifecycle.St.RUNNING
            ):
                continue
            rows.append(summary(r))
        return rows

    def inspect(self, ref: str) -> dict[str, Any]:
        record = self._get(ref)
        return {k: v for k, v in record.items() if k != "nonce"}

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

    # --- vxnd's start and stop ------------------------------------------------------

    async def reconcile(self) -> None:
        """Match the records with every backend's guests (a previous vxnd may have died)."""
        self._load()
        wanted = {r["backend"] for r in self.store.records.values()}
        wanted.add(self.backends.resolve(None))
        seen: set[str] = set()
        listed: set[str] = set()
        for name in sorted(wanted):
            try:
                hv = await self.backends.get(name)
            except VxnError as e:
                log.warning("reconcile: backend %s unavailable (%s); its guests wait", name, e)
                continue
            listed.add(name)
            for info in await hv.list():
                if info.labels.get(LABEL_ORIGIN) != ORIGIN_VXN:
                    continue  # not ours (or vxn-oci-runtime's): never touched
                cid = info.labels.get(LABEL_ID, "")
                record = self.store.records.get(cid)
                if record is None or record["state"] not in _LIVE or record["guest"] != info.name:
                    log.info("reconcile: destroying guest %s: its container is gone", info.name)
                    await hv.destroy(info.name)
                    continue
                seen.add(cid)
                await self._adopt(record, hv)
        for record in list(self.store.records.values()):
            live = record["state"] in _LIVE and record["id"] not in self._sups
            if live and record["id"] not in seen and record["backend"] in listed:
                await self._vanished(record)

    async def _adopt(self, record: Record, hv: Hypervisor) -> None:
        guest = record["guest"]
        info = await hv.adopt(guest)
        running = info.state == State.RUNNING
        if running:  # nothing may fall between the log and the live console
            await hv.pause(guest)
        try:
            console = await hv.console(guest)
            history = await hv.console_log(guest)
        finally:
            if running:
                await hv.unpause(guest)
        consumed = ContainerLog(self.store.dir(record["id"])).consumed()
        parser = protocol.ConsoleParser(record["nonce"] or "")
        sup = self._supervise(record, hv, console, parser, Timeline(), consumed)
        if history is not None:
            sup.replay(history)
        sup.start()
        log.info("reconcile: adopted container %s (guest %s)", record["name"], guest)

    async def _vanished(self, record: Record) -> None:
        hv = await self.backends.get(record["backend"])
        witness = await hv.exit_witness(record["guest"])
        code = EXIT_VANISHED if witness is None else witness
        error = None if witness is not None else "its guest vanished while vxnd was down"
        await self._exited(record["id"], code, error, Timeline())

    async def close(self) -> None:
        """vxnd is stopping: stop supervising; the guests keep running, for the next vxnd."""
        for sup in list(self._sups.values()):
            await sup.detach()
        self._sups.clear()
        for listeners in self._listeners.values():
            for listener in listeners:
                listener.end()
        self._listeners.clear()
        self.events.close()

    # --- helpers --------------------------------------------------------------------

    def _load(self) -> None:
        if not self._loaded:
            self.store.load()
            self._loaded = True

    def _get(self, ref: str) -> Record:
        self._load()
        return self.store.resolve(ref)

    def _op(self, cid: str) -> asyncio.Lock:
        return self._ops.setdefault(cid, asyncio.Lock())

    def _free_name(self) -> str:
        return names.generate({r["name"] for r in self.store.records.values()})

    def _spec(self, record: Record) -> GuestSpec:
        options = dict(record["options"])
        options["command"] = tuple(options["command"])
        options["env"] = tuple(options["env"])
        return build_spec(
            _config_from_json(record["config"]),
            RunOptions(**options),
            container_id=record["id"],
        )


def summary(record: Record) -> dict[str, Any]:
    keys = ("id", "name", "image_id", "created", "state", "exit_code", "started_at")
    return {k: record.get(k) for k in keys} | {
        "image": record["ref"],
        "command": " ".join(record["argv"]),
        "finished_at": record.get("finished_at"),
        "backend": record["backend"],
    }


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


def image_config(doc: dict[str, Any], ref: str) -> ImageConfig:
    if doc.get("Architecture") != "amd64" or doc.get("Os") != "linux":
        raise FailedPrecondition(
            f"image {ref}: it is {doc.get('Os')}/{doc.get('Architecture')}; "
            "the guest kernel runs linux/amd64 images"
        )
    c = doc.get("Config") or {}
    return _config_from_json(
        {
            "entrypoint": c.get("Entrypoint"),
            "cmd": c.get("Cmd"),
            "env": c.get("Env") or [],
            "working_dir": c.get("WorkingDir") or "",
            "user": c.get("User") or "",
        }
    )


def _config_json(config: ImageConfig) -> dict[str, Any]:
    return {
        "entrypoint": list(config.entrypoint) if config.entrypoint is not None else None,
        "cmd": list(config.cmd) if config.cmd is not None else None,
        "env": list(config.env),
        "working_dir": config.working_dir,
        "user": config.user,
    }


def _config_from_json(c: dict[str, Any]) -> ImageConfig:
    return replace(
        ImageConfig(os="linux", architecture="amd64"),
        entrypoint=tuple(c["entrypoint"]) if c.get("entrypoint") is not None else None,
        cmd=tuple(c["cmd"]) if c.get("cmd") is not None else None,
        env=tuple(c.get("env") or ()),
        working_dir=c.get("working_dir") or "",
        user=c.get("user") or "",
    )


def _label(record: Record) -> str:
    return f"{record['name']} ({record['id'][:12]})"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _timings(t: Timeline) -> dict[str, float]:
    t.mark("done")
    pairs = {
        "prepare": ("request", "create"),  # vxn, before the hypervisor starts
        "create": ("create", "unpaused"),  # the hypervisor: guest created, started
        "boot": ("unpaused", "hello"),
        "guest": ("unpaused", "exited"),  # boot, command, exit frame
        "teardown": ("exited", "done"),  # vxn and the hypervisor, after the exit
    }
    return {
        k: round(t.span(a, b), 4) for k, (a, b) in pairs.items() if a in t.marks and b in t.marks
    }
