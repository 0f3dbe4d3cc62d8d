"""The Open Responses compliance checks, on the mock upstream (through both providers) and on
the embedded model: each kind of request, its Response and its events validated against the
Open Responses specification's schemas. (Everything the test clients receive is also checked
against OpenAI's description and Open Responses by `spec_check`.)
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest

from tests.helpers import WEATHER_TOOL, sse_events, upstream_models
from tests.mock_upstream import MockUpstream, finish, reply, text, tool_call, usage
from tests.spec_check import checked_client, checked_http
from tests.spec_schemas import OPEN_RESPONSES, OPENAI, spec_schema, validate, validate_event
from threadline.spec.errors import RESPONSE_ERROR_CODES
from threadline.spec.request import INCLUDABLE

EMBEDDED_MODEL = "smollm2-135m-instruct"
TARGETS = ["chat", "resp", pytest.param("embedded", marks=pytest.mark.slow)]
WEATHER_TOOL_WITHOUT_STRICT = {key: value for key, value in WEATHER_TOOL.items() if key != "strict"}
# A 1x1 red PNG.
RED_PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
TERMINAL = ("response.completed", "response.incomplete")


@pytest.fixture(scope="module")
def upstream_server(start_server, upstream):
    return start_server({"models": upstream_models(upstream.base_url, {"": {}})})


def answer(body: dict):
    """The mock upstream's answer: a call to the first tool when there are tools, else text."""
    tools = body.get("tools")
    if tools:
        name = tools[0].get("name") or tools[0]["function"]["name"]
        return reply(tool_call(0, id="call_1", name=name, arguments='{"city": '), tool_call(0, arguments='"Paris"}'), finish("tool_calls"), usage(30, 8))
    return reply(text("Hello"), text(" there!"), finish("stop"), usage(12, 3))


@dataclass
class Target:
    model: str
    client: openai.OpenAI
    http: object
    upstream: MockUpstream | None  # None: the embedded model

    @property
    def real(self) -> bool:
        return self.upstream is None


@pytest.fixture(params=TARGETS)
def target(request, start_server, spec_check):
    """Each target's server is started (by start_server, on this module's database) when first asked for."""
    if request.param == "embedded":
        server, upstream, model = request.getfixturevalue("embedded"), None, EMBEDDED_MODEL
    else:
        server, upstream, model = request.getfixturevalue("upstream_server"), request.getfixturevalue("mock"), request.param
        upstream.responder = answer
    with checked_http(spec_check, server.url, timeout=120) as http:
        yield Target(model, checked_client(spec_check, server.url + "/v1", "unused"), http, upstream)


def create(target: Target, **body) -> dict:
    """POST /v1/responses as JSON, the Response checked against Open Responses' ResponseResource."""
    answered = target.http.post("/v1/responses", json={"model": target.model, "max_output_tokens": 40, **body})
    assert answered.status_code == 200, answered.text
    response = answered.json()
    validate(response, "ResponseResource", OPEN_RESPONSES)
    return response


def stream(target: Target, **body) -> list[dict]:
    events = sse_events(target.http, "/v1/responses", {"model": target.model, "max_output_tokens": 40, "stream": True, **body})
    for event in events:
        validate_event(event)
    return events


def shape(events: list[dict]) -> list[str]:
    """The event types in order, each run of deltas as one."""
    types = [event["type"] for event in events]
    return [kind for index, kind in enumerate(types) if not (kind.endswith(".delta") and index and types[index - 1] == kind)]


def upstream_messages(target: Target) -> list[tuple[str, object]]:
    """(role, content) of each message the upstream received last, in either provider's terms."""
    body = target.upstream.requests[-1]
    if target.model == "chat":
        return [(message["role"], message["content"]) for message in body["messages"]]
    return [(item["role"], item["content"]) for item in body["input"] if item.get("type", "message") == "message"]


