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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
from threadline.spec.items import new_item_id, unfinished_status
from threadline.spec.response import usage_object
from threadline.tools.plan import Target


@dataclass
class Call:
    """A tool call the model made in the turn being written: its output item, and what the
    model wrote (under the name it knows the tool by)."""

    item: dict | None  # None while a call whose item is made when it is whole is written
    call_id: str
    model_name: str
    arguments: str = ""  # raw input, for a custom tool
    target: Target | None = None  # None: a name the request's tools do not have

    @property
    def kind(self) -> str:
        if self.target is None:
            return "function"
        if self.target.kind == "mcp" and self.target.needs_approval:
            return "approval"
        return self.target.kind

    @property
    def server_side(self) -> bool:
        return self.kind in ("mcp", "web_search", "file_search")


# Each kind of call: its item type, and the event that streams its arguments (None: the item
# is made once the call is whole, as OpenAI shows approval requests and searches).
CALL_ITEMS = {
    "function": ("function_call", "response.function_call_arguments.delta"),
    "custom": ("custom_tool_call", "response.custom_tool_call_input.delta"),
    "mcp": ("mcp_call", "response.mcp_call_arguments.delta"),
    "approval": ("mcp_approval_request", None),
    "web_search": ("web_search_call", None),
    "file_search": ("file_search_call", None),
}


class ResponseEvents:
    def __init__(self, response: dict, item_ids: Iterator[str] | None = None, sequence_number: int = 0) -> None:
        self.response = response
        self._item_ids = item_ids  # ids to reuse, when replaying a stored response
        self.sequence_number = sequence_number
        self._item: dict | None = None  # the message or reasoning item being written
        self._part: dict | None = None  # its content part being written
        self._summary: dict | None = None  # the reasoning summary part being written
        self._summary_number = 0  # the model's number for it
        self._calls: dict[int, Call] = {}  # tool calls by the model's call index, open until the turn ends
        self.route: Callable[[str], Target | None] = lambda name: None  # what a called name stands for
        self.turn_calls: list[Call] = []  # the calls of the turns ended, for the turn loop to take
        self._running: dict[str, dict] = {}  # server-side calls being run, by item id
        self.cite: Callable[[str], list[dict]] | None = None  # the citations of an answer's text, once it is written
        self.seal_reasoning: Callable[[dict], str] | None = None  # a reasoning item's encrypted_content, once it is written
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
            call = Call(None, delta.call_id or new_id("call"), delta.name or "", target=self.route(delta.name or ""))
            self._calls[delta.index] = call
            if CALL_ITEMS[call.kind][1] is not None:
                events += self._close_item("completed")
                call.item = call_item(call, self._new_id(CALL_ITEMS[call.kind][0]))
                events += self._open_item(call.item)
                if call.kind == "mcp":
                    events.append(self._event("response.mcp_call.in_progress", **self._location(call.item)))
        if delta.arguments:
            call.arguments += delta.arguments
            if call.item is not None:
                call.item["input" if call.kind == "custom" else "arguments"] = call.arguments
                events.append(self._event(CALL_ITEMS[call.kind][1], **self._location(call.item), delta=delta.arguments))
        return events

    def _open_item(self, item: dict) -> list[dict]:
        self._output_index[item["id"]] = len(self.response["output"])
        self.response["output"].append(item)
        return [self._event("response.output_item.added", output_index=self._output_index[item["id"]], item=snapshot(item))]

    def close_all(self, status: str) -> list[dict]:
        """Close every item still being written, with `status`. A server-side call of a turn
        that ended well stays open for the turn loop, which runs it; one of a turn cut short
        is never run, and an approval request or a search not yet shown never shows."""
        events = self._close_item(status)
        for call in self._calls.values():
            events += self._close_call(call, status)
        self._calls.clear()
        for item in list(self._running.values()) if status != "completed" else ():
            if item["type"] == "mcp_list_tools":
                item["error"] = "Listing the server's tools was stopped."
            else:
                item["status"] = unfinished_status(item["type"])
            events += self.call_done(item)
        return events

    def call_running(self, item: dict) -> None:
        """A server-side call (or an MCP server's listing) added with `add_item` is being run."""
        self._running[item["id"]] = item

    def call_done(self, item: dict, type: str | None = None) -> list[dict]:
        """A server-side call ended, as it is now: its `type` event (response.mcp_call.completed,
        ...) and its item done."""
        self._running.pop(item["id"], None)
        events = [self.item_event(item, type)] if type else []
        return events + self.item_done(item)

    def _close_call(self, call: Call, status: str) -> list[dict]:
        whole = status == "completed"
        if call.item is None:
            if not whole:
                return []
            call.item = call_item(call, self._new_id(CALL_ITEMS[call.kind][0]))
            events = self._close_item("completed") + self._open_item(call.item)
            self.turn_calls.append(call)
            if call.kind in ("web_search", "file_search"):
                self._running[call.item["id"]] = call.item
                return events
            return events + self.item_done(call.item)
        location = self._location(call.item)
        events = []
        if call.kind == "custom":
            events.append(self._event("response.custom_tool_call_input.done", **location, input=call.arguments))
        elif call.kind == "mcp":
            events.append(self._event("response.mcp_call_arguments.done", **location, arguments=call.arguments))
            if whole:
                self.turn_calls.append(call)
                self._running[call.item["id"]] = call.item
                return events
        else:
            events.append(self._event("response.function_call_arguments.done", **location, name=call.item["name"], arguments=call.arguments))
        call.item["status"] = status
        self.turn_calls.append(call)
        return events + [self._event("response.output_item.done", output_index=location["output_index"], item=snapshot(call.item))]

    def item_event(self, item: dict, type: str, **fields) -> dict:
        """An event about an output item's progress (response.mcp_call.completed, ...)."""
        return self._event(type, **self._location(item), **fields)

    def _close_item(self, status: str) -> list[dict]:
        item = self._item
        if item is None:
            return []
        events = self._close_part() + self._close_summary()
        if item["type"] == "message":
            item["status"] = status
        if item["type"] == "reasoning" and self.seal_reasoning is not None and "encrypted_content" not in item:
            item["encrypted_content"] = self.seal_reasoning(item)  # unless the provider gave its own
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
        events = []
        if part["type"] == "output_text" and self.cite is not None:
            for annotation in self.cite(part["text"]):
                if annotation not in part["annotations"]:
                    part["annotations"].append(annotation)
                    index = len(part["annotations"]) - 1
                    events.append(self._event("response.output_text.annotation.added", **location, annotation_index=index, annotation=snapshot(annotation)))
        if part["type"] == "output_text":
            done = self._event("response.output_text.done", **location, text=part["text"], logprobs=part["logprobs"])
        elif part["type"] == "refusal":
            done = self._event("response.refusal.done", **location, refusal=part["refusal"])
        else:
            done = self._event("response.reasoning_text.done", **location, text=part["text"])
        self._part = None
        return events + [done, self._event("response.content_part.done", **location, part=snapshot(part))]

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


