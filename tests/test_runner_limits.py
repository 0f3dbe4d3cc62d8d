"""Bounds a response keeps whatever its model does: output tokens, and time waiting on an upstream.

- A model that goes past `max_output_tokens` (the request's, else the model's configured
  default) is stopped there, and the response ends `incomplete` (max_output_tokens).
- A streamed response's first events go out at once, before the model answers.
- The time spent on one response's upstream calls, retries and the waits between them
  included, is bounded by the model's `total_timeout_s`.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import script, sse_events, upstream_models
from tests.mock_upstream import finish, reply, text, usage
from tests.spec_check import checked_http

TEN = {"text": "a b c d e f g h i j ", "chunks": 10}


@pytest.fixture(scope="module")
def server(start_server, upstream):
    scripted = [
        {"id": "scripted", "provider": "scripted"},
        {"id": "scripted-bounded", "provider": "scripted", "max_output_tokens": 3},
    ]
    variants = {
        "": {"max_retries": 0},
        "bounded": {"max_retries": 0, "max_output_tokens": 3},
        # Five retries of 1 s calls would take 6 s; the total allows 1.5 s.
        "hangs": {"timeout_s": 1, "max_retries": 5, "total_timeout_s": 1.5},
        "stalls": {"timeout_s": 3, "max_retries": 0},
    }
    return start_server({"models": scripted + upstream_models(upstream.base_url, variants, options={"retry_base_s": 0.01})})


def deltas(events: list[dict]) -> list[str]:
    return [event["delta"] for event in events if event["type"] == "response.output_text.delta"]


def test_an_upstream_that_ignores_max_output_tokens_is_stopped_there(client, http, mock, model):
    mock.script(reply(repeat=text("w ")))  # never stops by itself
    events = sse_events(http, "/v1/responses", {"model": model, "input": "Hi", "max_output_tokens": 5, "stream": True})
    assert deltas(events) == ["w "] * 5
    assert events[-1]["type"] == "response.incomplete"
    stored = client.responses.retrieve(events[-1]["response"]["id"])
    assert stored.status == "incomplete" and stored.incomplete_details.reason == "max_output_tokens"
    assert stored.output_text == "w " * 5 and stored.usage.output_tokens == 5
    assert mock.requests[0]["max_tokens" if model == "chat" else "max_output_tokens"] == 5


def test_an_upstream_that_keeps_to_the_bound_ends_by_itself(client, http, mock, model):
    mock.script(reply(text("a"), text("b"), finish("length"), usage(7, 2)))
    events = sse_events(http, "/v1/responses", {"model": model, "input": "Hi", "max_output_tokens": 2, "stream": True})
    assert deltas(events) == ["a", "b"] and events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["usage"]["input_tokens"] == 7  # the upstream's own count


def test_a_models_default_bound_applies_when_the_request_sets_none(client, mock, model):
    cut = client.responses.create(model="scripted-bounded", input=script(TEN))
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text == "a b c " and cut.max_output_tokens is None  # the request set none
    # The request's own bound wins, above the model's default as below it.
    assert client.responses.create(model="scripted-bounded", input=script(TEN), max_output_tokens=5).output_text == "a b c d e "
    assert client.responses.create(model="scripted-bounded", input=script(TEN), max_output_tokens=1).output_text == "a "
    assert client.responses.create(model="scripted", input=script(TEN)).status == "completed"
    # An upstream is told the bound.
    mock.script(reply(text("x"), finish("length")))
    client.responses.create(model=f"{model}-bounded", input="Hi")
    assert mock.requests[0]["max_tokens" if model == "chat" else "max_output_tokens"] == 3


def test_a_stream_begins_before_the_model_answers(client, mock, model, server, spec_check):
    mock.script(reply(text("late"), delay=30))  # never answers within the model's 3 s
    events = []
    with checked_http(spec_check, server.url, timeout=20) as session:
        body = {"model": f"{model}-stalls", "input": "Hi", "stream": True}
        with session.stream("POST", "/v1/responses", json=body) as streamed:
            assert streamed.status_code == 200
            for line in streamed.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                    if len(events) == 2:  # here before the model answered, or failed to
                        assert client.responses.retrieve(events[0]["response"]["id"]).status == "in_progress"
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.failed"]


def test_the_time_on_an_upstream_is_bounded_across_retries(http, mock, model):
    mock.script(*[reply(text("late"), delay=30)] * 6)
    events = sse_events(http, "/v1/responses", {"model": f"{model}-hangs", "input": "Hi", "stream": True})
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.failed"]
    assert "total_timeout_s" in events[-1]["response"]["error"]["message"]
    assert len(mock.requests) < 3  # not the six that timeout_s and max_retries alone would allow