def test_basic_text_response(target):
    response = create(target, input="Say hello in one short sentence.")
    assert response["object"] == "response" and response["status"] in (("completed", "incomplete") if target.real else ("completed",))
    (message,) = response["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text" and message["content"][0]["text"].strip()
    if not target.real:
        assert message["content"][0]["text"] == "Hello there!"
    usage_ = response["usage"]
    assert usage_["total_tokens"] == usage_["input_tokens"] + usage_["output_tokens"] > 0


def test_streamed_response_in_the_required_order(target):
    events = stream(target, input="Say hello in one short sentence.")
    assert shape(events)[:-1] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[-1]["type"] in (TERMINAL if target.real else ("response.completed",))
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    created, final = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["usage"] is None and created["output"] == []
    deltas = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert final["output"][0]["content"][0]["text"] == deltas and final["usage"]["output_tokens"] > 0


def test_system_message(target):
    system = "You are a terse assistant. Answer in one word."
    response = create(target, input=[{"type": "message", "role": "system", "content": system}, {"type": "message", "role": "user", "content": "Say hello."}])
    assert response["output"][0]["type"] == "message"
    items = target.client.responses.input_items.list(response["id"], order="asc").data
    assert [(item.role, item.content[0].text) for item in items] == [("system", system), ("user", "Say hello.")]
    if not target.real:
        assert upstream_messages(target)[0][0] == "system"


def test_function_tool_call(target):
    # Sent without `strict`: OpenAI's default for a function tool (true) is echoed.
    response = create(target, input="What's the weather in Paris?", tools=[WEATHER_TOOL_WITHOUT_STRICT], tool_choice="required", max_output_tokens=60)
    assert response["status"] == "completed"
    (call,) = response["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["status"] == "completed"
    assert call["call_id"] and isinstance(json.loads(call["arguments"])["city"], str)
    assert response["tools"] == [WEATHER_TOOL]


def test_function_tool_call_streamed(target):
    events = stream(target, input="What's the weather in Paris?", tools=[WEATHER_TOOL_WITHOUT_STRICT], tool_choice="required", max_output_tokens=60)
    assert shape(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done = events[2]["item"], events[-2]["item"]
    arguments = "".join(event["delta"] for event in events if event["type"] == "response.function_call_arguments.delta")
    assert added["status"] == "in_progress" and added["arguments"] == ""
    assert done["status"] == "completed" and done["arguments"] == arguments == events[-3]["arguments"]
    assert events[-1]["response"]["output"] == [done]


def test_input_image(target):
    question = "What color is this image?"
    content = [{"type": "input_text", "text": question}, {"type": "input_image", "image_url": RED_PIXEL, "detail": "low"}]
    response = create(target, input=[{"type": "message", "role": "user", "content": content}])
    assert response["output"][0]["type"] == "message"
    (item,) = target.client.responses.input_items.list(response["id"]).data
    assert item.model_dump(exclude_none=True)["content"] == content
    if target.real:
        # The embedded model reads text only: the image is left out of its prompt, not read as text.
        text_only = target.client.responses.input_tokens.count(model=target.model, input=question)
        assert response["usage"]["input_tokens"] == text_only.input_tokens
    else:
        (_role, sent), = upstream_messages(target)
        image = sent[-1]
        assert image.get("image_url") in (RED_PIXEL, {"url": RED_PIXEL, "detail": "low"})


def test_multi_turn_input(target):
    turns = [
        {"type": "message", "role": "user", "content": "My name is Ada."},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada!"}]},
        {"type": "message", "role": "user", "content": "What is my name?"},
    ]
    response = create(target, input=turns)
    assert response["output"][0]["type"] == "message"
    items = target.client.responses.input_items.list(response["id"], order="asc").data
    assert [item.role for item in items] == ["user", "assistant", "user"]
    if not target.real:
        assert [role for role, _content in upstream_messages(target)] == ["user", "assistant", "user"]
    follow_up = create(target, input="And my name again?", previous_response_id=response["id"])
    assert follow_up["previous_response_id"] == response["id"]
    if not target.real:
        assert [role for role, _content in upstream_messages(target)] == ["user", "assistant", "user", "assistant", "user"]


# --- the spec package agrees with the specs, and is the engine's only source of shapes -------


def test_error_codes_and_include_values_are_the_specs_own():
    assert RESPONSE_ERROR_CODES == set(spec_schema("ResponseErrorCode", OPENAI)["enum"])
    assert set(INCLUDABLE) == set(spec_schema("IncludeEnum", OPENAI)["enum"])
    assert set(spec_schema("IncludeEnum", OPEN_RESPONSES)["enum"]) <= set(INCLUDABLE)


def test_the_engine_and_the_spec_package_import_nothing_from_the_api():
    package = Path(__file__).resolve().parents[1] / "src" / "threadline"
    for path in [*(package / "engine").glob("*.py"), *(package / "spec").glob("*.py")]:
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not {name for name in imported if name and name.startswith("threadline.api")}, path
