"""The embedded model's bounds, for real: its default output bound, and work its clients left.

SmolLM2-135M can loop until its context is full (minutes on a small machine). A llama-cpp
model's output is bounded by default (512 tokens), and it stops a foreground response whose
client went away (on_disconnect "stop"), so the requests queued behind it need not wait.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.helpers import sse_events, wait_for

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
DEFAULT_BOUND = 512
# At temperature 0, goes on far beyond any bound below (at about 80 tokens a second here).
ENDLESS = "Write a very long story about a dragon, at least 3000 words."


def test_count_from_1_to_5_ends_within_the_default_bound(embedded):
    with httpx.Client(base_url=embedded.url, timeout=60) as http:
        events = sse_events(http, "/v1/responses", {"model": MODEL, "input": "Count from 1 to 5.", "stream": True})
    final = events[-1]["response"]
    assert final["status"] in ("completed", "incomplete") and final["usage"]["output_tokens"] <= DEFAULT_BOUND


def test_a_model_that_goes_on_ends_incomplete_at_the_default_bound(sdk):
    response = sdk.responses.create(model=MODEL, input=ENDLESS, temperature=0, timeout=60)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == DEFAULT_BOUND


def test_a_stream_its_client_left_stops_at_once(embedded, sdk):
    body = {"model": MODEL, "input": ENDLESS, "temperature": 0, "max_output_tokens": 4000, "stream": True}
    events = []
    with httpx.Client(base_url=embedded.url, timeout=60) as http, http.stream("POST", "/v1/responses", json=body) as streamed:
        for line in streamed.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == 8:
                    break
    # 4,000 tokens would take the better part of a minute.
    stopped = wait_for(sdk, events[0]["response"]["id"], timeout=15)
    assert stopped.status == "failed" and "client disconnected" in stopped.error.message
    assert 0 < len(stopped.output_text) and stopped.output[0].status == "incomplete"


def test_a_request_queued_behind_one_its_client_left_is_served(embedded, sdk):
    impatient = openai.OpenAI(base_url=embedded.url + "/v1", api_key="unused", max_retries=0, timeout=2)
    with pytest.raises(openai.APITimeoutError):
        impatient.responses.create(model=MODEL, input=ENDLESS, temperature=0, max_output_tokens=4000)
    # Left running, the abandoned request would hold the model for the better part of a minute.
    response = sdk.responses.create(model=MODEL, input="Say hi.", max_output_tokens=5, timeout=20)
    assert response.status in ("completed", "incomplete") and response.output_text
