"""Custom tools in every backend: what each upstream is sent for custom tools and their calls,
and the raw input a call comes back with (tests/mock_upstream.py for the upstreams)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import WEATHER, UpstreamBackend, calls_named_first, tool_calls, user
from tests.mock_upstream import ResponsesAnswer, custom_call, finish, reply, text, tool_call, usage
from tests.spec_schemas import OPENAI, validate, validate_event
from threadline.backends.base import Finish, ModelRequest, TextDelta, ToolCallDelta
from threadline.backends.llama_cpp.output_plan import output_grammar, plan_output
from threadline.backends.llama_cpp.prompt import prompt_messages
from threadline.backends.llama_cpp.reading import ForcedToolCall, reader_for
from threadline.backends.scripted import ScriptedBackend
from threadline.config import ModelSettings

CHAT = UpstreamBackend("openai-chat", "chat-model")
RESPONSES = UpstreamBackend("openai-responses", "resp-model")

PATCH_GRAMMAR = 'start: "*** Begin Patch" LF /(.+)/ LF "*** End Patch"\n%import common.LF'
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": PATCH_GRAMMAR},
}
NOTE = {"type": "custom", "name": "note", "description": "Write a note.", "format": {"type": "text"}}
BARE = {"type": "custom", "name": "shout", "description": None, "format": None}
PATCH = '*** Begin Patch\nsay "hi" \\ bye\n*** End Patch'
HISTORY = [
    user("Fix it"),
    {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_p", "name": "apply_patch", "input": PATCH},
    {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "call_p", "output": "Done!"},
    {"type": "function_call", "id": "fc_1", "call_id": "call_n", "name": "close_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_n", "output": "closed"},
]


def request(backend: UpstreamBackend, **fields) -> ModelRequest:
    return ModelRequest(model=backend.model, input=[user("Hello")], **fields)


# --- Chat Completions upstreams --------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_offers_custom_tools_as_functions_of_one_string(mock):
    body = await CHAT.sent(mock, request(CHAT, tools=[WEATHER, APPLY_PATCH, NOTE, BARE], tool_choice={"type": "custom", "name": "apply_patch"}))
    weather, patch, note, bare = body["tools"]
    assert weather["function"]["name"] == "weather"
    for tool, name in ((patch, "apply_patch"), (note, "note"), (bare, "shout")):
        function = tool["function"]
        assert tool["type"] == "function" and function["name"] == name
        assert function["parameters"]["required"] == ["input"]
        assert function["parameters"]["properties"]["input"]["type"] == "string"
    # A grammar goes in whole, so the model can follow it; text is said to be free.
    assert PATCH_GRAMMAR in patch["function"]["description"] and "Lark grammar" in patch["function"]["description"]
    assert patch["function"]["description"].startswith("Edit files with a patch.")
    assert "free-form" in note["function"]["description"] and "free-form" in bare["function"]["description"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


@pytest.mark.asyncio
async def test_chat_sends_custom_calls_and_outputs_as_tool_calls(mock):
    body = await CHAT.sent(mock, ModelRequest(model="chat-model", input=HISTORY, tools=[APPLY_PATCH]))
    assert body["messages"] == [
        {"role": "user", "content": "Fix it"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_p", "type": "function", "function": {"name": "apply_patch", "arguments": json.dumps({"input": PATCH})}}]},
        {"role": "tool", "tool_call_id": "call_p", "content": "Done!"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_n", "type": "function", "function": {"name": "close_agent", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_n", "content": "closed"},
    ]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.asyncio
async def test_chat_custom_call_comes_back_as_raw_input(mock, stream):
    mock.script(reply(text("Patching."), custom_call(0, id="call_1", name="apply_patch", input=PATCH), tool_call(1, id="call_2", name="weather", arguments='{"city": "Paris"}'), finish("tool_calls"), usage(9, 4)))
    events = await CHAT.generate(mock, request(CHAT, tools=[APPLY_PATCH, WEATHER], stream=stream))
    assert tool_calls(events) == {
        0: {"call_id": "call_1", "name": "apply_patch", "arguments": PATCH},
        1: {"call_id": "call_2", "name": "weather", "arguments": '{"city": "Paris"}'},
    }
    assert calls_named_first(events) and isinstance(events[0], TextDelta)
    assert events[-1].reason == "tool_calls" and events[-1].usage.input_tokens == 9


@pytest.mark.asyncio
async def test_chat_custom_call_streams_its_arguments_in_pieces(mock):
    arguments = json.dumps({"input": PATCH})
    pieces = [tool_call(0, id="call_1", name="apply_patch", arguments="")] + [tool_call(0, arguments=arguments[at : at + 5]) for at in range(0, len(arguments), 5)]
    mock.script(reply(*pieces, finish("tool_calls")))
    events = await CHAT.generate(mock, request(CHAT, tools=[APPLY_PATCH]))
    assert events[0] == ToolCallDelta(index=0, call_id="call_1", name="apply_patch")  # shown at once
    assert tool_calls(events)[0]["arguments"] == PATCH


@pytest.mark.parametrize("arguments", ["*** Begin Patch raw", '{"input": 7}', '{"text": "x"}'])
@pytest.mark.asyncio
async def test_chat_custom_call_that_is_not_input_json_passes_as_it_is(mock, arguments):
    mock.script(reply(tool_call(0, id="call_1", name="apply_patch", arguments=arguments), finish("tool_calls")))
    events = await CHAT.generate(mock, request(CHAT, tools=[APPLY_PATCH]))
    assert tool_calls(events)[0]["arguments"] == arguments


# --- Responses upstreams ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_responses_sends_custom_tools_and_items_as_they_are(mock):
    tools = [WEATHER, APPLY_PATCH, NOTE, BARE]
    body = await RESPONSES.sent(mock, ModelRequest(model="resp-model", input=HISTORY, tools=tools, tool_choice={"type": "custom", "name": "apply_patch"}))
    assert body["tools"][1:] == [APPLY_PATCH, NOTE, {"type": "custom", "name": "shout"}]
    assert body["tool_choice"] == {"type": "custom", "name": "apply_patch"}
    assert body["input"][1:] == [
        {"type": "custom_tool_call", "call_id": "call_p", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_p", "output": "Done!"},
        # Offered flat, so the call goes by its name alone.
        {"type": "function_call", "call_id": "call_n", "name": "close_agent", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_n", "output": "closed"},
    ]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.asyncio
async def test_responses_custom_call_comes_back_as_raw_input(mock, stream):
    mock.script(reply(text("Patching."), custom_call(0, id="call_1", name="apply_patch", input=PATCH[:10]), custom_call(0, input=PATCH[10:]),
                      tool_call(1, id="call_2", name="weather", arguments='{"city": "Paris"}'), usage(9, 4)))  # fmt: skip
    events = await RESPONSES.generate(mock, request(RESPONSES, tools=[APPLY_PATCH, WEATHER], stream=stream))
    assert tool_calls(events) == {
        1: {"call_id": "call_1", "name": "apply_patch", "arguments": PATCH},
        2: {"call_id": "call_2", "name": "weather", "arguments": '{"city": "Paris"}'},
    }
    assert calls_named_first(events) and events[-1].reason == "tool_calls"
    if stream:  # the input streams as the upstream sends it
        assert [event.arguments for event in events if isinstance(event, ToolCallDelta) and event.index == 1] == ["", PATCH[:10], PATCH[10:]]


@pytest.mark.asyncio
async def test_the_mock_speaks_the_spec_for_custom_calls():
    steps = [custom_call(0, id="call_1", name="apply_patch", input="*** Begin"), custom_call(0, input=" Patch"), finish()]
    answer = ResponsesAnswer({"model": "m", "store": False}, steps)
    events = answer.start() + [event for step in steps for event in answer.step(step)]
    # Open Responses has no custom tools: these events are checked against OpenAI's description.
    schemas = {
        "response.output_item.added": "ResponseOutputItemAddedEvent",
        "response.custom_tool_call_input.delta": "ResponseCustomToolCallInputDeltaEvent",
        "response.custom_tool_call_input.done": "ResponseCustomToolCallInputDoneEvent",
        "response.output_item.done": "ResponseOutputItemDoneEvent",
    }
    for event in events:
        if event["type"] in schemas:
            validate(event, schemas[event["type"]], OPENAI)
        else:
            validate_event(event)
    assert list(dict.fromkeys(event["type"] for event in events if event["type"] in schemas)) == list(schemas)
    done = next(event for event in events if event["type"] == "response.custom_tool_call_input.done")
    assert done["input"] == "*** Begin Patch"
    final = answer.final()
    validate(final, "Response", OPENAI)
    assert final["output"] == [{"id": "ctc_mock_0", "type": "custom_tool_call", "status": "completed", "call_id": "call_1", "name": "apply_patch", "input": "*** Begin Patch"}]


# --- The scripted model ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_scripted_custom_call_carries_raw_input():
    backend = ScriptedBackend(ModelSettings(id="scripted", provider="scripted"))
    script = [{"tool_call": {"name": "apply_patch", "input": PATCH, "call_id": "call_s", "chunks": 3}}, {"tool_call": {"name": "note"}}]
    steps = user("#script " + json.dumps(script))
    events = [event async for event in backend.generate(ModelRequest(model="scripted", input=[steps], tools=[APPLY_PATCH, NOTE]))]
    assert tool_calls(events) == {0: {"call_id": "call_s", "name": "apply_patch", "arguments": PATCH}, 1: {"call_id": "call_1", "name": "note", "arguments": ""}}
    assert len([event for event in events if isinstance(event, ToolCallDelta) and event.index == 0]) == 3
    assert events[-1].reason == "tool_calls"


# --- The embedded model (no inference: its prompt, plan and reading) ------------------------


def embedded(**fields) -> ModelRequest:
    return ModelRequest(model="m", input=fields.pop("input", [user("Fix it")]), **fields)


def test_embedded_offers_custom_tools_as_functions_and_reads_their_calls_raw():
    request = embedded(tools=[WEATHER, APPLY_PATCH])
    plan = plan_output(request)
    system = prompt_messages(request, plan, tool_role="tool")[0]["content"]
    described = [json.loads(line) for line in system.split("<tools>\n")[1].split("\n</tools>")[0].split("\n")]
    assert [tool["name"] for tool in described] == ["weather", "apply_patch"]
    assert described[1]["parameters"]["required"] == ["input"] and PATCH_GRAMMAR in described[1]["description"]
    assert output_grammar(plan) is None  # free text, scanned for calls
    reader = reader_for(plan)
    call = json.dumps({"name": "apply_patch", "arguments": {"input": PATCH}})
    events = reader.feed(TextDelta(f"Sure.<tool_call>{call}</tool_call><tool_call>" + json.dumps({"name": "weather", "arguments": {"city": "Oslo"}}) + "</tool_call>"))
    events += reader.finish(Finish("stop"))
    assert tool_calls(events) == {
        0: {"call_id": events[1].call_id, "name": "apply_patch", "arguments": PATCH},
        1: {"call_id": events[2].call_id, "name": "weather", "arguments": '{"city": "Oslo"}'},
    }
    assert events[-1].reason == "tool_calls"


def test_embedded_prompt_shows_custom_calls_as_the_model_writes_them():
    messages = prompt_messages(embedded(input=HISTORY, tools=[APPLY_PATCH]), plan_output(embedded(tools=[APPLY_PATCH])), tool_role="tool")
    assert messages[2] == {"role": "assistant", "content": "<tool_call>" + json.dumps({"name": "apply_patch", "arguments": {"input": PATCH}}, ensure_ascii=False) + "</tool_call>"}
    assert messages[3] == {"role": "tool", "content": "Done!", "tool_call_id": "call_p"}


def test_embedded_forced_custom_tool_is_held_to_its_grammar():
    plan = plan_output(embedded(tools=[WEATHER, APPLY_PATCH], tool_choice={"type": "custom", "name": "apply_patch"}))
    assert plan.forced_custom == APPLY_PATCH
    assert output_grammar(plan).startswith("root ::= g-start\n")
    assert output_grammar(plan_output(embedded(tools=[NOTE], tool_choice="required"))) is None  # text: free
    reader = reader_for(plan)
    events = reader.feed(TextDelta(PATCH[:7])) + reader.feed(TextDelta(PATCH[7:])) + reader.finish(Finish("stop"))
    assert tool_calls(events) == {0: {"call_id": events[0].call_id, "name": "apply_patch", "arguments": PATCH}}
    assert events[-1].reason == "tool_calls"
    cut = reader_for(plan)
    assert cut.feed(TextDelta("*** Begin")) + cut.finish(Finish("length")) == [Finish("length")]


def test_embedded_forced_among_several_tools_decodes_custom_input():
    plan = plan_output(embedded(tools=[WEATHER, APPLY_PATCH], tool_choice="required"))
    assert plan.forced_custom is None and "input" in output_grammar(plan)
    reader = reader_for(plan)
    assert isinstance(reader, ForcedToolCall)
    events = reader.feed(TextDelta(json.dumps({"name": "apply_patch", "arguments": {"input": PATCH}}))) + reader.finish(Finish("stop"))
    assert events[0].arguments == PATCH and events[0].name == "apply_patch"
