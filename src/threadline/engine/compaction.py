"""Compaction: the oldest part of a long context summarised by the model into one item.

A `compaction` item's encrypted_content holds, sealed under the server's keys
(engine/sealed_items.py), a summary and the newest items of the context kept verbatim. It
stands for everything before it: the model sees the instructions, the summary (as a user
message), the kept items, then whatever follows the item. So a client may drop the items
before the newest compaction item, and a stored chain or conversation is read back only as
far as its newest one; the items themselves are never removed.

Compaction is decided while a response is prepared (over a `context_management` threshold,
or asked by a final `compaction_trigger` input item): a marker, a `compaction_trigger` item
holding the kept items as stored, goes into the model's input where the kept part begins.
The marker travels with a background response's stored job; the run (engine/turns.py) finds
it, asks the model for the summary and emits the compaction item.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from threadline.backends.base import Backend, ModelRequest, Usage
from threadline.backends.estimate import estimate_item_tokens, estimate_request_tokens
from threadline.engine.context import History, count_tokens
from threadline.engine.sealed_items import open_content, seal_content, sealed_by_threadline
from threadline.engine.summaries import MAX_SUMMARY_TOKENS, summarise, summary_message
from threadline.errors import APIError, invalid
from threadline.tools.secrets import SecretBox

log = logging.getLogger("threadline")

MARKER = "compaction_trigger"
COMPACTION_TYPES = ("compaction", MARKER)  # items the model never reads as they are
CALL_OUTPUTS = {"function_call": "function_call_output", "custom_tool_call": "custom_tool_call_output"}


@dataclass
class CompactionRequest:
    """What a request asks of compaction: a threshold in tokens, and/or compaction now."""

    threshold: int | None = None
    trigger: bool = False  # a final compaction_trigger input item: compact, and the model does not answer


def compaction_request(context_management: list[dict] | None, input_items: list[dict]) -> CompactionRequest | None:
    """The request's `context_management` and compaction_trigger, checked; None if it asks none."""
    wanted = None
    for index, entry in enumerate(context_management or []):
        param = f"context_management[{index}]"
        if not isinstance(entry, dict) or entry.get("type") != "compaction":
            raise invalid("Unsupported context management type: only 'compaction' is supported.", param=f"{param}.type")
        if wanted is not None:
            raise invalid("Only one 'compaction' entry may be given in 'context_management'.", param=param)
        threshold = entry.get("compact_threshold")
        if threshold is not None and (not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1000):
            raise invalid("'compact_threshold' must be an integer of at least 1000.", param=f"{param}.compact_threshold")
        wanted = CompactionRequest(threshold=threshold)
    for index, item in enumerate(input_items):
        if item.get("type") == MARKER and index != len(input_items) - 1:
            raise invalid("A 'compaction_trigger' item must be the final input item.", param=f"input[{index}]")
    if input_items and input_items[-1].get("type") == MARKER:
        wanted = dataclasses.replace(wanted or CompactionRequest(), trigger=True)
    return wanted


# -- compaction items read back ------------------------------------------------------------


def opened(box: SecretBox, item: dict, param: str) -> list[dict]:
    """What a compaction item stands for: its summary as a message, then its kept items
    (a 400 naming the item if its content does not open)."""
    if not sealed_by_threadline(item["encrypted_content"]):
        raise invalid(
            "This compaction item was not made by this server, which can read back only its own.",
            param=f"{param}.encrypted_content",
            code="invalid_encrypted_content",
        )
    payload = open_content(box, item, param)
    summary, kept = payload.get("summary") or "", payload.get("kept") or []
    return ([summary_message(summary)] if summary else []) + kept


def model_input(box: SecretBox, input_items: list[dict]) -> tuple[list[dict], bool]:
    """The new input as the model reads it: from its newest compaction item on (that item
    opened), without a compaction_trigger; and whether it had a compaction item, which then
    stands for all history before it too."""
    items = [item for item in input_items if item.get("type") != MARKER]
    newest = max((index for index, item in enumerate(items) if item.get("type") == "compaction"), default=None)
    if newest is None:
        return items, False
    # Named by its place: the id it has here is new, not the one the client sent.
    item = {key: value for key, value in items[newest].items() if key != "id"}
    return opened(box, item, f"input[{newest}]") + items[newest + 1 :], True


async def stop_at_compaction(batches: AsyncGenerator[list[dict], int | None] | None, box: SecretBox) -> AsyncGenerator[list[dict], int | None]:
    """`batches` of a history (newest first, see engine/context.py) read only as far as its
    newest compaction item, which is replaced by what it stands for. A stored compaction item
    that no longer opens (its key was dropped) is passed over, with a note in the log: the
    items it summarised are all still stored, so the history reads on."""
    if batches is None:
        return
    wanted = None
    try:
        while True:
            try:
                batch = await batches.asend(wanted)
            except StopAsyncIteration:
                return
            # Most batches hold neither kind: one look, and they go on as they are.
            if not any(item.get("type") in COMPACTION_TYPES for item in batch):
                wanted = yield batch
                continue
            for index, item in enumerate(batch):
                if item.get("type") != "compaction":
                    continue
                try:
                    stands_for = opened(box, item, "input")
                except APIError:
                    log.warning("compaction item %s cannot be opened with this server's keys; the history is read past it", item.get("id"))
                    continue
                yield [entry for entry in batch[:index] if entry.get("type") not in COMPACTION_TYPES] + stands_for[::-1]
                return
            wanted = yield [entry for entry in batch if entry.get("type") not in COMPACTION_TYPES]
    finally:
        await batches.aclose()


