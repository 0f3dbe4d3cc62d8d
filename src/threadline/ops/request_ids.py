"""Request ids: every answer carries `x-request-id` (OpenAI's form, `req_` and 32 hex digits),
and every log line written while a request is handled carries it, with the client's own
`X-Client-Request-Id` when it sent one."""

from __future__ import annotations

import contextvars
import logging
import re
import secrets

from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("threadline")

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
client_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_request_id", default=None)

# A client's id is logged as sent only if it looks like an id: OpenAI takes up to 512 ASCII
# characters; control characters and spaces would let a client forge log lines.
CLIENT_ID = re.compile(r"[\x21-\x7e]{1,512}")
# The messages that start an answer: an HTTP response, a WebSocket's acceptance or its refusal.
ANSWER_STARTS = ("http.response.start", "websocket.accept", "websocket.http.response.start")


def new_request_id() -> str:
    return f"req_{secrets.token_hex(16)}"


def headers() -> dict[str, str]:
    """The request id header for an answer made outside the middleware (an unexpected error's)."""
    current = request_id.get()
    return {"x-request-id": current} if current else {}


class RequestIds:
    """ASGI middleware: gives each HTTP request and WebSocket handshake an id, sets it for the
    logs of its task (and of the tasks it starts), and adds it to the answer's headers.

    The ids are left set when the request ends: each request runs in a task of its own, and
    an error logged by the server around it still names them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        own = new_request_id()
        request_id.set(own)
        trace.get_current_span().set_attribute("threadline.request_id", own)  # FastAPI's span for the request
        sent = _header(scope, b"x-client-request-id")
        client_request_id.set(sent if sent is not None and CLIENT_ID.fullmatch(sent) else None)
        header = (b"x-request-id", own.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ANSWER_STARTS:
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None
