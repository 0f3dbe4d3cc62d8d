"""Deleting a response while it runs.

The delete succeeds at once; the response's stream, read by its creator or followed in the
background, ends with exactly one terminal event, response.failed, saying it was deleted,
and the server logs no traceback. An Idempotency-Key held by such a request is free again:
its retry runs, never a 404.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.helpers import script

STEADY = {"text": "one two three four five six", "chunks": 6, "chunk_delay": 0.3}
DELETED = "was deleted"


@pytest.fixture
def server_log(server):
    """What the server logs during the test."""
    with open(server.log.name, "rb") as log:
        log.seek(0, 2)
        yield lambda: log.read().decode(errors="replace")


def stream_deleting(http: httpx.Client, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> list[dict]:
    """The stream's events; the response is deleted once its first delta arrives."""
    events = []
    with http.stream(method, path, json=body, headers=headers) as streamed:
        assert streamed.status_code == 200
        for line in streamed.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if events[-1]["type"] == "response.output_text.delta" and events[-2]["type"] != events[-1]["type"]:
                    assert http.delete(f"/v1/responses/{events[0]['response']['id']}").status_code == 200
    return events


def assert_ended_by_the_delete(events: list[dict], log: str) -> None:
    terminal = [event["type"] for event in events if event["type"] in ("response.completed", "response.incomplete", "response.failed")]
    assert terminal == ["response.failed"] and events[-1]["type"] == "response.failed"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert DELETED in events[-1]["response"]["error"]["message"]
    assert "Traceback" not in log


def test_a_streamed_response_deleted_while_it_runs_ends_failed(quick_http, server_log):
    body = {"model": "scripted", "input": script(STEADY), "stream": True}
    events = stream_deleting(quick_http, "POST", "/v1/responses", body)
    assert_ended_by_the_delete(events, server_log())
    assert quick_http.get(f"/v1/responses/{events[0]['response']['id']}").status_code == 404


def test_a_followed_background_response_deleted_while_it_runs_ends_failed(quick_http, server_log):
    body = {"model": "scripted", "input": script(STEADY), "stream": True, "background": True}
    events = stream_deleting(quick_http, "POST", "/v1/responses", body)
    assert_ended_by_the_delete(events, server_log())


def test_the_key_of_a_response_deleted_while_it_runs_is_free_again(quick_http, server_log):
    body = {"model": "scripted", "input": script(STEADY), "stream": True}
    keyed = {"Idempotency-Key": f"test-{uuid.uuid4()}"}
    first = stream_deleting(quick_http, "POST", "/v1/responses", body, keyed)
    assert_ended_by_the_delete(first, server_log())
    with quick_http.stream("POST", "/v1/responses", json=body, headers=keyed) as retry:
        assert retry.status_code == 200, retry.read()
        retried = [json.loads(line[len("data: ") :]) for line in retry.iter_lines() if line.startswith("data: ")]
    assert retried[-1]["type"] == "response.completed"
    assert retried[0]["response"]["id"] != first[0]["response"]["id"]  # it ran again