# -- deciding to compact (as the response is prepared) --------------------------------------


@dataclass
class CompactionPlan:
    split: int  # where the kept part of the model's input begins
    marker: dict  # what the run needs: the kept items as stored, the summary's budget, whether the model answers

    def marked(self, model_input: list[dict], lead: int = 0) -> list[dict]:
        """The model's input with the marker where its kept part begins; the input starts with
        `lead` items that are not part of the context (a prompt template's messages), which
        stay in front of it, never summarised."""
        split = lead + self.split
        return model_input[:split] + [{**self.marker, "lead": lead}] + model_input[split:]


async def plan_compaction(
    backend: Backend, request: ModelRequest, history: History, stored: list[dict], wanted: CompactionRequest, view: Callable[[list[dict]], list[dict]]
) -> CompactionPlan | None:
    """How the context (the history, then `request.input`) is to be compacted, if it is: asked
    by a trigger, or counted over the threshold; the request's input is then the whole
    context. None if not (the request is left as it is). `stored` is the new input as stored,
    beside the model's."""
    await history.read_past(math.inf)  # only as far as its newest compaction item
    context = history.items() + stored
    full = dataclasses.replace(request, input=history.items() + request.input)
    window = await backend.resolve_context_window()
    threshold = wanted.threshold or (int(window * 0.9) if window else None)
    if not wanted.trigger:
        if threshold is None:
            return None
        if await count_tokens(backend, full, estimate_request_tokens(full), view) <= threshold:
            return None
    threshold = threshold or 4096
    split = kept_from(context, threshold // 4)
    if not wanted.trigger and split in (0, len(context)):
        return None  # nothing older to compact, or no turn to keep
    request.input = full.input
    # The summary takes a fifth of the threshold at most: what follows it has room to grow.
    marker = {"type": MARKER, "kept": context[split:], "summary_tokens": max(128, min(MAX_SUMMARY_TOKENS, threshold // 5)), "answer": not wanted.trigger}
    return CompactionPlan(split, marker)


def kept_from(context: list[dict], budget: int) -> int:
    """Where the kept newest part of the context begins: at the start of a turn (see
    turn_starts), as early as `budget` tokens allow but no later than the last turn's start;
    past the context's end if it has none."""
    starts = turn_starts(context)
    if not starts:
        return len(context)
    estimates = [estimate_item_tokens(item) for item in context]
    split, tail, may_start = starts[-1], sum(estimates[starts[-1] :]), set(starts)
    for index in range(starts[-1] - 1, 0, -1):
        tail += estimates[index]
        if tail > budget:
            break
        if index in may_start:
            split = index
    return split


def turn_starts(context: list[dict]) -> list[int]:
    """Where the context may be parted (never at its first item): before a user message, or
    before the model's next turn after tool outputs, as an agent's long run of calls after
    one user message has no other place. Never between a call and its output, nor between a
    reasoning item and what follows it."""
    answered_at = {item.get("call_id"): index for index, item in enumerate(context) if item.get("type") in CALL_OUTPUTS.values()}
    starts, awaited = [], -1  # the latest place an output of an earlier call has
    for index, item in enumerate(context):
        before = context[index - 1].get("type") if index else None
        if index and awaited < index and before != "reasoning" and item.get("type") not in CALL_OUTPUTS.values():
            if is_user_message(item) or before in CALL_OUTPUTS.values():
                starts.append(index)
        if item.get("type") in CALL_OUTPUTS:
            awaited = max(awaited, answered_at.get(item.get("call_id"), -1))
    return starts


def is_user_message(item: dict) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"


def marker_at(items: list[dict]) -> int | None:
    return next((index for index, item in enumerate(items) if item.get("type") == MARKER), None)


# -- compacting (as the response runs) ------------------------------------------------------


@dataclass
class Compacted:
    item: dict  # the compaction item, id to be given
    input: list[dict]  # what the model reads from now on
    usage: Usage  # of the summary's call
    answer: bool  # whether the model answers afterwards
    kept: list[dict]  # the kept items, as stored


async def compact(backend: Backend, request: ModelRequest, box: SecretBox, view: Callable[[list[dict]], list[dict]] = list) -> Compacted:
    """Summarise the input before its marker with one call of the model; the compaction item
    and the input that replaces the compacted part. Raises BackendError if the model fails."""
    split = marker_at(request.input)
    marker = request.input[split]
    lead = marker.get("lead", 0)
    leading, older, kept = request.input[:lead], request.input[lead:split], request.input[split + 1 :]
    summary, usage = (await summarise(backend, request, view(older), marker["summary_tokens"])) if older else ("", Usage())
    item = {"type": "compaction", "encrypted_content": seal_content(box, "compaction", {"summary": summary, "kept": marker["kept"]})}
    model_input = leading + ([summary_message(summary)] if summary else []) + kept
    return Compacted(item, model_input, usage, marker.get("answer", True), marker["kept"])
