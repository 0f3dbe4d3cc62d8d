"""OpenAIChatBackend against a real HTTP Chat Completions server (tests/mock_upstream.py)."""

from __future__ import annotations

import time

import aiohttp
import pytest

from tests.helpers import CLOCK, WEATHER, UpstreamBackend, calls_named_first, joined, tool_calls, user
from tests.mock_upstream import (
    MockUpstream,
    cut,
    error,
    finish,
    malformed,
    raw,
    reasoning,
    refusal,
    reply,
    sleep,
    text,
    tool_call,
    usage,
)
from threadline.backends.base import (
    BackendError,
    ContextLengthExceeded,
    Finish,
    ModelRequest,
    ReasoningDelta,
    RefusalDelta,
    TextDelta,
    Usage,
)
from threadline.backends.openai_chat import OpenAIChatBackend
from threadline.config import ModelSettings

pytestmark = pytest.mark.asyncio

CHAT = UpstreamBackend("openai-chat", "chat-model")
backend_for, hello, generate, sent = CHAT.backend_for, CHAT.hello, CHAT.generate, CHAT.sent


# --- Request translation --------------------------------------------------------------


async def test_instructions_roles_and_content_parts(mock):
    request = ModelRequest(
        model="chat-model",
        instructions="Be brief.",
        input=[
            {"type": "message", "role": "developer", "content": "Answer in French."},
            {"role": "system", "content": [{"type": "input_text", "text": "Line one"}, {"type": "input_text", "text": "Line two"}]},
            {"role": "user", "content": "Hi"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello!", "annotations": []}],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What's this?"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "low"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
                ],
            },
        ],
    )
    body = await sent(mock, request)
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "system", "content": "Line one\nLine two"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "assistant", "content": "I can't."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"}},
                {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
            ],
        },
    ]


async def test_function_calls_become_one_assistant_message_and_outputs_tool_messages(mock):
    request = ModelRequest(
        model="chat-model",
        input=[
            user("Weather in Paris and Rome?"),
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two cities."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "call_a", "name": "weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_b", "output": [{"type": "input_text", "text": "21C"}, {"type": "input_text", "text": "sunny"}]},
            {"type": "function_call", "call_id": "call_c", "name": "weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call_output", "call_id": "call_c", "output": "3C"},
        ],
    )
    body = await sent(mock, request)
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
                {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "21C\nsunny"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_c", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "3C"},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "chat_choice", "names"),
    [
        ("auto", "auto", ["weather", "clock"]),
        ("none", "none", ["weather", "clock"]),
        ("required", "required", ["weather", "clock"]),
        ({"type": "function", "name": "clock"}, {"type": "function", "function": {"name": "clock"}}, ["weather", "clock"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "clock"}]}, "required", ["clock"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "weather"}]}, "auto", ["weather"]),
    ],
)
async def test_tools_and_tool_choice(mock, tool_choice, chat_choice, names):
    body = await sent(mock, hello(tools=[WEATHER, CLOCK], tool_choice=tool_choice, parallel_tool_calls=False))
    assert body["tool_choice"] == chat_choice
    assert body["parallel_tool_calls"] is False
    assert [tool["function"]["name"] for tool in body["tools"]] == names
    if "weather" in names:
        assert body["tools"][0] == {
            "type": "function",
            "function": {"name": "weather", "description": "Current weather", "parameters": WEATHER["parameters"], "strict": True},
        }


async def test_no_tools_sends_no_tool_fields(mock):
    body = await sent(mock, hello())
    assert not {"tools", "tool_choice", "parallel_tool_calls", "response_format", "max_tokens", "logprobs"} & set(body)


async def test_response_format(mock):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
    body = await sent(mock, hello(text_format={"type": "json_schema", "name": "count", "schema": schema, "strict": True}))
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "count", "schema": schema, "strict": True}}
    body = await sent(mock, hello(text_format={"type": "json_object"}))
    assert body["response_format"] == {"type": "json_object"}
    body = await sent(mock, hello(text_format={"type": "text"}))
    assert "response_format" not in body


