"""OpenAI's WebSocket mode: GET /v1/responses upgraded to a WebSocket that carries many responses.

The client sends `{"type": "response.create", ...}` messages, each with the body of a create
request; the server answers each with the events the same request streams over SSE, in
order, one JSON text message per event. One response runs at a time: a `response.create`
sent while one runs is answered with an error event, and the connection stays open. Any
refusal is an error event, `{"type": "error", "status": ..., "error": {...}}`, that changes
nothing. A `stream_id` (the SDK's lane) is echoed on every event its message causes, so that
a client routing events by lane finds them; it opens no second lane.

The upgrade is refused to a browser page of another origin (403), as the same-origin rule
keeps such pages from the HTTP API, and to a missing or wrong Bearer key (a plain 401), as
on every /v1 request. A connection is closed after `[websocket]` max_lifetime_s (with
OpenAI's `websocket_connection_limit_reached` error event, once no response runs), after
idle_timeout_s with no message and no response running, and after max_messages client
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

import orjson
from fastapi import APIRouter, WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect

from threadline.api.json import JSON
from threadline.config import WebSocketSettings
from threadline.errors import APIError, invalid
from threadline.items import describe_errors
from threadline.services.response_socket import ResponseSocket
from threadline.spec.events import TERMINAL_TYPES
from threadline.spec.request import CreateResponseBody

log = logging.getLogger("threadline")

router = APIRouter()


@router.websocket("/v1/responses")
async def responses_socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    try:
        _same_origin(websocket)
        project = state.authenticator.project_for(websocket.headers.get("authorization"))
    except APIError as denied:
        await websocket.send_denial_response(JSON(denied.envelope(), status_code=denied.status))
        return
    await websocket.accept()
    await Connection(websocket, ResponseSocket(state.responses, project), state.websocket_limits).serve()


def _same_origin(websocket: WebSocket) -> None:
    """Refuse a browser page of another site: browsers send no key, but they do send the page's
    Origin, and a server without keys would otherwise serve any site its user visits."""
    origin = websocket.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != websocket.headers.get("host", "").lower():
        raise APIError(403, f"WebSocket connections from web pages of another origin ({origin}) are refused.", code="cross_origin_websocket")


class Connection:
    """One accepted WebSocket, from its first message to its close."""

    def __init__(self, websocket: WebSocket, responses: ResponseSocket, limits: WebSocketSettings) -> None:
        self.websocket = websocket
        self.responses = responses
        self.limits = limits
        self.loop = asyncio.get_running_loop()
        self.closes_at = self.loop.time() + limits.max_lifetime_s
        self.idle_since = self.loop.time()
        self.messages = 0
        self.inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.next_message: asyncio.Future | None = None
        # The running response's task; it is `busy` until its terminal event goes out.
        self.turn: asyncio.Task | None = None
        self.busy = False
        self.sending = asyncio.Lock()  # one message at a time, from the turn and from the loop

    async def serve(self) -> None:
        reader = asyncio.create_task(self._read())
        try:
            while (message := await self._next()) is not None:
                if not await self._take(message):
                    break
        finally:
            for task in (reader, self.next_message, self.turn):
                if task is not None:
                    task.cancel()
            # A response still running stops as its SSE stream would when its client leaves.
            if self.turn is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await self.turn

    async def _read(self) -> None:
        """Put each message the client sends in the inbox, then None once it has gone."""
        try:
            while (message := await self.websocket.receive())["type"] != "websocket.disconnect":
                await self.inbox.put(message["text"] if message.get("text") is not None else message.get("bytes"))
        except (WebSocketDisconnect, RuntimeError):
            pass  # closed by this side
        await self.inbox.put(None)

    async def _next(self) -> str | bytes | None:
        """The client's next message; None once the connection is to end (the client left,
        or a limit closed it)."""
        while True:
            now = self.loop.time()
            if not self.busy and now >= self.closes_at:
                minutes = self.limits.max_lifetime_s / 60
                await self._close_with(f"Responses websocket connection limit reached ({minutes:g} minutes). Create a new websocket connection to continue.")
                return None
            idle_ends = self.idle_since + self.limits.idle_timeout_s
            if not self.busy and now >= idle_ends:
                await self._close(f"No message for {self.limits.idle_timeout_s:g} s")
                return None
            if self.next_message is None:
                self.next_message = asyncio.ensure_future(self.inbox.get())
            waits = {self.next_message} | ({self.turn} if self.busy and self.turn is not None else set())
            timeout = None if self.busy else min(self.closes_at, idle_ends) - now
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if self.next_message in done:
                message, self.next_message = self.next_message.result(), None
                return message
            # A response ended, or a limit's time came: look again.

    async def _take(self, message: str | bytes) -> bool:
        """Act on one client message; False once the connection is to end."""
        self.messages += 1
        if self.messages > self.limits.max_messages:
            await self._close_with(f"Responses websocket connection limit reached ({self.limits.max_messages} messages). Create a new websocket connection to continue.")
            return False
        self.idle_since = self.loop.time()
        lane = None
        try:
            data = _json_object(message)
            lane = _lane(data)
            body = self._request(data)
        except APIError as error:
            await self._send_error(error, lane)
            return True
        if self.busy:
            await self._send_error(
                APIError(
                    409,
                    "A response is already in progress on this connection: send the next response.create once it has ended, or open another connection.",
                    code="response_in_progress",
                ),
                lane,
            )
            return True
        self.busy = True
        self.turn = asyncio.create_task(self._run(body, lane))
        return True

    def _request(self, data: dict) -> CreateResponseBody:
        """The create request a client message holds; an APIError if it holds none."""
        kind = data.pop("type", None)
        if kind != "response.create":
            raise invalid(f"Invalid value for 'type': '{kind}'. This server accepts only 'response.create' messages.", param="type")
        try:
            return CreateResponseBody.model_validate(data)
        except ValidationError as error:
            param, text = describe_errors(error.errors(), data)
            raise invalid(text, param=param) from None

    async def _run(self, body: CreateResponseBody, lane: str | None) -> None:
        """Stream one response's events to the client, on the lane its message named."""
        try:
            events = await self.responses.create(body)
        except APIError as error:
            self._ended()
            await self._send_error(error, lane)
            return
        except Exception:
            log.exception("a WebSocket response.create failed in the server")
            self._ended()
            await self._send_error(APIError(500, "The server had an error while processing your request.", type="server_error"), lane)
            return
        try:
            async with contextlib.aclosing(events):
                async for batch in events:
                    for event in batch if isinstance(batch, list) else [batch]:
                        if event["type"] in TERMINAL_TYPES:
                            self._ended()  # the client may send its next response.create as soon as it reads this
                        await self._send(event, lane)
        except WebSocketDisconnect:
            pass  # the client left: its reader ends the connection
        finally:
            self._ended()

    def _ended(self) -> None:
        """The running response ended (said by its own task: one that ended before is not
        the one running)."""
        if self.busy and asyncio.current_task() is self.turn:
            self.busy = False
            self.idle_since = self.loop.time()

    async def _send(self, event: dict, lane: str | None = None) -> None:
        """Send one event, naming the lane of the message that caused it, if that named one."""
        async with self.sending:
            await self.websocket.send_text(orjson.dumps(event if lane is None else {**event, "stream_id": lane}).decode())

    async def _send_error(self, error: APIError, lane: str | None = None) -> None:
        with contextlib.suppress(WebSocketDisconnect):
            await self._send({"type": "error", "status": error.status, **error.envelope()}, lane)

    async def _close_with(self, message: str) -> None:
        """Tell the client that this connection reached a limit, and close it."""
        await self._send_error(APIError(400, message, code="websocket_connection_limit_reached"))
        await self._close()

    async def _close(self, reason: str | None = None) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the client may have gone first
            await self.websocket.close(1000, reason)


def _json_object(message: str | bytes) -> dict:
    try:
        data = orjson.loads(message)
    except orjson.JSONDecodeError:
        raise invalid("We could not parse the JSON of your message. Expected a JSON object.") from None
    if not isinstance(data, dict):
        raise invalid("Invalid message: expected a JSON object with a 'type'.")
    return data


def _lane(data: dict) -> str | None:
    """The message's `stream_id`, taken out of it: it routes the answer and is no part of the request."""
    lane = data.pop("stream_id", None)
    if lane is not None and not isinstance(lane, str):
        raise invalid(f"Invalid type for 'stream_id': expected a string, but got {type(lane).__name__} instead.", param="stream_id")
    return lane
