"""ResponseEvents on its own: model events in, OpenAI's streaming events and the Response out.

Every event is checked against both specifications, sequence numbers run without a gap, and
the Response a client folds from the events is the Response the builder ends with.
"""

from __future__ import annotations

import copy

import pytest

from tests.spec_schemas import validate_event, validate_response
from threadline.backends.base import (
    Finish,
    ReasoningDelta,
    ReasoningEncrypted,
    ReasoningSummaryDelta,
    RefusalDelta,
    TextAnnotation,
    TextDelta,
    ToolCallDelta,
    ToolItem,
    Usage,
)
from threadline.engine.replay import replay_events
from threadline.spec.request import CreateResponseBody
from threadline.spec.response import ENCRYPTED_CONTENT, present, response_object
from threadline.spec.stream import ResponseEvents

CITATION = {"type": "url_citation", "url": "https://example.com/paris", "title": "Paris", "start_index": 0, "end_index": 5}
WEB_SEARCH = {"id": "ws_upstream", "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "weather in Paris"}}
MCP_CALL = {"id": "mcp_upstream", "type": "mcp_call", "status": "completed", "server_label": "docs", "name": "lookup", "arguments": "{}", "output": "42", "error": None}


def new_builder() -> ResponseEvents:
    body = CreateResponseBody.model_validate({"model": "m", "input": "Hi"})
    return ResponseEvents(response_object(body, "m", "auto"))


def run(*model_events, finish: Finish | None = Finish("stop", Usage(5, 3))) -> tuple[list[dict], dict]:
    """One turn of these model events: every event made, and the Response at the end."""
    builder = new_builder()
    events = builder.start()
    for model_event in model_events:
        events += builder.feed(model_event)
    events += builder.finish(finish)
    return checked(events, builder.response)


def checked(events: list[dict], response: dict) -> tuple[list[dict], dict]:
    for event in events:
        validate_event(event)
    validate_response(response)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[-1]["response"] == response
    assert fold(events) == response["output"]
    return events, response


def fold(events: list[dict]) -> list[dict]:
    """The output as a client rebuilds it from the events, each item checked against the
    item its output_item.done carries."""
    output: list[dict] = []
    for event in events:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert event["output_index"] == len(output)
            output.append(copy.deepcopy(event["item"]))
            continue
        if "output_index" not in event:
            continue
        item = output[event["output_index"]]
        assert event.get("item_id", item["id"]) == item["id"]
        if "content_index" in event and kind != "response.content_part.added":
            part = item["content"][event["content_index"]]
        if "summary_index" in event and kind != "response.reasoning_summary_part.added":
            summary = item["summary"][event["summary_index"]]
        if kind == "response.content_part.added":
            assert event["content_index"] == len(item["content"])
            item["content"].append(copy.deepcopy(event["part"]))
        elif kind in ("response.output_text.delta", "response.reasoning_text.delta"):
            part["text"] += event["delta"]
            part.get("logprobs", []).extend(event.get("logprobs") or [])
        elif kind == "response.refusal.delta":
            part["refusal"] += event["delta"]
        elif kind == "response.output_text.annotation.added":
            assert event["annotation_index"] == len(part["annotations"])
            part["annotations"].append(event["annotation"])
        elif kind in ("response.output_text.done", "response.reasoning_text.done"):
            assert part["text"] == event["text"]
        elif kind == "response.refusal.done":
            assert part["refusal"] == event["refusal"]
        elif kind == "response.content_part.done":
            assert part == event["part"]
        elif kind == "response.reasoning_summary_part.added":
            assert event["summary_index"] == len(item["summary"])
            item["summary"].append(copy.deepcopy(event["part"]))
        elif kind == "response.reasoning_summary_text.delta":
            summary["text"] += event["delta"]
        elif kind in ("response.reasoning_summary_text.done", "response.reasoning_summary_part.done"):
            assert summary["text"] == event.get("text", event.get("part", {}).get("text"))
        elif kind == "response.function_call_arguments.delta":
            item["arguments"] += event["delta"]
        elif kind == "response.function_call_arguments.done":
            assert (item["arguments"], item["name"]) == (event["arguments"], event["name"])
        elif kind == "response.output_item.done":
            done = event["item"]
            if item["type"] in ("message", "reasoning", "function_call"):
                # Streamed in pieces: what the pieces made is the finished item, but for its
                # status and encrypted content, which only the finished item carries.
                rest = {key: value for key, value in done.items() if key not in ("status", "encrypted_content")}
                assert {key: item.get(key) for key in rest} == rest
            output[event["output_index"]] = done
    return output


def types(events: list[dict]) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events]