async def test_sampling_parameters_model_and_auth(mock):
    request = hello(max_output_tokens=100, temperature=0.2, top_p=0.9, user="u-1", logprobs=True, top_logprobs=3, reasoning={"effort": "low"})
    body = await sent(mock, request, upstream_model="org/served-name", api_key="sk-upstream")
    assert body["model"] == "org/served-name"
    assert body["max_tokens"] == 100
    assert (body["temperature"], body["top_p"], body["user"]) == (0.2, 0.9, "u-1")
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert body["reasoning_effort"] == "low"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert mock.headers[-1]["authorization"] == "Bearer sk-upstream"


async def test_model_defaults_to_id_and_options_shape_the_body(mock):
    request = hello(max_output_tokens=50, stream=False, reasoning={"effort": "high"})
    options = {"max_tokens_param": "max_completion_tokens", "send_reasoning_effort": False, "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}}
    body = await sent(mock, request, options=options)
    assert body["model"] == "chat-model"
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert "reasoning_effort" not in body and "stream" not in body
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "authorization" not in mock.headers[-1]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_image", "file_id": "file-123"},
        {"type": "input_file", "file_id": "file-123"},
    ],
)
async def test_parts_chat_cannot_carry_are_rejected_before_any_call(mock, part):
    request = ModelRequest(model="chat-model", input=[{"type": "message", "role": "user", "content": [part]}])
    with pytest.raises(BackendError) as failure:
        await generate(mock, request)
    assert (failure.value.code, failure.value.status) == ("invalid_request_error", 400)
    assert mock.requests == []


# --- Reading answers ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # DeepSeek/SGLang, newer vLLM/Ollama
async def test_text_reasoning_and_usage(mock, stream, field):
    mock.script(
        reply(
            reasoning("Let me ", field=field),
            reasoning("think.", field=field),
            text("Hel"),
            text("lo"),
            finish("stop"),
            usage(20, 9, cached=16, reasoning=4),
        )
    )
    events = await generate(mock, hello(stream=stream))
    assert joined(events) == [
        ReasoningDelta("Let me think."),
        TextDelta("Hello"),
        Finish("stop", Usage(input_tokens=20, output_tokens=9, cached_tokens=16, reasoning_tokens=4)),
    ]
    assert sum(isinstance(event, Finish) for event in events) == 1
    assert ("stream" in mock.requests[0]) is stream


async def test_text_streams_as_it_arrives(mock):
    mock.script(reply(text("a"), text("b"), text("c"), finish()))
    events = await generate(mock)
    assert events[:3] == [TextDelta("a"), TextDelta("b"), TextDelta("c")]
    assert events[3] == Finish("stop", None)  # no usage sent, none made up


@pytest.mark.parametrize("stream", [True, False])
async def test_parallel_tool_calls_with_split_arguments(mock, stream):
    mock.script(
        reply(
            tool_call(0, id="call_a", name="weather", arguments=""),
            tool_call(0, arguments='{"city":'),
            tool_call(1, id="call_b", name="clock", arguments='{"tz"'),
            tool_call(0, arguments='"Paris"}'),
            tool_call(1, arguments=':"UTC"}'),
            finish("tool_calls"),
            usage(30, 12),
        )
    )
    events = await generate(mock, hello(tools=[WEATHER, CLOCK], stream=stream))
    assert tool_calls(events) == {
        0: {"call_id": "call_a", "name": "weather", "arguments": '{"city":"Paris"}'},
        1: {"call_id": "call_b", "name": "clock", "arguments": '{"tz":"UTC"}'},
    }
    assert calls_named_first(events)
    assert events[-1] == Finish("tool_calls", Usage(input_tokens=30, output_tokens=12))


