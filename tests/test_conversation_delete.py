"""Deleting a conversation while a response runs in it.

The rule: the delete succeeds at once, and every response still running in the conversation
ends `failed` (its error says the conversation was deleted) and adds nothing. A stream ends
with exactly one terminal event, response.failed; a client waiting for a non-streamed
answer gets 404 for the conversation, as if the delete had come first.
"""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest

from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import read_events, script, wait_for
from tests.servers import ThreadlineServer, write_config

# Long enough that a response which is not stopped outlives every wait below.
ENDLESS = ({"text": "begun "}, {"delay": 60}, {"text": "never reached"})
# Ends by itself within a few seconds: for what is noticed only when the model finishes.
BRIEF = {"text": "one two three four five six", "chunks": 6, "chunk_delay": 0.3}
DELETED = "was deleted"


def terminal_types(events: list[dict]) -> list[str]:
    return [event["type"] for event in events if event["type"] in ("response.completed", "response.incomplete", "response.failed")]


def assert_ended_by_the_delete(events: list[dict], stored) -> None:
    assert terminal_types(events) == ["response.failed"] and events[-1]["type"] == "response.failed"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert stored.status == "failed" and DELETED in stored.error.message
    assert events[-1]["response"]["error"]["message"] == stored.error.message


def test_a_running_background_response_ends_failed(client, quick_http):
    conversation = client.conversations.create()
    response = client.responses.create(model="scripted", input=script(*ENDLESS), background=True, conversation=conversation.id)
    wait_for(client, response.id, statuses=("in_progress",))
    client.conversations.delete(conversation.id)
    stored = wait_for(client, response.id)
    events = read_events(quick_http, "GET", f"/v1/responses/{response.id}?stream=true")
    assert_ended_by_the_delete(events, stored)
    with pytest.raises(openai.BadRequestError):  # nothing left to cancel
        client.responses.cancel(response.id)


def test_a_queued_background_response_ends_failed_in_the_delete_and_never_runs(client, quick_http, model_requests):
    # Sixteen run at once (workers.max_background_jobs); these keep every slot busy.
    blockers = [client.responses.create(model="scripted", input=script({"delay": 30}), background=True) for _ in range(20)]
    conversation = client.conversations.create()
    queued = client.responses.create(model="scripted", input=script(BRIEF), background=True, conversation=conversation.id)
    assert client.responses.retrieve(queued.id).status == "queued"
    client.conversations.delete(conversation.id)
    stored = client.responses.retrieve(queued.id)  # failed already, though no slot came free
    events = read_events(quick_http, "GET", f"/v1/responses/{queued.id}?stream=true")
    assert [event["type"] for event in events] == ["response.created", "response.queued", "response.failed"]
    assert_ended_by_the_delete(events, stored)
    for blocker in blockers:
        client.responses.cancel(blocker.id)
    for blocker in blockers:
        wait_for(client, blocker.id)
    assert not any(BRIEF["text"] in json.dumps(request) for request in model_requests())


def test_a_streamed_foreground_response_ends_with_response_failed(client, quick_http):
    conversation = client.conversations.create()
    body = {"model": "scripted", "input": script(*ENDLESS), "stream": True, "conversation": conversation.id}
    events = []
    with quick_http.stream("POST", "/v1/responses", json=body) as streamed:
        assert streamed.status_code == 200
        for line in streamed.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line[len("data: ") :]))
            if events[-1]["type"] == "response.output_text.delta":  # the only one before the model waits
                client.conversations.delete(conversation.id)
    stored = client.responses.retrieve(events[0]["response"]["id"])
    assert_ended_by_the_delete(events, stored)
    assert stored.output_text == "begun "  # what it had produced, kept with the failed response
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_a_non_streamed_foreground_response_is_a_404_for_the_conversation(client, server):
    conversation = client.conversations.create()
    deleter = threading.Timer(0.5, client.conversations.delete, args=(conversation.id,))
    deleter.start()
    patient = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alpha"], max_retries=0, timeout=20)
    try:
        with pytest.raises(openai.NotFoundError) as raised:
            patient.responses.create(model="scripted", input=script(*ENDLESS), conversation=conversation.id)
    finally:
        deleter.join()
    assert raised.value.body["param"] == "conversation" and conversation.id in raised.value.body["message"]


@pytest.mark.slow
def test_a_delete_through_another_process_ends_the_response_failed(fresh_database_url, tmp_path):
    """Responses running on one process, their conversation deleted through another: each
    ends failed when its model finishes, its stream with one response.failed."""
    if not fresh_database_url.startswith("postgresql"):
        pytest.skip("several processes share a database on PostgreSQL")
    runs = write_config(tmp_path / "runs.toml", {"models": [{"id": "scripted", "provider": "scripted"}], "workers": FAST_WORKERS})
    # Serves another model, so it never claims the background response.
    deletes = write_config(tmp_path / "deletes.toml", {"models": [{"id": "other", "provider": "scripted"}], "workers": FAST_WORKERS})
    steady = {"text": "one two three four five six", "chunks": 6, "chunk_delay": 0.5}
    with ThreadlineServer(fresh_database_url, runs) as running, ThreadlineServer(fresh_database_url, deletes) as other:
        a = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        b = openai.OpenAI(base_url=other.url + "/v1", api_key="unused", max_retries=0)
        conversation = a.conversations.create()
        background = a.responses.create(model="scripted", input=script(steady), background=True, conversation=conversation.id)
        wait_for(a, background.id, statuses=("in_progress",))
        with httpx.Client(base_url=running.url, timeout=20) as http_a:
            body = {"model": "scripted", "input": script(steady), "stream": True, "conversation": conversation.id}
            with http_a.stream("POST", "/v1/responses", json=body) as streamed:
                events = []
                for line in streamed.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[len("data: ") :]))
                        if len(events) == 1:
                            b.conversations.delete(conversation.id)
            assert_ended_by_the_delete(events, b.responses.retrieve(events[0]["response"]["id"]))
            stored = wait_for(b, background.id, timeout=20)
            assert_ended_by_the_delete(read_events(http_a, "GET", f"/v1/responses/{background.id}?stream=true"), stored)
