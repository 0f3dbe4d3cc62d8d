"""OpenAIResponsesBackend against a real HTTP Responses API server (tests/mock_upstream.py)."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from tests.helpers import CLOCK, WEATHER, UpstreamBackend, calls_named_first, joined, tool_calls, user
from tests.mock_upstream import (
    ResponsesAnswer,
    cut,
    error,
    fail,
    finish,
    malformed,
    raw,
    reasoning,
    refusal,
    reply,
    summary,
    text,
    tool_call,
    usage,
)
from tests.spec_schemas import OPEN_RESPONSES, OPENAI, validate, validate_event, validate_response
from threadline.backends.base import (
    BackendError,
    ContextLengthExceeded,
    Finish,
    ModelRequest,
    ReasoningDelta,
    ReasoningEncrypted,
    ReasoningSummaryDelta,
    RefusalDelta,
    TextAnnotation,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from threadline.backends.openai_responses import OpenAIResponsesBackend, ResponseReader
from threadline.config import ModelSettings

pytestmark = pytest.mark.asyncio

CITATION = {"type": "url_citation", "url": "https://example.com/paris", "title": "Paris", "start_index": 0, "end_index": 6}


RESPONSES = UpstreamBackend("openai-responses", "resp-model")
backend_for, hello, generate, sent = RESPONSES.backend_for, RESPONSES.hello, RESPONSES.generate, RESPONSES.sent


def sse(*events: dict) -> str:
    return "".join(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in events)


# --- Request translation --------------------------------------------------------------


async def test_full_context_with_store_false_and_threadline_ids_stripped(mock):
    request = ModelRequest(
        model="resp-model",
        instructions="Be brief.",
        input=[
            {"id": "msg_1", "type": "message", "role": "developer", "status": "completed", "content": [{"type": "input_text", "text": "Answer in French."}]},
            {"id": "msg_2", "type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"id": "rs_3", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Paris."}]},
            {"id": "msg_4", "type": "message", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": [{"token": "Check", "logprob": -0.1}]}]},
            {"id": "fc_5", "type": "function_call", "status": "completed", "call_id": "call_a", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"id": "fco_6", "type": "function_call_output", "status": "completed", "call_id": "call_a", "output": "18C"},
        ],
    )  # fmt: skip
    body = await sent(mock, request)
    assert body["store"] is False and body["stream"] is True
    assert body["instructions"] == "Be brief."
    assert body["input"] == [
        {"type": "message", "role": "developer", "status": "completed", "content": [{"type": "input_text", "text": "Answer in French."}]},
        {"type": "message", "role": "user", "status": "completed", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "status": "completed", "call_id": "call_a", "name": "weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "status": "completed", "call_id": "call_a", "output": "18C"},
    ]
    assert request.input[0]["id"] == "msg_1"  # the engine's items are left as they were


@pytest.mark.parametrize(
    "tool_choice",
    ["auto", "required", {"type": "function", "name": "clock"}, {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "clock"}]}],
)
async def test_tools_and_tool_choice_go_as_they_are(mock, tool_choice):
    body = await sent(mock, hello(tools=[WEATHER, CLOCK], tool_choice=tool_choice, parallel_tool_calls=False))
    assert body["tools"] == [WEATHER, CLOCK]
    assert body["tool_choice"] == tool_choice
    assert body["parallel_tool_calls"] is False


async def test_no_tools_sends_no_tool_fields(mock):
    body = await sent(mock, hello())
    assert not {"tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens", "include", "top_logprobs", "reasoning", "instructions"} & set(body)


async def test_text_format_sampling_logprobs_reasoning_model_and_auth(mock):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
    text_format = {"type": "json_schema", "name": "count", "schema": schema, "strict": True}
    request = hello(text_format=text_format, max_output_tokens=100, temperature=0.2, top_p=0.9, user="u-1", logprobs=True, top_logprobs=3,
                    reasoning={"effort": "low", "summary": "auto"}, stream=False)  # fmt: skip
    body = await sent(mock, request, upstream_model="org/served-name", api_key="sk-upstream")
    assert body["model"] == "org/served-name" and body["stream"] is False
    assert body["text"] == {"format": text_format}
    assert (body["max_output_tokens"], body["temperature"], body["top_p"], body["user"]) == (100, 0.2, 0.9, "u-1")
    assert (body["include"], body["top_logprobs"]) == (["message.output_text.logprobs"], 3)
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    assert mock.headers[-1]["authorization"] == "Bearer sk-upstream"


async def test_options_shape_the_body(mock):
    options = {"send_reasoning": False, "extra_body": {"service_tier": "flex"}}
    body = await sent(mock, hello(reasoning={"effort": "high"}), options=options)
    assert body["model"] == "resp-model"
    assert "reasoning" not in body and body["service_tier"] == "flex"
    assert "authorization" not in mock.headers[-1]


# --- Reading answers ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_text_reasoning_and_usage(mock, stream):
    mock.script(reply(reasoning("Let me "), reasoning("think."), text("Hel"), text("lo"), finish("stop"), usage(20, 9, cached=16, reasoning=4)))
    events = await generate(mock, hello(stream=stream))
    assert joined(events) == [
        ReasoningDelta("Let me think."),
        TextDelta("Hello"),
        Finish("stop", Usage(input_tokens=20, output_tokens=9, cached_tokens=16, reasoning_tokens=4)),
    ]
    assert sum(isinstance(event, Finish) for event in events) == 1
    assert mock.requests[0]["stream"] is stream


async def test_text_streams_as_it_arrives(mock):
    mock.script(reply(text("a"), text("b"), text("c")))
    assert await generate(mock) == [TextDelta("a"), TextDelta("b"), TextDelta("c"), Finish("stop", None)]


@pytest.mark.parametrize("stream", [True, False])
async def test_summary_parts_read_as_summary_parts(mock, stream):
    mock.script(reply(summary("**Plan**"), summary("Greet them.", part=1), text("Hi"), usage(5, 7, reasoning=5)))
    events = joined(await generate(mock, hello(stream=stream)))
    assert events[:3] == [ReasoningSummaryDelta("**Plan**", 0), ReasoningSummaryDelta("Greet them.", 1), TextDelta("Hi")]


async def test_summary_and_full_reasoning_of_one_item_are_both_read(mock):
    item = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Short."}], "content": [{"type": "reasoning_text", "text": "Long thinking."}]}
    where = {"item_id": "rs_1", "output_index": 0, "sequence_number": 0}
    mock.script(reply(raw(sse(
        {"type": "response.output_item.added", "output_index": 0, "item": {**item, "summary": [], "content": []}, "sequence_number": 0},
        {"type": "response.reasoning_text.delta", "content_index": 0, "delta": "Long thinking.", **where},
        {"type": "response.reasoning_summary_text.delta", "summary_index": 0, "delta": "Short.", **where},
        {"type": "response.output_item.done", "output_index": 0, "item": item, "sequence_number": 0},
        {"type": "response.completed", "response": {"status": "completed", "output": [item], "usage": None}, "sequence_number": 0},
    )), done=False))  # fmt: skip
    assert await generate(mock) == [ReasoningDelta("Long thinking."), ReasoningSummaryDelta("Short."), Finish("stop")]


async def test_annotations_and_encrypted_reasoning_streamed(mock):
    """Each is read once, though the finished item and the final Response carry them again."""
    reasoning_item = {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Plan."}], "encrypted_content": "opaque"}
    message = {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Sunny.", "annotations": [CITATION, CITATION], "logprobs": []}]}
    where = {"item_id": "msg_2", "output_index": 1, "content_index": 0}
    mock.script(reply(raw(sse(
        {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "Plan.", "sequence_number": 0},
        {"type": "response.output_item.done", "output_index": 0, "item": reasoning_item, "sequence_number": 1},
        {"type": "response.output_text.delta", "delta": "Sunny.", "logprobs": [], "sequence_number": 2, **where},
        {"type": "response.output_text.annotation.added", "annotation_index": 0, "annotation": CITATION, "sequence_number": 3, **where},
        {"type": "response.output_item.done", "output_index": 1, "item": message, "sequence_number": 4},
        {"type": "response.completed", "response": {"status": "completed", "output": [reasoning_item, message]}, "sequence_number": 5},
    )), done=False))  # fmt: skip
    assert await generate(mock) == [
        ReasoningSummaryDelta("Plan."), ReasoningEncrypted("opaque"), TextDelta("Sunny."),
        TextAnnotation(CITATION), TextAnnotation(CITATION), Finish("stop"),
    ]  # fmt: skip


async def test_annotations_and_encrypted_reasoning_of_a_whole_response():
    reasoning_item = {"id": "rs_1", "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "Hmm."}], "encrypted_content": "opaque"}
    message = {"id": "msg_2", "type": "message", "content": [{"type": "output_text", "text": "Sunny.", "annotations": [CITATION]}]}
    events = ResponseReader().read_response({"status": "completed", "output": [reasoning_item, message]})
    assert events == [ReasoningDelta("Hmm."), ReasoningEncrypted("opaque"), TextDelta("Sunny."), TextAnnotation(CITATION)]


@pytest.mark.parametrize("stream", [True, False])
async def test_parallel_tool_calls_with_split_arguments(mock, stream):
    mock.script(
        reply(
            text("Checking."),
            tool_call(0, id="call_a", name="weather", arguments=""),
            tool_call(0, arguments='{"city":'),
            tool_call(1, id="call_b", name="clock", arguments='{"tz"'),
            tool_call(0, arguments='"Paris"}'),
            tool_call(1, arguments=':"UTC"}'),
            usage(30, 12),
        )
    )
    events = await generate(mock, hello(tools=[WEATHER, CLOCK], stream=stream))
    assert events[0] == TextDelta("Checking.")
    # A call's index is its output_index upstream: the message is output 0.
    assert tool_calls(events) == {
        1: {"call_id": "call_a", "name": "weather", "arguments": '{"city":"Paris"}'},
        2: {"call_id": "call_b", "name": "clock", "arguments": '{"tz":"UTC"}'},
    }
    assert calls_named_first(events)
    assert events[-1] == Finish("tool_calls", Usage(input_tokens=30, output_tokens=12))


async def test_output_only_in_finished_items_is_still_read(mock):
    """An upstream that streams sparsely: no deltas, only finished items and the final Response."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}]}
    call = {"id": "fc_2", "type": "function_call", "status": "completed", "call_id": "call_x", "name": "clock", "arguments": "{}"}
    mock.script(reply(raw(sse(
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel", "logprobs": [], "sequence_number": 0},
        {"type": "response.output_item.done", "output_index": 0, "item": message, "sequence_number": 1},
        {"type": "response.completed", "response": {"status": "completed", "output": [message, call]}, "sequence_number": 2},
    )), done=False))  # fmt: skip
    events = await generate(mock, hello(tools=[CLOCK]))
    assert events == [TextDelta("Hel"), TextDelta("lo"), ToolCallDelta(index=1, call_id="call_x", name="clock", arguments="{}"), Finish("tool_calls")]


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("upstream_reason", "reason"), [("length", "length"), ("content_filter", "content_filter"), ("stop", "stop")])
async def test_incomplete_responses(mock, stream, upstream_reason, reason):
    mock.script(reply(text("cut sh"), finish(upstream_reason), usage(5, 16)))
    events = await generate(mock, hello(stream=stream, max_output_tokens=16))
    assert events[-1] == Finish(reason, Usage(input_tokens=5, output_tokens=16))


