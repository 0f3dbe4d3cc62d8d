"""The narrow interface between Threadline and a model: a request in, model events out.

A backend translates a `ModelRequest` into its provider's protocol and yields `ModelEvent`s
as the model produces them. It never sees storage, ids or OpenAI's streaming events; the
engine turns its events into those.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union

from threadline.config import ModelSettings


@dataclass
class ModelRequest:
    """Everything a model needs for one turn, in Responses-API terms.

    `input` holds normalized items (messages, function_call, function_call_output,
    reasoning, ...) in the order the model should see them; `instructions`, when given,
    come before them as a system/developer message.
    """

    model: str  # the upstream model name
    input: list[dict]
    instructions: str | None = None
    tools: list[dict] = field(default_factory=list)  # function tools: {type, name, description, parameters, strict}
    tool_choice: Any = "auto"  # "none" | "auto" | "required" | {"type": "function", "name": ...}
    parallel_tool_calls: bool = True
    text_format: dict | None = None  # {"type": "json_schema", "name", "schema", "strict"} | {"type": "json_object"}
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None  # -2..2; None: the model's default (0)
    frequency_penalty: float | None = None
    logprobs: bool = False  # include message.output_text.logprobs
    encrypted_reasoning: bool = False  # include reasoning.encrypted_content: reasoning goes back to the client sealed
    reasoning: dict | None = None
    user: str | None = None
    stream: bool = True  # a hint: the client streams, so the upstream call may as well


@dataclass
class TextDelta:
    text: str
    logprobs: list[dict] | None = None  # OpenAI's shape: [{token, logprob, bytes, top_logprobs}]


@dataclass
class RefusalDelta:
    text: str


@dataclass
class ReasoningDelta:
    text: str


@dataclass
class ReasoningSummaryDelta:
    """A piece of the reasoning summary; `part` numbers its paragraphs, and a new number starts one."""

    text: str
    part: int = 0


@dataclass
class ReasoningEncrypted:
    """The reasoning as its provider encrypted it, to be sent back in a later request; it
    belongs to the reasoning just written, so a backend gives it before the next output."""

    encrypted_content: str


@dataclass
class TextAnnotation:
    """An annotation of the output text being written, in OpenAI's shape (url_citation, file_citation, ...)."""

    annotation: dict


@dataclass
class ToolItem:
    """A whole output item of a tool the model's provider ran (web_search_call, mcp_call,
    file_search_call, ...), as it ended: status and results included, in OpenAI's shape
    (Threadline gives it an id of its own)."""

    item: dict


@dataclass
class ToolCallDelta:
    """A piece of a function call; `index` tells calls apart, name and call_id come first."""

    index: int
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        """The usage of two turns of one response together."""
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
        )


@dataclass
class Finish:
    """The model stopped; `reason` "length" makes the response incomplete."""

    reason: Literal["stop", "length", "tool_calls", "content_filter"] = "stop"
    usage: Usage | None = None


ModelEvent = Union[
    TextDelta,
    RefusalDelta,
    ReasoningDelta,
    ReasoningSummaryDelta,
    ReasoningEncrypted,
    TextAnnotation,
    ToolCallDelta,
    ToolItem,
    Finish,
]
# The events that are a piece of the model's output, about a token each.
OUTPUT_DELTAS = (TextDelta, RefusalDelta, ReasoningDelta, ReasoningSummaryDelta, ToolCallDelta)


class BackendError(Exception):
    """The model could not answer. `code` is OpenAI's error code for the failed response."""

    def __init__(self, message: str, *, code: str = "server_error", status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable


class ContextLengthExceeded(BackendError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="context_length_exceeded", status=400)


class Backend(Protocol):
    """One configured model. `generate` yields events and ends with exactly one `Finish`."""

    id: str
    context_window: int | None
    settings: ModelSettings  # as configured: its output bound and on_disconnect are read from here
    # False once it is known to have no tokenizer to ask (count_tokens answers None), so
    # callers go by the estimate without building what it would count.
    counts_tokens: bool

    def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...

    async def count_tokens(self, request: ModelRequest) -> int | None:
        """Input tokens the request would use, by the model's tokenizer; None when it has none
        that can be asked (callers then go by `estimate.estimate_request_tokens`)."""
        ...

    async def start(self) -> None:
        """Get ready to serve (an embedded model loads here), so no request waits for it; no-op where nothing needs doing."""
        ...

    async def resolve_context_window(self) -> int | None:
        """The model's context window in tokens: the model's own figure where it reports one,
        else `context_window`; None when neither is known."""
        ...

    async def close(self) -> None: ...
