"""Containers owned by vxnd, as dockerd owns them (docs/CONTAINERS.md 1-3).

    <state dir>/containers/<id>/
        config.json     the record (vxn.engine.records, made by vxn.engine.containerdoc)
        upper.ext4      the sparse writable disk, kept across starts until rm
        initrd          this run's ramdisk: the base initramfs + the spec (0600)
        log.jsonl       the output log (vxn.engine.containerlog)

This module is the lifecycle: create, start, stop, kill, restart, rm, wait, ps and
inspect. A running container has a Supervisor (vxn.engine.supervisor) that owns its
console; the streams of clients are vxn.engine.streams, the state both share is
vxn.engine.containerstate. Only stop, kill, rm -f, or the command's own exit end a
run. On start, `reconcile` adopts the guests a previous vxnd of this state dir left
running and settles the rest (vxn.engine.reconcile plans it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from vxn.adapters import process, sparse
from vxn.adapters.hypervisor import GuestInfo, Hypervisor
from vxn.core import lifecycle, names, protocol
from vxn.core.vm import Disk, GuestConfig, State, check_resources
from vxn.engine.containerdoc import (
    LIVE,
    CreateRequest,
    guest_config,
    guest_spec,
    image_config,
    inspect_document,
    label,
    new_record,
    now,
    summary,
    timings,
)
from vxn.engine.containerlog import ContainerLog
from vxn.engine.containerstate import Images
from vxn.engine.guestrun import Timeline, write_ramdisk
from vxn.engine.reconcile import of_container, plan
from vxn.engine.records import Record
from vxn.engine.streams import ContainerStreams
from vxn.engine.supervisor import EXIT_FAILED, Supervisor
from vxn.errors import FailedPrecondition, NotFound, Unavailable, VxnError

__all__ = [
    "ContainerService",
    "CreateRequest",
    "Images",
    "image_config",
    "writable_disk",
]

log = logging.getLogger("vxnd.containers")

MIN_MEMORY_MIB = 96  # measured: 96 boots, 80 panics (TCG, Debian 6.1, this initramfs)
UPPER_SIZE = 8 << 30  # sparse: only what the container writes takes space
EXIT_VANISHED = 255  # its guest vanished while no vxnd watched, with no witness
KILL_GRACE = 2.0  # s: SIGKILL goes through the helper; then the guest is destroyed


class ContainerService(ContainerStreams):
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
        name = names.check_name(request.name) if request.name else self._free_name()
        record = new_record(
            request, doc, config, cid=cid, name=name, memory_mib=memory, cpus=cpus, backend=backend
        )
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
                lifecycle.transition(record["state"], "start", label(record))
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
                console_started=False,
                started_at=now(),
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
                failed = await self._move(
                    cid, "fail", exit_code=EXIT_FAILED, error=reason, finished_at=now()
                )
                if failed["rm"] and cid not in self._keep:  # as `docker run --rm` does
                    await self._delete(failed)
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
            upper = await writable_disk(directory, self.templates)
            disks.append(Disk(path=str(upper), read_only=False))
        nonce = secrets.token_hex(16)
        spec = protocol.encode_spec(guest_spec(record), nonce)
        await asyncio.to_thread(write_ramdisk, initramfs, directory / "initrd", spec)
        config = guest_config(
            record,
            kernel=str(kernel),
            initrd=str(directory / "initrd"),
            cmdline=hv.cmdline,
            disks=disks,
            owner=self.owner,
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
                f"container {label(record)}: a guest named {record['guest']} exists and is "
                "not this container's; remove that guest, or recreate this container"
            )
        await hv.destroy(record["guest"])

    def _ours(self, info: GuestInfo, record: Record) -> bool:
        return of_container(info, record, self.owner)

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

        async def on_started() -> None:
            await self.store.update(cid, console_started=True)  # for an adopter: see _adopt

        sup = Supervisor(
            hv,
            record["guest"],
            console,
            parser,
            output=ContainerLog(self.store.dir(cid)),
            listeners=self._listeners.setdefault(cid, set()),
            on_exit=on_exit,
            on_started=on_started,
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
            finished_at=now(),
            timings=timings(timeline),
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
        lifecycle.transition(record["state"], "stop", label(record))
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
        lifecycle.transition(record["state"], "kill", label(record))
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
            if record["state"] in LIVE and not force:
                raise FailedPrecondition(
                    f"container {label(record)}: cannot remove: it is {record['state']}; "
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
            lifecycle.transition(record["state"], "remove", label(record))
            self.store.records[cid] = record | {"state": lifecycle.St.REMOVING.value}
        hv = await self.backends.get(record["backend"])
        if self._ours(await hv.info(record["guest"]), record):
            await hv.destroy(record["guest"])
        await self.store.delete(cid)
        self._ops.pop(cid, None)
        self._pending.pop(cid, None)
        self._held.pop(cid, None)
        # Streams of a container that never ran (attached before a start) end here.
        gone = {"kind": "not_found", "message": f"container {label(record)}: removed"}
        for listener in self._listeners.pop(cid, set()):
            listener.end({"error": gone})
        for waiter in self._waiters.pop(cid, []):
            if not waiter.done():
                waiter.set_exception(NotFound(gone["message"]))
        self.events.publish("destroy", record)

    # --- list, inspect -----------------------------------------------------------

    def list(self, *, all: bool = False, status: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        self._load()
        rows = []
        for r in sorted(self.store.records.values(), key=lambda r: r["created"], reverse=True):
            if (status and r["state"] not in status) or (
                not all and not status and r["state"] not in LIVE
            ):
                continue
            rows.append(summary(r))
        return rows

    def inspect(self, ref: str) -> dict[str, Any]:
        return inspect_document(self._get(ref))

    # --- vxnd's start and stop ------------------------------------------------------

    async def reconcile(self) -> None:
        """Match the records with every backend's guests (a previous vxnd may have died)."""
        self._load()
        wanted = {r["backend"] for r in self.store.records.values()}
        wanted.add(self.backends.resolve(None))
        hvs: dict[str, Hypervisor] = {}
        listed: dict[str, list[GuestInfo]] = {}
        for name in sorted(wanted):
            try:
                hvs[name] = await self.backends.get(name)
            except VxnError as e:
                log.warning("reconcile: backend %s unavailable (%s); its guests wait", name, e)
                continue
            listed[name] = list(await hvs[name].list())
        for step in plan(self.store.records, listed, self.owner, self._sups):
            if step.op == "destroy":
                log.info("reconcile: destroying guest %s: its container is gone", step.target)
                await hvs[step.backend].destroy(step.target)
            elif step.op == "adopt":
                await self._adopt(self.store.records[step.target], hvs[step.backend])
            elif step.op == "vanished":
                await self._vanished(self.store.records[step.target])
            else:
                await self._delete(self.store.records[step.target])

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
        # Without a console log (Xen) the start marker cannot be read again: resume in
        # the frames when the last vxnd saw it.
        resume = history is None and bool(record.get("console_started"))
        parser = protocol.ConsoleParser(record["nonce"] or "", started=resume)
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


