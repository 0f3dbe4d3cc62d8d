"""Both upstream providers end to end: the official SDK -> `threadline serve` -> a mock upstream over HTTP.

"chat" speaks Chat Completions to the mock, "resp" the Responses API; every test runs for
both (and, through `database_url`, on both databases). The `-quick` twins of each model
give up after half a second, so the timeout tests take no longer than that.
"""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel

from tests.helpers import WEATHER_TOOL, idempotency_key, sse_events, upstream_models, without_volatile
from tests.mock_upstream import MockUpstream, cut, error, finish, reasoning, reply, text, tool_call, usage
from tests.spec_schemas import validate_response


@pytest.fixture(scope="module")
def server(start_server, upstream):
    variants = {"": {"timeout_s": 2}, "quick": {"timeout_s": 0.5, "max_retries": 0}}
    return start_server({"models": upstream_models(upstream.base_url, variants, options={"retry_base_s": 0.01})})


def upstream_context(mock: MockUpstream, model: str) -> list[dict]:
    """What the latest upstream call carried: chat's messages, or the Responses API's input items."""
    body = mock.requests[-1]
    if model == "chat":
        return body["messages"]
    assert body["store"] is False
    return body["input"]


# --- Answers ------------------------------------------------------------------------------


def test_plain_create_with_usage(client, mock, model):
    mock.script(reply(text("Hel"), text("lo"), finish("stop"), usage(20, 9, cached=16, reasoning=4)))
    response = client.responses.create(model=model, input="Hi", instructions="Be brief.")
    assert response.status == "completed" and response.output_text == "Hello"
    assert response.model == model
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (20, 9, 29)
    assert response.usage.input_tokens_details.cached_tokens == 16
    assert response.usage.output_tokens_details.reasoning_tokens == 4
    validate_response(response.model_dump(mode="json", exclude_unset=True))
    if model == "chat":
        assert upstream_context(mock, model) == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    else:
        assert mock.requests[-1]["instructions"] == "Be brief."
        assert upstream_context(mock, model) == [{"type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "Hi"}]}]


def test_stream_and_plain_give_the_same_response(client, http, mock, model):
    answer = reply(reasoning("Think."), text("Hello, "), text("world!"), finish("stop"), usage(10, 5))
    mock.script(answer, answer)
    body = {"model": model, "input": "Hi"}
    events = sse_events(http, "/v1/responses", {**body, "stream": True})
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    plain = http.post("/v1/responses", json=body).json()
    assert without_volatile(events[-1]["response"]) == without_volatile(plain)
    assert mock.requests[0]["stream"] is True and not mock.requests[1].get("stream")


def test_reasoning_content_becomes_a_reasoning_item(client, mock, model):
    mock.script(reply(reasoning("Let me "), reasoning("think."), text("Answer.")))
    response = client.responses.create(model=model, input="Why?")
    thinking, message = response.output
    assert thinking.type == "reasoning" and thinking.id.startswith("rs_")
    assert [(part.type, part.text) for part in thinking.content] == [("reasoning_text", "Let me think.")]
    assert message.type == "message" and response.output_text == "Answer."


def test_parallel_tool_calls_and_their_outputs_reach_the_upstream(client, http, mock, model):
    mock.script(
        reply(
            tool_call(0, id="call_a", name="get_weather", arguments=""),
            tool_call(0, arguments='{"city":'),
            tool_call(1, id="call_b", name="get_weather", arguments='{"city"'),
            tool_call(0, arguments=' "Paris"}'),
            tool_call(1, arguments=': "Rome"}'),
            finish("tool_calls"),
        ),
        reply(text("Sunny in Paris, rain in Rome.")),
    )
    events = sse_events(http, "/v1/responses", {"model": model, "input": "Weather in Paris and Rome?", "tools": [WEATHER_TOOL], "stream": True})
    deltas = [event for event in events if event["type"] == "response.function_call_arguments.delta"]
    assert len(deltas) == 4
    done = {event["item_id"]: event["arguments"] for event in events if event["type"] == "response.function_call_arguments.done"}
    response = events[-1]["response"]
    assert response["status"] == "completed"
    calls = [(item["type"], item["call_id"], item["name"], item["arguments"]) for item in response["output"]]
    assert calls == [("function_call", "call_a", "get_weather", '{"city": "Paris"}'), ("function_call", "call_b", "get_weather", '{"city": "Rome"}')]
    assert done == {item["id"]: item["arguments"] for item in response["output"]}
    sent = mock.requests[-1]
    assert sent["parallel_tool_calls"] is True and sent["tool_choice"] == "auto"

    follow_up = client.responses.create(
        model=model,
        previous_response_id=response["id"],
        tools=[WEATHER_TOOL],
        input=[
            {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": "Rain"},
        ],
    )
    assert follow_up.output_text == "Sunny in Paris, rain in Rome."
    context = upstream_context(mock, model)
    if model == "chat":
        assert context == [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "Rain"},
        ]
    else:
        assert [item["type"] for item in context] == ["message", "function_call", "function_call", "function_call_output", "function_call_output"]
        assert [item.get("call_id") for item in context[1:]] == ["call_a", "call_b", "call_a", "call_b"]
        assert context[2]["arguments"] == '{"city": "Rome"}' and context[4]["output"] == "Rain"
        assert not any("id" in item for item in context)  # Threadline's ids are its own


def test_length_finish_makes_the_response_incomplete(client, mock, model):
    mock.script(reply(text("cut sh"), finish("length"), usage(5, 16)))
    response = client.responses.create(model=model, input="Tell me everything.", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete" and response.output_text == "cut sh"
    assert mock.requests[-1]["max_tokens" if model == "chat" else "max_output_tokens"] == 16


def test_logprobs_when_included(client, mock, model):
    token = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.25, "bytes": [72, 105]}, {"token": "Yo", "logprob": -1.5, "bytes": [89, 111]}]}
    mock.script(reply(text("Hi", logprobs=[token])))
    response = client.responses.create(model=model, input="Greet me.", include=["message.output_text.logprobs"], top_logprobs=2)
    (logprob,) = response.output[0].content[0].logprobs
    assert (logprob.token, logprob.logprob, logprob.bytes) == ("Hi", -0.25, [72, 105])
    assert [(top.token, top.logprob) for top in logprob.top_logprobs] == [("Hi", -0.25), ("Yo", -1.5)]
    sent = mock.requests[-1]
    if model == "chat":
        assert (sent["logprobs"], sent["top_logprobs"]) == (True, 2)
    else:
        assert (sent["include"], sent["top_logprobs"]) == (["message.output_text.logprobs"], 2)


