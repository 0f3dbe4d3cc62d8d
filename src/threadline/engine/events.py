"""The one place model output becomes OpenAI's streaming events.

`ResponseEvents` receives provider-neutral model events and returns the OpenAI events they
cause, with sequence numbers, while it builds the Response those events describe. A
streamed answer sends the events; a non-streamed one keeps only the final Response, so the
two cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson

from threadline.backends.base import Finish, ModelEvent, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta
from threadline.ids import new_id
from threadline.spec.errors import response_error
from threadline.spec.events import TERMINAL_EVENTS
from threadline.spec.items import new_item_id
from threadline.spec.response import usage_object


class ResponseEvents:
    def __init__(self, response: dict, item_ids: Iterator[str] | None = None, sequence_number: int = 0) -> None:
        self.response = response
        self._item_ids = item_ids  # ids to reuse, when replaying a stored response
        self.sequence_number = sequence_number
        self._item: dict | None = None  # the message or reasoning item being written
        self._part: dict | None = None  # its content part being written
        self._calls: dict[int, dict] = {}  # function calls by the model's call index, open until the end
        self._output_index: dict[str, int] = {}

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
        if isinstance(event, TextDelta):
            return self._text("output_text", event.text, event.logprobs)
        if isinstance(event, RefusalDelta):
            return self._text("refusal", event.text, None)
        if isinstance(event, ReasoningDelta):
            return self._reasoning(event.text)
        if isinstance(event, ToolCallDelta):
            return self._tool_call(event)
        if isinstance(event, Finish):
            return self.finish(event)
        raise TypeError(f"unknown model event {event!r}")

    def finish(self, finish: Finish) -> list[dict]:
        """Close what is open and end with response.completed or response.incomplete."""
        incomplete = finish.reason in ("length", "content_filter")
        events = self.close_all("incomplete" if incomplete else "completed")
        if finish.usage is not None:
            self.response["usage"] = usage_object(finish.usage)
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
        self.response["status"] = status
        if status == "completed":
            self.response["completed_at"] = int(time.time())
        return [self._lifecycle(TERMINAL_EVENTS[status])]

    # -- output items --------------------------------------------------------------

    def _text(self, part_type: str, delta: str, logprobs: list[dict] | None) -> list[dict]:
        events: list[dict] = []
        if self._item is None or self._item["type"] != "message":
            events += self._close_item("completed")
            events += self._open_item({"id": self._new_id("message"), "type": "message", "status": "in_progress", "content": [], "role": "assistant"})
        if self._part is None or self._part["type"] != part_type:
            events += self._close_part()
            if part_type == "output_text":
                events += self._open_part({"type": "output_text", "annotations": [], "logprobs": [], "text": ""})
            else:
                events += self._open_part({"type": "refusal", "refusal": ""})
        location = self._location(self._item, with_content=True)
        if part_type == "output_text":
            self._part["text"] += delta
            self._part["logprobs"].extend(logprobs or [])
            return events + [self._event("response.output_text.delta", **location, delta=delta, logprobs=logprobs or [])]
        self._part["refusal"] += delta
        return events + [self._event("response.refusal.delta", **location, delta=delta)]

    def _reasoning(self, delta: str) -> list[dict]:
        events: list[dict] = []
        if self._item is None or self._item["type"] != "reasoning":
            events += self._close_item("completed")
            events += self._open_item({"id": self._new_id("reasoning"), "type": "reasoning", "summary": [], "content": []})
            events += self._open_part({"type": "reasoning_text", "text": ""})
        self._part["text"] += delta
        location = self._location(self._item, with_content=True)
        return events + [self._event("response.reasoning_text.delta", **location, delta=delta)]

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
        if item["type"] != "function_call":
            self._item = item
        self._output_index[item["id"]] = len(self.response["output"])
        self.response["output"].append(item)
        return [self._event("response.output_item.added", output_index=self._output_index[item["id"]], item=snapshot(item))]

    def close_all(self, status: str) -> list[dict]:
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
        events = self._close_part()
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

    # -- helpers -------------------------------------------------------------------

    def _location(self, item: dict, with_content: bool = False) -> dict:
        location = {"item_id": item["id"], "output_index": self._output_index[item["id"]]}
        if with_content:
            location["content_index"] = len(item["content"]) - 1
        return location

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
