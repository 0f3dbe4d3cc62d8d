"""The response that streams server-sent events: the messages Starlette's StreamingResponse
sends, and a client that leaves ends it at once, even while it waits for an event."""

from __future__ import annotations

import asyncio

import pytest
from starlette.responses import StreamingResponse

from threadline.api.sse import _encoded, event_stream

EVENTS = [[{"type": "response.created", "sequence_number": 0}], {"type": "response.completed", "sequence_number": 1}]
SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


async def listed(events: list) -> object:
    for event in events:
        yield event


async def messages(response, receive=None) -> list[dict]:
    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def connected() -> dict:
        await asyncio.Event().wait()  # the client never leaves

    await response(SCOPE, receive or connected, send)
    return sent


def test_the_same_messages_as_starlettes_streaming_response():
    async def both() -> tuple[list[dict], list[dict]]:
        ours = await messages(event_stream(listed(EVENTS)))
        theirs = await messages(StreamingResponse(_encoded(listed(EVENTS)), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}))
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert ours == theirs
    assert ours[0]["headers"] == [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"), (b"content-type", b"text/event-stream; charset=utf-8")]


def test_a_client_leaving_ends_a_stream_waiting_for_an_event():
    closed = []

    async def waiting() -> object:
        try:
            yield {"type": "response.created", "sequence_number": 0}
            await asyncio.Event().wait()  # a model that never answers
        finally:
            closed.append(True)

    async def run() -> tuple[list[dict], int]:
        left = asyncio.Event()

        async def receive() -> dict:
            await left.wait()
            return {"type": "http.disconnect"}

        streaming = asyncio.create_task(messages(event_stream(waiting()), receive))
        await asyncio.sleep(0.01)
        left.set()
        sent = await asyncio.wait_for(streaming, 5)
        return sent, streaming.cancelling()

    sent, cancelling = asyncio.run(run())
    assert closed == [True]
    assert [message["type"] for message in sent] == ["http.response.start", "http.response.body"]  # no end: the client is gone
    assert cancelling == 0  # the request's task goes on as if the stream had ended by itself


def test_a_cancel_from_outside_still_cancels():
    async def never() -> object:
        await asyncio.Event().wait()
        yield {}

    async def run() -> None:
        streaming = asyncio.create_task(messages(event_stream(never())))
        await asyncio.sleep(0.01)
        streaming.cancel()
        await streaming

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())