def test_logprobs_are_shown_only_to_requests_that_include_them(client, http, mock, model):
    token = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
    mock.script(reply(text("Hi", logprobs=[token])), reply(text("Hi", logprobs=[token])))
    body = {"model": model, "input": "Greet me.", "include": ["message.output_text.logprobs"], "stream": True}
    events = sse_events(http, "/v1/responses", body)
    (delta,) = [event for event in events if event["type"] == "response.output_text.delta"]
    assert [entry["token"] for entry in delta["logprobs"]] == ["Hi"]
    stored_id = events[-1]["response"]["id"]
    assert client.responses.retrieve(stored_id).output[0].content[0].logprobs == []
    assert client.responses.retrieve(stored_id, include=["message.output_text.logprobs"]).output[0].content[0].logprobs[0].token == "Hi"
    # Not asked for: the upstream is not asked, and what it sends anyway is not shown.
    plain = client.responses.create(model=model, input="Greet me.")
    assert plain.output[0].content[0].logprobs == []
    assert "logprobs" not in mock.requests[-1] and "include" not in mock.requests[-1]


def test_an_idempotent_repeat_shows_what_the_request_includes(http, mock, model):
    # The answer is recorded whole; a repeat is shown as its request's `include` asks, as the first was.
    token = {"token": "Hi", "logprob": -0.25, "bytes": [72, 105], "top_logprobs": []}
    mock.script(reply(text("Hi", logprobs=[token])), reply(text("Hi", logprobs=[token])))
    body = {"model": model, "input": "Greet me."}
    key = idempotency_key()
    first, repeat = (http.post("/v1/responses", json=body, headers=key).json() for _ in range(2))
    assert repeat["id"] == first["id"]
    assert first["output"][0]["content"][0]["logprobs"] == repeat["output"][0]["content"][0]["logprobs"] == []
    streamed = {**body, "stream": True}
    key = idempotency_key()
    first, repeat = (sse_events(http, "/v1/responses", streamed, headers=key) for _ in range(2))
    assert repeat[-1]["response"]["id"] == first[-1]["response"]["id"]
    for events in (first, repeat):
        (delta,) = [event for event in events if event["type"] == "response.output_text.delta"]
        assert delta["logprobs"] == [] and events[-1]["response"]["output"][0]["content"][0]["logprobs"] == []
    assert len(mock.requests) == 2


