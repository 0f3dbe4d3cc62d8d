"""The one place model output becomes OpenAI's streaming events.

`ResponseEvents` receives provider-neutral model events and returns the OpenAI events they
cause, numbered, while it builds the Response those events describe. A streamed answer sends
the events; a non-streamed one keeps only the final Response, so the two cannot disagree.

A response may take several turns of the model, with server-side tools run between them:
`end_turn` closes what a turn left open without ending the response, and `finish` ends it.
Sequence numbers and output indexes run on across turns, and usage adds up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

from threadline.backends.base import (
    Finish,
    ModelEvent,
    ReasoningDelta,
    ReasoningEncrypted,
    ReasoningSummaryDelta,
    RefusalDelta,
    TextAnnotation,
    TextDelta,
    ToolCallDelta,
    ToolItem,
    Usage,
)
from threadline.ids import new_id
from threadline.spec.errors import response_error
from threadline.spec.events import TERMINAL_EVENTS, terminal_event
from threadline.spec.items import new_item_id
from threadline.spec.response import usage_object


class ResponseEvents:
    def __init__(self, response: dict, item_ids: Iterator[str] | None = None, sequence_number: int = 0) -> None:
        self.response = response
        self._item_ids = item_ids  # ids to reuse, when replaying a stored response
        self.sequence_number = sequence_number
        self._item: dict | None = None  # the message or reasoning item being written
        self._part: dict | None = None  # its content part being written
        self._summary: dict | None = None  # the reasoning summary part being written
        self._summary_number = 0  # the model's number for it
        self._calls: dict[int, dict] = {}  # function calls by the model's call index, open until the turn ends
        self._output_index: dict[str, int] = {}
        self._usage: Usage | None = None  # of the turns ended so far

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> list[dict]:
        return [self._lifecycle("response.created"), self._lifecycle("response.in_progress")]

    def queued(self) -> list[dict]:
        """The events of a background response waiting for a worker."""
        return [self._lifecycle("response.created"), self._lifecycle("response.queued")]

    def resume(self) -> list[dict]:
        """The first event of a background response a worker has started."""
        return [self._lifecycle("response.in_progress")]

    def feed(self, event: ModelEvent) -> list[dict]:
        """The events a piece of the model's output makes (a turn's Finish goes to `end_turn`
        or `finish`)."""
        if isinstance(event, TextDelta):
            return self._text("output_text", event.text, event.logprobs)
        if isinstance(event, RefusalDelta):
            return self._text("refusal", event.text, None)
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event.text)
        if isinstance(event, ReasoningSummaryDelta):
            return self._reasoning_summary(event)
        if isinstance(event, ReasoningEncrypted):
            events = self._reasoning_item()
            self._item["encrypted_content"] = event.encrypted_content
            return events
        if isinstance(event, TextAnnotation):
            return self._annotation(event.annotation)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        if isinstance(event, ToolItem):
            # Added as it began, done as it ended: what OpenAI streams of a hosted tool's item.
            item = {**event.item, "status": "in_progress"} if "status" in event.item else {**event.item}
            events = self.add_item(item)
            item.update({**event.item, "id": item["id"]})
            return events + self.item_done(item)
        raise TypeError(f"unknown model event {event!r}")

    def end_turn(self, finish: Finish, status: str = "completed") -> list[dict]:
        """Close what the model's turn left open (`status` for its items) and count its usage;
        the response goes on."""
        if finish.usage is not None:
            self._usage = finish.usage if self._usage is None else self._usage + finish.usage
        return self.close_all(status)

    def finish(self, finish: Finish) -> list[dict]:
        """End the last turn and the response: response.completed or response.incomplete."""
        incomplete = finish.reason in ("length", "content_filter")
        events = self.end_turn(finish, "incomplete" if incomplete else "completed")
        if incomplete:
            reason = "max_output_tokens" if finish.reason == "length" else "content_filter"
            self.response["incomplete_details"] = {"reason": reason}
            return events + self.end("incomplete")
        return events + self.end("completed")

    def fail(self, code: str, message: str) -> list[dict]:
        events = self.close_all("incomplete")
        self.response["error"] = response_error(code, message)
        return events + self.end("failed")

    def end(self, status: str) -> list[dict]:
        """The terminal event; the usage of the turns that ended is the response's."""
        self.response["status"] = status
        if status == "completed":
            self.response["completed_at"] = int(time.time())
        if self._usage is not None:
            self.response["usage"] = usage_object(self._usage)
        return [self._lifecycle(TERMINAL_EVENTS[status])]

    # -- an ending decided after the terminal event was made, before it went out ----

    def fail_instead(self, code: str, message: str) -> dict:
        """The response fails after all (its conversation was deleted as it ended): the
        terminal event that replaces the one just made, under its number. Its output stays."""
        error = response_error(code, message)
        self.response.update(status="failed", completed_at=None, incomplete_details=None, error=error)
        return terminal_event(snapshot(self.response), self.sequence_number - 1)

    def ended_as(self, stored: dict) -> dict:
        """The response was ended elsewhere as it ended here (cancelled, or recovered as
        failed): it is `stored`, and this terminal event replaces the one just made. A
        cancelled response keeps the output it had."""
        if stored["status"] == "cancelled":
            stored = {**self.response, "status": "cancelled", "completed_at": None}
        self.response = stored
        return terminal_event(stored, self.sequence_number - 1)

    # -- output items --------------------------------------------------------------

    def add_item(self, item: dict) -> list[dict]:
        """Add an output item as it begins; it gets its id here. The text or reasoning being
        written ends first."""
        item["id"] = self._new_id(item["type"])
        return self._close_item("completed") + self._open_item(item)

    def item_done(self, item: dict) -> list[dict]:
        """An item added with `add_item` has ended, as it is now."""
        output_index = self._output_index[item["id"]]
        return [self._event("response.output_item.done", output_index=output_index, item=snapshot(item))]

    def _text(self, part_type: str, delta: str, logprobs: list[dict] | None) -> list[dict]:
        events = self._text_part(part_type)
        location = self._location(self._item, with_content=True)
        if part_type == "output_text":
            self._part["text"] += delta
            self._part["logprobs"].extend(logprobs or [])
            return events + [self._event("response.output_text.delta", **location, delta=delta, logprobs=logprobs or [])]
        self._part["refusal"] += delta
        return events + [self._event("response.refusal.delta", **location, delta=delta)]

    def _text_part(self, part_type: str) -> list[dict]:
        """Open the message and its part of this type, unless they are the ones being written."""
        events: list[dict] = []
        if self._item is None or self._item["type"] != "message":
            events += self._close_item("completed")
            self._item = {"id": self._new_id("message"), "type": "message", "status": "in_progress", "content": [], "role": "assistant"}
            events += self._open_item(self._item)
        if self._part is None or self._part["type"] != part_type:
            events += self._close_part()
            if part_type == "output_text":
                events += self._open_part({"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            else:
                events += self._open_part({"type": "refusal", "refusal": ""})
        return events

    def _annotation(self, annotation: dict) -> list[dict]:
        events = self._text_part("output_text")
        annotations = self._part["annotations"]
        annotations.append(annotation)
        location = self._location(self._item, with_content=True)
        added = self._event("response.output_text.annotation.added", **location, annotation_index=len(annotations) - 1, annotation=snapshot(annotation))
        return events + [added]

    def _reasoning_item(self) -> list[dict]:
        """Open a reasoning item, unless one is being written."""
        if self._item is not None and self._item["type"] == "reasoning":
            return []
        events = self._close_item("completed")
        self._item = {"id": self._new_id("reasoning"), "type": "reasoning", "summary": [], "content": []}
        return events + self._open_item(self._item)

    def _reasoning(self, delta: str) -> list[dict]:
        events = self._reasoning_item() + self._close_summary()
        if self._part is None:
            events += self._open_part({"type": "reasoning_text", "text": ""})
        self._part["text"] += delta
        location = self._location(self._item, with_content=True)
        return events + [self._event("response.reasoning_text.delta", **location, delta=delta)]

    def _reasoning_summary(self, delta: ReasoningSummaryDelta) -> list[dict]:
        events = self._reasoning_item() + self._close_part()
        if self._summary is None or delta.part != self._summary_number:
            events += self._close_summary()
            self._summary, self._summary_number = {"type": "summary_text", "text": ""}, delta.part
            self._item["summary"].append(self._summary)
            events.append(self._event("response.reasoning_summary_part.added", **self._summary_location(), part=snapshot(self._summary)))
        self._summary["text"] += delta.text
        return events + [self._event("response.reasoning_summary_text.delta", **self._summary_location(), delta=delta.text)]

    def _tool_call(self, delta: ToolCallDelta) -> list[dict]:
        events: list[dict] = []
        call = self._calls.get(delta.index)
        if call is None:
            events += self._close_item("completed")
            call = {
                "id": self._new_id("function_call"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": delta.call_id or new_id("call"),
                "name": delta.name or "",
            }
            self._calls[delta.index] = call
            events += self._open_item(call)
        if delta.name and not call["name"]:
            call["name"] = delta.name
        if delta.arguments:
            call["arguments"] += delta.arguments
            events.append(self._event("response.function_call_arguments.delta", **self._location(call), delta=delta.arguments))
        return events

    def _open_item(self, item: dict) -> list[dict]:
        self._output_index[item["id"]] = len(self.response["output"])
        self.response["output"].append(item)
        return [self._event("response.output_item.added", output_index=self._output_index[item["id"]], item=snapshot(item))]

    def close_all(self, status: str) -> list[dict]:
        """Close every item still being written, with `status`."""
        events = self._close_item(status)
        for call in self._calls.values():
            location = self._location(call)
            call["status"] = status
            events.append(self._event("response.function_call_arguments.done", **location, name=call["name"], arguments=call["arguments"]))
            events.append(self._event("response.output_item.done", output_index=location["output_index"], item=snapshot(call)))
        self._calls.clear()
        return events

    def _close_item(self, status: str) -> list[dict]:
        item = self._item
        if item is None:
            return []
        events = self._close_part() + self._close_summary()
        if item["type"] == "message":
            item["status"] = status
        self._item = None
        output_index = self._output_index[item["id"]]
        return events + [self._event("response.output_item.done", output_index=output_index, item=snapshot(item))]

    def _open_part(self, part: dict) -> list[dict]:
        self._part = part
        self._item["content"].append(part)
        location = self._location(self._item, with_content=True)
        return [self._event("response.content_part.added", **location, part=snapshot(part))]

    def _close_part(self) -> list[dict]:
        part = self._part
        if part is None:
            return []
        location = self._location(self._item, with_content=True)
        if part["type"] == "output_text":
            done = self._event("response.output_text.done", **location, text=part["text"], logprobs=part["logprobs"])
        elif part["type"] == "refusal":
            done = self._event("response.refusal.done", **location, refusal=part["refusal"])
        else:
            done = self._event("response.reasoning_text.done", **location, text=part["text"])
        self._part = None
        return [done, self._event("response.content_part.done", **location, part=snapshot(part))]

    def _close_summary(self) -> list[dict]:
        summary = self._summary
        if summary is None:
            return []
        location = self._summary_location()
        self._summary = None
        return [
            self._event("response.reasoning_summary_text.done", **location, text=summary["text"]),
            self._event("response.reasoning_summary_part.done", **location, part=snapshot(summary)),
        ]

    # -- helpers -------------------------------------------------------------------

    def _location(self, item: dict, with_content: bool = False) -> dict:
        location = {"item_id": item["id"], "output_index": self._output_index[item["id"]]}
        if with_content:
            location["content_index"] = len(item["content"]) - 1
        return location

    def _summary_location(self) -> dict:
        return {**self._location(self._item), "summary_index": len(self._item["summary"]) - 1}

    def _new_id(self, item_type: str) -> str:
        return next(self._item_ids) if self._item_ids is not None else new_item_id(item_type)

    def _event(self, type: str, **fields) -> dict:
        event = {"type": type, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        return event

    def _lifecycle(self, type: str) -> dict:
        return self._event(type, response=snapshot(self.response))


def snapshot(value: dict) -> dict:
    """A deep copy of JSON data, as the event carrying it must not change with what follows
    (several times faster than copy.deepcopy)."""
    return orjson.loads(orjson.dumps(value))
