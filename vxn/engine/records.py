"""The container records: `<state dir>/containers/<id>/config.json`, one JSON file each.

vxnd is their only writer, so it keeps them in memory (ps reads no file) and writes
each change through: atomically (rename), 0600 (it holds the run's nonce), under the
container's own flock (`lock`), in a worker thread so the event loop never waits on
fsync. Writes to one container are serialised by its asyncio lock.

`owner` is this state dir's identity, made once: every guest vxnd makes is labelled
with it, so a vxnd only ever adopts or destroys its own guests, never those of
another vxnd sharing the hypervisor (on Xen every Dom0 tool sees every domain).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from vxn.adapters.statedir import atomic_write, fsync_dir
from vxn.core import names
from vxn.errors import AlreadyExists, FailedPrecondition

log = logging.getLogger("vxnd.containers")

Record = dict[str, Any]
OWNER = "owner"  # under the containers dir: this state dir's identity (32 hex)


class RecordStore:
    def __init__(self, root: Path) -> None:
        self.root = root  # <state dir>/containers
        self.records: dict[str, Record] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def load(self) -> None:
        """Read every record (once, at start); unreadable ones are logged and skipped."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in sorted(self.root.glob("*/config.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                log.warning("container record %s: unreadable (%s); skipped", path, e)
                continue
            if isinstance(record, dict) and record.get("id") == path.parent.name:
                self.records[record["id"]] = record

    def owner(self) -> str:
        """This state dir's identity, created on first use: atomically, so two vxnds
        racing on a fresh state dir still agree on one."""
        path = self.root / OWNER
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            tmp = self.root / f".{OWNER}.tmp{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, secrets.token_hex(16).encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # fails if another vxnd made it first: theirs stands
                fsync_dir(self.root)
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        owner = path.read_text().strip()
        if len(owner) != 32 or not all(c in "0123456789abcdef" for c in owner):
            raise FailedPrecondition(
                f"{path}: not a vxn state dir identity (want 32 hex digits); "
                "restore it, or remove it only if no guest of this state dir runs"
            )
        return owner

    def dir(self, cid: str) -> Path:
        return self.root / cid

    def resolve(self, ref: str) -> Record:
        cid = names.resolve(ref, ((r["id"], r["name"]) for r in self.records.values()))
        return self.records[cid]

    def name_owner(self, name: str) -> str | None:
        return next((r["id"] for r in self.records.values() if r["name"] == name), None)

    async def add(self, record: Record) -> None:
        """Claim the record's name and write it; AlreadyExists if the name is taken."""
        taken = self.name_owner(record["name"])
        if taken:
            raise AlreadyExists(
                f"container name {record['name']}: already in use by container {taken[:12]}; "
                "remove that container or pick another name"
            )
        self.records[record["id"]] = record  # claimed before the first await
        try:
            await asyncio.to_thread(self._create, record)
        except BaseException:
            self.records.pop(record["id"], None)
            raise

    async def update(self, cid: str, **changes: Any) -> Record:
        async with self._lock(cid):
            record = self.records[cid] | changes
            self.records[cid] = record
            await asyncio.to_thread(self._write, record)
            return record

    async def delete(self, cid: str) -> None:
        async with self._lock(cid):
            self.records.pop(cid, None)
            await asyncio.to_thread(shutil.rmtree, self.dir(cid), True)
        self._locks.pop(cid, None)

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    def _create(self, record: Record) -> None:
        self.dir(record["id"]).mkdir(mode=0o700, parents=True)
        self._write(record)

    def _write(self, record: Record) -> None:
        directory = self.dir(record["id"])
        fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another tool reading the record waits for us
            data = json.dumps(record, indent=1).encode() + b"\n"
            atomic_write(directory / "config.json", data, 0o600)
        finally:
            os.close(fd)
