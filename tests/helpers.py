"""Small helpers the tests share."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable

import asyncpg
import httpx

from tests.mock_upstream import MockUpstream, finish, reply, text
from tests.servers import run_coroutine
from tests.spec_schemas import validate_event
from threadline.backends.base import Backend, ModelRequest, ReasoningDelta, RefusalDelta, TextDelta, ToolCallDelta
from threadline.backends.registry import build_backend
from threadline.config import ModelSettings

# The upstream providers, by the model id the test servers give each on the mock upstream.
PROVIDERS = {"chat": "openai-chat", "resp": "openai-responses"}

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False},
    "strict": True,
}


def script(*steps: dict) -> str:
    """A user message that makes the scripted model follow these steps."""
    return "#script " + json.dumps(list(steps))


def recorded_from_now(record) -> Callable[[], list[dict]]:
    """What a scripted model recording to `record` (options.record_to) receives from now on:
    a function giving its requests so far, one dict each."""
    start = record.stat().st_size

    def received() -> list[dict]:
        with open(record, "rb") as lines:
            lines.seek(start)
            return [json.loads(line) for line in lines if line.strip()]

    return received


def sse_events(http: httpx.Client, path: str, body: dict | None = None, method: str = "POST", headers: dict | None = None) -> list[dict]:
    """Raw server-sent events, each checked: `event:` names its type, and it validates against the spec."""
    events = []
    with http.stream(method, path, json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                assert event["type"] == name
                validate_event(event)
                events.append(event)
    assert [event["sequence_number"] for event in events] == list(range(events[0]["sequence_number"], events[0]["sequence_number"] + len(events)))
    return events


def idempotency_key() -> dict:
    """Headers with a new Idempotency-Key."""
    return {"Idempotency-Key": f"test-{uuid.uuid4()}"}


def read_events(http: httpx.Client, method: str, path: str, body: dict | None = None, stop_after: int | None = None) -> list[dict]:
    """SSE events, validated; with stop_after, the connection is dropped after that many."""
    events = []
    with http.stream(method, path, json=body) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[len("data: ") :])
                validate_event(event)
                events.append(event)
                if stop_after is not None and len(events) == stop_after:
                    break
    return events


def wait_for(client, response_id, statuses=("completed", "failed", "incomplete", "cancelled"), timeout=10.0):
    """The response once its status is one of `statuses`, retrieved through the SDK."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        time.sleep(0.02)
    raise AssertionError(f"response {response_id} still {response.status}")


def database_rows(database_url: str, query: str, *arguments) -> list[tuple]:
    """The rows of one query, read straight from a server's database (SQLite or PostgreSQL);
    `{}` in the query stands for each argument's placeholder."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            return [tuple(row) for row in connection.execute(query.format(*["?"] * len(arguments)), arguments)]

    async def fetch() -> list[tuple]:
        connection = await asyncpg.connect(database_url)
        try:
            return [tuple(row) for row in await connection.fetch(query.format(*[f"${n}" for n in range(1, len(arguments) + 1)]), *arguments)]
        finally:
            await connection.close()

    return run_coroutine(fetch())


def responses_of_conversation(database_url: str, conversation_id: str) -> list[tuple[str, str]]:
    """(id, status) of every stored response of a conversation: the only way to find the id of
    a response whose failure the client got as an error envelope, which carries no id."""
    return database_rows(database_url, "SELECT id, status FROM responses WHERE conversation_id = {} ORDER BY created_at, id", conversation_id)


def without_volatile(response: dict) -> dict:
    """A Response with ids and timestamps blanked, for comparing two runs of one request."""
    blanked = json.loads(json.dumps(response))
    for key in ("id", "created_at", "completed_at"):
        blanked.pop(key, None)
    for item in blanked.get("output", []):
        item.pop("id", None)
        item.pop("call_id", None)
    return blanked


def upstream_models(base_url: str, variants: dict[str, dict], **shared) -> list[dict]:
    """Models on the mock upstream at `base_url`, for each provider and variant: "chat" and
    "resp" for the variant "", "chat-quick" and "resp-quick" for "quick", and so on; each with
    the `shared` settings and its variant's on top."""
    return [
        {"id": model_id + (f"-{name}" if name else ""), "provider": provider, "base_url": base_url, **shared, **settings}
        for model_id, provider in PROVIDERS.items()
        for name, settings in variants.items()
    ]


# --- The backends of the upstream providers, driven directly ---------------------------------


def user(text_: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text_}]}


class UpstreamBackend:
    """One provider's backend, pointed at the mock upstream, as the backend tests drive it."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model

    def backend_for(self, mock: MockUpstream, **settings) -> Backend:
        options = {"retry_base_s": 0.01, **settings.pop("options", {})}
        values = {"id": self.model, "provider": self.provider, "base_url": mock.base_url, "max_retries": 0, "timeout_s": 5, "options": options}
        return build_backend(ModelSettings(**{**values, **settings}))

    def hello(self, **fields) -> ModelRequest:
        return ModelRequest(model=self.model, input=[user("Hello")], **fields)

    async def generate(self, mock: MockUpstream, request: ModelRequest | None = None, **settings) -> list:
        backend = self.backend_for(mock, **settings)
        try:
            return [event async for event in backend.generate(request or self.hello())]
        finally:
            await backend.close()

    async def sent(self, mock: MockUpstream, request: ModelRequest, **settings) -> dict:
        """The body the backend sends upstream for `request`."""
        mock.script(reply(text("ok"), finish()))
        await self.generate(mock, request, **settings)
        return mock.requests[-1]


WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "Current weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CLOCK = {"type": "function", "name": "clock", "parameters": {"type": "object", "properties": {}}, "strict": False}


def joined(events: list) -> list:
    """Consecutive deltas of one kind merged, so streamed and whole answers compare equal."""
    merged: list = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, (TextDelta, ReasoningDelta, RefusalDelta)) and type(last) is type(event):
            last.text += event.text
            if isinstance(event, TextDelta) and event.logprobs:
                last.logprobs = (last.logprobs or []) + event.logprobs
        elif isinstance(event, ToolCallDelta) and isinstance(last, ToolCallDelta) and last.index == event.index:
            last.arguments += event.arguments
        else:
            merged.append(event)
    return merged


def tool_calls(events: list) -> dict[int, dict]:
    calls: dict[int, dict] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            call = calls.setdefault(event.index, {"call_id": None, "name": None, "arguments": ""})
            call["call_id"] = call["call_id"] or event.call_id
            call["name"] = call["name"] or event.name
            call["arguments"] += event.arguments
    return calls


def calls_named_first(events: list) -> bool:
    """Each tool call's first delta carries its call id and name."""
    first: dict[int, ToolCallDelta] = {}
    for event in events:
        if isinstance(event, ToolCallDelta):
            first.setdefault(event.index, event)
    return all(delta.call_id and delta.name for delta in first.values())
