"""POST /v1/responses and friends, through the official SDK, on the scripted model."""

from __future__ import annotations

import asyncio

import openai
import pytest
from pydantic import BaseModel

from tests.helpers import WEATHER_TOOL, script, sse_events, without_volatile
from tests.spec_schemas import validate_response


def test_create_answers_and_echoes_every_request_field(client, model_requests):
    response = client.responses.create(
        model="scripted",
        input="Hello there",
        instructions="Be brief.",
        temperature=0.5,
        top_p=0.9,
        max_output_tokens=200,
        max_tool_calls=3,
        tools=[WEATHER_TOOL],
        tool_choice="auto",
        parallel_tool_calls=False,
        text={"format": {"type": "text"}, "verbosity": "low"},
        reasoning={"effort": "low", "summary": "auto"},
        truncation="auto",
        metadata={"team": "search"},
        store=True,
        service_tier="default",
        prompt_cache_key="cache-1",
        prompt_cache_retention="24h",
        safety_identifier="user-hash",
        user="user-1",
        top_logprobs=2,
        extra_body={"presence_penalty": 0.5, "frequency_penalty": -1.5},  # not in the SDK's signature
    )
    assert response.status == "completed"
    assert response.output_text == "Reply to: Hello there"
    assert response.model == "scripted"
    assert response.instructions == "Be brief."
    assert (response.temperature, response.top_p) == (0.5, 0.9)
    assert (response.max_output_tokens, response.max_tool_calls) == (200, 3)
    assert response.tools[0].name == "get_weather" and response.tools[0].strict is True
    assert response.tool_choice == "auto" and response.parallel_tool_calls is False
    assert response.text.verbosity == "low" and response.text.format.type == "text"
    assert response.reasoning.effort == "low" and response.reasoning.summary == "auto"
    assert response.truncation == "auto"
    assert response.metadata == {"team": "search"}
    assert response.store is True and response.background is False
    assert response.service_tier == "default"
    assert response.prompt_cache_key == "cache-1" and response.safety_identifier == "user-hash"
    assert response.prompt_cache_retention == "24h"
    assert response.user == "user-1" and response.top_logprobs == 2
    assert (response.presence_penalty, response.frequency_penalty) == (0.5, -1.5)
    (received,) = model_requests()
    assert (received["presence_penalty"], received["frequency_penalty"]) == (0.5, -1.5)
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.id.startswith("resp_") and response.output[0].id.startswith("msg_")
    validate_response(response.model_dump(mode="json", exclude_unset=True))


def test_defaults_are_echoed_as_openai_sends_them(http, model_requests):
    bare_tool = {"type": "function", "name": "lookup"}
    events = sse_events(http, "/v1/responses", {"model": "scripted", "input": "Hi", "tools": [bare_tool], "stream": True})
    created, completed = events[0]["response"], events[-1]["response"]
    # Present as null until known, not left out.
    assert created["usage"] is None and completed["usage"]["total_tokens"] > 0
    for response in (created, completed):
        assert response["user"] is None and response["safety_identifier"] is None and response["prompt_cache_key"] is None
        assert response["prompt_cache_retention"] is None
        assert (response["presence_penalty"], response["frequency_penalty"], response["top_logprobs"]) == (0, 0, 0)
        assert (response["temperature"], response["top_p"]) == (1, 1)
        # A function tool is strict unless the request says otherwise, as OpenAI has it.
        assert response["tools"] == [{"type": "function", "name": "lookup", "description": None, "parameters": None, "strict": True}]
    (received,) = model_requests()
    assert received["presence_penalty"] is None and received["frequency_penalty"] is None
    retrieved = http.get(f"/v1/responses/{completed['id']}").json()
    assert retrieved == completed and "user" in retrieved


@pytest.mark.parametrize("field", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [-2.5, 2.01, "1"])
def test_penalties_out_of_range_are_a_400(http, field, value):
    refused = http.post("/v1/responses", json={"model": "scripted", "input": "Hi", field: value})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == field