def call_item(call: Call, item_id: str) -> dict:
    """A call's output item as it begins, by its kind."""
    target = call.target
    item = {"id": item_id, "type": CALL_ITEMS[call.kind][0]}
    if call.kind in ("function", "custom"):
        item.update(status="in_progress", call_id=call.call_id, name=target.name if target else call.model_name)
        if target is not None and target.namespace is not None:
            item["namespace"] = target.namespace
        item["input" if call.kind == "custom" else "arguments"] = call.arguments
    elif call.kind == "web_search":
        item.update(status="in_progress", action={"type": "search", "query": search_query(call.arguments)})
    elif call.kind == "file_search":
        item.update(status="in_progress", queries=search_queries(call.arguments), results=None)
    else:
        item.update(server_label=target.server_label, name=target.name, arguments=call.arguments)
        if call.kind == "mcp":
            item.update(status="in_progress", output=None, error=None, approval_request_id=None)
    return item


def search_query(arguments: str) -> str:
    """The query of a web_search call, from the arguments the model wrote."""
    try:
        query = orjson.loads(arguments).get("query")
    except (orjson.JSONDecodeError, AttributeError):
        return arguments
    return query if isinstance(query, str) else arguments


def search_queries(arguments: str) -> list[str]:
    """The queries of a file_search call, from the arguments the model wrote: its `query`
    (or `queries`, which a model may write all the same), else the arguments as written."""
    try:
        written = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return [arguments]
    if isinstance(written, dict):
        queries = written.get("queries")
        if isinstance(queries, list) and queries and all(isinstance(query, str) for query in queries):
            return queries
        if isinstance(written.get("query"), str):
            return [written["query"]]
    return [arguments]


def snapshot(value: dict) -> dict:
    """A deep copy of JSON data, as the event carrying it must not change with what follows
    (several times faster than copy.deepcopy)."""
    return orjson.loads(orjson.dumps(value))