async def writable_disk(record: Path, cache: Path) -> Path:
    """A sparse ext4 disk for the overlay's upper layer, made once per container: a
    sparse copy of an empty one that mkfs made once into `cache` (a mkfs per run
    costs a few hundred ms under TCG; a copy reads and writes ~4 MB)."""
    return await asyncio.to_thread(_writable_disk, record, cache)


def _writable_disk(record: Path, cache: Path) -> Path:
    disk = record / "upper.ext4"
    if disk.exists():
        return disk
    template = cache / f"upper-{UPPER_SIZE >> 30}G.ext4"
    if not template.exists():
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = cache / f".{template.name}.{secrets.token_hex(4)}"
        try:
            with tmp.open("wb") as f:
                f.truncate(UPPER_SIZE)
            lazy = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
            made = process.run_blocking(["mkfs.ext4", "-q", "-F", "-E", lazy, str(tmp)], limit=60.0)
            if made.returncode != 0:
                said = made.stderr.decode(errors="replace").strip()
                raise Unavailable(f"mkfs.ext4 of the upper disk failed: {said[-300:]}")
            tmp.rename(template)  # atomic: two first runs both make one, either wins
        finally:
            tmp.unlink(missing_ok=True)
    tmp = record / ".upper.ext4"
    sparse.copy(template, tmp)
    tmp.rename(disk)
    return disk
