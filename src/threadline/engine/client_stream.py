"""The events of a streamed foreground response on their way to the client reading them.

Events wait in a list until the client takes them; the reader, when it has taken them all,
waits on one future for the next. A client that goes away leaves the stream: from then on
nothing is kept for it, however long the response goes on, and the run is told (its model
may stop: `on_disconnect`). So does a client that stays connected but stops reading, once
`MAX_UNREAD` events wait for it: the stream keeps no more than that. A stream is held open
for as long as its model takes, so it keeps nothing it has passed on.
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
        self._waiting: list[dict | APIError | None] | None = []  # None once nobody is left
        self._wakeup: asyncio.Future[None] | None = None  # while the reader waits for an event
        self._on_leave = on_leave

    def put(self, item: dict | APIError | None) -> None:
        """Hand on an event, the APIError the request is refused with, or None: the end."""
        if self._waiting is None:
            return
        if len(self._waiting) >= MAX_UNREAD:
            self._leave()
            return
        self._waiting.append(item)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def batches(self) -> AsyncIterator[list[dict]]:
        """The events as they come, in lists of those ready together (one write can carry
        them); raises the APIError if the request is refused before any. Ends early if the
        client stopped reading."""
        try:
            while self._waiting is not None:
                if not self._waiting:
                    self._wakeup = asyncio.get_running_loop().create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                ready, self._waiting = self._waiting, []
                end = next((index for index, item in enumerate(ready) if item is None or isinstance(item, APIError)), None)
                if end is None:
                    yield ready
                    del ready  # passed on: not kept while the next events are awaited
                    continue
                self._waiting = None  # ended: nobody left
                item = ready[end]
                if end:
                    yield ready[:end]
                if item is not None:
                    raise item
                return
        finally:
            if self._waiting is not None:
                self._leave()

    def _leave(self) -> None:
        self._waiting = None  # what was still waiting goes with it
        self._on_leave()
