"""A backend for any OpenAI-compatible Chat Completions server.

vLLM, SGLang, llama.cpp's server, Ollama, LM Studio, TGI and OpenAI itself all answer
POST {base_url}/chat/completions. This backend turns a `ModelRequest` into that request's
body, reads the answer (server-sent events when streaming, one JSON body otherwise) into
`ModelEvent`s, and maps the upstream's failures onto OpenAI's error codes, retrying the
retryable ones as long as nothing has reached the caller yet.

Options (`options` in the model's config):
    retry_base_s           first retry delay, doubled per attempt (default 0.5)
    extra_body             fields merged into every request body, e.g. {"chat_template_kwargs": {...}}
    max_tokens_param       "max_tokens" (default) or "max_completion_tokens" (OpenAI's reasoning models)
    send_reasoning_effort  false leaves `reasoning.effort` out for upstreams that reject it
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from threadline.backends.base import (
    BackendError,
    ContextLengthExceeded,
    Finish,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from threadline.config import ModelSettings

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 8.0
# A longer Retry-After than this is not worth holding the client's request open for.
MAX_RETRY_AFTER_S = 60.0
# /models and /tokenize are quick metadata calls; don't let them hang a request.
METADATA_TIMEOUT_S = 10.0
# The token estimate's flat guess for an image or file, whose size text length can't tell.
ESTIMATED_TOKENS_PER_ATTACHMENT = 768
ESTIMATED_TOKENS_PER_MESSAGE = 4

# How upstreams word "the prompt does not fit": OpenAI and vLLM ("maximum context length"),
# llama.cpp ("exceeds the available context size"), TGI ("must be <= N"), Anthropic-style
# proxies ("prompt is too long").
CONTEXT_LENGTH_MESSAGE = re.compile(
    r"context[ _](length|size|window)|maximum context|exceed_context_size|prompt is too long"
    r"|too many tokens|tokens \+ `?max_new_tokens`? must be <=",
    re.IGNORECASE,
)

FINISH_REASONS = {"length": "length", "tool_calls": "tool_calls", "function_call": "tool_calls", "content_filter": "content_filter"}


def invalid_request(message: str) -> BackendError:
    return BackendError(message, code="invalid_request_error", status=400)


def server_error(message: str, *, retryable: bool = False) -> BackendError:
    return BackendError(message, code="server_error", status=500, retryable=retryable)


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
    for name in ("temperature", "top_p", "user"):
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


def chat_messages(request: ModelRequest) -> list[dict]:
    # Chat has no "developer" role on most upstreams (vLLM's and llama.cpp's chat templates
    # only know system/user/assistant/tool), so instructions and developer messages go as
    # "system", which every upstream takes.
    messages: list[dict] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for item in request.input:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(chat_message(item))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            # One model turn (its text and every call it made) is one assistant message in chat.
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant":
                previous.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": tool_output_text(item.get("output"))})
        elif kind == "reasoning":
            # Upstreams don't take reasoning back (chat templates strip earlier thinking),
            # so earlier reasoning is left out.
            continue
        else:
            raise invalid_request(f"Input items of type '{kind}' cannot be sent to this model.")
    return messages


CHAT_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def chat_message(item: dict) -> dict:
    role = CHAT_ROLES.get(item.get("role", ""))
    if role is None:
        raise invalid_request(f"Messages with role '{item.get('role')}' cannot be sent to this model.")
    return {"role": role, "content": chat_content(item.get("content"), role)}


def chat_content(content: Any, role: str) -> str | list[dict]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [chat_part(part) for part in content]
    # Text alone goes as a plain string: every upstream and chat template takes that.
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    if role != "user":
        raise invalid_request(f"Only user messages can carry images or files for this model, not {role} messages.")
    return parts


def chat_part(part: dict) -> dict:
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        if not part.get("image_url"):
            raise invalid_request("This model takes images as image_url (a URL or a data URL), not as file_id.")
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"}}
    if kind == "input_file":
        if not part.get("file_data"):
            raise invalid_request("This model takes files as file_data, not as file_id or file_url.")
        file = {"file_data": part["file_data"]}
        if part.get("filename"):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise invalid_request(f"Content parts of type '{kind}' cannot be sent to this model.")


def tool_output_text(output: Any) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    # Chat's tool messages carry text only.
    texts = []
    for part in output:
        if part.get("type") not in ("input_text", "output_text", "text"):
            raise invalid_request(f"Function call outputs with '{part.get('type')}' parts cannot be sent to this model.")
        texts.append(part.get("text") or "")
    return "\n".join(texts)


def chat_tools(tools: list[dict], tool_choice: Any) -> tuple[list[dict], Any]:
    """Chat's `tools` and `tool_choice`; an allowed_tools choice narrows the tools sent."""
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "allowed_tools":
        allowed = {tool.get("name") for tool in tool_choice.get("tools", [])}
        tools = [tool for tool in tools if tool.get("name") in allowed]
        tool_choice = tool_choice.get("mode", "auto")
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        tool_choice = {"type": "function", "function": {"name": tool_choice["name"]}}
    return [chat_tool(tool) for tool in tools], tool_choice