async def test_calls_reusing_one_index_or_lacking_ids_stay_apart(mock):
    mock.script(
        reply(
            tool_call(0, id="call_a", name="weather", arguments='{"city":"Paris"}'),
            tool_call(0, id="call_b", name="weather", arguments='{"city":"Rome"}'),
            finish("stop"),  # some upstreams say stop after calling tools
        ),
        reply(tool_call(0, name="clock", arguments="{}"), finish("tool_calls")),
    )
    events = await generate(mock, hello(tools=[WEATHER]))
    assert [call["call_id"] for call in tool_calls(events).values()] == ["call_a", "call_b"]
    assert events[-1].reason == "tool_calls"
    events = await generate(mock, hello(tools=[CLOCK]))
    assert tool_calls(events)[0]["call_id"].startswith("call_")


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize(("upstream_reason", "reason"), [("length", "length"), ("content_filter", "content_filter"), ("eos", "stop")])
async def test_finish_reasons(mock, stream, upstream_reason, reason):
    mock.script(reply(text("cut sh"), finish(upstream_reason), usage(5, 16)))
    events = await generate(mock, hello(stream=stream, max_output_tokens=16))
    assert events[-1] == Finish(reason, Usage(input_tokens=5, output_tokens=16))


@pytest.mark.parametrize("stream", [True, False])
async def test_logprobs_take_the_responses_shape(mock, stream):
    first = {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}, {"token": "Yo", "logprob": -2.5, "bytes": None}]}
    second = {"token": "!", "logprob": -0.3, "bytes": None, "top_logprobs": []}
    mock.script(reply(text("Hi", logprobs=[first]), text("!", logprobs=[second]), finish()))
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
    mock.script(reply(refusal("I can't "), refusal("help with that."), finish()))
    assert joined(await generate(mock, hello(stream=stream))) == [RefusalDelta("I can't help with that."), Finish("stop")]


async def test_done_without_finish_reason_finishes_with_stop(mock):
    mock.script(reply(text("Hi")))
    assert await generate(mock) == [TextDelta("Hi"), Finish("stop")]


async def test_finish_reason_without_done_still_finishes(mock):
    mock.script(reply(text("Hi"), finish("length"), done=False))
    assert await generate(mock) == [TextDelta("Hi"), Finish("length")]


async def test_upstream_answering_json_to_a_stream_request(mock):
    mock.script(malformed('{"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]}'))
    assert await generate(mock) == [TextDelta("Hi"), Finish("stop")]


# --- Errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(mock, status):
    mock.script(error(status, "overloaded"))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert failure.value.code == "server_error" and failure.value.retryable
    assert "overloaded" in failure.value.message


async def test_rate_limit(mock):
    mock.script(error(429, "slow down", type="rate_limit_error"))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert (failure.value.code, failure.value.status, failure.value.retryable) == ("rate_limit_exceeded", 429, True)


async def test_rate_limit_retry_honours_retry_after(mock):
    mock.script(error(429, retry_after="1"), reply(text("ok"), finish()))
    started = time.monotonic()
    events = await generate(mock, max_retries=1)
    assert time.monotonic() - started >= 0.9
    assert events == [TextDelta("ok"), Finish("stop")]
    assert len(mock.requests) == 2


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",  # vLLM, OpenAI
        "the request exceeds the available context size, try increasing it",  # llama.cpp
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 `inputs` tokens and 200 `max_new_tokens`",  # TGI
    ],
)
@pytest.mark.parametrize("stream", [True, False])
async def test_context_length_errors(mock, message, stream):
    mock.script(error(400, message, type="BadRequestError"), reply(text("never"), finish()))
    with pytest.raises(ContextLengthExceeded) as failure:
        await generate(mock, hello(stream=stream), max_retries=2)
    assert (failure.value.code, failure.value.status) == ("context_length_exceeded", 400)
    assert len(mock.requests) == 1


async def test_other_client_errors_are_invalid_requests_without_retry(mock):
    mock.script(error(400, "'temperature' must be between 0 and 2", type="BadRequestError"))
    with pytest.raises(BackendError) as failure:
        await generate(mock, max_retries=2)
    assert (failure.value.code, failure.value.status, failure.value.retryable) == ("invalid_request_error", 400, False)
    assert "temperature" in failure.value.message
    assert len(mock.requests) == 1


@pytest.mark.parametrize("status", [401, 404])
async def test_upstream_misconfiguration_is_a_server_error(mock, status):
    mock.script(error(status, "Incorrect API key provided: sk-abc***xyz"))
    with pytest.raises(BackendError) as failure:
        await generate(mock, max_retries=2)
    assert (failure.value.code, failure.value.retryable) == ("server_error", False)
    assert ("sk-abc" in failure.value.message) is (status == 404)
    assert len(mock.requests) == 1