@pytest.mark.parametrize("stream", [True, False])
async def test_logprobs_take_the_responses_shape(mock, stream):
    first = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1}, {"token": "Yo", "logprob": -2.5}]}
    second = {"token": "!", "logprob": -0.3, "top_logprobs": []}
    mock.script(reply(text("Hi", logprobs=[first]), text("!", logprobs=[second])))
    events = joined(await generate(mock, hello(stream=stream, logprobs=True, top_logprobs=2)))
    assert events[0] == TextDelta(
        "Hi!",
        [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}, {"token": "Yo", "logprob": -2.5, "bytes": [89, 111]}]},
            {"token": "!", "logprob": -0.3, "bytes": [33], "top_logprobs": []},
        ],
    )


@pytest.mark.parametrize("stream", [True, False])
async def test_refusal(mock, stream):
    mock.script(reply(refusal("I can't "), refusal("help with that.")))
    assert joined(await generate(mock, hello(stream=stream))) == [RefusalDelta("I can't help with that."), Finish("stop")]


async def test_the_mock_speaks_the_spec():
    """What these tests read is what OpenAI sends: every mock event and Response validates
    against both specs, but where OpenAI's API sends what one of them does not have; there the
    other holds:
    - a text delta's logprobs carry no `bytes` (OpenAI's description; Open Responses asks for them);
    - an `error` event nests its fields under `error` (Open Responses; OpenAI's description has
      them at the top, which `event="flat error"` sends)."""
    steps = [reasoning("r"), summary("s"), text("t", logprobs=[{"token": "t", "logprob": -1.0, "top_logprobs": []}]), refusal("no"),
             tool_call(0, id="call_a", name="f", arguments="{}"), finish("length"), usage(1, 2, cached=0, reasoning=1)]  # fmt: skip
    answer = ResponsesAnswer({"model": "m", "tools": [CLOCK], "store": False}, steps)
    events = answer.start() + [event for step in steps for event in answer.step(step)]
    assert events[-1]["type"] == "response.incomplete"
    failed = ResponsesAnswer({"model": "m"}, [text("t"), fail("It broke.")])
    events += failed.start() + failed.step(text("t")) + failed.step(fail("It broke."))
    for event in events:
        if event["type"] == "response.output_text.delta" and event["logprobs"]:
            validate(event, "ResponseTextDeltaEvent", OPENAI)
        else:
            validate_event(event)
    assert any(event["type"] == "response.output_text.delta" and event["logprobs"] for event in events)
    nested, flat = (ResponsesAnswer({}, []).step(fail("Slow down.", code="rate_limit_exceeded", event=shape))[0] for shape in ("error", "flat error"))
    validate(nested, "ErrorStreamingEvent", OPEN_RESPONSES)
    validate(flat, "ResponseErrorEvent", OPENAI)
    validate_response(ResponsesAnswer({"model": "m"}, steps[:4]).final())


