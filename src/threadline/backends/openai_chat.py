"""A backend for any OpenAI-compatible Chat Completions server.

vLLM, SGLang, llama.cpp's server, Ollama, LM Studio, TGI and OpenAI itself all answer
POST {base_url}/chat/completions. This backend turns a `ModelRequest` into that request's
body, its messages as chat_messages.py says, and reads the answer (server-sent events when
streaming, one JSON body otherwise) into `ModelEvent`s. Errors, retries and timeouts are
upstream.py's, shared with every OpenAI-style upstream.

Custom tools go as functions with one string parameter, `input` (chat_messages.py's
`custom_function`); a call to one comes back as its raw input, decoded once its JSON
arguments are whole.

Options (`options` in the model's config, besides upstream.py's retry_base_s):
    extra_body             fields merged into every request body, e.g. {"chat_template_kwargs": {...}}
    max_tokens_param       "max_tokens" (default) or "max_completion_tokens" (OpenAI's reasoning models)
    send_reasoning_effort  false leaves `reasoning.effort` out for upstreams that reject it
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from threadline.backends.base import (
    Finish,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from threadline.backends.chat_messages import chat_messages, custom_function, custom_input, custom_tool_names
from threadline.backends.upstream import (
    UpstreamBackend,
    answers_with_events,
    error_from_body,
    invalid_request,
    parse_json,
    response_logprobs,
    server_error,
    sse_data,
)
from threadline.config import ModelSettings

FINISH_REASONS = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls", "content_filter": "content_filter"}


# --- Request: ModelRequest -> chat completions body -------------------------------------


def chat_completions_body(request: ModelRequest, model: str, options: dict | None = None) -> dict:
    options = options or {}
    body: dict[str, Any] = {"model": model, "messages": chat_messages(request)}
    tools, tool_choice = chat_tools(request.tools, request.tool_choice)
    # Without tools, upstreams reject tool_choice and parallel_tool_calls, so send neither.
    if tools:
        body["tools"] = tools
        body["tool_choice"] = tool_choice
        body["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text_format:
        response_format = chat_response_format(request.text_format)
        if response_format:
            body["response_format"] = response_format
    if request.max_output_tokens is not None:
        body[options.get("max_tokens_param", "max_tokens")] = request.max_output_tokens
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "user"):
        if getattr(request, name) is not None:
            body[name] = getattr(request, name)
    if request.logprobs:
        body["logprobs"] = True
        if request.top_logprobs is not None:
            body["top_logprobs"] = request.top_logprobs
    effort = (request.reasoning or {}).get("effort")
    if effort and options.get("send_reasoning_effort", True):
        body["reasoning_effort"] = effort
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    body.update(options.get("extra_body") or {})
    return body


def chat_tools(tools: list[dict], tool_choice: Any) -> tuple[list[dict], Any]:
    """Chat's `tools` and `tool_choice`; an allowed_tools choice narrows the tools sent."""
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        allowed = {tool.get("name") for tool in tool_choice.get("tools", [])}
        tools = [tool for tool in tools if tool.get("name") in allowed]
        tool_choice = tool_choice.get("mode", "auto")
    if isinstance(tool_choice, dict) and tool_choice.get("type") in ("function", "custom"):
        tool_choice = {"type": "function", "function": {"name": tool_choice["name"]}}
    return [chat_tool(tool) for tool in tools], tool_choice


