"""Containers owned by vxnd, as dockerd owns them (docs/CONTAINERS.md 1-3).

    <state dir>/containers/<id>/
        config.json     the record (vxn.engine.records)
        upper.ext4      the sparse writable disk, kept across starts until rm
        initrd          this run's ramdisk: the base initramfs + the spec (0600)
        log.jsonl       the output log (vxn.engine.containerlog)

A running container has a Supervisor (vxn.engine.supervisor) that owns its console.
Clients attach and detach at will: a client going away never stops a container; only
stop, kill, rm -f, or the command's own exit do. Every state change goes through the
table of vxn.core.lifecycle (`_move`); start, stop, restart and rm of one container
take its lock, so they run one at a time. On start, `reconcile` adopts the guests a
previous vxnd of this state dir left running (their `owner` label is this state dir's
identity); every other guest is foreign and left alone.
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
from vxn.adapters.hypervisor import GuestInfo, Hypervisor
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
    LABEL_OWNER,
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
from vxn.engine.supervisor import EXIT_FAILED, HELD, Listener, Supervisor, input_frame
from vxn.errors import FailedPrecondition, NotFound, VxnError

log = logging.getLogger("vxnd.containers")

MIN_MEMORY_MIB = 96  # measured: 96 boots, 80 panics (TCG, Debian 6.1, this initramfs)
UPPER_SIZE = 8 << 30  # sparse: only what the container writes takes space
EXIT_VANISHED = 255  # its guest vanished while no vxnd watched, with no witness
KILL_GRACE = 2.0  # s: SIGKILL goes through the helper; then the guest is destroyed
_LIVE = (lifecycle.St.RUNNING, lifecycle.St.PAUSED, lifecycle.St.RESTARTING)
GuestLabels = Any  # a Mapping[str, str] of GuestInfo.labels


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
        self._held: dict[str, int] = {}  # its bytes, as frames
        self._ops: dict[str, asyncio.Lock] = {}
        self._keep: set[str] = set()  # exits that must not auto-remove (rm -f, restart)
        self._waiters: dict[str, list[asyncio.Future[int]]] = {}
        self._loaded = False
        self.owner = ""  # this state dir's identity, set by _load

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
        cid = self._get(ref)["id"]
        async with self._op(cid):
            record = self._current(cid, ref)
            if record["state"] == lifecycle.St.RUNNING:
                sup = self._sups.get(cid)
                if sup is None:
                    return  # running on a backend that was down when vxnd started
            else:
                lifecycle.transition(record["state"], "start", _label(record))
                sup = await self._boot(record)
        # The start marker, or the boot's failure (recorded as exit 125). Starting a
        # running container is a no-op, as in Docker, that also waits for its start.
        await asyncio.shield(sup.ready)

    async def _boot(self, record: Record) -> Supervisor:
        """Boot a new run; any failure leaves the record exited 125 with the reason."""
        timeline = Timeline()
        timeline.mark("request")
        cid, guest = record["id"], record["guest"]
        hv: Hypervisor | None = None
        sup: Supervisor | None = None
        try:
            hv = await self.backends.get(record["backend"])
            config, nonce = await self._prepare(record, hv)
            timeline.mark("create")
            await self._destroy_leftover(hv, record)
            await hv.create(config)
            console = await hv.console(guest)
            record = await self._move(
                cid,
                "start",
                nonce=nonce,
                started_at=_now(),
                exit_code=None,
                error=None,
                finished_at=None,
            )
            sup = self._supervise(record, hv, console, protocol.ConsoleParser(nonce), timeline)
            sup.start()
            self._held.pop(cid, None)
            for line in self._pending.pop(cid, []):  # held: the helper is not reading yet
                await sup.input(0, line)
            await hv.unpause(guest)
            timeline.mark("unpaused")
        except BaseException as e:
            if hv is not None and (sup is not None or self._ours(await hv.info(guest), record)):
                await asyncio.shield(hv.destroy(guest))
            if sup is not None:
                await sup.done  # the destroy ended the run: its exit is recorded
            else:
                reason = str(e) or type(e).__name__
                await self._move(
                    cid, "fail", exit_code=EXIT_FAILED, error=reason, finished_at=_now()
                )
            raise
        self.events.publish("start", record)
        return sup

    async def _prepare(self, record: Record, hv: Hypervisor) -> tuple[GuestConfig, str]:
        """The guest's config for a new run, with its ramdisk written; and its nonce."""
        cid = record["id"]
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
            name=record["guest"],
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
                LABEL_OWNER: self.owner,
            },
        )
        return config, nonce

    async def _destroy_leftover(self, hv: Hypervisor, record: Record) -> None:
        """Destroy this container's guest of an earlier run, if any; never a guest of
        the same name that is someone else's."""
        info = await hv.info(record["guest"])
        if info.state == State.GONE:
            return
        if not self._ours(info, record):
            raise FailedPrecondition(
                f"container {_label(record)}: a guest named {record['guest']} exists and is "
                "not this container's; remove that guest, or recreate this container"
            )
        await hv.destroy(record["guest"])

    def _ours(self, info: GuestInfo, record: Record) -> bool:
        """Whether `info` is a guest of this container (so vxnd may destroy it)."""
        return info.state != State.GONE and (
            self._mine(info.labels) and info.labels.get(LABEL_ID) == record["id"]
        )

    def _mine(self, labels: GuestLabels) -> bool:
        return bool(
            labels.get(LABEL_ORIGIN) == ORIGIN_VXN and labels.get(LABEL_OWNER) == self.owner
        )

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
            memory_mib=record["memory_mib"],
        )
        self._sups[cid] = sup
        return sup

    async def _exited(
        self, cid: str, code: int, error: str | None, timeline: Timeline, op: str = "exit"
    ) -> None:
        """A run is over (`op`: exit, or fail for a guest that vanished unwatched)."""
        record = await self._move(
            cid,
            op,
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

    async def _move(self, cid: str, op: str, **changes: Any) -> Record:
        """Apply `op` to the record's state (the lifecycle table decides) and `changes`."""
        record = self.store.records[cid]
        after = lifecycle.transition(record["state"], op, _label(record))
        return await self.store.update(cid, state=after.value, **changes)

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
                    f"container {_label(self.store.records[cid])}: not started, and vxnd "
                    f"holds at most {HELD >> 20} MiB of input until it starts; start it first"
                )
            self._held[cid] = held
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
        """The exit code once it has exited; at once for an exited container."""
        record = self._get(ref)
        if record["state"] == lifecycle.St.EXITED:
            return int(record["exit_code"])
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(record["id"], []).append(waiter)
        return await waiter

    async def stop(self, ref: str, grace: float = 10.0) -> int:
        cid = self._get(ref)["id"]
        async with self._op(cid):  # after a start, restart or rm in progress
            record = self._current(cid, ref)
            sup = await self._terminate(record)
        if sup is None:
            return int(record["exit_code"] or 0)
        return await self._stopped(sup, grace)  # unlocked: an rm -f need not wait for it

    async def _terminate(self, record: Record) -> Supervisor | None:
        """SIGTERM to its run, if it has one."""
        lifecycle.transition(record["state"], "stop", _label(record))
        sup = self._sups.get(record["id"])
        if sup is not None:
            await sup.input(0, {"signal": 15})
        return sup

    async def _stopped(self, sup: Supervisor, grace: float) -> int:
        """The run's exit code, after a hard stop if it is still running in `grace` s."""
        try:
            async with asyncio.timeout(max(0.0, grace)):
                return await asyncio.shield(sup.done)
        except TimeoutError:
            await sup.hard_stop()
            return await sup.done

    async def kill(self, ref: str, signum: int = 9) -> None:
        record = self._get(ref)
        lifecycle.transition(record["state"], "kill", _label(record))
        sup = self._sups.get(record["id"])
        if sup is not None:
            await sup.input(0, {"signal": signum})
            if signum == 9:
                sup.kill_after(KILL_GRACE)

    async def restart(self, ref: str, grace: float = 10.0) -> None:
        """Stop (as `stop -t grace`) then start; `restarting` in between, as ps shows."""
        cid = self._get(ref)["id"]
        async with self._op(cid):
            self._current(cid, ref)
            record = await self._move(cid, "restart")
            self._keep.add(cid)  # the old run's exit must not auto-remove it
            try:
                sup = await self._terminate(record)
                if sup is not None:
                    await self._stopped(sup, grace)
            finally:
                self._keep.discard(cid)
            sup = await self._boot(self.store.records[cid])
        await asyncio.shield(sup.ready)

    async def remove(self, ref: str, *, force: bool = False) -> None:
        cid = self._get(ref)["id"]
        async with self._op(cid):
            record = self._current(cid, ref)
            if record["state"] in _LIVE and not force:
                raise FailedPrecondition(
                    f"container {_label(record)}: cannot remove: it is {record['state']}; "
                    "stop the container before removing or force remove (rm -f)"
                )
            record = await self._move(cid, "remove")
            sup = self._sups.get(cid)
            if sup is not None:
                self._keep.add(cid)  # removed here, not by the exit's auto-remove
                try:
                    await sup.hard_stop()
                    await sup.done
                finally:
                    self._keep.discard(cid)
            await self._delete(self.store.records.get(cid, record))

    async def _delete(self, record: Record) -> None:
        cid = record["id"]
        if cid not in self.store.records:
            return  # removed already (rm racing an auto-remove)
        if record["state"] != lifecycle.St.REMOVING:  # an auto-remove: not yet marked
            lifecycle.transition(record["state"], "remove", _label(record))
            self.store.records[cid] = record | {"state": lifecycle.St.REMOVING.value}
        hv = await self.backends.get(record["backend"])
        if self._ours(await hv.info(record["guest"]), record):
            await hv.destroy(record["guest"])
        await self.store.delete(cid)
        self._ops.pop(cid, None)
        self._pending.pop(cid, None)
        self._held.pop(cid, None)
        # Streams of a container that never ran (attached before a start) end here.
        gone = {"kind": "not_found", "message": f"container {_label(record)}: removed"}
        for listener in self._listeners.pop(cid, set()):
            listener.end({"error": gone})
        for waiter in self._waiters.pop(cid, []):
            if not waiter.done():
                waiter.set_exception(NotFound(gone["message"]))
        self.events.publish("destroy", record)

    # --- list, inspect, logs, events -----------------------------------------------

    def list(self, *, all: bool = False, status: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        self._load()
        rows = []
        for r in sorted(self.store.records.values(), key=lambda r: r["created"], reverse=True):
            if (status and r["state"] not in status) or (
                not all and not status and r["state"] not in _LIVE
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
                if not self._mine(info.labels):
                    continue  # not vxn's, vxn-oci-runtime's or another state dir's: never touched
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
            elif record["state"] == lifecycle.St.REMOVING and record["backend"] in listed:
                await self._delete(record)  # a vxnd died removing it: finish

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
        record = await self._move(record["id"], "adopt")
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
        await self._exited(record["id"], code, error, Timeline(), op="fail")

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
