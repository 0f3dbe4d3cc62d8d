"""Every Response object and streamed event the tests' clients receive, checked against both specs.

The SDK clients and raw HTTP clients of the tests talk through a checking transport,
which validates each JSON Response from /v1/responses... and each
server-sent event as it passes. A failure is raised where it is seen and also kept in
`SpecCheck.failures`: the SDK turns an exception inside its transport into a connection
error, which a test expecting an error could mistake for its own, so the fixtures also
fail the test at teardown on any kept failure.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType

import httpx
import httpx2
import openai

from tests.spec_schemas import validate_event, validate_response


class SpecCheck:
    """The failures seen by the clients that share this check."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def reader(self, request, response) -> Callable[[bytes | None], None] | None:
        """What checks this response's body, fed chunk by chunk and then None; None if nothing does."""
        path = request.url.path
        if not path.startswith("/v1/responses") or path == "/v1/responses/input_tokens" or response.status_code != 200:
            return None
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            return self._events_reader()
        if content_type.startswith("application/json"):
            return self._json_reader()
        return None

    def _json_reader(self) -> Callable[[bytes | None], None]:
        chunks: list[bytes] = []

        def read(chunk: bytes | None) -> None:
            if chunk is not None:
                chunks.append(chunk)
                return
            body = json.loads(b"".join(chunks))
            if body.get("object") == "response" and "deleted" not in body:
                self._check(validate_response, body)

        return read

    def _events_reader(self) -> Callable[[bytes | None], None]:
        pending = bytearray()

        def read(chunk: bytes | None) -> None:
            pending.extend(chunk or b"\n\n")
            while (end := pending.find(b"\n\n")) != -1:
                block = bytes(pending[:end]).decode()
                del pending[: end + 2]
                fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
                if "data" in fields:
                    event = json.loads(fields["data"])
                    if fields.get("event") != event.get("type"):
                        self._fail(f"`event: {fields.get('event')}` names another type than its data: {fields['data'][:200]}")
                    self._check(validate_event, event)

        return read

    def _check(self, validation: Callable[[dict], None], instance: dict) -> None:
        try:
            validation(instance)
        except AssertionError as failure:
            self._fail(str(failure))

    def _fail(self, message: str) -> None:
        self.failures.append(message)
        raise AssertionError(message)

    def assert_clean(self) -> None:
        assert not self.failures, "\n\n".join(self.failures)


@functools.cache
def transports(http_module: ModuleType) -> tuple[type, type]:
    """The checking transports (sync, async) for `http_module`: httpx for the tests' raw
    clients, or httpx2, which the openai SDK is built on."""

    class CheckedStream(http_module.SyncByteStream):
        def __init__(self, inner, read: Callable[[bytes | None], None]) -> None:
            self.inner, self.read = inner, read

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self.inner:
                self.read(chunk)
                yield chunk
            self.read(None)

        def close(self) -> None:
            self.inner.close()

    class AsyncCheckedStream(http_module.AsyncByteStream):
        def __init__(self, inner, read: Callable[[bytes | None], None]) -> None:
            self.inner, self.read = inner, read

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for chunk in self.inner:
                self.read(chunk)
                yield chunk
            self.read(None)

        async def aclose(self) -> None:
            await self.inner.aclose()

    class SpecCheckingTransport(http_module.HTTPTransport):
        def __init__(self, check: SpecCheck, **options) -> None:
            super().__init__(**options)
            self.check = check

        def handle_request(self, request):
            response = super().handle_request(request)
            read = self.check.reader(request, response)
            if read is not None:
                response.stream = CheckedStream(response.stream, read)
            return response

    class AsyncSpecCheckingTransport(http_module.AsyncHTTPTransport):
        def __init__(self, check: SpecCheck, **options) -> None:
            super().__init__(**options)
            self.check = check

        async def handle_async_request(self, request):
            response = await super().handle_async_request(request)
            read = self.check.reader(request, response)
            if read is not None:
                response.stream = AsyncCheckedStream(response.stream, read)
            return response

    return SpecCheckingTransport, AsyncSpecCheckingTransport


def checked_http(check: SpecCheck, base_url: str, **options) -> httpx.Client:
    """An httpx client whose answers from /v1/responses are checked against both specs."""
    transport, _ = transports(httpx)
    return httpx.Client(base_url=base_url, transport=transport(check), **options)


def checked_client(check: SpecCheck, base_url: str, api_key: str) -> openai.OpenAI:
    """The official SDK client, its answers from /v1/responses checked against both specs."""
    transport, _ = transports(httpx2)
    http_client = openai.DefaultHttpxClient(transport=transport(check))
    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http_client)


def checked_async_client(check: SpecCheck, base_url: str, api_key: str) -> openai.AsyncOpenAI:
    _, transport = transports(httpx2)
    http_client = openai.DefaultAsyncHttpxClient(transport=transport(check))
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, http_client=http_client)
