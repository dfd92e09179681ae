"""Where the tier keeps what it builds, and the lock that serialises builders."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """`$VXN_E2E_CACHE`, else `.cache/e2e` in the checkout (gitignored)."""
    root = Path(os.environ.get("VXN_E2E_CACHE") or REPO / ".cache" / "e2e").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no ambiguity
    return h.hexdigest()


@contextlib.contextmanager
def locked(name: str, timeout: float) -> Iterator[None]:
    """Exclusive lock `<cache>/<name>.lock`, so two runs never build the same thing."""
    with open(cache_root() / f"{name}.lock", "w") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def publish(partial: Path, final: Path, prefix: str) -> None:
    """Move a finished build into place and drop older builds with the same prefix."""
    partial.rename(final)
    for old in final.parent.glob(prefix + "*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
