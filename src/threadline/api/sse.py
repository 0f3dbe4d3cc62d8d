"""Server-sent events as OpenAI sends them: an `event:` line naming the type, then the JSON."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


# Line separators JSON leaves raw inside strings but many line readers split on: escaped.
UNSAFE_IN_LINES = ((b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"), (b"\xc2\x85", b"\\u0085"))


def encode(event: dict) -> bytes:
    data = orjson.dumps(event)
    for raw, escaped in UNSAFE_IN_LINES:
        if raw in data:
            data = data.replace(raw, escaped)
    return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"


async def _encoded(events: AsyncGenerator[dict | list[dict]]) -> AsyncIterator[bytes]:
    # Closed with the stream, also when its client leaves: whatever produces the events learns
    # at once that nobody reads them any more.
    async with contextlib.aclosing(events):
        async for event in events:
            # A list holds events ready together: one write carries them all.
            yield b"".join(map(encode, event)) if isinstance(event, list) else encode(event)
            del event  # sent: not kept while the next is awaited (a stream may wait minutes)


class EventStream(StreamingResponse):
    """Starlette's StreamingResponse (the same headers and messages), streamed without its
    anyio task group, which is several KiB of every open stream, and a stream may wait
    minutes for its model. As Starlette does under an ASGI server older than spec 2.4, a
    second task listens for the client leaving, which ends the stream at once, whatever it
    waits for; the stream itself runs in the request's task."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        left: list[BaseException | None] = []  # once the listener ended: None (the client left), or what it raised

        async def listen() -> None:
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
                left.append(None)
            except Exception as error:
                left.append(error)
            streaming.cancel()

        listener = asyncio.create_task(listen())
        try:
            await self._send_all(send)
        except asyncio.CancelledError:
            # Cancelled by the listener alone: the stream ends as if it had ended by itself.
            if not left or streaming.uncancel() > 0:
                raise
            if left[0] is not None:
                raise left[0] from None
        finally:
            listener.cancel()

    async def _send_all(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for chunk in self.body_iterator:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            del chunk  # sent: not kept while the next is awaited
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def event_stream(events: AsyncGenerator[dict | list[dict]]) -> EventStream:
    return EventStream(
        _encoded(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