async def test_connect_error():
    closed = MockUpstream()
    closed.base_url = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    with pytest.raises(BackendError) as failure:
        await generate(closed, max_retries=1)
    assert (failure.value.code, failure.value.retryable) == ("server_error", True)


@pytest.mark.parametrize("stream", [True, False])
async def test_malformed_json(mock, stream):
    mock.script(malformed())
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=stream))
    assert failure.value.code == "server_error" and "malformed" in failure.value.message


async def test_malformed_sse_event(mock):
    mock.script(reply(text("Hi"), raw("data: {not json}\n\n"), finish()))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert failure.value.code == "server_error" and "malformed" in failure.value.message


async def test_truncated_sse_event(mock):
    mock.script(reply(text("Hi"), raw('data: {"choices": [{"index": 0, "del'), done=False))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert failure.value.code == "server_error"


async def test_stream_ending_early(mock):
    mock.script(reply(text("Hi"), done=False))
    events = []
    with pytest.raises(BackendError) as failure:
        backend = backend_for(mock, max_retries=2)
        try:
            async for event in backend.generate(hello()):
                events.append(event)
        finally:
            await backend.close()
    assert "ended early" in failure.value.message
    assert events == [TextDelta("Hi")]
    assert len(mock.requests) == 1


async def test_error_event_inside_the_stream(mock):
    mock.script(reply(raw('data: {"error": {"message": "The engine crashed", "type": "InternalServerError", "code": 500}}\n\n'), done=False))
    with pytest.raises(BackendError) as failure:
        await generate(mock)
    assert failure.value.code == "server_error" and "engine crashed" in failure.value.message


# --- Retries --------------------------------------------------------------------------


async def test_retry_before_output_succeeds(mock):
    mock.script(error(503, "warming up"), reply(text("ok"), finish()))
    assert await generate(mock, max_retries=2) == [TextDelta("ok"), Finish("stop")]
    assert len(mock.requests) == 2


async def test_retries_give_up_after_max_retries(mock):
    mock.script(error(503), error(502), error(500), reply(text("too late"), finish()))
    with pytest.raises(BackendError):
        await generate(mock, max_retries=2)
    assert len(mock.requests) == 3


async def test_cut_before_output_is_retried(mock):
    mock.script(reply(cut()), reply(text("ok"), finish()))
    assert await generate(mock, max_retries=1) == [TextDelta("ok"), Finish("stop")]


async def test_cut_after_output_raises_without_retry(mock):
    mock.script(reply(text("partial"), cut()), reply(text("again"), finish()))
    events = []
    backend = backend_for(mock, max_retries=2)
    with pytest.raises(BackendError) as failure:
        async for event in backend.generate(hello()):
            events.append(event)
    await backend.close()
    assert events == [TextDelta("partial")]
    assert (failure.value.code, failure.value.retryable) == ("server_error", True)
    assert len(mock.requests) == 1


