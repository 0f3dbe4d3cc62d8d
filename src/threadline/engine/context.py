"""What the model sees: the earlier items (a chain or a conversation), then the new input.

Also the window rule: with truncation "disabled" an input over the model's context window
is a 400; with "auto" the oldest earlier items are dropped until it fits. The earlier items
are read newest first and only as far as the rule needs, so a long chain or conversation
costs about what the window holds, not its length.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncGenerator, Callable

from threadline.backends.base import Backend, ModelRequest
from threadline.backends.estimate import estimate_item_tokens, estimate_request_tokens
from threadline.errors import APIError

# The fewest items a history asks for in a batch after the first.
MIN_BATCH = 32


class History:
    """The earlier items, read newest first a batch at a time from `batches`, a generator
    that takes, through `asend`, about how many items its next batch should hold."""

    def __init__(self, batches: AsyncGenerator[list[dict], int | None] | None = None) -> None:
        self._batches = batches
        self._newest_first: list[dict] = []
        self._estimates: list[int] = []  # of each item read, newest first
        self.estimate = 0  # of all items read
        self.complete = batches is None
        self._started = False

    async def read(self, items: int | None = None) -> None:
        """Read the next batch, of about `items` items if given (the first read also checks
        that the history exists)."""
        if self.complete:
            return
        try:
            # A generator takes no value before its first batch.
            batch = await self._batches.asend(items if self._started else None)
        except StopAsyncIteration:
            self.complete = True
            return
        self._started = True
        estimates = [estimate_item_tokens(item) for item in batch]
        self._newest_first += batch
        self._estimates += estimates
        self.estimate += sum(estimates)

    async def read_past(self, tokens: float) -> None:
        """Read until the items read are estimated at more than `tokens`, or all are read."""
        while not self.complete and self.estimate <= tokens:
            await self.read(self._items_for(tokens - self.estimate))

    def _items_for(self, tokens: float) -> int | None:
        """About how many more items hold `tokens`, going by those read so far, with some to
        spare: a query costs as much as decoding a few hundred items."""
        if not self._estimates or math.isinf(tokens):
            return None
        return max(MIN_BATCH, math.ceil(1.25 * tokens * len(self._estimates) / max(1, self.estimate)))

    def items(self) -> list[dict]:
        """The items read, oldest first."""
        return self._newest_first[::-1]

    def estimates(self) -> list[int]:
        return self._estimates[::-1]


async def fit_to_window(
    backend: Backend, request: ModelRequest, history: History, truncation: str, view: Callable[[list[dict]], list[dict]] = list
) -> ModelRequest:
    """The request with the earlier items before its input: all of them if they fit, else with
    the oldest dropped if truncation allows and needs it. The model counts the items as `view`
    shows them to it."""
    window = await backend.resolve_context_window()
    new_items = request.input
    if not window:
        await history.read_past(math.inf)
        request.input = history.items() + new_items
        return request
    fixed = estimate_request_tokens(request)  # all but the history, which the estimate of each item read adds to
    # Read until the whole history is in, or until what is in is counted over the window:
    # then the whole would not fit either. Estimates can run high, so the reading goes on,
    # as far again as the count says the window reaches, until the count agrees.
    reach = window
    while True:
        await history.read_past(reach - fixed)
        request.input = history.items() + new_items
        estimate = fixed + history.estimate
        if estimate * 2 < window:
            return request
        total = await count_tokens(backend, request, estimate, view)
        if total > window or history.complete:
            break
        reach = max(1.25 * reach, 1.1 * reach * window / max(1, total))
    if total <= window:
        return request
    if truncation != "auto":
        counted = f"{total} tokens" if history.complete else f"at least {total} tokens"
        raise APIError(
            400,
            f"Your input exceeds the context window of this model ({counted} for a window of {window}). "
            "Shorten the input, or set truncation to 'auto'.",
            param="input",
            code="context_length_exceeded",
        )
    # Scale the estimates to the tokenizer's count, then drop from the oldest until it fits.
    # (A history not read whole is scaled by its newest part, the part that can be kept.)
    earlier, estimates = history.items(), history.estimates()
    scale = total / max(1, estimate)
    budget = window - (request.max_output_tokens or 0) if (request.max_output_tokens or 0) < window // 2 else window
    # The scaled estimates are close, not exact: leave a margin so one cut is enough.
    budget -= max(16, window // 20)
    drop = 0
    while drop < len(earlier) and total > budget:
        total -= estimates[drop] * scale
        drop += 1
    # Never start the history with the answer half of a tool call.
    while drop < len(earlier) and earlier[drop].get("type") in ("function_call_output", "reasoning", "custom_tool_call_output"):
        drop += 1
    request.input = earlier[drop:] + new_items
    if await count_tokens(backend, request, fixed + sum(estimates[drop:]), view) > window:
        raise APIError(
            400,
            f"Your input exceeds the context window of this model ({window} tokens) even after truncation.",
            param="input",
            code="context_length_exceeded",
        )
    return request


async def count_tokens(backend: Backend, request: ModelRequest, estimate: int, view: Callable[[list[dict]], list[dict]] = list) -> int:
    """The model's count of the request as `view` shows it, or the estimate when it has no tokenizer to ask."""
    if not backend.counts_tokens:
        return estimate  # nor is the model's view worth building
    counted = await backend.count_tokens(dataclasses.replace(request, input=view(request.input)))
    return estimate if counted is None else counted