# --- Failures -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(
    ("code", "expected", "retryable"),
    [("server_error", "server_error", True), ("rate_limit_exceeded", "rate_limit_exceeded", True), ("invalid_prompt", "invalid_prompt", False), ("engine_on_fire", "server_error", True)],
)
async def test_failed_response(mock, stream, code, expected, retryable):
    mock.script(reply(fail("It broke.", code=code)))
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=stream))
    assert (failure.value.code, failure.value.retryable) == (expected, retryable)
    assert "It broke." in failure.value.message


@pytest.mark.parametrize("shape", ["error", "flat error"])
async def test_error_event(mock, shape):
    mock.script(reply(fail("Too many requests.", code="rate_limit_exceeded", event=shape)))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert (failure.value.code, failure.value.status) == ("rate_limit_exceeded", 429)


async def test_failure_after_output_is_not_retried(mock):
    mock.script(reply(text("partial"), fail("It broke.")), reply(text("again")))
    events = []
    backend = backend_for(mock, max_retries=2)
    with pytest.raises(BackendError):
        async for event in backend.generate(hello()):
            events.append(event)
    await backend.close()
    assert events == [TextDelta("partial")]
    assert len(mock.requests) == 1


async def test_failure_before_output_is_retried(mock):
    mock.script(reply(fail("Overloaded.")), reply(text("ok")))
    assert await generate(mock, max_retries=1) == [TextDelta("ok"), Finish("stop")]


