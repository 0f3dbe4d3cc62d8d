"""What every OpenAI-style HTTP upstream needs, whichever of OpenAI's APIs it speaks.

An upstream's failures become OpenAI's error codes (HTTP statuses, error bodies, dropped
connections); retryable ones are retried with backoff as long as nothing has reached the
caller; each whole call is bounded by the model's `timeout_s` (connecting by its
`connect_timeout_s`), every call and wait for one response together by its `total_timeout_s`,
and each answer by its `max_answer_bytes`; answers arrive as server-sent events or one JSON
body. `UpstreamBackend` holds this plumbing, and a backend for one API adds how it writes a
request and reads an answer.

A connection is kept for the next call once an answer has been read to its end; one whose
answer was abandoned midway, or that failed, is closed.

Options shared by every upstream backend (`options` in the model's config):
    retry_base_s   first retry delay, doubled per attempt (default 0.5)
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import email.utils
import errno
import math
import os
import random
import re
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import aiohttp
import certifi
import orjson

from threadline.backends.base import BackendError, ContextLengthExceeded, Finish, ModelEvent, ModelRequest
from threadline.config import ModelSettings
from threadline.ops import tracing
from threadline.ops.metrics import observed_upstream_call, upstream_retried, with_upstream_status

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 8.0
# Idle connections are closed after this long: sooner than the 5 s that servers such as uvicorn
# and Node keep them, so an upstream never closes one just as a call reuses it.
KEEPALIVE_S = 4.0
# A longer Retry-After than this is not worth holding the client's request open for.
MAX_RETRY_AFTER_S = 60.0
# /models, /tokenize and token counts are quick metadata calls; don't let them hang a request.
METADATA_TIMEOUT_S = 10.0
# A context window lookup that could not connect is tried again after this long, not by the
# next request: an upstream that is down would otherwise make every request wait for it twice.
LOOKUP_RETRY_S = 30.0
# An error body is read for its message only (500 characters of it are kept); the rest is left unread.
ERROR_BODY_BYTES = 64 * 1024
# Server-sent events end lines with CRLF, LF or CR, and with nothing else: U+2028, U+0085 and
# the like, which JSON encoders may leave unescaped inside strings, are text.
SSE_LINE_END = re.compile(r"\r\n|\r|\n")
# The end of an answer's body follows its last event at once; it is waited for this long so the
# connection can carry another call, and an upstream that has not ended the body by then loses it.
END_OF_BODY_WAIT_S = 0.1

# How upstreams word "the prompt does not fit": OpenAI and vLLM ("maximum context length",
# code context_length_exceeded), llama.cpp ("exceeds the available context size"), TGI
# ("must be <= N"), Anthropic-style proxies ("prompt is too long").
CONTEXT_LENGTH_MESSAGE = re.compile(
    r"context[ _](length|size|window)|maximum context|exceed_context_size|prompt is too long"
    r"|too many tokens|tokens \+ `?max_new_tokens`? must be <=",
    re.IGNORECASE,
)


def invalid_request(message: str) -> BackendError:
    return BackendError(message, code="invalid_request_error", status=400)


def server_error(message: str, *, retryable: bool = False) -> BackendError:
    return BackendError(message, code="server_error", status=500, retryable=retryable)


# --- Errors -------------------------------------------------------------------------------

# What an upstream's words may hold that must go no further: credentials (a header or a key the
# upstream echoed) and its internals (addresses). Each is replaced by REDACTED.
REDACTED = "[redacted]"
SECRETS = re.compile(
    r"(?i)(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?[^\s\"',;}]+"
    r"|\bbearer\s+[\w.~+/=-]+"
    r"|(?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?[^\s\"',;&}]+"
    r"|\bsk-[\w-]{8,}"
    r"|\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+"  # URLs
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # IPv4 addresses
    r"|\[[0-9a-f:]*:[0-9a-f:]*\](?::\d+)?"  # IPv6 addresses, as URLs write them
    r"|\b[a-z0-9-]*[a-z][a-z0-9-]*(?:\.[a-z0-9-]+)*:\d{2,5}\b"  # host:port
)


def redact(text: str) -> str:
    """The upstream's words without the credentials and addresses they may hold."""
    return SECRETS.sub(REDACTED, text)


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