def chat_tool(tool: dict) -> dict:
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


def response_logprobs(content: list[dict]) -> list[dict]:
    """Chat's logprobs.content in the Responses API's shape (which needs `bytes`)."""

    def entry(token: dict) -> dict:
        text = token.get("token") or ""
        return {"token": text, "logprob": token.get("logprob", 0.0), "bytes": token.get("bytes") or list(text.encode())}

    return [{**entry(token), "top_logprobs": [entry(top) for top in token.get("top_logprobs") or []]} for token in content]


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each server-sent event; comments and other fields carry nothing we need."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # an upstream that omits the blank line after its last event
        yield "\n".join(data)


def parse_json(data: str | bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise server_error("The upstream model sent malformed JSON.") from None


# --- Errors -------------------------------------------------------------------------------


class UpstreamError(BackendError):
    """A BackendError that also carries the upstream's Retry-After, in seconds."""

    def __init__(self, message: str, *, code: str, status: int, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message, code=code, status=status, retryable=retryable)
        self.retry_after = retry_after


def upstream_message(body: Any) -> str | None:
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        for value in (error, body.get("message"), body.get("detail")):
            if isinstance(value, str) and value:
                return value
    return None


def http_error(status: int, content: bytes, headers: httpx.Headers | dict) -> BackendError:
    """What an upstream's HTTP error means for the response.

    429 and 5xx are the upstream's trouble and worth retrying. A 400/413/422 is a request
    the model can't take (a bad schema, an unsupported parameter): the client's to fix, so
    it's an invalid_request_error carrying the upstream's words. Other 4xx (401, 403, 404)
    mean Threadline's upstream settings are wrong, which the client can't fix: server_error.
    """
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        body = None
    message = upstream_message(body) or content.decode(errors="replace").strip()[:500] or f"HTTP {status}"
    retry_after = retry_after_seconds(headers.get("retry-after"))
    if status == 429:
        return UpstreamError(
            f"The upstream model is rate limited: {message}", code="rate_limit_exceeded", status=429, retryable=True, retry_after=retry_after
        )
    error = body.get("error") if isinstance(body, dict) else None
    error_code = error.get("code") if isinstance(error, dict) else None
    if CONTEXT_LENGTH_MESSAGE.search(f"{error_code} {message}"):
        return ContextLengthExceeded(message)
    if status >= 500 or status == 408:
        return UpstreamError(
            f"The upstream model failed (HTTP {status}): {message}", code="server_error", status=500, retryable=True, retry_after=retry_after
        )
    if status in (400, 413, 422):
        return UpstreamError(message, code="invalid_request_error", status=400, retryable=False)
    if status in (401, 403):  # the upstream's words may quote the key
        message = "check the model's api_key"
    return UpstreamError(f"The upstream model refused the request (HTTP {status}): {message}", code="server_error", status=500, retryable=False)


def error_from_body(body: dict) -> BackendError:
    """An error the upstream sent as a JSON object, inside a stream or a 200 answer."""
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    return http_error(status, orjson.dumps(body), {})


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def transport_error(error: httpx.TransportError) -> BackendError:
    if isinstance(error, httpx.TimeoutException):
        message = "The upstream model timed out."
    elif isinstance(error, httpx.ConnectError):
        message = f"Could not connect to the upstream model: {error}"
    else:
        message = f"The connection to the upstream model failed: {error}"
    return server_error(message, retryable=True)


# --- The backend --------------------------------------------------------------------------

_END = object()


class OpenAIChatBackend:
    def __init__(self, settings: ModelSettings, http: httpx.AsyncClient | None = None) -> None:
        self.id = settings.id
        self.settings = settings
        self.context_window: int | None = settings.context_window
        self.upstream_model = settings.upstream_model or settings.id
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        # Streams are bounded by timeout_s per call, not by httpx's pool, so don't cap them.
        self._http = http or httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=32))
        self._owns_http = http is None
        self._context_window_looked_up = False
        self._lookup_lock = asyncio.Lock()
        self._tokenize_exists: bool | None = None

    @property
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        body = chat_completions_body(request, self.upstream_model, self.settings.options)
        attempt = 0
        while True:
            yielded = False
            try:
                async for event in self._call(body):
                    yielded = True
                    yield event
                return
            except BackendError as error:
                delay = self._retry_delay(attempt, error)
                # Once output reached the caller a retry would repeat it, so only retry before.
                if yielded or delay is None:
                    raise
            attempt += 1
            await asyncio.sleep(delay)

    def _retry_delay(self, attempt: int, error: BackendError) -> float | None:
        if not error.retryable or attempt >= self.settings.max_retries:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= MAX_RETRY_AFTER_S else None
        base = float(self.settings.options.get("retry_base_s", 0.5))
        return min(MAX_BACKOFF_S, base * 2**attempt) * random.uniform(0.5, 1.0)

    async def _call(self, body: dict) -> AsyncIterator[ModelEvent]:
        """One upstream call, its whole duration bounded by timeout_s.

        The call runs in its own task so the deadline can cancel it without touching the
        caller's task, which may be busy elsewhere between events.
        """
        events: asyncio.Queue = asyncio.Queue()
        reader = ChunkReader()

        async def call() -> None:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    await self._exchange(body, reader, events.put_nowait)
            except TimeoutError:
                if reader.finish_reason is None:
                    events.put_nowait(server_error(f"The upstream model did not finish within {self.settings.timeout_s:g} s.", retryable=True))
                else:  # the model had finished; only the trailing usage or [DONE] never came
                    events.put_nowait(reader.finish())
            except Exception as error:  # handed to the caller's task to raise
                events.put_nowait(error)
            events.put_nowait(_END)

        task = asyncio.create_task(call())
        try:
            while (event := await events.get()) is not _END:
                if isinstance(event, Exception):
                    raise event
                yield event
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _exchange(self, body: dict, reader: ChunkReader, emit: Callable[[ModelEvent], None]) -> None:
        try:
            async with self._http.stream(
                "POST",
                f"{self.base_url}/chat/completions",
                content=orjson.dumps(body),
                headers=self._headers,
                timeout=httpx.Timeout(self.settings.timeout_s),
            ) as response:
                if response.status_code >= 400:
                    raise http_error(response.status_code, await response.aread(), response.headers)
                # Some upstreams ignore "stream" and answer with one JSON body; read either.
                if body.get("stream") and "json" not in response.headers.get("content-type", ""):
                    await self._read_stream(response, reader, emit)
                else:
                    for event in reader.read(completion_as_chunk(parse_json(await response.aread()))):
                        emit(event)
        except httpx.TransportError as error:
            if reader.finish_reason is None:
                raise transport_error(error) from error
            # The model had finished; only the trailing usage or [DONE] went missing.
        emit(reader.finish())

    async def _read_stream(self, response: httpx.Response, reader: ChunkReader, emit: Callable[[ModelEvent], None]) -> None:
        async for data in sse_data(response.aiter_lines()):
            if data.strip() == "[DONE]":
                return
            chunk = parse_json(data)
            if not isinstance(chunk, dict):
                raise server_error("The upstream model sent a malformed stream event.")
            if "error" in chunk:  # vLLM and others report failures mid-stream this way
                raise error_from_body(chunk)
            for event in reader.read(chunk):
                emit(event)
        if reader.finish_reason is None:
            raise server_error("The upstream stream ended early.", retryable=True)

    # --- Context window and token counts ------------------------------------------------

    async def resolve_context_window(self) -> int | None:
        """The upstream's own context length from GET /models when it reports one, else the configured one.

        Asked once; a lookup that fails to connect is tried again next time.
        """
        if self._context_window_looked_up:
            return self.context_window
        async with self._lookup_lock:
            if not self._context_window_looked_up:
                try:
                    response = await self._http.get(f"{self.base_url}/models", headers=self._headers, timeout=self._metadata_timeout)
                except httpx.HTTPError:
                    return self.context_window
                self._context_window_looked_up = True
                if response.status_code == 200:
                    with contextlib.suppress(ValueError):
                        window = context_window_in(response.json(), self.upstream_model)
                        if window:
                            self.context_window = window
        return self.context_window

    async def count_tokens(self, request: ModelRequest) -> int:
        messages = chat_messages(request)
        tools, _ = chat_tools(request.tools, request.tool_choice)
        if self._tokenize_exists is not False:
            counted = await self._tokenize(messages, tools)
            if counted is not None:
                return counted
        return estimate_tokens(messages, tools)

    async def _tokenize(self, messages: list[dict], tools: list[dict]) -> int | None:
        # vLLM and SGLang serve /tokenize beside /v1, applying the chat template to messages.
        root = self.base_url.removesuffix("/v1")
        body: dict[str, Any] = {"model": self.upstream_model, "messages": messages, "add_generation_prompt": True}
        if tools:
            body["tools"] = tools
        try:
            response = await self._http.post(f"{root}/tokenize", content=orjson.dumps(body), headers=self._headers, timeout=self._metadata_timeout)
        except httpx.HTTPError:
            return None
        if 400 <= response.status_code < 500:  # not served, or not for chat messages
            self._tokenize_exists = False
            return None
        if response.status_code != 200:
            return None
        try:
            answer = response.json()
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

    @property
    def _metadata_timeout(self) -> float:
        return min(self.settings.timeout_s, METADATA_TIMEOUT_S)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def context_window_in(models: Any, model: str) -> int | None:
    """The context length GET /models reports for `model` (or for its only model)."""
    entries = models.get("data") if isinstance(models, dict) else None
    if not isinstance(entries, list) or not entries:
        return None
    entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == model), None)
    if entry is None and len(entries) == 1 and isinstance(entries[0], dict):
        entry = entries[0]
    if entry is None:
        return None
    # vLLM/SGLang: max_model_len; OpenRouter and others: context_length / context_window; LM Studio: max_context_length.
    for name in ("max_model_len", "context_length", "context_window", "max_context_length"):
        value = entry.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def estimate_tokens(messages: list[dict], tools: list[dict]) -> int:
    """About four characters a token, a few tokens per message, a flat guess per image or file."""
    characters = len(orjson.dumps(tools)) if tools else 0
    attachments = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "text":
                    characters += len(part.get("text") or "")
                else:
                    attachments += 1
        for call in message.get("tool_calls") or []:
            characters += len(call["function"]["name"]) + len(call["function"]["arguments"])
    return math.ceil(characters / 4) + ESTIMATED_TOKENS_PER_MESSAGE * len(messages) + ESTIMATED_TOKENS_PER_ATTACHMENT * attachments