@pytest.mark.parametrize("value", ["forever", "in-memory", 24])
def test_prompt_cache_retention_takes_only_openais_values(http, value):
    refused = http.post("/v1/responses", json={"model": "scripted", "input": "Hi", "prompt_cache_retention": value})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "prompt_cache_retention"


def test_model_may_be_omitted(client):
    response = client.responses.create(input="Hi")
    assert response.model == "scripted"
    assert response.output_text == "Reply to: Hi"


def test_unknown_model_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="no-such-model", input="Hi")
    error = raised.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"


def test_async_create(async_client):
    async def two_at_once():
        return await asyncio.gather(
            async_client.responses.create(model="scripted", input="one"),
            async_client.responses.create(model="scripted", input="two"),
        )

    first, second = asyncio.run(two_at_once())
    assert (first.output_text, second.output_text) == ("Reply to: one", "Reply to: two")


def test_responses_created_at_once_are_each_stored_whole(client, async_client):
    # Stored together (their rows share statements and a transaction), each keeps its own.
    async def forty_at_once():
        return await asyncio.gather(*(async_client.responses.create(model="scripted", input=f"question {n}") for n in range(40)))

    created = asyncio.run(forty_at_once())
    assert len({response.id for response in created}) == 40
    for n, response in enumerate(created):
        stored = client.responses.retrieve(response.id)
        assert stored.status == "completed" and stored.output_text == f"Reply to: question {n}"
        assert stored.output[0].id == response.output[0].id
        (item,) = client.responses.input_items.list(response.id).data
        assert item.content[0].text == f"question {n}"


def test_input_as_a_list_of_items(client, model_requests):
    client.responses.create(
        model="scripted",
        input=[
            {"role": "developer", "content": "Answer in French."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]},
        ],
    )
    (received,) = model_requests()
    assert [item["role"] for item in received["input"]] == ["developer", "user"]
    assert received["input"][1]["content"] == [{"type": "input_text", "text": "Hello"}]


def test_instructions_go_first_and_are_not_carried_forward(client, model_requests):
    first = client.responses.create(model="scripted", input="one", instructions="Be brief.")
    client.responses.create(model="scripted", input="two", previous_response_id=first.id)
    received = model_requests()
    assert received[0]["instructions"] == "Be brief."
    assert received[1]["instructions"] is None


def test_a_chain_of_50_gives_the_model_the_whole_chain_in_order(client, model_requests):
    previous_id = None
    for turn in range(50):
        response = client.responses.create(model="scripted", input=f"turn {turn}", previous_response_id=previous_id)
        previous_id = response.id
    last = model_requests()[-1]["input"]
    texts = [(item["role"], item["content"][0]["text"]) for item in last]
    expected = []
    for turn in range(49):
        expected += [("user", f"turn {turn}"), ("assistant", f"Reply to: turn {turn}")]
    assert texts == expected + [("user", "turn 49")]


def test_previous_response_id_must_name_a_stored_response_of_the_project(client, beta_client):
    unstored = client.responses.create(model="scripted", input="hi", store=False)
    foreign = beta_client.responses.create(model="scripted", input="hi")
    for previous_id in ("resp_unknown", unstored.id, foreign.id):
        with pytest.raises(openai.BadRequestError) as raised:
            client.responses.create(model="scripted", input="again", previous_response_id=previous_id)
        assert raised.value.body["param"] == "previous_response_id"
        assert raised.value.body["code"] == "previous_response_not_found"