def http_error(status: int, content: bytes, headers: Mapping[str, str]) -> BackendError:
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
    message = redact(upstream_message(body) or content.decode(errors="replace").strip()[:500] or f"HTTP {status}")
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
    kind = error.get("type") if isinstance(error, dict) else None
    if isinstance(code, int) and 400 <= code < 600:  # vLLM and others put the HTTP status there
        status = code
    elif "rate_limit" in f"{code} {kind}":  # OpenAI's words: code rate_limit_exceeded, type rate_limit_error
        status = 429
    else:
        status = 500
    return http_error(status, orjson.dumps(body), {})


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def answer_too_large(limit: int) -> BackendError:
    # Not retried: the same request would most likely get the same answer.
    return server_error(f"The upstream model's answer was larger than this model's max_answer_bytes ({limit}).")


def transport_error(error: aiohttp.ClientError) -> BackendError:
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        message = "Connecting to the upstream model timed out."
    elif isinstance(error, aiohttp.ServerTimeoutError):
        message = "The upstream model timed out."
    elif isinstance(error, aiohttp.ClientConnectorError):
        message = f"Could not connect to the upstream model: {redact(described(error))}"
    else:
        message = f"The connection to the upstream model failed: {redact(described(error))}"
    return server_error(message, retryable=True)


def described(error: BaseException) -> str:
    """What went wrong, in words: the first message in the error or its causes, put plainly where
    aiohttp's is a repr or a bare URL."""
    text = str(error)
    if isinstance(error, aiohttp.ClientPayloadError) and text.startswith("Response payload is not completed"):
        # The connection ended before the body did; a reset shows only as a repr inside the text.
        if "ConnectionResetError" in text:
            return f"[Errno {errno.ECONNRESET}] {os.strerror(errno.ECONNRESET)}"
        return "peer closed connection without sending complete message body"
    if isinstance(error, aiohttp.NonHttpUrlClientError):
        return f"{text} is not an http:// or https:// URL"
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if str(current):
            return str(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return type(error).__name__


# --- Reading answers ------------------------------------------------------------------------


async def bounded_chunks(response: aiohttp.ClientResponse, limit: int) -> AsyncIterator[bytes]:
    """The answer's bytes as they arrive (decompressed); more than `limit` of them raise instead of piling up."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise answer_too_large(limit)
    received = 0
    while chunk := await response.content.readany():
        if received + len(chunk) > limit:
            # A read may hold much at once: what came within the limit is still passed on.
            yield chunk[: limit - received]
            raise answer_too_large(limit)
        received += len(chunk)
        yield chunk


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole answer body, as long as it is no larger than `limit`."""
    chunks = []
    async with contextlib.aclosing(bounded_chunks(response, limit)) as read:
        async for chunk in read:
            chunks.append(chunk)
    return b"".join(chunks)


async def read_error_body(response: aiohttp.ClientResponse) -> bytes:
    """The start of an error answer, which is all its message needs; the rest is never read."""
    body = bytearray()
    while len(body) < ERROR_BODY_BYTES and (chunk := await response.content.readany()):
        body += chunk
    return bytes(body[:ERROR_BODY_BYTES])


async def read_to_end(response: aiohttp.ClientResponse) -> None:
    """Read what follows an answer's last event (nothing, or a [DONE]) to the end of its body, so
    that its connection can carry another call; one that does not end promptly is closed instead."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(END_OF_BODY_WAIT_S):
            while await response.content.readany():
                pass


async def sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines of a server-sent event stream: split at CRLF, LF or CR only, decoded as UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []  # the start of a line still being received
    after_cr = False  # the last text ended with CR, so an LF starting the next one belongs to it
    async with contextlib.aclosing(chunks) as received:
        async for chunk in received:
            text = decoder.decode(chunk)
            if not text:
                continue
            if after_cr and text[0] == "\n":
                text = text[1:]
            after_cr = text.endswith("\r")
            *ended, rest = SSE_LINE_END.split(text)
            if ended:
                yield "".join(pending) + ended[0]
                for line in ended[1:]:
                    yield line
                pending = []
            if rest:
                pending.append(rest)
    rest = "".join(pending) + decoder.decode(b"", final=True)
    if rest:
        yield rest


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


def answers_with_events(body: dict, response: aiohttp.ClientResponse) -> bool:
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


def proxy_for(url: str) -> str | None:
    """The proxy the environment names for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY), unless NO_PROXY exempts its host."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