def chat_tool(tool: dict) -> dict:
    if tool.get("type") == "custom":
        tool = custom_function(tool)
    if tool.get("type", "function") != "function":
        raise invalid_request(f"Tools of type '{tool.get('type')}' cannot be used with this model.")
    function = {"name": tool["name"]}
    for name in ("description", "parameters", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def chat_response_format(text_format: dict) -> dict | None:
    if text_format.get("type") == "json_schema":
        schema = {"name": text_format.get("name") or "response", "schema": text_format.get("schema") or {}}
        if text_format.get("description"):
            schema["description"] = text_format["description"]
        if text_format.get("strict") is not None:
            schema["strict"] = text_format["strict"]
        return {"type": "json_schema", "json_schema": schema}
    if text_format.get("type") == "json_object":
        return {"type": "json_object"}
    return None


# --- Response: chat completion chunks -> ModelEvents ------------------------------------


class ChunkReader:
    """Turns one upstream answer's chunks into ModelEvents, and its end into one Finish.

    A non-streaming completion reads as a single chunk whose delta is the whole message,
    so both kinds of answer go through the same code.
    """

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        # Upstream tool call index -> [our index, call_id, name sent]. Some upstreams reuse
        # index 0 for every call, so a new id on a known index starts a new call.
        self._calls: dict[int, list] = {}
        self._call_count = 0

    def read(self, chunk: dict) -> list[ModelEvent]:
        if chunk.get("usage"):
            self.usage = usage_from(chunk["usage"])
        choice = next((c for c in chunk.get("choices") or [] if c.get("index", 0) == 0), None)
        if choice is None:
            return []
        delta = choice.get("delta") or {}
        events: list[ModelEvent] = []
        # reasoning_content: DeepSeek, SGLang, older vLLM; reasoning: newer vLLM, Ollama, OpenRouter.
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.append(ReasoningDelta(reasoning))
        if isinstance(delta.get("content"), str) and delta["content"]:
            logprobs = (choice.get("logprobs") or {}).get("content")
            events.append(TextDelta(delta["content"], response_logprobs(logprobs) if logprobs is not None else None))
        if delta.get("refusal"):
            events.append(RefusalDelta(delta["refusal"]))
        for position, call in enumerate(delta.get("tool_calls") or []):
            event = self._tool_call_delta(position, call)
            if event is not None:
                events.append(event)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        return events

    def _tool_call_delta(self, position: int, call: dict) -> ToolCallDelta | None:
        key = call.get("index", position)
        call_id = call.get("id")
        function = call.get("function") or {}
        known = self._calls.get(key)
        if known is None or (call_id and call_id != known[1]):
            # Some upstreams (older llama.cpp, Ollama) send calls without an id.
            known = self._calls[key] = [self._call_count, call_id or f"call_{uuid.uuid4().hex[:24]}", False]
            self._call_count += 1
            first = True
        else:
            first = False
        name = function.get("name") if not known[2] else None
        known[2] = known[2] or bool(name)
        arguments = function.get("arguments") or ""
        if not (first or name or arguments):
            return None
        return ToolCallDelta(index=known[0], call_id=known[1] if first else None, name=name, arguments=arguments)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def finish(self) -> Finish:
        reason = FINISH_REASONS.get(self.finish_reason or "stop", "stop")
        # Some upstreams say "stop" after calling tools; the calls are what matter.
        if reason == "stop" and self._call_count:
            reason = "tool_calls"
        return Finish(reason, self.usage)  # type: ignore[arg-type]


def completion_as_chunk(completion: dict) -> dict:
    if not isinstance(completion, dict):
        raise server_error("The upstream model's answer was not a JSON object.")
    if "error" in completion:
        raise error_from_body(completion)
    choices = []
    for choice in completion.get("choices") or []:
        choices.append({**choice, "delta": choice.get("message") or {}})
    return {"choices": choices, "usage": completion.get("usage")}


def usage_from(usage: dict) -> Usage:
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
        cached_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


class CustomCallDecoder:
    """Calls to custom tools, whose functions' JSON arguments `{"input": ...}` become the raw
    input: a call's arguments are held until the model has finished, then given decoded."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self._held: dict[int, str] = {}  # our call index -> its arguments so far

    def read(self, event: ModelEvent) -> list[ModelEvent]:
        if isinstance(event, Finish):
            return [ToolCallDelta(index=index, arguments=custom_input(arguments)) for index, arguments in self._held.items() if arguments] + [event]
        if not isinstance(event, ToolCallDelta):
            return [event]
        if event.name is not None and event.name in self.names:
            self._held[event.index] = ""
        if event.index not in self._held:
            return [event]
        self._held[event.index] += event.arguments
        # Its id and name go at once, so the call shows as soon as it starts.
        return [ToolCallDelta(index=event.index, call_id=event.call_id, name=event.name)] if event.name else []


# --- The backend --------------------------------------------------------------------------


class OpenAIChatBackend(UpstreamBackend):
    path = "/chat/completions"

    def __init__(self, settings: ModelSettings, http: aiohttp.ClientSession | None = None) -> None:
        super().__init__(settings, http)
        self._tokenize_exists: bool | None = None

    def request_body(self, request: ModelRequest) -> dict:
        return chat_completions_body(request, self.upstream_model, self.settings.options)

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        decoder = CustomCallDecoder(custom_tool_names(request.tools))
        async with contextlib.aclosing(super().generate(request)) as events:
            async for event in events:
                for decoded in decoder.read(event):
                    yield decoded

    def new_reader(self) -> ChunkReader:
        return ChunkReader()

    async def read_answer(self, response: aiohttp.ClientResponse, body: dict, reader: ChunkReader) -> AsyncIterator[ModelEvent]:
        if not answers_with_events(body, response):
            for event in reader.read(completion_as_chunk(parse_json(await self.answer_body(response)))):
                yield event
            return
        async with contextlib.aclosing(sse_data(self.answer_lines(response))) as stream:
            async for data in stream:
                if data.strip() == "[DONE]":
                    return
                chunk = parse_json(data)
                if not isinstance(chunk, dict):
                    raise server_error("The upstream model sent a malformed stream event.")
                if "error" in chunk:  # vLLM and others report failures mid-stream this way
                    raise error_from_body(chunk)
                for event in reader.read(chunk):
                    yield event
        if not reader.finished:
            raise server_error("The upstream stream ended early.", retryable=True)

    # --- Token counts -------------------------------------------------------------------

    @property
    def counts_tokens(self) -> bool:
        return self._tokenize_exists is not False

    async def count_tokens(self, request: ModelRequest) -> int | None:
        if self._tokenize_exists is False:
            return None
        tools, _ = chat_tools(request.tools, request.tool_choice)
        return await self._tokenize(chat_messages(request), tools)

    async def _tokenize(self, messages: list[dict], tools: list[dict]) -> int | None:
        # vLLM and SGLang serve /tokenize beside /v1, applying the chat template to messages.
        root = self.base_url.removesuffix("/v1")
        body: dict[str, Any] = {"model": self.upstream_model, "messages": messages, "add_generation_prompt": True}
        if tools:
            body["tools"] = tools
        answered = await self.metadata("POST", f"{root}/tokenize", body)
        if answered is None:
            return None
        status, content = answered
        if 400 <= status < 500:  # not served, or not for chat messages
            self._tokenize_exists = False
            return None
        if status != 200:
            return None
        try:
            answer = orjson.loads(content)
        except ValueError:
            return None
        count = answer.get("count") if isinstance(answer, dict) else None
        if not isinstance(count, int) and isinstance(answer, dict) and isinstance(answer.get("tokens"), list):
            count = len(answer["tokens"])
        if not isinstance(count, int):
            self._tokenize_exists = False
            return None
        self._tokenize_exists = True
        return count

