"""Background responses, cancellation, resumable streams and concurrent appends, in one process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.helpers import read_events, script, sse_events, wait_for

SLOW = {"text": "one two three four five six seven eight nine ten", "chunks": 10, "chunk_delay": 0.2}


def test_background_create_returns_at_once_and_completes(client):
    response = client.responses.create(model="scripted", input=script(SLOW), background=True)
    # The model takes two seconds: an answer still queued or in progress came before it.
    assert response.status in ("queued", "in_progress") and response.background is True
    done = wait_for(client, response.id)
    assert done.status == "completed" and done.output_text == SLOW["text"] and done.background is True


def test_cancel_a_running_background_response(client):
    conversation = client.conversations.create()
    response = client.responses.create(model="scripted", input=script(SLOW), background=True, conversation=conversation.id)
    wait_for(client, response.id, statuses=("in_progress",))
    cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    time.sleep(0.5)
    stored = client.responses.retrieve(response.id)
    assert stored.status == "cancelled"
    assert len(stored.output_text) < len(SLOW["text"])  # generation stopped
    assert client.responses.cancel(response.id).status == "cancelled"  # again: unchanged
    assert list(client.conversations.items.list(conversation.id)) == []


def test_cancel_a_queued_response_ends_its_stream(client, http):
    # Sixteen run at once (workers.max_background_jobs); these keep every slot busy.
    blockers = [client.responses.create(model="scripted", input=script({"delay": 30}), background=True) for _ in range(20)]
    queued = client.responses.create(model="scripted", input="never run", background=True)
    assert client.responses.cancel(queued.id).status == "cancelled"
    events = read_events(http, "GET", f"/v1/responses/{queued.id}?stream=true")
    assert [event["type"] for event in events] == ["response.created", "response.queued", "response.failed"]
    assert events[-1]["response"]["status"] == "cancelled"
    for blocker in blockers:
        client.responses.cancel(blocker.id)


def test_cancel_is_refused_for_finished_and_foreground_responses(client):
    foreground = client.responses.create(model="scripted", input="hi")
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.cancel(foreground.id)
    assert "background" in raised.value.body["message"]
    finished = client.responses.create(model="scripted", input="hi", background=True)
    wait_for(client, finished.id)
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.cancel(finished.id)
    assert "completed" in raised.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")


def test_background_stream_resumes_after_a_drop_exactly_once(client, http):
    body = {"model": "scripted", "input": script(SLOW), "background": True, "stream": True}
    first = read_events(http, "POST", "/v1/responses", body, stop_after=5)
    response_id = first[0]["response"]["id"]
    assert first[0]["response"]["status"] == "queued" and first[1]["type"] == "response.queued"
    rest = read_events(http, "GET", f"/v1/responses/{response_id}?stream=true&starting_after={first[-1]['sequence_number']}")
    events = first + rest
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.completed"
    deltas = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert deltas == SLOW["text"] == events[-1]["response"]["output"][0]["content"][0]["text"]
    again = read_events(http, "GET", f"/v1/responses/{response_id}?stream=true&starting_after=3")
    assert again == events[4:]


def test_sdk_resumes_a_background_stream(client):
    with client.responses.stream(model="scripted", input=script(SLOW), background=True) as stream:
        seen = []
        for event in stream:
            seen.append(event)
            if len(seen) == 6:
                break
    response_id = seen[0].response.id
    with client.responses.stream(response_id=response_id, starting_after=seen[-1].sequence_number) as resumed:
        later = list(resumed)
        final = resumed.get_final_response()
    assert [event.sequence_number for event in later] == list(range(6, 6 + len(later)))
    assert final.output_text == SLOW["text"]


def test_a_foreground_stream_whose_client_leaves_still_completes(client, http):
    conversation = client.conversations.create()
    body = {"model": "scripted", "input": script(SLOW), "stream": True, "conversation": conversation.id}
    events = read_events(http, "POST", "/v1/responses", body, stop_after=4)
    response_id = events[0]["response"]["id"]
    done = wait_for(client, response_id)
    assert done.status == "completed" and done.output_text == SLOW["text"]
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [item.role for item in items] == ["user", "assistant"]


def test_fifty_concurrent_responses_into_one_conversation(client):
    conversation = client.conversations.create()

    def respond(index: int):
        return client.responses.create(model="scripted", input=f"message {index}", conversation=conversation.id)

    with ThreadPoolExecutor(max_workers=25) as pool:
        responses = list(pool.map(respond, range(50)))
    items = list(client.conversations.items.list(conversation.id, order="asc", limit=100))
    assert len(items) == 100 and len({item.id for item in items}) == 100
    by_output = {response.output[0].id: response for response in responses}
    for position in range(0, 100, 2):
        question, answer = items[position], items[position + 1]
        response = by_output[answer.id]
        index = responses.index(response)
        assert question.content[0].text == f"message {index}"
        assert answer.content[0].text == f"Reply to: message {index}"


def test_background_needs_no_client_connection_to_finish(client):
    responses = [client.responses.create(model="scripted", input=f"bg {n}", background=True) for n in range(10)]
    for response in responses:
        assert wait_for(client, response.id).output_text == f"Reply to: bg {responses.index(response)}"


def test_a_failed_background_response_is_recorded(client, http):
    response = client.responses.create(model="scripted", input=script({"text": "so far"}, {"fail": {"message": "Upstream broke."}}), background=True)
    failed = wait_for(client, response.id)
    assert failed.status == "failed" and failed.error.message == "Upstream broke."
    events = sse_events(http, f"/v1/responses/{response.id}?stream=true", method="GET")
    assert events[-1]["type"] == "response.failed"


def test_a_fast_background_stream_logs_every_event(client, http):
    # Deltas arrive while earlier ones are being written: none may be lost between writes.
    fast = {"text": "x" * 400, "chunks": 400, "chunk_delay": 0.0005}
    response = client.responses.create(model="scripted", input=script(fast), background=True)
    wait_for(client, response.id)
    events = read_events(http, "GET", f"/v1/responses/{response.id}?stream=true")
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert sum(event["type"] == "response.output_text.delta" for event in events) == 400
