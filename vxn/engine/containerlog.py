"""A container's output log: `log.jsonl`, bounded, readable after exit, followable live.

One line per output chunk: `{"t": iso, "s": 1|2, "b": b64, "c": n}`, where `c` is how
many console bytes vxnd had consumed once the chunk was out: an adopting vxnd skips
that much of QEMU's console.log, so nothing is logged twice or lost. At `limit`
bytes the file is rotated to log.1.jsonl (one old file kept).

Writes are plain appends on the event loop (no fsync): the supervisor must never stop
reading the console, since QEMU drops what a virtconsole cannot deliver.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

LIMIT = 8 << 20
NAME, OLD = "log.jsonl", "log.1.jsonl"

log = logging.getLogger("vxnd.containers")


class ContainerLog:
    def __init__(self, directory: Path, limit: int = LIMIT) -> None:
        self.path = directory / NAME
        self.old = directory / OLD
        self.limit = limit
        self._file: IO[bytes] | None = None
        self._size = 0

    def append(self, stream: int, data: bytes, consumed: int) -> dict[str, Any]:
        """Log one chunk; the entry (as `lines` yields it) for live listeners."""
        entry = {"t": _now(), "s": stream, "b": base64.b64encode(data).decode(), "c": consumed}
        line = json.dumps(entry, separators=(",", ":")).encode() + b"\n"
        if self._file is None:
            self._file = self.path.open("ab")
            self._size = self._file.tell()
        if self._size and self._size + len(line) > self.limit:
            self._file.close()
            self.path.replace(self.old)
            self._file = self.path.open("ab")
            self._size = 0
        self._file.write(line)
        self._file.flush()
        self._size += len(line)
        return entry

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every kept entry, oldest first (a torn last line is skipped)."""
        for path in (self.old, self.path):
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            for line in raw.splitlines():
                try:
                    yield json.loads(line)
                except ValueError:
                    log.warning("%s: skipped a torn line", path)

    def consumed(self) -> int:
        """Console bytes consumed when the last chunk was logged (0 for none)."""
        last = 0
        for entry in self.entries():
            last = int(entry.get("c", last))
        return last


def reply(entry: dict[str, Any], timestamps: bool = False) -> dict[str, Any]:
    """A log entry as the API sends it: `{"out"|"err": b64}` (+ `"t"`)."""
    line = {"out" if entry["s"] == 1 else "err": entry["b"]}
    return line | {"t": entry["t"]} if timestamps else line


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
