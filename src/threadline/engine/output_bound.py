"""The output bound: a model stops at max_output_tokens, whether or not it honours it.

The bound is the request's `max_output_tokens`, else the model's configured default (as
engine/prepare.py puts it in the ModelRequest); the backend is told it, and most keep to it.
For those that don't, output is counted as it streams, one token per delta (a piece of text,
refusal, reasoning, its summary or a function call; annotations, encrypted reasoning and whole
tool items are not counted): exact for an upstream that sends a token a chunk, as most do,
and never more than the real count, so an upstream that keeps to the bound is never
cut before it ends by itself. A model that goes on past the bound is stopped there, its
connection closed, and its turn ends as "length" would.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from threadline.backends.base import OUTPUT_DELTAS, Finish, ModelEvent, ModelRequest, Usage
from threadline.backends.estimate import estimate_request_tokens


async def bounded(events: AsyncIterator[ModelEvent], request: ModelRequest) -> AsyncIterator[ModelEvent]:
    """The model's events, ended with Finish("length") once it goes past `request.max_output_tokens`.

    The usage of a turn cut here is what is known of it: the output counted, and the input
    estimated (the model never sent its own count)."""
    produced = 0
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Finish):
                yield event
                return
            if isinstance(event, OUTPUT_DELTAS):
                if produced >= request.max_output_tokens:
                    yield Finish("length", Usage(input_tokens=estimate_request_tokens(request), output_tokens=produced))
                    return
                produced += 1
            yield event
