"""A deterministic model for tests: it follows a script and can record what it was sent.

The script is a list of steps, taken from the model's `options.script` in the config, or
from the newest user message when that message starts with `#script ` followed by JSON:

    {"text": "Hello", "chunks": 2}        text, split into that many deltas
    {"reasoning": "Thinking..."}          reasoning text
    {"summary": "Plan.", "part": 0}      a paragraph of the reasoning summary
    {"encrypted_reasoning": "..."}        the reasoning's encrypted content
    {"refusal": "I can't help with that."}
    {"annotation": {"type": "url_citation", ...}}   an annotation of the text just written
    {"tool_call": {"name": "f", "arguments": "{}", "call_id": "call_1"}}
    {"tool_call": {"name": "apply_patch", "input": "*** Begin Patch..."}}
                                          a call to a custom tool: `input` is its raw input
                                          (what `arguments` would be; a custom tool's default is "")
    {"tool_call": {..., "chunks": 3}}     the arguments (or input) split into that many deltas
    {"tool_item": {"type": "web_search_call", ...}}  a whole item of a tool the provider ran
    {"delay": 0.5}                        seconds to wait
    {"fail": {"message": "...", "code": "server_error", "retryable": false}}
    {"finish": "length"}                  how the turn ends (default "stop", or "tool_calls")

With no script it answers "Reply to: <newest user text>". With `options.record_to` set to
a file path, every request it receives is appended there as one JSON line.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import orjson

from threadline.backends.base import (
    BackendError,
    Finish,
    ModelEvent,
    ModelRequest,
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
from threadline.config import ModelSettings

SCRIPT_PREFIX = "#script "


class ScriptedBackend:
    counts_tokens = True

    def __init__(self, settings: ModelSettings) -> None:
        self.id = settings.id
        self.settings = settings
        self.context_window = settings.context_window or 8192
        self.script = settings.options.get("script")
        self.record_to = settings.options.get("record_to")

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        if self.record_to:
            with open(self.record_to, "ab") as record:
                record.write(orjson.dumps(request_record(request)) + b"\n")
        steps = script_in(request) or self.script or [{"text": f"Reply to: {newest_user_text(request)}"}]
        output_tokens = 0
        finish = "stop"
        calls = 0
        for step in steps:
            if "delay" in step:
                await asyncio.sleep(step["delay"])
            elif "fail" in step:
                failure = step["fail"]
                raise BackendError(failure.get("message", "The scripted model failed."), code=failure.get("code", "server_error"), retryable=failure.get("retryable", False))
            elif "finish" in step:
                finish = step["finish"]
            elif "summary" in step:
                output_tokens += 1
                yield ReasoningSummaryDelta(step["summary"], step.get("part", 0))
            elif "encrypted_reasoning" in step:
                yield ReasoningEncrypted(step["encrypted_reasoning"])
            elif "annotation" in step:
                yield TextAnnotation(step["annotation"])
            elif "tool_item" in step:
                yield ToolItem(step["tool_item"])
            elif "tool_call" in step:
                call = step["tool_call"]
                pieces = split(call_arguments(call, request), call.get("chunks", 1))
                yield ToolCallDelta(index=calls, call_id=call.get("call_id", f"call_{calls}"), name=call["name"], arguments=pieces[0])
                for piece in pieces[1:]:
                    yield ToolCallDelta(index=calls, arguments=piece)
                calls += 1
                finish = "tool_calls"
                output_tokens += 1
            else:
                kind, text = next((key, step[key]) for key in ("text", "reasoning", "refusal") if key in step)
                event_type = {"text": TextDelta, "reasoning": ReasoningDelta, "refusal": RefusalDelta}[kind]
                for piece in split(text, step.get("chunks", 1)):
                    output_tokens += 1
                    yield event_type(piece)
                    if step.get("chunk_delay"):
                        await asyncio.sleep(step["chunk_delay"])
        yield Finish(finish, Usage(input_tokens=estimate_tokens(request), output_tokens=output_tokens))

    async def count_tokens(self, request: ModelRequest) -> int:
        return estimate_tokens(request)

    async def start(self) -> None:
        pass

    async def resolve_context_window(self) -> int:
        return self.context_window

    async def close(self) -> None:
        pass


def split(text: str, chunks: int) -> list[str]:
    size = max(1, math.ceil(len(text) / max(1, chunks)))
    return [text[start : start + size] for start in range(0, len(text), size)] or [""]


def call_arguments(call: dict, request: ModelRequest) -> str:
    """A scripted call's arguments; for a custom tool, its raw input."""
    if "input" in call:
        return call["input"]
    if "arguments" in call:
        return call["arguments"]
    custom = any(tool.get("type") == "custom" and tool.get("name") == call["name"] for tool in request.tools)
    return "" if custom else "{}"


def item_text(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or part.get("refusal") or "" for part in content if isinstance(part, dict))
    if isinstance(item.get("output"), str):
        return item["output"]
    return item.get("input", "") if item.get("type") == "custom_tool_call" else item.get("arguments", "")


def newest_user_text(request: ModelRequest) -> str:
    for item in reversed(request.input):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            return item_text(item)
    return ""


def script_in(request: ModelRequest) -> list[dict] | None:
    text = newest_user_text(request)
    if text.startswith(SCRIPT_PREFIX):
        return orjson.loads(text[len(SCRIPT_PREFIX) :])
    return None


def estimate_tokens(request: ModelRequest) -> int:
    characters = len(request.instructions or "") + sum(len(item_text(item)) + 4 for item in request.input)
    return math.ceil(characters / 4)


def request_record(request: ModelRequest) -> dict:
    return {
        "model": request.model,
        "instructions": request.instructions,
        "input": request.input,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "text_format": request.text_format,
        "max_output_tokens": request.max_output_tokens,
        "temperature": request.temperature,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
    }