def test_store_false_keeps_nothing(client):
    response = client.responses.create(model="scripted", input="secret", store=False)
    assert response.store is False and response.output_text == "Reply to: secret"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_conversation_flow_end_to_end(client, model_requests):
    conversation = client.conversations.create(items=[{"role": "system", "content": "You are terse."}])
    first = client.responses.create(model="scripted", input="first question", conversation=conversation.id)
    second = client.responses.create(model="scripted", input="second question", conversation={"id": conversation.id})
    assert first.conversation.id == conversation.id and second.conversation.id == conversation.id
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [(item.role, item.content[0].text) for item in items] == [
        ("system", "You are terse."),
        ("user", "first question"),
        ("assistant", "Reply to: first question"),
        ("user", "second question"),
        ("assistant", "Reply to: second question"),
    ]
    assert items[2].id == first.output[0].id and items[4].id == second.output[0].id
    second_context = model_requests()[1]["input"]
    assert [item["id"] for item in second_context] == [item.id for item in items[:4]]


def test_a_conversation_of_50_responses_gives_the_model_everything_in_order(client, model_requests):
    conversation = client.conversations.create()
    for turn in range(50):
        client.responses.create(model="scripted", input=f"turn {turn}", conversation=conversation.id)
    last = model_requests()[-1]["input"]
    expected = []
    for turn in range(49):
        expected += [f"turn {turn}", f"Reply to: turn {turn}"]
    assert [item["content"][0]["text"] for item in last] == expected + ["turn 49"]
    assert len(list(client.conversations.items.list(conversation.id, limit=100))) == 100


def test_conversation_and_previous_response_id_together_is_a_400(client):
    conversation = client.conversations.create()
    earlier = client.responses.create(model="scripted", input="hi")
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input="x", conversation=conversation.id, previous_response_id=earlier.id)
    assert raised.value.body["param"] in ("conversation", "previous_response_id")


def test_unknown_or_foreign_conversation_is_a_404(client, beta_client):
    foreign = beta_client.conversations.create()
    for conversation_id in ("conv_unknown", foreign.id):
        with pytest.raises(openai.NotFoundError) as raised:
            client.responses.create(model="scripted", input="x", conversation=conversation_id)
        assert raised.value.body["param"] == "conversation"


def test_failed_response_adds_nothing_to_its_conversation(client, http):
    conversation = client.conversations.create()
    events = sse_events(http, "/v1/responses", {"model": "scripted", "stream": True, "conversation": conversation.id,
                                                "input": script({"text": "partial"}, {"fail": {"message": "The model crashed."}})})
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": "The model crashed."}
    stored = client.responses.retrieve(failed["id"])
    assert stored.status == "failed" and stored.error.message == "The model crashed."
    assert list(client.conversations.items.list(conversation.id)) == []


def test_failure_without_streaming_is_an_error_envelope(client):
    with pytest.raises(openai.InternalServerError) as raised:
        client.responses.create(model="scripted", input=script({"fail": {"message": "The model crashed."}}))
    assert raised.value.body["type"] == "server_error" and raised.value.body["message"] == "The model crashed."


def test_rate_limited_model_is_a_429(client):
    with pytest.raises(openai.RateLimitError) as raised:
        client.responses.create(model="scripted", input=script({"fail": {"message": "Slow down.", "code": "rate_limit_exceeded"}}))
    assert raised.value.body["code"] == "rate_limit_exceeded"


def test_streaming_sends_openai_events_and_matches_the_plain_answer(client, http):
    body = {"model": "scripted", "input": script({"text": "Hello, world!", "chunks": 4})}
    events = sse_events(http, "/v1/responses", {**body, "stream": True})
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0]["sequence_number"] == 0
    assert "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta") == "Hello, world!"
    plain = http.post("/v1/responses", json=body).json()
    assert without_volatile(events[-1]["response"]) == without_volatile(plain)


def test_sdk_stream_helpers(client):
    with client.responses.stream(model="scripted", input=script({"text": "streamed text", "chunks": 3})) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "streamed text" == final.output_text
    assert client.responses.retrieve(final.id).output_text == "streamed text"


