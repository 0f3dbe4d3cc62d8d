"""The events of a streamed foreground response on their way to the client reading them.

Events wait in a queue until the client takes them. A client that goes away leaves the
stream: from then on nothing is kept for it, however long the response goes on, and the run
is told (its model may stop: `on_disconnect`). So does a client that stays connected but
stops reading, once `MAX_UNREAD` events wait for it: the stream keeps no more than that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from threadline.errors import APIError

# Events waiting for a client before it counts as gone: a few MiB of the smallest events.
# A client that reads takes every waiting event with each write, so only one that stopped
# reading (its connection's buffers full) lets them pile up.
MAX_UNREAD = 10_000


class ClientStream:
    def __init__(self, on_leave: Callable[[], None]) -> None:
        self._queue: asyncio.Queue[dict | APIError | None] | None = asyncio.Queue()
        self._on_leave = on_leave

    def put(self, item: dict | APIError | None) -> None:
        """Hand on an event, the APIError the request is refused with, or None: the end."""
        if self._queue is None:
            return
        if self._queue.qsize() >= MAX_UNREAD:
            self._leave()
        else:
            self._queue.put_nowait(item)

    async def batches(self) -> AsyncIterator[list[dict]]:
        """The events as they come, in lists of those ready together (one write can carry
        them); raises the APIError if the request is refused before any. Ends early if the
        client stopped reading."""
        try:
            while self._queue is not None:
                ready = [await self._queue.get()]
                while not self._queue.empty():
                    ready.append(self._queue.get_nowait())
                events = []
                for item in ready:
                    if item is None or isinstance(item, APIError):
                        self._queue = None  # ended: nobody left
                        if events:
                            yield events
                        if item is None:
                            return
                        raise item
                    events.append(item)
                yield events
        finally:
            if self._queue is not None:
                self._leave()

    def _leave(self) -> None:
        self._queue = None  # what was still waiting goes with it
        self._on_leave()
