"""The events of a streamed foreground response on their way to the client reading them.

Events wait in a queue until the client takes them. A client that goes away leaves the
stream: from then on nothing is kept for it, however long the response goes on, and the run
is told (its model may stop: `on_disconnect`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from threadline.errors import APIError


class ClientStream:
    def __init__(self, on_leave: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[dict | APIError | None] | None = asyncio.Queue()
        self._on_leave = on_leave

    def put(self, item: dict | APIError | None) -> None:
        """Hand on an event, the APIError the request is refused with, or None: the end."""
        if self._queue is not None:
            self._queue.put_nowait(item)

    async def batches(self) -> AsyncIterator[list[dict]]:
        """The events as they come, in lists of those ready together (one write can carry
        them); raises the APIError if the request is refused before any."""
        ended = False
        try:
            while True:
                ready = [await self._queue.get()]
                while not self._queue.empty():
                    ready.append(self._queue.get_nowait())
                events = []
                for item in ready:
                    if item is None or isinstance(item, APIError):
                        ended = True
                        if events:
                            yield events
                        if item is None:
                            return
                        raise item
                    events.append(item)
                yield events
        finally:
            self._queue = None  # what was still waiting goes with it
            if not ended:
                self._on_leave()
