"""Docker's pull progress on a terminal: one line per layer, redrawn in place.

    v1: Pulling from vxn/test
    3f1a0c2d9b7e: Downloading [=============>          ]  12.3MB/45.6MB
    9c4e77a01b2f: Download complete

`line()` is pure; `Display` only moves the cursor (ANSI: up N, clear line).
"""

from __future__ import annotations

from typing import Any, TextIO

from vxn.cli.render import human_size

BAR = 50


def line(event: dict[str, Any]) -> str:
    """`<id>: <status>`, plus Docker's bar and sizes while downloading."""
    text = f"{event.get('id', '')}: {event.get('status', '')}"
    current, total = int(event.get("current") or 0), int(event.get("total") or 0)
    if event.get("status") != "Downloading" or total <= 0:
        return text
    done = min(BAR, BAR * current // total)
    bar = "=" * done + (">" if done < BAR else "") + " " * (BAR - done - 1)
    return f"{text} [{bar}] {human_size(current):>7}/{human_size(total)}"


class Display:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.ids: list[str] = []

    def update(self, event: dict[str, Any]) -> None:
        key = str(event.get("id", ""))
        if key not in self.ids:
            self.ids.append(key)
            self.out.write(line(event) + "\n")
        else:
            up = len(self.ids) - self.ids.index(key)
            self.out.write(f"\x1b[{up}A\x1b[2K\r{line(event)}\x1b[{up}B\r")
        self.out.flush()
