"""Small helpers the tests share."""

from __future__ import annotations

import json

import httpx

from tests.spec_schemas import validate_event


def script(*steps: dict) -> str:
    """A user message that makes the scripted model follow these steps."""
    return "#script " + json.dumps(list(steps))


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


def without_volatile(response: dict) -> dict:
    """A Response with ids and timestamps blanked, for comparing two runs of one request."""
    blanked = json.loads(json.dumps(response))
    for key in ("id", "created_at", "completed_at"):
        blanked.pop(key, None)
    for item in blanked.get("output", []):
        item.pop("id", None)
        item.pop("call_id", None)
    return blanked
