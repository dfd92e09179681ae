"""The event bus behind `GET /v1/events`: create, start, die (with the exit code), destroy.

Each subscriber has a bounded queue; one that falls behind by QUEUE events is cut
off (its stream ends) rather than making vxnd hold events for it forever. The last
HISTORY events are kept for `?since=`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

QUEUE = 1024
HISTORY = 1024

Event = dict[str, Any]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[Event | None]] = set()
        self._history: deque[Event] = deque(maxlen=HISTORY)

    def publish(self, action: str, record: dict[str, Any], **extra: Any) -> None:
        event = {
            "type": "container",
            "action": action,
            "id": record["id"],
            "name": record["name"],
            "image": record["ref"],
            "time": time.time(),
            **extra,
        }
        self._history.append(event)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                queue.get_nowait()  # room for the end marker
                queue.put_nowait(None)

    def close(self) -> None:
        """End every stream (vxnd is stopping)."""
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        self._subscribers.clear()

    async def stream(self, since: float | None = None) -> AsyncIterator[Event]:
        """Past events from `since` (unix seconds), then live ones until cut off."""
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE)
        self._subscribers.add(queue)
        past = [e for e in self._history if since is not None and e["time"] >= since]
        replayed = {id(e) for e in past}  # also queued if published while we replay
        try:
            for event in past:
                yield event
            while (live := await queue.get()) is not None:
                if id(live) not in replayed:
                    yield live
        finally:
            self._subscribers.discard(queue)
