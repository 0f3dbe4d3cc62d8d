"""Chains of stored responses kept in this process's memory, so that a turn deep in a
`previous_response_id` chain does not read and decode its window's history again.

What is kept, by response id: the response's items as `ResponseStore.chain_items` reads them
(newest first) and the id of the response it continues. Only responses that have ended are
kept: a response's items are written as it starts and as it ends (in the transaction that
ends it), never after, so an ended response's items never change. Only responses of chains
are kept: those read as part of one, and those stored here continuing one; a response nobody
continued costs no memory. At most MAX_BYTES of the items' stored JSON is kept, the least
recently used response dropped first.

Deletion, by any process: a response's items go with its row, and any deletion of either moves
the chain version on (one row, kept by triggers: migration 0009). Each kept response remembers
the version at which it was last known to exist. Before kept items are used, one query reads
the version: if it is still the one all of the chain's kept responses were checked at, nothing
was deleted since and they are used as they are. Otherwise the same query asks, on the primary
key, which of them still exist; those that do are checked at the new version, and the chain
ends at the first one gone, where reading the chain from the database would end it too (or, if
that is the response continued, it is not found). So a process never uses the items of a
response another process deleted, for the price of one row read per turn, and after a deletion
anywhere one indexed lookup per kept response, instead of reading and decoding their items.
A response this process stores continuing a kept one takes its version: it was stored after
that version was read, so it exists while the version stays.

Kept items are shared with every turn that reads them, never copied: the engine builds new
items and does not change those it is given (WebSocket mode's connection cache relies on it too).
They are EndedItems (items/ended.py), which keep what each turn works out from them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# The items' stored JSON one process keeps at most (decoded, they take several times that).
MAX_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class KeptResponse:
    project: str
    previous_response_id: str | None
    items: list[dict]  # newest first, as stored (EndedItems)
    size: int  # of the items' stored JSON, in bytes
    # How many responses of its chain (itself first) the last turn continuing it read: about
    # how far the next one will read, which its first check then covers.
    reach: int = 0
    # The chain version (migration 0009) at which it was last known to exist; None: never checked.
    checked: int | None = None


class ChainCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._kept: OrderedDict[str, KeptResponse] = OrderedDict()

    def keep(self, response_id: str, kept: KeptResponse) -> None:
        self.forget(response_id)
        if kept.size > self.max_bytes:
            return
        self._kept[response_id] = kept
        self.size += kept.size
        while self.size > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self.size -= dropped.size

    def forget(self, response_id: str) -> None:
        dropped = self._kept.pop(response_id, None)
        if dropped is not None:
            self.size -= dropped.size

    def get(self, response_id: str) -> KeptResponse | None:
        return self._kept.get(response_id)

    def chain(self, project: str, response_id: str, at_least: int, at_most: int) -> list[tuple[str, KeptResponse]] | None:
        """The kept responses of the chain from `response_id` back, newest first, as many as
        are kept up to `at_most`; None if fewer than `at_least` are and the chain goes on."""
        found: list[tuple[str, KeptResponse]] = []
        next_id: str | None = response_id
        while next_id is not None and len(found) < at_most:
            kept = self._kept.get(next_id)
            if kept is None or kept.project != project:
                break
            self._kept.move_to_end(next_id)
            found.append((next_id, kept))
            next_id = kept.previous_response_id
        return found if len(found) >= at_least or (found and next_id is None) else None
