"""The embedded default: `threadline serve` with no models configured answers with SmolLM2, for real."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel

from tests.helpers import WEATHER_TOOL, sse_events
from tests.spec_check import checked_http

pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"


def test_the_default_model_is_offered(sdk):
    assert [model.id for model in sdk.models.list()] == [MODEL]


def test_real_generated_text(sdk):
    response = sdk.responses.create(model=MODEL, input="Write one sentence about the sea.", max_output_tokens=40)
    assert response.status in ("completed", "incomplete")
    assert len(response.output_text.strip()) > 0
    assert response.usage.input_tokens > 5 and 0 < response.usage.output_tokens <= 40


def test_real_generated_text_streamed(embedded, spec_check):
    with checked_http(spec_check, embedded.url, timeout=60) as http:
        events = sse_events(http, "/v1/responses", {"model": MODEL, "input": "Name three colours.", "max_output_tokens": 30, "stream": True})
    deltas = [event["delta"] for event in events if event["type"] == "response.output_text.delta"]
    assert len(deltas) > 1 and "".join(deltas).strip()
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == "".join(deltas)


def test_default_model_when_model_is_omitted(sdk):
    response = sdk.responses.create(input="Say hi.", max_output_tokens=10)
    assert response.model == MODEL and response.output_text.strip()


class City(BaseModel):
    name: str
    population: int


def test_structured_output_always_parses(sdk):
    parsed = sdk.responses.parse(model=MODEL, input="Give me a city and its population as JSON.", text_format=City, max_output_tokens=80)
    assert isinstance(parsed.output_parsed, City)


def test_json_schema_output_validates(sdk):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
        "required": ["answer", "confidence"],
        "additionalProperties": False,
    }
    response = sdk.responses.create(
        model=MODEL,
        input="Is water wet? Answer in JSON.",
        text={"format": {"type": "json_schema", "name": "verdict", "schema": schema, "strict": True}},
        # Sampled, the small model can ramble inside a string until the bound cuts it, unfinished.
        temperature=0,
        max_output_tokens=80,
    )
    assert response.status == "completed", response.output_text
    jsonschema.validate(json.loads(response.output_text), schema)


def test_forced_tool_call(sdk):
    response = sdk.responses.create(model=MODEL, input="What's the weather in Paris?", tools=[WEATHER_TOOL], tool_choice="required", max_output_tokens=60)
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    jsonschema.validate(json.loads(call.arguments), WEATHER_TOOL["parameters"])


def test_max_output_tokens_is_respected(sdk):
    response = sdk.responses.create(model=MODEL, input="Tell me a long story about dragons.", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens == 16


def test_input_tokens_use_the_model_tokenizer(sdk):
    counted = sdk.responses.input_tokens.count(model=MODEL, input="Hello there, how are you?")
    response = sdk.responses.create(model=MODEL, input="Hello there, how are you?", max_output_tokens=5)
    assert counted.input_tokens == response.usage.input_tokens


def test_a_conversation_with_the_real_model(sdk):
    conversation = sdk.conversations.create()
    sdk.responses.create(model=MODEL, input="My name is Ada.", conversation=conversation.id, max_output_tokens=20)
    sdk.responses.create(model=MODEL, input="What is my name?", conversation=conversation.id, max_output_tokens=20)
    items = list(sdk.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in items] == ["user", "assistant", "user", "assistant"]