# --- one turn -------------------------------------------------------------------------------


def test_text():
    logprobs = [{"token": "lo", "logprob": -0.5, "bytes": [108, 111], "top_logprobs": []}]
    events, response = run(TextDelta("Hel"), TextDelta("lo", logprobs))
    assert types(events) == [
        "created", "in_progress", "output_item.added", "content_part.added", "output_text.delta", "output_text.delta",
        "output_text.done", "content_part.done", "output_item.done", "completed",
    ]  # fmt: skip
    [message] = response["output"]
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [{"type": "output_text", "annotations": [], "logprobs": logprobs, "text": "Hello"}]
    assert response["status"] == "completed" and response["completed_at"] is not None
    assert response["usage"]["total_tokens"] == 8


def test_refusal_after_text_is_a_second_part_of_the_message():
    _events, response = run(TextDelta("Well. "), RefusalDelta("I can't "), RefusalDelta("help with that."))
    [message] = response["output"]
    assert [part["type"] for part in message["content"]] == ["output_text", "refusal"]
    assert message["content"][1]["refusal"] == "I can't help with that."


def test_reasoning_then_text():
    _events, response = run(ReasoningDelta("Let me "), ReasoningDelta("think."), TextDelta("Paris."))
    reasoning, message = response["output"]
    assert reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [] and reasoning["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert message["content"][0]["text"] == "Paris."


def test_reasoning_summary_in_parts():
    events, response = run(
        ReasoningSummaryDelta("**Plan**"), ReasoningSummaryDelta("Greet them", 1), ReasoningSummaryDelta(".", 1), TextDelta("Hi")
    )
    assert types(events)[2:13] == [
        "output_item.added",
        "reasoning_summary_part.added", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done",
        "reasoning_summary_part.added", "reasoning_summary_text.delta", "reasoning_summary_text.delta",
        "reasoning_summary_text.done", "reasoning_summary_part.done",
        "output_item.done",
    ]  # fmt: skip
    reasoning = response["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "**Plan**"}, {"type": "summary_text", "text": "Greet them."}]
    assert reasoning["content"] == []


def test_reasoning_summary_and_text_of_one_item():
    _events, response = run(ReasoningSummaryDelta("Short."), ReasoningDelta("Long thinking."), TextDelta("Hi"))
    reasoning, _message = response["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Short."}]
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Long thinking."}]


def test_encrypted_content_comes_with_the_finished_reasoning_item():
    events, response = run(ReasoningSummaryDelta("Thinking."), ReasoningEncrypted("opaque"), TextDelta("Hi"))
    added, done = (event["item"] for event in events if event["type"].startswith("response.output_item") and event["output_index"] == 0)
    assert "encrypted_content" not in added
    assert done["encrypted_content"] == response["output"][0]["encrypted_content"] == "opaque"
    assert "encrypted_content" not in present(response, [])["output"][0]
    assert present(response, [ENCRYPTED_CONTENT])["output"][0]["encrypted_content"] == "opaque"


def test_encrypted_content_alone_is_a_reasoning_item():
    _events, response = run(ReasoningEncrypted("opaque"), TextDelta("Hi"))
    assert response["output"][0] == {"id": response["output"][0]["id"], "type": "reasoning", "summary": [], "content": [], "encrypted_content": "opaque"}


def test_interleaved_function_calls():
    events, response = run(
        TextDelta("Checking."),
        ToolCallDelta(0, call_id="call_a", name="weather"),
        ToolCallDelta(1, call_id="call_b", name="clock", arguments='{"tz"'),
        ToolCallDelta(0, arguments='{"city":"Paris"}'),
        ToolCallDelta(1, arguments=':"UTC"}'),
        finish=Finish("tool_calls", Usage(5, 9)),
    )
    message, weather, clock = response["output"]
    assert message["status"] == "completed"
    assert (weather["call_id"], weather["name"], weather["arguments"], weather["status"]) == ("call_a", "weather", '{"city":"Paris"}', "completed")
    assert (clock["call_id"], clock["name"], clock["arguments"]) == ("call_b", "clock", '{"tz":"UTC"}')
    assert weather["id"].startswith("fc_")
    deltas = [(event["output_index"], event["delta"]) for event in events if event["type"] == "response.function_call_arguments.delta"]
    assert deltas == [(2, '{"tz"'), (1, '{"city":"Paris"}'), (2, ':"UTC"}')]


def test_a_call_without_a_call_id_gets_one():
    _events, response = run(ToolCallDelta(0, name="clock", arguments="{}"), finish=Finish("tool_calls"))
    assert response["output"][0]["call_id"].startswith("call_")


def test_annotations_of_output_text():
    events, response = run(TextDelta("Paris is sunny."), TextAnnotation(CITATION), TextDelta(" More."), TextAnnotation({**CITATION, "start_index": 16, "end_index": 20}))
    added = [event for event in events if event["type"] == "response.output_text.annotation.added"]
    assert [(event["content_index"], event["annotation_index"]) for event in added] == [(0, 0), (0, 1)]
    [message] = response["output"]
    assert message["content"][0]["text"] == "Paris is sunny. More."
    assert message["content"][0]["annotations"] == [CITATION, {**CITATION, "start_index": 16, "end_index": 20}]


@pytest.mark.parametrize("tool_item", [WEB_SEARCH, MCP_CALL], ids=["web_search_call", "mcp_call"])
def test_a_hosted_tool_item_between_messages(tool_item):
    events, response = run(TextDelta("Searching."), ToolItem(tool_item), TextDelta("Found it."))
    first, tool, second = response["output"]
    assert (first["status"], first["content"][0]["text"], second["content"][0]["text"]) == ("completed", "Searching.", "Found it.")
    assert tool == {**tool_item, "id": tool["id"]}
    assert tool["id"] != tool_item["id"] and tool["id"].startswith(tool_item["id"].split("_")[0] + "_")  # Threadline's own id
    added, done = (event for event in events if event["type"].startswith("response.output_item") and event["output_index"] == 1)
    assert (added["item"]["status"], done["item"]["status"]) == ("in_progress", "completed")
    assert types(events).index("output_item.done") < types(events).index("output_item.added", 3)  # the first message ended before


# --- several turns --------------------------------------------------------------------------


def test_turns_continue_one_stream_and_add_up_their_usage():
    builder = new_builder()
    events = builder.start()
    events += builder.feed(TextDelta("Let me look."))
    events += builder.feed(ToolCallDelta(0, call_id="call_a", name="search", arguments="{}"))
    first_turn = builder.end_turn(Finish("tool_calls", Usage(input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1)))
    assert types(first_turn) == ["function_call_arguments.done", "output_item.done"]  # closed, not ended
    events += first_turn
    assert builder.response["status"] == "in_progress" and builder.response["usage"] is None
    events += builder.feed(ToolItem(WEB_SEARCH))
    # The model's call indexes start again in a new turn: a new call, not the earlier one.
    events += builder.feed(ToolCallDelta(0, call_id="call_b", name="search", arguments='{"q":1}'))
    events += builder.end_turn(Finish("tool_calls", Usage(input_tokens=20, output_tokens=6)))
    events += builder.feed(ReasoningSummaryDelta("Done."))
    events += builder.feed(TextDelta("It is sunny."))
    events += builder.finish(Finish("stop", Usage(input_tokens=30, output_tokens=7, cached_tokens=20, reasoning_tokens=3)))
    events, response = checked(events, builder.response)
    assert [item["type"] for item in response["output"]] == ["message", "function_call", "web_search_call", "function_call", "reasoning", "message"]
    assert [item["call_id"] for item in response["output"] if item["type"] == "function_call"] == ["call_a", "call_b"]
    assert sum(event["type"] in ("response.completed", "response.incomplete", "response.failed") for event in events) == 1
    assert response["usage"] == {
        "input_tokens": 60,
        "input_tokens_details": {"cached_tokens": 22, "cache_write_tokens": 0},
        "output_tokens": 18,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 78,
    }


def test_usage_of_an_earlier_turn_stays_when_the_last_reports_none():
    builder = new_builder()
    events = builder.start() + builder.feed(ToolCallDelta(0, call_id="call_a", name="f", arguments="{}"))
    events += builder.end_turn(Finish("tool_calls", Usage(input_tokens=4, output_tokens=2)))
    events += builder.feed(TextDelta("ok")) + builder.finish(Finish("stop"))
    _events, response = checked(events, builder.response)
    assert response["usage"]["total_tokens"] == 6


# --- endings --------------------------------------------------------------------------------


def test_fail_closes_what_is_open_as_incomplete():
    builder = new_builder()
    events = builder.start() + builder.feed(TextDelta("Half an ans")) + builder.feed(ToolCallDelta(0, call_id="c", name="f", arguments="{"))
    events += builder.fail("engine_on_fire", "The model failed.")
    events, response = checked(events, builder.response)
    assert events[-1]["type"] == "response.failed"
    assert response["status"] == "failed" and response["usage"] is None
    assert response["error"] == {"code": "server_error", "message": "The model failed."}  # a code the spec lacks is server_error
    # The message ended when the call began; the call was still being written.
    assert [item["status"] for item in response["output"]] == ["completed", "incomplete"]


@pytest.mark.parametrize(("reason", "details"), [("length", "max_output_tokens"), ("content_filter", "content_filter")])
def test_incomplete(reason, details):
    events, response = run(ReasoningDelta("Hmm."), TextDelta("Cut sh"), finish=Finish(reason, Usage(5, 16)))
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": details}
    assert response["output"][1]["status"] == "incomplete" and response["completed_at"] is None


def test_cancelled():
    builder = new_builder()
    events = builder.start() + builder.feed(TextDelta("Stopped h")) + builder.close_all("incomplete") + builder.end("cancelled")
    events, response = checked(events, builder.response)
    assert (events[-1]["type"], response["status"]) == ("response.failed", "cancelled")


def test_failing_instead_replaces_the_terminal_event_under_its_number():
    builder = new_builder()
    events = builder.start() + builder.feed(TextDelta("Done.")) + builder.finish(Finish("stop"))
    instead = builder.fail_instead("server_error", "The conversation was deleted.")
    events, response = checked([*events[:-1], instead], builder.response)
    assert instead["sequence_number"] == events[-2]["sequence_number"] + 1
    assert (instead["type"], response["status"], response["completed_at"]) == ("response.failed", "failed", None)


def test_ending_as_stored_elsewhere():
    builder = new_builder()
    events = builder.start() + builder.feed(TextDelta("Done.")) + builder.finish(Finish("stop"))
    stored = {**copy.deepcopy(builder.response), "status": "cancelled"}
    instead = builder.ended_as(stored)
    events, response = checked([*events[:-1], instead], builder.response)
    assert (instead["type"], response["status"], response["output"][0]["content"][0]["text"]) == ("response.failed", "cancelled", "Done.")


# --- a stored response streamed again -------------------------------------------------------


def test_replay_describes_the_stored_response():
    builder = new_builder()
    builder.start()
    for model_event in (
        ReasoningSummaryDelta("Plan."),
        ReasoningEncrypted("opaque"),
        TextDelta("Sunny."),
        TextAnnotation(CITATION),
        ToolItem(WEB_SEARCH),
        ToolCallDelta(0, call_id="call_a", name="f", arguments="{}"),
    ):
        builder.feed(model_event)
    builder.finish(Finish("tool_calls", Usage(3, 4)))
    stored = builder.response
    events, response = checked(replay_events(stored), stored)
    assert response == stored
    assert [event["item"]["id"] for event in events if event["type"] == "response.output_item.added"] == [item["id"] for item in stored["output"]]
