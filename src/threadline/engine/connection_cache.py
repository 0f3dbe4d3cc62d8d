"""What one WebSocket connection remembers between its turns: its most recent response.

OpenAI's WebSocket mode keeps the most recent response of a connection in the connection's
memory, so that the next turn continues from it by `previous_response_id` without reading
the store, and whether it was stored or not (`store: false` too). Only that one is kept: an
older id is read from the store as over HTTP, and one that was never stored is then
`previous_response_not_found`. A turn that continues from the remembered response and fails
evicts it (OpenAI's rule), so that nobody continues from state the failure may have spoiled.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass

from threadline.errors import APIError
from threadline.store.responses import ResponseStore

Batches = AsyncGenerator[list[dict], int | None]


@dataclass(frozen=True)
class Remembered:
    id: str
    # What the response continued and added, oldest first: its ancestors' items back to
    # `stored_ancestor`, its input, its output.
    items: list[dict]
    # The stored response the history goes on from, when a turn continued from one.
    stored_ancestor: str | None


class ConnectionCache:
    def __init__(self, responses: ResponseStore, project: str) -> None:
        self.responses = responses
        self.project = project
        self.latest: Remembered | None = None

    def earlier_items(self, previous_response_id: str) -> Batches | None:
        """The history a response continuing `previous_response_id` sees, newest first and in
        batches, as ResponseStore.chain_items gives it; None unless that is the response
        remembered."""
        if self.latest is None or self.latest.id != previous_response_id:
            return None
        return _history(self.latest, self.responses, self.project)

    def remember(self, response: dict, input_items: list[dict]) -> None:
        """Remember a response that ended, with its input as stored (`input_items`), in place
        of the one before."""
        previous = response.get("previous_response_id")
        if self.latest is not None and previous == self.latest.id:
            earlier, stored_ancestor = self.latest.items, self.latest.stored_ancestor
        else:
            earlier, stored_ancestor = [], previous
        self.latest = Remembered(response["id"], earlier + input_items + response["output"], stored_ancestor)

    def evict(self, response_id: str) -> None:
        if self.latest is not None and self.latest.id == response_id:
            self.latest = None


async def _history(remembered: Remembered, responses: ResponseStore, project: str) -> Batches:
    """The remembered items in one batch, then the stored chain they continue, if any."""
    yield remembered.items[::-1]
    if remembered.stored_ancestor is None:
        return
    chain = responses.chain_items(project, remembered.stored_ancestor)
    try:
        batch = await anext(chain)
        while True:
            batch = await chain.asend((yield batch))  # how many items the reader wants next
    except StopAsyncIteration:
        return
    except APIError as error:
        # Deleted since: the history ends there, as a chain ends at a deleted ancestor.
        if error.code != "previous_response_not_found":
            raise
    finally:
        await chain.aclose()
