"""vxnd's logging: journald-friendly on stderr, or plain lines in a file when auto-started.

Under systemd (JOURNAL_STREAM names our stderr) every line carries a `<N>` syslog
priority prefix and no timestamp, since the journal adds its own. Elsewhere a line is
`time level logger: message`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

# logging level -> syslog priority (sd-daemon.h)
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """Prefixes every line (tracebacks too: journald splits on newlines) with `<N>`."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def priority(level: int) -> int:
    for threshold, prio in _PRIORITIES:
        if level >= threshold:
            return prio
    return 7


def stderr_is_journal(env: Mapping[str, str], fd: int = 2) -> bool:
    """Whether `fd` is the stream systemd named in JOURNAL_STREAM (`<dev>:<inode>`)."""
    device, _, inode = env.get("JOURNAL_STREAM", "").partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def setup(
    *, debug: bool = False, log_file: Path | None = None, env: Mapping[str, str] | None = None
) -> logging.Handler:
    """Route the root logger to the log file, the journal or stderr; returns the handler."""
    env = os.environ if env is None else env
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    else:
        handler = logging.StreamHandler(sys.stderr)
        journal = stderr_is_journal(env, sys.stderr.fileno())
        handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # aiohttp's access log says nothing useful at INFO on a unix socket.
    logging.getLogger("aiohttp.access").setLevel(logging.DEBUG if debug else logging.WARNING)
    return handler
