"""How the CLI shows things: Docker's tables, sizes and relative times.

Pure functions of their inputs (the clock is passed in), so tests need only literals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float, precision: int = 3) -> str:
    """Decimal units, Go's `%.*g`: docker's `5.2MB`, `142MB`, `1.05GB` (precision 3 in tables)."""
    i = 0
    while size >= 1000.0 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.{precision}g}{_UNITS[i]}"


def human_duration(seconds: float) -> str:
    """docker/go-units HumanDuration: `Less than a second`, `About an hour`, `2 weeks`."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time from an image config; None when absent or unreadable (Docker: N/A)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def since(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "N/A"
    return f"{human_duration((now - when).total_seconds())} ago"


def docker_time(when: datetime | None) -> str:
    """Go's default time format, as `docker images --format json` shows CreatedAt."""
    if when is None:
        return "N/A"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S +0000 UTC")


def short_id(image_id: str) -> str:
    """`sha256:3cc2...` -> the 12 hex digits Docker shows as IMAGE ID."""
    return image_id.partition(":")[2][:12] or image_id[:12]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to the widest cell plus 3 spaces (Docker's tabwriter); no trailing blanks."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    return [
        "".join(cell.ljust(w + 3) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]


def go_json(value: dict[str, Any]) -> str:
    """One compact line with sorted keys, as Go's encoding/json writes a struct."""
    return go_escape(json.dumps(value, sort_keys=True, separators=(",", ":")))


def go_escape(text: str) -> str:
    """Go's encoding/json escapes <, > and & (safe in HTML); docker's output has them so."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
