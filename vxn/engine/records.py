"""The container records: `<state dir>/containers/<id>/config.json`, one JSON file each.

vxnd is their only writer, so it keeps them in memory (ps reads no file) and writes
each change through: atomically (rename), 0600 (it holds the run's nonce), under the
container's own flock (`lock`), in a worker thread so the event loop never waits on
fsync. Writes to one container are serialised by its asyncio lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from vxn.adapters.statedir import atomic_write
from vxn.core import names
from vxn.errors import AlreadyExists

log = logging.getLogger("vxnd.containers")

Record = dict[str, Any]


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