def test_function_calls_stream_and_round_trip(client, http, model_requests):
    body = {
        "model": "scripted",
        "tools": [WEATHER_TOOL],
        "input": script({"tool_call": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}", "call_id": "call_a"}},
                        {"tool_call": {"name": "get_weather", "arguments": "{\"city\": \"Rome\"}", "call_id": "call_b"}}),
        "stream": True,
    }
    events = sse_events(http, "/v1/responses", body)
    types = [event["type"] for event in events]
    assert types.count("response.function_call_arguments.delta") == 2
    assert types.count("response.function_call_arguments.done") == 2
    response = events[-1]["response"]
    calls = response["output"]
    assert [(call["type"], call["name"], call["call_id"], call["arguments"], call["status"]) for call in calls] == [
        ("function_call", "get_weather", "call_a", "{\"city\": \"Paris\"}", "completed"),
        ("function_call", "get_weather", "call_b", "{\"city\": \"Rome\"}", "completed"),
    ]
    assert all(call["id"].startswith("fc_") for call in calls)
    follow_up = client.responses.create(
        model="scripted",
        previous_response_id=response["id"],
        tools=[WEATHER_TOOL],
        input=[
            {"type": "function_call_output", "call_id": "call_a", "output": "Sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": "Rainy"},
        ],
    )
    assert follow_up.status == "completed"
    seen = model_requests()[-1]["input"]
    assert [item["type"] for item in seen[-4:]] == ["function_call", "function_call", "function_call_output", "function_call_output"]
    assert model_requests()[-1]["tools"][0]["name"] == "get_weather"


def test_reasoning_and_refusal_items(http):
    events = sse_events(http, "/v1/responses", {"model": "scripted", "stream": True,
                                                "input": script({"reasoning": "Let me think.", "chunks": 2}, {"refusal": "I can't help with that."})})
    types = [event["type"] for event in events]
    assert "response.reasoning_text.delta" in types and "response.reasoning_text.done" in types
    assert "response.refusal.delta" in types and "response.refusal.done" in types
    reasoning, message = events[-1]["response"]["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert reasoning["id"].startswith("rs_")
    assert message["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]


def test_max_output_tokens_makes_the_response_incomplete(client, http):
    body = {"model": "scripted", "max_output_tokens": 16, "input": script({"text": "cut short", "chunks": 2}, {"finish": "length"})}
    response = client.responses.create(**body)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    events = sse_events(http, "/v1/responses", {**body, "stream": True})
    assert events[-1]["type"] == "response.incomplete"


def test_truncation_disabled_refuses_an_input_over_the_window(client, model_requests):
    history = [{"role": "user", "content": f"message number {n} " + "word " * 20} for n in range(6)]
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted-small", input=history)
    assert raised.value.body["code"] == "context_length_exceeded"
    assert model_requests() == []


def test_truncation_auto_drops_the_oldest_items(client, model_requests):
    conversation = client.conversations.create(
        items=[{"role": "user", "content": f"old message {n} " + "word " * 20} for n in range(6)]
    )
    response = client.responses.create(model="scripted-small", input="newest", conversation=conversation.id, truncation="auto")
    assert response.status == "completed"
    seen = model_requests()[-1]["input"]
    assert seen[-1]["content"][0]["text"] == "newest"
    assert 1 <= len(seen) < 7
    kept = [item["content"][0]["text"] for item in seen[:-1]]
    assert kept == [f"old message {n} " + "word " * 20 for n in range(6)][6 - len(kept):]


def test_retrieve_delete_and_input_items(client):
    response = client.responses.create(
        model="scripted",
        input=[{"role": "user", "content": "first"}, {"role": "user", "content": "second"}],
    )
    assert client.responses.retrieve(response.id).output_text == "Reply to: second"
    items = client.responses.input_items.list(response.id, order="asc")
    assert [item.content[0].text for item in items.data] == ["first", "second"]
    assert [item.content[0].text for item in client.responses.input_items.list(response.id).data] == ["second", "first"]
    page = client.responses.input_items.list(response.id, limit=1, order="asc")
    assert page.has_more is True and page.data[0].content[0].text == "first"
    deleted = client.responses.delete(response.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)


def test_responses_are_invisible_to_other_projects(client, beta_client):
    response = client.responses.create(model="scripted", input="mine")
    with pytest.raises(openai.NotFoundError):
        beta_client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        beta_client.responses.delete(response.id)
    assert client.responses.retrieve(response.id).id == response.id


def test_a_foreground_response_cannot_be_streamed_again(client, http):
    # Its events were not kept: rebuilt ones would be numbered unlike the stream its client
    # read, so a resume after event N could skip or repeat events. Background ones can be.
    plain = client.responses.create(model="scripted", input="not kept")
    streamed = sse_events(http, "/v1/responses", {"model": "scripted", "input": "not kept", "stream": True})[-1]["response"]
    for response_id in (plain.id, streamed["id"]):
        for query in ("stream=true", "stream=true&starting_after=3"):
            refused = http.get(f"/v1/responses/{response_id}?{query}")
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream"
        with pytest.raises(openai.BadRequestError) as raised:
            client.responses.retrieve(response_id, stream=True, starting_after=3)
        assert raised.value.body["param"] == "stream"
        assert client.responses.retrieve(response_id).status == "completed"


class Person(BaseModel):
    name: str
    age: int


def test_parse_with_a_pydantic_model(client, model_requests):
    parsed = client.responses.parse(model="scripted", input=script({"text": "{\"name\": \"Ada\", \"age\": 36}"}), text_format=Person)
    assert parsed.output_parsed == Person(name="Ada", age=36)
    text_format = model_requests()[-1]["text_format"]
    assert text_format["type"] == "json_schema" and text_format["name"] == "Person" and text_format["strict"] is True
    assert text_format["schema"]["properties"].keys() == {"name", "age"}


@pytest.mark.parametrize(
    "tools, param",
    [
        ([WEATHER_TOOL, {"type": "code_interpreter", "container": {"type": "auto"}}], "tools[1].type"),
        ([{"type": "image_generation"}], "tools[0].type"),
    ],
)
def test_tools_the_server_cannot_serve_are_a_400_naming_the_param(client, tools, param):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input="x", tools=tools)
    assert raised.value.body["param"] == param


def test_namespace_tools_are_offered_as_their_functions(client, model_requests):
    client.responses.create(
        model="scripted",
        input="x",
        tools=[{"type": "namespace", "name": "weather", "description": "Weather tools", "tools": [WEATHER_TOOL]}],
    )
    assert [tool["name"] for tool in model_requests()[-1]["tools"]] == ["get_weather"]


def test_tool_choice_must_name_a_given_tool(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input="x", tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "other"})
    assert raised.value.body["param"] == "tool_choice.name"


