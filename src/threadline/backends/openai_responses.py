"""A backend for an upstream that speaks the Responses API itself (OpenAI, vLLM).

Threadline keeps the state: every call sends the whole context with `store: false`, so the
upstream neither keeps anything nor looks anything up. Its answer (events when streaming, a
Response otherwise) is read back into `ModelEvent`s. Custom tools and their calls go as they
are: the Responses API has them, and a custom tool call's input comes back raw. Errors, retries and timeouts are
upstream.py's, shared with every OpenAI-style upstream.

Options (`options` in the model's config, besides upstream.py's retry_base_s):
    extra_body      fields merged into every request body
    send_reasoning  false leaves `reasoning` out for upstreams that reject it
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from threadline.backends.base import (
    BackendError,
    ContextLengthExceeded,
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
    Usage,
)
from threadline.backends.upstream import (
    CONTEXT_LENGTH_MESSAGE,
    UpstreamBackend,
    UpstreamError,
    answers_with_events,
    error_from_body,
    parse_json,
    redact,
    response_logprobs,
    server_error,
    sse_data,
)
from threadline.config import ModelSettings
from threadline.engine.reasoning_items import foreign_reasoning
from threadline.spec.errors import RESPONSE_ERROR_CODES

# What POST /responses/input_tokens takes of a request body.
INPUT_TOKENS_FIELDS = ("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning")
TOOL_FIELDS = ("type", "name", "description", "parameters", "strict", "format")
# Output items that are calls, and the field of each that holds what the model wrote.
CALL_FIELDS = {"function_call": "arguments", "custom_tool_call": "input"}
# Reasoning text comes as one text per item; its parts, if several, are joined so.
PART_SEPARATOR = "\n\n"


# --- Request: ModelRequest -> /responses body ------------------------------------------------


def responses_body(request: ModelRequest, model: str, options: dict | None = None) -> dict:
    options = options or {}
    body: dict[str, Any] = {"model": model, "input": upstream_items(request.input), "store": False, "stream": request.stream}
    if request.instructions:
        body["instructions"] = request.instructions
    # Without tools, some upstreams reject tool_choice and parallel_tool_calls, so send neither.
    if request.tools:
        body["tools"] = [{key: tool[key] for key in TOOL_FIELDS if tool.get(key) is not None} for tool in request.tools]
        body["tool_choice"] = request.tool_choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text_format:
        body["text"] = {"format": request.text_format}
    for name in ("max_output_tokens", "temperature", "top_p", "presence_penalty", "frequency_penalty", "user"):
        if getattr(request, name) is not None:
            body[name] = getattr(request, name)
    if request.logprobs:
        body["include"] = ["message.output_text.logprobs"]
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
    if request.encrypted_reasoning:
        # The upstream's own sealed reasoning, for the client to send back (kept as it is).
        body["include"] = [*body.get("include", []), "reasoning.encrypted_content"]
    if request.reasoning and options.get("send_reasoning", True):
        body["reasoning"] = request.reasoning
    body.update(options.get("extra_body") or {})
    return body


def upstream_items(items: list[dict]) -> list[dict]:
    """The context as the upstream takes it: Threadline's item ids stripped, call_id kept.

    The upstream never issued those ids, and with store false it must not look them up.
    A call's `namespace` is left out too: the upstream is offered the tools flat, by the
    names the calls carry.
    Earlier reasoning goes back only with encrypted content Threadline did not seal, which may
    be the upstream's own (under the id it carries, which such an item needs); other reasoning
    is left out (OpenAI refuses reasoning items it did not sign, and templates drop it anyway).
    """
    sent = []
    for item in items:
        if item.get("type") == "reasoning":
            if foreign_reasoning(item):
                sent.append({key: item[key] for key in ("type", "id", "summary", "encrypted_content") if key in item})
            continue
        item = {key: value for key, value in item.items() if key != "id" and not (key == "namespace" and item.get("type") in CALL_FIELDS)}
        if isinstance(item.get("content"), list):
            # Logprobs are metadata of earlier output; the model does not read them.
            item["content"] = [{key: value for key, value in part.items() if key != "logprobs"} for part in item["content"]]
        sent.append(item)
    return sent


# --- Response: events or a whole Response -> ModelEvents ------------------------------------


class ResponseReader:
    """Turns one upstream answer into ModelEvents, and its terminal event into one Finish.

    Deltas are passed on as they come. A finished output item (and the final Response) fills
    in whatever its deltas left out, so an upstream that streams sparsely, or a non-streaming
    Response read as one finished whole, gives the same events.
    """

    def __init__(self) -> None:
        self.status: str | None = None  # "completed" or "incomplete" once the upstream says so
        self.incomplete_reason: str | None = None
        self.usage: Usage | None = None
        self._sent: dict[tuple, str] = {}  # (kind, output_index, content or summary index) -> text passed on
        self._annotations: dict[tuple, int] = {}  # (output_index, content_index) -> annotations passed on
        self._calls: dict[int, str] = {}  # output_index -> arguments passed on
        self._reasoning_part: dict[int, int] = {}  # output_index -> the last part of reasoning text read

    @property
    def finished(self) -> bool:
        return self.status is not None

    def finish(self) -> Finish:
        if self.status == "incomplete":
            return Finish("content_filter" if self.incomplete_reason == "content_filter" else "length", self.usage)
        return Finish("tool_calls" if self._calls else "stop", self.usage)

    def read(self, event: dict) -> list[ModelEvent]:
        kind = event.get("type")
        index = event.get("output_index", 0)
        if kind == "response.output_text.delta":
            logprobs = event.get("logprobs")
            return self._text(("output_text", index, event.get("content_index", 0)), event.get("delta") or "", response_logprobs(logprobs) if logprobs else None)
        if kind == "response.refusal.delta":
            return self._text(("refusal", index, event.get("content_index", 0)), event.get("delta") or "")
        if kind == "response.reasoning_text.delta":
            return self._reasoning_delta(index, event.get("content_index", 0), event.get("delta") or "")
        if kind == "response.reasoning_summary_text.delta":
            return self._summary_delta(index, event.get("summary_index", 0), event.get("delta") or "")
        if kind == "response.output_text.annotation.added" and isinstance(event.get("annotation"), dict):
            key = (index, event.get("content_index", 0))
            self._annotations[key] = self._annotations.get(key, 0) + 1
            return [TextAnnotation(event["annotation"])]
        if kind == "response.output_item.added" and (event.get("item") or {}).get("type") in CALL_FIELDS:
            return self._call(index, event["item"])
        if kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
            return self._call(index, {"arguments": event.get("delta") or ""}, delta=True)
        if kind == "response.output_item.done":
            return self._rest_of_item(index, event.get("item") or {})
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            return self.read_response(event.get("response") or {})
        if kind == "error":
            raise upstream_failure(event["error"] if isinstance(event.get("error"), dict) else event)
        return []

    def read_response(self, response: dict) -> list[ModelEvent]:
        """A finished Response: the output its events did not carry, and how it ended."""
        if response.get("status") == "failed" or response.get("error"):
            raise upstream_failure(response.get("error") or {})
        if response.get("status") not in ("completed", "incomplete"):
            raise server_error(f"The upstream model's response ended as '{response.get('status')}'.")
        events = [event for index, item in enumerate(response.get("output") or []) for event in self._rest_of_item(index, item)]
        self.usage = usage_from(response.get("usage"))
        self.incomplete_reason = (response.get("incomplete_details") or {}).get("reason")
        self.status = response["status"]
        return events

    def _text(self, key: tuple, delta: str, logprobs: list[dict] | None = None) -> list[ModelEvent]:
        if not delta:
            return []
        self._sent[key] = self._sent.get(key, "") + delta
        return [TextDelta(delta, logprobs) if key[0] == "output_text" else RefusalDelta(delta)]

    def _reasoning_delta(self, index: int, part: int, delta: str) -> list[ModelEvent]:
        if not delta:
            return []
        sent = self._sent.get(("reasoning", index), "")
        if part != self._reasoning_part.setdefault(index, part) and sent:
            delta = PART_SEPARATOR + delta
        self._reasoning_part[index] = part
        self._sent[("reasoning", index)] = sent + delta
        return [ReasoningDelta(delta)]

    def _summary_delta(self, index: int, part: int, delta: str) -> list[ModelEvent]:
        if not delta:
            return []
        self._sent[("summary", index, part)] = self._sent.get(("summary", index, part), "") + delta
        return [ReasoningSummaryDelta(delta, part)]

    def _call(self, index: int, item: dict, delta: bool = False) -> list[ModelEvent]:
        """A piece of a call: a function call's arguments, or a custom tool call's raw input."""
        first = index not in self._calls
        arguments = item.get(CALL_FIELDS.get(item.get("type"), "arguments")) or ""
        self._calls[index] = self._calls.get(index, "") + arguments
        if first and not delta:
            return [ToolCallDelta(index=index, call_id=item.get("call_id"), name=item.get("name"), arguments=arguments)]
        return [ToolCallDelta(index=index, arguments=arguments)] if arguments or first else []

    def _rest_of_item(self, index: int, item: dict) -> list[ModelEvent]:
        kind = item.get("type")
        if kind in CALL_FIELDS:
            if index not in self._calls:
                return self._call(index, item)
            return self._call(index, {"arguments": rest(self._calls[index], item.get(CALL_FIELDS[kind]) or "")}, delta=True)
        if kind == "message":
            events: list[ModelEvent] = []
            for position, part in enumerate(item.get("content") or []):
                if part.get("type") == "output_text":
                    key = ("output_text", index, position)
                    logprobs = part.get("logprobs") if key not in self._sent else None
                    events += self._text(key, rest(self._sent.get(key, ""), part.get("text") or ""), response_logprobs(logprobs) if logprobs else None)
                    annotations = [annotation for annotation in part.get("annotations") or [] if isinstance(annotation, dict)]
                    events += [TextAnnotation(annotation) for annotation in annotations[self._annotations.get((index, position), 0) :]]
                    self._annotations[(index, position)] = len(annotations)
                elif part.get("type") == "refusal":
                    key = ("refusal", index, position)
                    events += self._text(key, rest(self._sent.get(key, ""), part.get("refusal") or ""))
            return events
        if kind == "reasoning":
            return self._rest_of_reasoning(index, item)
        return []  # other item types come from tools Threadline never offers

    def _rest_of_reasoning(self, index: int, item: dict) -> list[ModelEvent]:
        """What a finished reasoning item adds to its deltas: summary, text, encrypted content."""
        events: list[ModelEvent] = []
        for part, summary in enumerate(item.get("summary") or []):
            events += self._summary_delta(index, part, rest(self._sent.get(("summary", index, part), ""), summary.get("text") or ""))
        texts = [part.get("text") or "" for part in item.get("content") or []]
        self._reasoning_part[index] = len(texts) - 1
        missing = rest(self._sent.get(("reasoning", index), ""), PART_SEPARATOR.join(texts))
        if missing:
            self._sent[("reasoning", index)] = self._sent.get(("reasoning", index), "") + missing
            events.append(ReasoningDelta(missing))
        encrypted = item.get("encrypted_content")
        if isinstance(encrypted, str) and ("encrypted", index) not in self._sent:  # the final Response repeats it
            self._sent[("encrypted", index)] = encrypted
            events.append(ReasoningEncrypted(encrypted))
        return events


def rest(sent: str, whole: str) -> str:
    """What `whole` adds to the `sent` part of it; nothing if the two disagree."""
    return whole[len(sent) :] if whole.startswith(sent) else ""


def usage_from(usage: dict | None) -> Usage | None:
    if not usage:
        return None
    return Usage(
        input_tokens=usage.get("input_tokens") or 0,
        output_tokens=usage.get("output_tokens") or 0,
        cached_tokens=(usage.get("input_tokens_details") or {}).get("cached_tokens") or 0,
        reasoning_tokens=(usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0,
    )


def upstream_failure(error: dict) -> BackendError:
    """A failure the upstream reported in a response.failed or error event."""
    code = error.get("code")
    message = redact(str(error.get("message") or "The upstream model failed."))
    if CONTEXT_LENGTH_MESSAGE.search(f"{code} {message}"):
        return ContextLengthExceeded(message)
    if code == "rate_limit_exceeded":
        return UpstreamError(f"The upstream model is rate limited: {message}", code=code, status=429, retryable=True)
    if code in RESPONSE_ERROR_CODES and code != "server_error":
        return BackendError(message, code=code, status=400)
    return server_error(message, retryable=True)


# --- The backend --------------------------------------------------------------------------


class OpenAIResponsesBackend(UpstreamBackend):
    path = "/responses"

    def __init__(self, settings: ModelSettings, http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(settings, http)
        self._input_tokens_served: bool | None = None

    def request_body(self, request: ModelRequest) -> dict:
        return responses_body(request, self.upstream_model, self.settings.options)

    def new_reader(self) -> ResponseReader:
        return ResponseReader()

    async def read_answer(self, response: aiohttp.ClientResponse, body: dict, reader: ResponseReader) -> AsyncIterator[ModelEvent]:
        if not answers_with_events(body, response):
            answer = parse_json(await self.answer_body(response))
            if not isinstance(answer, dict):
                raise server_error("The upstream model's answer was not a JSON object.")
            if "error" in answer and "output" not in answer:
                raise error_from_body(answer)
            for event in reader.read_response(answer):
                yield event
            return
        async with contextlib.aclosing(sse_data(self.answer_lines(response))) as stream:
            async for data in stream:
                if data.strip() == "[DONE]":
                    break
                event = parse_json(data)
                if not isinstance(event, dict):
                    raise server_error("The upstream model sent a malformed stream event.")
                if "type" not in event and "error" in event:  # a chat-style error object mid-stream
                    raise error_from_body(event)
                for model_event in reader.read(event):
                    yield model_event
                if reader.finished:  # the terminal event; nothing after it matters
                    return
        if not reader.finished:
            raise server_error("The upstream stream ended early.", retryable=True)

    # --- Token counts -------------------------------------------------------------------

    @property
    def counts_tokens(self) -> bool:
        return self._input_tokens_served is not False

    async def count_tokens(self, request: ModelRequest) -> int | None:
        if self._input_tokens_served is False:
            return None
        body = self.request_body(request)
        return await self._count_upstream({key: body[key] for key in INPUT_TOKENS_FIELDS if key in body})

    async def _count_upstream(self, body: dict) -> int | None:
        answered = await self.metadata("POST", f"{self.base_url}/responses/input_tokens", body)
        if answered is None:
            return None
        status, content = answered
        if 400 <= status < 500:  # not served (vLLM), or not for this request
            self._input_tokens_served = False
            return None
        try:
            count = orjson.loads(content).get("input_tokens") if status == 200 else None
        except (ValueError, AttributeError):
            count = None
        if not isinstance(count, int) or isinstance(count, bool):
            return None
        self._input_tokens_served = True
        return count

