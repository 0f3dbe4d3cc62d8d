"""The model's generated text as model events: text deltas, tool calls and the finish."""

from __future__ import annotations

import json
import secrets

from threadline.backends.base import BackendError, Finish, ModelEvent, TextDelta, ToolCallDelta
from threadline.backends.llama_cpp.output_plan import OutputPlan
from threadline.backends.llama_cpp.prompt import TOOL_CALL_CLOSE, TOOL_CALL_OPEN


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


class PlainText:
    """Free text or constrained JSON: the model's text is the message."""

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        return [delta]

    def finish(self, finish: Finish) -> list[ModelEvent]:
        return [finish]


def call_arguments(name: str, arguments: object, custom_names: set[str]) -> str:
    """What a ToolCallDelta carries for a call the model wrote as JSON: a function's arguments
    as JSON text, a custom tool's raw input."""
    if name in custom_names:
        if isinstance(arguments, dict) and isinstance(arguments.get("input"), str):
            return arguments["input"]
        if isinstance(arguments, str):
            return arguments
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


class ForcedToolCall:
    """The whole output is grammar-constrained JSON {"name", "arguments"}: one function call."""

    def __init__(self, custom_names: set[str] = frozenset()) -> None:
        self.text: list[str] = []
        self.custom_names = custom_names

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        self.text.append(delta.text)
        return []

    def finish(self, finish: Finish) -> list[ModelEvent]:
        if finish.reason != "stop":  # cut off by max_output_tokens: there is no whole call to give
            return [finish]
        try:
            call = json.loads("".join(self.text))
            name, arguments = call["name"], call_arguments(call["name"], call["arguments"], self.custom_names)
        except (ValueError, TypeError, KeyError) as exc:  # the grammar should make this impossible
            raise BackendError(f"The model's constrained tool call did not parse: {exc}") from exc
        return [ToolCallDelta(index=0, call_id=new_call_id(), name=name, arguments=arguments), Finish("tool_calls", finish.usage)]


class ForcedCustomInput:
    """The whole output is the raw input of one custom tool: one call to it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.text: list[str] = []

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        self.text.append(delta.text)
        return []

    def finish(self, finish: Finish) -> list[ModelEvent]:
        if finish.reason != "stop":  # cut off: the input is not whole, as a forced function call's would not be
            return [finish]
        return [ToolCallDelta(index=0, call_id=new_call_id(), name=self.name, arguments="".join(self.text)), Finish("tool_calls", finish.usage)]


class ToolCallScanner:
    """Free text in which `<tool_call>{"name": .., "arguments": ..}</tool_call>` becomes a call.

    Text that might be the start of the opening tag is held back until it is clear; a block
    that is not a call to an offered tool stays text.
    """

    def __init__(self, tool_names: set[str], custom_names: set[str] = frozenset()) -> None:
        self.tool_names = tool_names
        self.custom_names = custom_names
        self.buffer = ""
        self.inside = False
        self.calls = 0
        self.logprobs: list[dict] = []

    def feed(self, delta: TextDelta) -> list[ModelEvent]:
        self.logprobs += delta.logprobs or []
        self.buffer += delta.text
        events: list[ModelEvent] = []
        while True:
            if self.inside:
                end = self.buffer.find(TOOL_CALL_CLOSE)
                if end < 0:
                    return events
                events += self._block(self.buffer[:end])
                self.buffer, self.inside = self.buffer[end + len(TOOL_CALL_CLOSE) :], False
                continue
            start = self.buffer.find(TOOL_CALL_OPEN)
            if start >= 0:
                events += self._text(self.buffer[:start])
                self.buffer, self.inside = self.buffer[start + len(TOOL_CALL_OPEN) :], True
                continue
            held = partial_tag_length(self.buffer, TOOL_CALL_OPEN)
            events += self._text(self.buffer[: len(self.buffer) - held])
            self.buffer = self.buffer[len(self.buffer) - held :]
            return events

    def finish(self, finish: Finish) -> list[ModelEvent]:
        # A block the model ended without its closing tag is still a call if it parses.
        events = self._block(self.buffer) if self.inside else self._text(self.buffer)
        self.buffer, self.inside = "", False
        if self.calls and finish.reason == "stop":
            finish = Finish("tool_calls", finish.usage)
        return events + [finish]

    def _text(self, text: str) -> list[ModelEvent]:
        if not text:
            return []
        delta = TextDelta(text, self.logprobs or None)
        self.logprobs = []
        return [delta]

    def _block(self, body: str) -> list[ModelEvent]:
        try:
            call = json.loads(body)
            name, arguments = call["name"], call.get("arguments", {})
        except (ValueError, TypeError, KeyError):
            return self._text(f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}")
        if name not in self.tool_names:
            return self._text(f"{TOOL_CALL_OPEN}{body}{TOOL_CALL_CLOSE}")
        self.calls += 1
        return [ToolCallDelta(index=self.calls - 1, call_id=new_call_id(), name=name, arguments=call_arguments(name, arguments, self.custom_names))]


def partial_tag_length(text: str, tag: str) -> int:
    """How many characters at the end of `text` could begin `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def reader_for(plan: OutputPlan) -> PlainText | ForcedToolCall | ForcedCustomInput | ToolCallScanner:
    if plan.forced_custom is not None:
        return ForcedCustomInput(plan.forced_custom["name"])
    if plan.forced_tools:
        return ForcedToolCall(plan.custom_tool_names)
    if plan.scans_for_tool_calls:
        return ToolCallScanner({tool["name"] for tool in plan.offered_tools}, plan.custom_tool_names)
    return PlainText()