class UpstreamBackend:
    """An OpenAI-style HTTP upstream: POST {base_url}{path}, retried, bounded by timeout_s.

    A subclass sets `path` and implements `request_body`, `new_reader` and `read_answer`.
    """

    path = ""

    def __init__(self, settings: ModelSettings, http: aiohttp.ClientSession | None = None) -> None:
        self.id = settings.id
        self.settings = settings
        self.context_window: int | None = settings.context_window
        self.upstream_model = settings.upstream_model or settings.id
        self.base_url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._http = http
        self._owns_http = http is None
        self._context_window_looked_up = False
        self._lookup_failed_at: float | None = None
        self._lookup_lock = asyncio.Lock()

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session to the upstream, made on first use: aiohttp ties it to the running loop."""
        if self._http is None:
            # Streams are bounded by timeout_s per call, not by the pool, so don't cap them.
            # certifi's roots: a slim image without the system's certificate store still reaches OpenAI.
            trusted = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S, ssl=trusted)
            self._http = aiohttp.ClientSession(connector=connector, proxy=proxy_for(self.base_url))
        return self._http

    def request_body(self, request: ModelRequest) -> dict:
        raise NotImplementedError

    def new_reader(self) -> AnswerReader:
        raise NotImplementedError

    def read_answer(self, response: aiohttp.ClientResponse, body: dict, reader: Any) -> AsyncIterator[ModelEvent]:
        """The events of a successful answer; raise BackendError for one that says it failed.

        Read it through `answer_lines` or `answer_body`, which hold it to max_answer_bytes.
        """
        raise NotImplementedError

    def answer_lines(self, response: aiohttp.ClientResponse) -> AsyncIterator[str]:
        """The lines of an answer streamed as server-sent events."""
        return sse_lines(bounded_chunks(response, self.settings.max_answer_bytes))

    async def answer_body(self, response: aiohttp.ClientResponse) -> bytes:
        """A whole answer's body."""
        return await read_bounded(response, self.settings.max_answer_bytes)

    @property
    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        return tracing.propagate_to(headers)

    def request(self, method: str, url: str, timeout: aiohttp.ClientTimeout, body: dict | None = None) -> Any:
        """One request to the upstream, to use with `async with`; redirects are answers, not followed."""
        content = None if body is None else orjson.dumps(body)
        return self.http.request(method, url, data=content, headers=self.headers, timeout=timeout, allow_redirects=False)

    async def generate(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        body = self.request_body(request)
        started = time.monotonic()
        spent = 0.0  # of total_timeout_s, by the attempts so far and the waits between them
        attempt = 0
        while True:
            yielded = False
            try:
                allowed = min(self.settings.timeout_s, self.settings.total_timeout_s - spent)
                async with contextlib.aclosing(observed_upstream_call(self.settings.id, self._call(body, allowed))) as events:
                    async for event in events:
                        yielded = True
                        yield event
                return
            except BackendError as error:
                delay = self._retry_delay(attempt, error)
                spent = time.monotonic() - started
                # Once output reached the caller a retry would repeat it, so only retry before;
                # and only while total_timeout_s leaves time for it.
                if yielded or delay is None or spent + delay >= self.settings.total_timeout_s:
                    raise
            attempt += 1
            upstream_retried(self.settings.id)
            await asyncio.sleep(delay)
            spent = time.monotonic() - started

    def _retry_delay(self, attempt: int, error: BackendError) -> float | None:
        if not error.retryable or attempt >= self.settings.max_retries:
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            return retry_after if retry_after <= MAX_RETRY_AFTER_S else None
        base = float(self.settings.options.get("retry_base_s", 0.5))
        return min(MAX_BACKOFF_S, base * 2**attempt) * random.uniform(0.5, 1.0)

    async def _call(self, body: dict, allowed: float) -> AsyncIterator[ModelEvent]:
        """One upstream call, its whole duration bounded by `allowed` seconds: timeout_s, or
        what total_timeout_s leaves of itself.

        The deadline (aiohttp's total timeout) cancels only while the call waits on the upstream
        (to connect, for the headers, for more of the answer), never the caller's task while it
        is busy elsewhere between events.
        """
        reader = self.new_reader()
        url = f"{self.base_url}{self.path}"
        try:
            async with self.request("POST", url, self.call_timeout(allowed), body) as response:
                if response.status >= 400:
                    raise with_upstream_status(response.status, http_error(response.status, await read_error_body(response), response.headers))
                async with contextlib.aclosing(self.read_answer(response, body, reader)) as events:
                    async for event in events:
                        yield event
                await read_to_end(response)
        except aiohttp.ClientError as error:  # caught before TimeoutError, which its timeouts are too
            if not reader.finished:
                raise transport_error(error) from error
            # The model had finished; only the trailing usage or [DONE] went missing.
        except TimeoutError:
            if not reader.finished:
                raise server_error(self._timed_out(allowed), retryable=True) from None
            # The model had finished; only the trailing usage or [DONE] never came.
        yield reader.finish()

    def _timed_out(self, allowed: float) -> str:
        if allowed < self.settings.timeout_s:
            return f"The upstream model did not finish within this model's total_timeout_s ({self.settings.total_timeout_s:g} s)."
        return f"The upstream model did not finish within {self.settings.timeout_s:g} s."

    async def metadata(self, method: str, url: str, body: dict | None = None) -> tuple[int, bytes] | None:
        """A quick metadata call's status and body; None when it could not be made."""
        try:
            async with self.request(method, url, self.metadata_timeout, body) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def start(self) -> None:
        """Nothing to load: the upstream is asked on first use."""

    async def resolve_context_window(self) -> int | None:
        """The upstream's own context length from GET /models when it reports one, else the configured one.

        Asked once; a lookup that fails to connect is tried again LOOKUP_RETRY_S later.
        """
        if self._context_window_looked_up:
            return self.context_window
        failed_at = self._lookup_failed_at
        if failed_at is not None and time.monotonic() - failed_at < LOOKUP_RETRY_S:
            return self.context_window
        async with self._lookup_lock:
            # Another request may have looked it up, or failed to, while this one waited.
            if not self._context_window_looked_up and self._lookup_failed_at == failed_at:
                answer = await self.metadata("GET", f"{self.base_url}/models")
                if answer is None:
                    self._lookup_failed_at = time.monotonic()
                    return self.context_window
                self._context_window_looked_up = True
                status, content = answer
                if status == 200:
                    with contextlib.suppress(ValueError):
                        window = context_window_in(orjson.loads(content), self.upstream_model)
                        if window:
                            self.context_window = window
        return self.context_window

    def call_timeout(self, total: float) -> aiohttp.ClientTimeout:
        """aiohttp's limits for one call: `total` for all of it, connecting no longer than connect_timeout_s."""
        # An infinite ceil_threshold keeps deadlines exact; aiohttp would round those over 5 s up to a whole second.
        return aiohttp.ClientTimeout(total=total, connect=min(total, self.settings.connect_timeout_s), ceil_threshold=math.inf)

    @property
    def metadata_timeout(self) -> aiohttp.ClientTimeout:
        return self.call_timeout(min(self.settings.timeout_s, METADATA_TIMEOUT_S))

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None
