"""What every run of a guest needs besides its supervisor: the ramdisk and the timeline.

The console loop itself is the supervisor's (vxn.engine.supervisor): each run, attached
or detached, is a container with one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vxn.core.guestboot import with_spec


@dataclass(slots=True)
class Timeline:
    """Monotonic marks of one run, for the record's timings and the benchmark."""

    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    def span(self, start: str, end: str) -> float:
        return self.marks[end] - self.marks[start]


def write_ramdisk(base: Path, ramdisk: Path, spec: bytes) -> None:
    """`ramdisk` = the cached base initramfs + this run's spec archive."""
    ramdisk.unlink(missing_ok=True)
    with ramdisk.open("xb") as f:  # 0600 under a 0700 dir: the spec is private
        ramdisk.chmod(0o600)
        f.write(with_spec(base.read_bytes(), spec))