@pytest.mark.parametrize("stream", [True, False])
async def test_http_errors_map_like_chat(mock, stream):
    mock.script(error(503, "warming up"), error(429, "slow down", type="rate_limit_error"), reply(text("ok")))
    assert await generate(mock, hello(stream=stream), max_retries=2) == [TextDelta("ok"), Finish("stop")]
    mock.script(error(500, "down"), error(500, "down"))
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=stream), max_retries=1)
    assert failure.value.code == "server_error" and "down" in failure.value.message


@pytest.mark.parametrize("stream", [True, False])
async def test_context_length_error_is_not_retried(mock, stream):
    message = "Your input exceeds the context window of this model. Please adjust your input and try again."
    mock.script(error(400, message, type="invalid_request_error", code="context_length_exceeded"), reply(text("never")))
    with pytest.raises(ContextLengthExceeded):
        await generate(mock, hello(stream=stream), max_retries=2)
    assert len(mock.requests) == 1


@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_answers(mock, stream):
    mock.script(malformed('{"output": ['))
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=stream))
    assert failure.value.code == "server_error" and "malformed" in failure.value.message


async def test_stream_ending_without_a_terminal_event(mock):
    mock.script(reply(text("Hi"), done=False), reply(text("again")))
    with pytest.raises(BackendError) as failure:
        await generate(mock, max_retries=2)
    assert "ended early" in failure.value.message
    assert len(mock.requests) == 1  # output had reached the caller


