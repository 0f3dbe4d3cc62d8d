"""Server-sent events as OpenAI sends them: an `event:` line naming the type, then the JSON."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import orjson
from starlette.responses import StreamingResponse


def encode(event: dict) -> bytes:
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def _encoded(events: AsyncIterable[dict]) -> AsyncIterator[bytes]:
    async for event in events:
        yield encode(event)


def event_stream(events: AsyncIterable[dict]) -> StreamingResponse:
    return StreamingResponse(
        _encoded(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
