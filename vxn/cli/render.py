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


def container_status(summary: dict[str, Any], now: datetime) -> str:
    """docker ps's STATUS: `Up 3 minutes`, `Exited (42) 5 seconds ago`, `Created`."""
    state, code = summary.get("state"), summary.get("exit_code")
    started, finished = (
        parse_time(summary.get("started_at")),
        parse_time(summary.get("finished_at")),
    )
    if state in ("running", "paused"):
        up = f"Up {human_duration((now - started).total_seconds())}" if started else "Up"
        return f"{up} (Paused)" if state == "paused" else up
    if state == "restarting":
        return f"Restarting ({code}) {since(finished, now)}"
    if state == "removing":
        return "Removal In Progress"
    if state == "exited":
        return f"Exited ({code}) {since(finished, now)}" if finished else f"Exited ({code})"
    return str(state).capitalize()  # created, dead


def quote_command(command: str, trunc: bool) -> str:
    """docker ps's COMMAND: Go-quoted, cut to 20 characters with `…` unless --no-trunc."""
    if trunc and len(command) > 20:
        command = command[:19] + "…"
    return go_quote(command)


def go_quote(text: str) -> str:
    """Go's strconv.Quote: backslash escapes for quotes and control characters."""
    named = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n"}
    named |= {"\r": "\\r", "\t": "\\t", "\v": "\\v"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def nano_time(when: datetime) -> str:
    """Docker's fixed-width RFC 3339 with nanoseconds, in UTC: `2024-06-01T12:00:00.000000000Z`."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class LineStamper:
    """Docker's `logs --timestamps`: each line starts with the time of the chunk it starts in.

    Chunks need not end lines, so where each stream stands is kept between them.
    """

    def __init__(self) -> None:
        self._mid_line: set[str] = set()

    def stamp(self, stream: str, data: bytes, when: str | None) -> bytes:
        at = parse_time(when)
        prefix = f"{nano_time(at)} ".encode() if at is not None else b""
        out = bytearray()
        parts = data.split(b"\n")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last and not part:
                break
            if stream not in self._mid_line:
                out += prefix
            out += part
            if last:
                self._mid_line.add(stream)
            else:
                out += b"\n"
                self._mid_line.discard(stream)
        return bytes(out)


def event_line(event: dict[str, Any]) -> str:
    """`docker events`' text: `<time> container <action> <id> (exitCode=0, image=…, name=…)`."""
    attributes = {"image": event.get("image"), "name": event.get("name")}
    if event.get("exit_code") is not None:
        attributes["exitCode"] = event["exit_code"]
    shown = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()) if v is not None)
    when = nano_time(datetime.fromtimestamp(float(event["time"]), UTC))
    return (
        f"{when} {event.get('type', 'container')} {event.get('action')} {event.get('id')} ({shown})"
    )
