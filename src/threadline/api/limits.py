"""What a request may take from the server: bytes, and time.

A body over `limits.max_body_bytes` is refused with 413 before it is read whole; an upload
route has a limit of its own (`files.max_file_bytes` and room for its form). A body that
takes longer than `server.body_timeout_s` to arrive after its headers is refused with 408,
and headers that take longer than `server.header_timeout_s` (a connection that sends nothing
included) lose their connection: a client cannot hold the server's connections by sending
slowly. Idle connections between requests are closed after `server.keep_alive_s` by uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from threadline.api.json import JSON
from threadline.errors import APIError


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so body parsing lets it through."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"The request body is larger than this server accepts ({max_body_bytes} bytes).")


class BodyTooSlow(HTTPException):
    """Raised when the body has not arrived in time; the connection is closed after the answer."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"The request body did not arrive within {timeout_s:g} s.", headers={"connection": "close"})


# The slowest an upload route's body may arrive, past the first body_timeout_s.
UPLOAD_MIN_BYTES_PER_S = 64 * 1024


class BodyLimits:
    def __init__(self, app: ASGIApp, max_body_bytes: int, timeout_s: float, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        # The body limit of each upload route (POST to the path), in place of max_body_bytes.
        self.uploads = uploads or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and scope["path"] in self.uploads
        max_body_bytes = self.uploads[scope["path"]] if upload else self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            await self._refuse(scope, receive, send, max_body_bytes)
            return
        headers_at = asyncio.get_running_loop().time()
        received = 0
        whole = False  # the body has arrived; later receives wait for a disconnect, as long as it takes
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, whole
            if whole:
                return await receive()
            # An upload may take longer than timeout_s as long as it keeps arriving at
            # UPLOAD_MIN_BYTES_PER_S: a large file on a slow link still gets through.
            deadline = headers_at + self.timeout_s + (received / UPLOAD_MIN_BYTES_PER_S if upload else 0)
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(self.timeout_s) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_body_bytes:
                    raise BodyTooLarge(max_body_bytes)
                whole = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, receive, send, max_body_bytes)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_body_bytes: int) -> None:
        error = APIError(413, BodyTooLarge(max_body_bytes).detail, code="request_too_large")
        await JSON(error.envelope(), status_code=413)(scope, receive, send)


class HeaderTimeout(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers take longer
    than `header_timeout_s` to arrive: from the connection's start for its first request,
    from the first byte for each later one (the wait between requests is uvicorn's keep-alive)."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # A request's headers nearly always arrive in the bytes that begin it: the timer is
        # started only for headers still incomplete once these bytes are parsed.
        if self._awaiting_headers:
            self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