def test_tool_choice_reaches_the_model(client, model_requests):
    client.responses.create(model="scripted", input="x", tools=[WEATHER_TOOL], tool_choice={"type": "function", "name": "get_weather"})
    client.responses.create(model="scripted", input="x", tools=[WEATHER_TOOL], tool_choice="none")
    named, none = model_requests()
    assert named["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert none["tool_choice"] == "none" and none["tools"] == []


def test_item_reference_in_input_resolves_to_the_stored_item(client, model_requests):
    earlier = client.responses.create(model="scripted", input="remember me")
    client.responses.create(model="scripted", input=[{"type": "item_reference", "id": earlier.output[0].id}, {"role": "user", "content": "and?"}])
    seen = model_requests()[-1]["input"]
    assert seen[0]["role"] == "assistant" and seen[0]["content"][0]["text"] == "Reply to: remember me"


def test_background_requires_store(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input="x", background=True, store=False)
    assert raised.value.body["param"] == "background"


def test_count_input_tokens(client):
    counted = client.responses.input_tokens.count(model="scripted", input="Count these words, please.")
    assert counted.object == "response.input_tokens" and counted.input_tokens > 0


def test_models_list_and_retrieve(client):
    assert {model.id for model in client.models.list()} == {"scripted", "scripted-small"}
    model = client.models.retrieve("scripted")
    assert model.object == "model" and model.id == "scripted"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_input_is_required_without_a_chain_or_conversation(http):
    response = http.post("/v1/responses", json={"model": "scripted"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"


def test_a_conversation_alone_is_enough_input(client):
    conversation = client.conversations.create(items=[{"role": "user", "content": "from the conversation"}])
    response = client.responses.create(model="scripted", conversation=conversation.id)
    assert response.output_text == "Reply to: from the conversation"


def test_line_separators_in_text_survive_streaming(http):
    text = "one\u2028two\u2029three\u0085four"
    events = sse_events(http, "/v1/responses", {"model": "scripted", "stream": True, "input": script({"text": text, "chunks": 2})})
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == text


def test_a_streamed_response_is_stored_as_in_progress_by_its_first_event(client):
    stream = client.responses.create(
        model="scripted", stream=True, input=script({"text": "Hel"}, {"delay": 1.0}, {"text": "lo"})
    )
    with stream:
        created = next(iter(stream))
        assert created.type == "response.created"
        stored = client.responses.retrieve(created.response.id)
        assert stored.status == "in_progress" and stored.output == []
        events = list(stream)
    assert events[-1].type == "response.completed"
    assert client.responses.retrieve(created.response.id).output_text == "Hello"


EVERY_INCLUDE = [
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
]


def test_an_unknown_include_value_is_a_400_naming_it(client, http):
    refused = http.post("/v1/responses", json={"model": "scripted", "input": "Hi", "include": ["reasoning.encrypted_content", "output.everything"]})
    error = refused.json()["error"]
    # In a body the param names the element, as every body error does.
    assert refused.status_code == 400 and error["param"] == "include[1]" and "'output.everything'" in error["message"], error
    response = client.responses.create(model="scripted", input="Hi")
    for path in (f"/v1/responses/{response.id}", f"/v1/responses/{response.id}/input_items"):
        for name in ("include", "include[]"):
            refused = http.get(path, params={name: "output.everything"})
            error = refused.json()["error"]
            assert refused.status_code == 400 and error["param"] == "include" and "'output.everything'" in error["message"]


def test_every_documented_include_value_is_accepted(client):
    # Values for hosted tools take effect with those tools; until then they change nothing.
    response = client.responses.create(model="scripted", input="Hi", include=EVERY_INCLUDE)
    assert response.status == "completed" and response.output_text == "Reply to: Hi"
    assert client.responses.retrieve(response.id, include=EVERY_INCLUDE).output_text == "Reply to: Hi"
    assert len(client.responses.input_items.list(response.id, include=EVERY_INCLUDE).data) == 1


def test_encrypted_reasoning_is_returned_only_when_included(client):
    reasoning = {"type": "reasoning", "id": "rs_earlier", "summary": [], "encrypted_content": "opaque-blob"}
    response = client.responses.create(model="scripted", input=[reasoning, {"role": "user", "content": "Go on."}])
    shown = client.responses.input_items.list(response.id, order="asc").data[0]
    assert shown.type == "reasoning" and shown.encrypted_content is None
    assert "encrypted_content" not in shown.model_dump(exclude_unset=True)
    included = client.responses.input_items.list(response.id, order="asc", include=["reasoning.encrypted_content"]).data[0]
    assert included.encrypted_content == "opaque-blob"
    # Conversation items alike: listed, retrieved, and as they are added.
    conversation = client.conversations.create()
    (added,) = client.conversations.items.create(conversation.id, items=[reasoning]).data
    assert added.encrypted_content is None
    (listed,) = client.conversations.items.list(conversation.id).data
    assert listed.encrypted_content is None
    assert client.conversations.items.retrieve(added.id, conversation_id=conversation.id).encrypted_content is None
    (listed,) = client.conversations.items.list(conversation.id, include=["reasoning.encrypted_content"]).data
    assert listed.encrypted_content == "opaque-blob"
    retrieved = client.conversations.items.retrieve(added.id, conversation_id=conversation.id, include=["reasoning.encrypted_content"])
    assert retrieved.encrypted_content == "opaque-blob"