# --- Timeouts -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False])
async def test_timeout_before_first_byte(mock, stream):
    mock.script(reply(text("late"), finish(), delay=3))
    started = time.monotonic()
    with pytest.raises(BackendError) as failure:
        await generate(mock, hello(stream=stream), timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert (failure.value.code, failure.value.retryable) == ("server_error", True)


async def test_timeout_before_output_is_retried(mock):
    mock.script(reply(text("late"), finish(), delay=3), reply(text("ok"), finish()))
    assert await generate(mock, timeout_s=0.5, max_retries=1, total_timeout_s=2) == [TextDelta("ok"), Finish("stop")]


async def test_every_attempt_together_is_bounded_by_total_timeout_s(mock):
    mock.script(*[reply(text("late"), finish(), delay=3)] * 4)
    with pytest.raises(BackendError) as failure:
        await generate(mock, timeout_s=0.5, max_retries=3, total_timeout_s=0.8)
    assert failure.value.message == "The upstream model did not finish within this model's total_timeout_s (0.8 s)."
    assert len(mock.requests) == 2  # the second attempt had what the first left of 0.8 s; no time for a third


async def test_a_timeout_spends_a_total_timeout_s_left_at_its_default(mock):
    mock.script(*[reply(text("late"), finish(), delay=3)] * 2)
    with pytest.raises(BackendError) as failure:
        await generate(mock, timeout_s=0.5, max_retries=1)  # total_timeout_s: timeout_s
    assert failure.value.message == "The upstream model did not finish within 0.5 s."
    assert len(mock.requests) == 1


async def test_slow_chunks_within_the_timeout(mock):
    mock.script(reply(text("a"), sleep(0.2), text("b"), sleep(0.2), finish()))
    assert joined(await generate(mock, timeout_s=2)) == [TextDelta("ab"), Finish("stop")]


async def test_never_ending_stream_is_bounded_by_timeout_s(mock):
    mock.script(reply(text("on and on"), forever=True))
    events = []
    started = time.monotonic()
    backend = backend_for(mock, timeout_s=0.5, max_retries=2)
    with pytest.raises(BackendError) as failure:
        async for event in backend.generate(hello()):
            events.append(event)
    await backend.close()
    assert 0.4 < time.monotonic() - started < 2
    assert events == [TextDelta("on and on")]
    assert "0.5 s" in failure.value.message
    assert len(mock.requests) == 1


async def test_hang_after_finish_reason_still_finishes(mock):
    mock.script(reply(text("Hi"), finish("stop"), forever=True))
    assert await generate(mock, timeout_s=0.5) == [TextDelta("Hi"), Finish("stop")]


async def test_closing_the_generator_early_stops_the_call(mock):
    mock.script(reply(text("first"), forever=True))
    backend = backend_for(mock)
    events = backend.generate(hello())
    assert await anext(events) == TextDelta("first")
    await events.aclose()
    await backend.close()


# --- Context window and token counts ----------------------------------------------------


async def test_context_window_from_models_wins_and_is_cached(mock):
    mock.reset(model="chat-model", max_model_len=32768)
    backend = backend_for(mock, context_window=8192)
    assert backend.context_window == 8192
    assert await backend.resolve_context_window() == 32768
    assert await backend.resolve_context_window() == 32768
    assert backend.context_window == 32768
    assert mock.models_requests == 1
    await backend.close()


@pytest.mark.parametrize(("model_info", "expected"), [({"context_length": 16384}, 16384), ({}, 8192)])
async def test_context_window_other_fields_and_fallback(mock, model_info, expected):
    mock.reset(model="chat-model", model_info=model_info)
    backend = backend_for(mock, context_window=8192)
    assert await backend.resolve_context_window() == expected
    await backend.close()


async def test_context_window_lookup_failure_keeps_the_setting():
    closed = MockUpstream()
    closed.base_url = "http://127.0.0.1:9/v1"
    backend = backend_for(closed, context_window=4096)
    assert await backend.resolve_context_window() == 4096
    await backend.close()


async def test_count_tokens_with_tokenize(mock):
    mock.reset(token_count=17)
    backend = backend_for(mock, upstream_model="served")
    request = ModelRequest(model="chat-model", instructions="Be brief.", input=[user("Hello")], tools=[WEATHER])
    assert await backend.count_tokens(request) == 17
    sent_body = mock.tokenize_requests[0]
    assert sent_body["model"] == "served"
    assert sent_body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    assert sent_body["tools"][0]["function"]["name"] == "weather"
    await backend.close()


async def test_count_tokens_is_none_without_tokenize(mock):
    mock.reset(tokenize=False)
    backend = backend_for(mock)
    request = ModelRequest(model="chat-model", input=[user("x" * 400), user("y" * 40)])
    assert await backend.count_tokens(request) is None  # callers estimate instead
    assert await backend.count_tokens(request) is None
    assert len(mock.tokenize_requests) == 1  # the missing endpoint is remembered
    await backend.close()


async def test_close_leaves_a_given_client_open(mock):
    mock.script(reply(text("ok"), finish()))
    async with aiohttp.ClientSession() as http:
        backend = OpenAIChatBackend(ModelSettings(id="m", provider="openai-chat", base_url=mock.base_url), http=http)
        assert [event async for event in backend.generate(hello())][0] == TextDelta("ok")
        await backend.close()
        assert not http.closed