async def test_cut_before_output_is_retried_and_after_it_raises(mock):
    mock.script(reply(cut()), reply(text("ok")))
    assert await generate(mock, max_retries=1) == [TextDelta("ok"), Finish("stop")]
    mock.script(reply(text("partial"), cut()), reply(text("again")))
    with pytest.raises(BackendError) as failure:
        await generate(mock, max_retries=2)
    assert failure.value.retryable and len(mock.requests) == 3


async def test_timeouts(mock):
    mock.script(reply(text("late"), delay=3), reply(text("on and on"), forever=True))
    started = time.monotonic()
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=False), timeout_s=0.3)
    assert "0.3 s" in failure.value.message and time.monotonic() - started < 2
    with pytest.raises(BackendError) as failure:
        await generate(mock, timeout_s=0.3)
    assert failure.value.code == "server_error" and time.monotonic() - started < 3


async def test_hang_after_the_terminal_event_still_finishes(mock):
    mock.script(reply(text("Hi"), finish("stop"), forever=True))
    assert await generate(mock, timeout_s=0.5) == [TextDelta("Hi"), Finish("stop")]


# --- Context window and token counts ----------------------------------------------------


async def test_context_window_from_models_or_settings(mock):
    mock.reset(model="resp-model", max_model_len=32768)
    backend = backend_for(mock, context_window=8192)
    assert await backend.resolve_context_window() == 32768
    await backend.close()
    mock.reset(model="resp-model")
    backend = backend_for(mock, context_window=8192)
    assert await backend.resolve_context_window() == 8192
    await backend.close()


async def test_count_tokens_with_input_tokens(mock):
    mock.reset(token_count=17)
    backend = backend_for(mock, upstream_model="served")
    request = ModelRequest(model="resp-model", instructions="Be brief.", input=[{"id": "msg_1", **user("Hello")}], tools=[WEATHER], max_output_tokens=50)
    assert await backend.count_tokens(request) == 17
    (sent_body,) = mock.input_tokens_requests
    assert sent_body == {"model": "served", "input": [user("Hello")], "instructions": "Be brief.", "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": True}
    await backend.close()


async def test_count_tokens_is_none_without_input_tokens(mock):
    mock.reset(input_tokens=False)
    backend = backend_for(mock)
    request = ModelRequest(model="resp-model", input=[user("x" * 400), {"type": "function_call_output", "call_id": "c", "output": "y" * 40}])
    assert await backend.count_tokens(request) is None  # callers estimate instead
    assert await backend.count_tokens(request) is None
    assert len(mock.input_tokens_requests) == 1  # the missing endpoint is remembered
    await backend.close()


async def test_close_leaves_a_given_client_open(mock):
    mock.script(reply(text("ok")))
    async with aiohttp.ClientSession() as http:
        backend = OpenAIResponsesBackend(ModelSettings(id="m", provider="openai-responses", base_url=mock.base_url), http=http)
        assert [event async for event in backend.generate(hello())][0] == TextDelta("ok")
        await backend.close()
        assert not http.closed
