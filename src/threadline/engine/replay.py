"""A new stream of a finished response, rebuilt from what was stored.

An idempotent repeat of a streamed create is answered with one. It is a stream of its own,
numbered from 0, not the events the first request saw: deltas are not kept, so each content
part arrives as one delta. Nothing resumes it with `starting_after` (only background
responses keep their events, and only those can be streamed again by id).
"""

from __future__ import annotations

import copy

from threadline.backends.base import (
    ReasoningDelta,
    ReasoningEncrypted,
    ReasoningSummaryDelta,
    RefusalDelta,
    TextAnnotation,
    TextDelta,
    ToolCallDelta,
    ToolItem,
)
from threadline.spec.response import as_started
from threadline.spec.stream import ResponseEvents


def replay_events(stored: dict) -> list[dict]:
    builder = ResponseEvents(as_started(stored), item_ids=iter(item["id"] for item in stored["output"]))
    events = builder.start()
    for call_index, item in enumerate(stored["output"]):
        for model_event in model_events(item, call_index):
            events += builder.feed(model_event)
    item_status = "incomplete" if stored["status"] == "incomplete" else "completed"
    events += builder.close_all(item_status)
    builder.response = copy.deepcopy(stored)
    if stored["status"] in ("queued", "in_progress"):
        return events
    return events + builder.end(stored["status"])


def model_events(item: dict, call_index: int):
    """The model events that give `item` again."""
    if item["type"] == "message":
        for part in item.get("content", []):
            if part["type"] == "refusal":
                yield RefusalDelta(part["refusal"])
            else:
                yield TextDelta(part.get("text", ""), part.get("logprobs") or None)
                for annotation in part.get("annotations") or ():
                    yield TextAnnotation(annotation)
    elif item["type"] == "reasoning":
        for number, part in enumerate(item.get("summary") or ()):
            yield ReasoningSummaryDelta(part.get("text", ""), number)
        # Reasoning with neither summary nor encrypted content has a text, if only an empty one.
        for part in item.get("content") or ([] if item.get("summary") or item.get("encrypted_content") else [{"text": ""}]):
            yield ReasoningDelta(part.get("text", ""))
        if item.get("encrypted_content"):
            yield ReasoningEncrypted(item["encrypted_content"])
    elif item["type"] == "function_call" and "namespace" not in item:
        yield ToolCallDelta(call_index, call_id=item["call_id"], name=item["name"], arguments=item["arguments"])
    else:
        yield ToolItem(item)
