"""Server-sent events as OpenAI sends them: an `event:` line naming the type, then the JSON."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import orjson
from starlette.responses import StreamingResponse


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


def event_stream(events: AsyncGenerator[dict | list[dict]]) -> StreamingResponse:
    return StreamingResponse(
        _encoded(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