class City(BaseModel):
    name: str
    population: int


def test_json_schema_output(client, mock, model):
    mock.script(reply(text('{"name": "Paris", '), text('"population": 2100000}')))
    parsed = client.responses.parse(model=model, input="Biggest city in France?", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=2100000)
    sent = mock.requests[-1]
    if model == "chat":
        schema = sent["response_format"]["json_schema"]
        assert sent["response_format"]["type"] == "json_schema"
    else:
        schema = sent["text"]["format"]
        assert schema["type"] == "json_schema"
    assert schema["name"] == "City" and schema["strict"] is True
    assert schema["schema"]["properties"].keys() == {"name", "population"}


# --- Failures -----------------------------------------------------------------------------


def test_upstream_500_after_retries_is_a_server_error(client, mock, model):
    mock.script(error(500, "engine down"), error(502, "engine down"), error(503, "engine down"))
    with pytest.raises(openai.InternalServerError) as raised:
        client.responses.create(model=model, input="Hi")
    assert raised.value.body["type"] == "server_error" and raised.value.body["code"] == "server_error"
    assert "engine down" in raised.value.body["message"]
    assert len(mock.requests) == 3  # max_retries 2


def test_streamed_failure_is_stored_and_adds_nothing_to_its_conversation(client, http, mock, model):
    mock.script(error(500), error(500), error(500))
    conversation = client.conversations.create()
    events = sse_events(http, "/v1/responses", {"model": model, "input": "Hi", "conversation": conversation.id, "stream": True})
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.failed"]
    failed = events[-1]["response"]
    assert failed["error"]["code"] == "server_error"
    stored = client.responses.retrieve(failed["id"])
    assert stored.status == "failed" and stored.error.code == "server_error" and stored.error.message == failed["error"]["message"]
    assert list(client.conversations.items.list(conversation.id)) == []


def test_rate_limited_upstream_is_a_429(client, mock, model):
    mock.script(*[error(429, "slow down", type="rate_limit_error", code="rate_limit_exceeded")] * 3)
    with pytest.raises(openai.RateLimitError) as raised:
        client.responses.create(model=model, input="Hi")
    assert raised.value.body["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("trouble", ["timeout", "cut"])
def test_upstream_timeout_or_cut_mid_stream_fails_the_response(client, http, mock, model, trouble):
    if trouble == "timeout":
        mock.script(reply(text("partial"), forever=True))
    else:
        mock.script(reply(text("partial"), cut()))
    events = sse_events(http, "/v1/responses", {"model": f"{model}-quick", "input": "Hi", "stream": True})
    types = [event["type"] for event in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.failed"
    assert "response.output_text.delta" in types
    failed = events[-1]["response"]
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete" and failed["output"][0]["content"][0]["text"] == "partial"
    assert client.responses.retrieve(failed["id"]).status == "failed"


def test_upstream_context_length_error_is_a_400_or_a_failed_stream(client, http, mock, model):
    message = "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens."
    mock.script(*[error(400, message, type="invalid_request_error", code="context_length_exceeded")] * 2)
    # A stream begins before the model answers, so its refusal ends the stream.
    events = sse_events(http, "/v1/responses", {"model": model, "input": "Hi", "stream": True})
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"] == {"code": "invalid_prompt", "message": message}
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model=model, input="Hi")
    assert raised.value.body["code"] == "context_length_exceeded" and raised.value.body["param"] == "input"
    assert len(mock.requests) == 2  # never retried


def test_input_tokens_are_counted_by_the_upstream(client, mock, model):
    mock.reset(token_count=17)
    counted = client.responses.input_tokens.count(model=model, input="Count these words, please.", instructions="Be brief.")
    assert counted.input_tokens == 17
    if model == "chat":
        (sent,) = mock.tokenize_requests
        assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        (sent,) = mock.input_tokens_requests
        assert sent["instructions"] == "Be brief." and "store" not in sent and "id" not in sent["input"][0]


def test_input_tokens_are_estimated_when_the_upstream_cannot_count(client, mock, model):
    mock.reset(tokenize=False, input_tokens=False)
    counted = client.responses.input_tokens.count(model=model, input="x" * 400, instructions="y" * 40)
    # Four characters a token, and one more for the message.
    assert counted.input_tokens == 10 + 101
