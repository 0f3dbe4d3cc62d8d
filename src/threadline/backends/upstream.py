"""What every OpenAI-style HTTP upstream needs, whichever of OpenAI's APIs it speaks.

An upstream's failures become OpenAI's error codes (HTTP statuses, error bodies, dropped
connections); retryable ones are retried with backoff as long as nothing has reached the
caller; each whole call is bounded by the model's `timeout_s`; answers arrive as
server-sent events or one JSON body. `UpstreamBackend` holds this plumbing, and a backend
for one API adds how it writes a request and reads an answer.

Options shared by every upstream backend (`options` in the model's config):
    retry_base_s   first retry delay, doubled per attempt (default 0.5)
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx
import orjson

from threadline.backends.base import BackendError, ContextLengthExceeded, Finish, ModelEvent, ModelRequest
from threadline.config import ModelSettings

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 8.0
# A longer Retry-After than this is not worth holding the client's request open for.
MAX_RETRY_AFTER_S = 60.0
# /models, /tokenize and token counts are quick metadata calls; don't let them hang a request.
METADATA_TIMEOUT_S = 10.0

# How upstreams word "the prompt does not fit": OpenAI and vLLM ("maximum context length",
# code context_length_exceeded), llama.cpp ("exceeds the available context size"), TGI
# ("must be <= N"), Anthropic-style proxies ("prompt is too long").
CONTEXT_LENGTH_MESSAGE = re.compile(
    r"context[ _](length|size|window)|maximum context|exceed_context_size|prompt is too long"
    r"|too many tokens|tokens \+ `?max_new_tokens`? must be <=",
    re.IGNORECASE,
)

Emit = Callable[[ModelEvent], None]


def invalid_request(message: str) -> BackendError:
    return BackendError(message, code="invalid_request_error", status=400)


def server_error(message: str, *, retryable: bool = False) -> BackendError:
    return BackendError(message, code="server_error", status=500, retryable=retryable)


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


# --- Reading answers ------------------------------------------------------------------------


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


def answers_with_events(body: dict, response: httpx.Response) -> bool:
    # Some upstreams ignore "stream" and answer with one JSON body; read either.
    return bool(body.get("stream")) and "json" not in response.headers.get("content-type", "")


def response_logprobs(tokens: list[dict]) -> list[dict]:
    """Token logprobs in the Responses API's shape, which needs `bytes` (chat's may be null)."""

    def entry(token: dict) -> dict:
        text = token.get("token") or ""
        return {"token": text, "logprob": token.get("logprob", 0.0), "bytes": token.get("bytes") or list(text.encode())}

    return [{**entry(token), "top_logprobs": [entry(top) for top in token.get("top_logprobs") or []]} for token in tokens]


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


# --- The shared backend -------------------------------------------------------------------


class AnswerReader(Protocol):
    """Reads one upstream answer; a backend makes a new one for every attempt."""

    @property
    def finished(self) -> bool:
        """The model said it is done: whatever is still missing (usage, [DONE]) can be done without."""
        ...

    def finish(self) -> Finish: ...


_END = object()


class UpstreamBackend:
    """An OpenAI-style HTTP upstream: POST {base_url}{path}, retried, bounded by timeout_s.

    A subclass sets `path` and implements `request_body`, `new_reader` and `read_answer`.
    """

    path = ""

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

    def request_body(self, request: ModelRequest) -> dict:
        raise NotImplementedError

    def new_reader(self) -> AnswerReader:
        raise NotImplementedError

    async def read_answer(self, response: httpx.Response, body: dict, reader: Any, emit: Emit) -> None:
        """Read a successful answer into events; raise BackendError for one that says it failed."""
        raise NotImplementedError

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return headers

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        body = self.request_body(request)
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
        reader = self.new_reader()

        async def call() -> None:
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    await self._exchange(body, reader, events.put_nowait)
            except TimeoutError:
                if not reader.finished:
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

    async def _exchange(self, body: dict, reader: AnswerReader, emit: Emit) -> None:
        try:
            async with self._http.stream(
                "POST",
                f"{self.base_url}{self.path}",
                content=orjson.dumps(body),
                headers=self.headers,
                timeout=httpx.Timeout(self.settings.timeout_s),
            ) as response:
                if response.status_code >= 400:
                    raise http_error(response.status_code, await response.aread(), response.headers)
                await self.read_answer(response, body, reader, emit)
        except httpx.TransportError as error:
            if not reader.finished:
                raise transport_error(error) from error
            # The model had finished; only the trailing usage or [DONE] went missing.
        emit(reader.finish())

    async def resolve_context_window(self) -> int | None:
        """The upstream's own context length from GET /models when it reports one, else the configured one.

        Asked once; a lookup that fails to connect is tried again next time.
        """
        if self._context_window_looked_up:
            return self.context_window
        async with self._lookup_lock:
            if not self._context_window_looked_up:
                try:
                    response = await self._http.get(f"{self.base_url}/models", headers=self.headers, timeout=self.metadata_timeout)
                except httpx.HTTPError:
                    return self.context_window
                self._context_window_looked_up = True
                if response.status_code == 200:
                    with contextlib.suppress(ValueError):
                        window = context_window_in(response.json(), self.upstream_model)
                        if window:
                            self.context_window = window
        return self.context_window

    @property
    def metadata_timeout(self) -> float:
        return min(self.settings.timeout_s, METADATA_TIMEOUT_S)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()
