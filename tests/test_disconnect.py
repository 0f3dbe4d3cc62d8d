"""Clients that go away: what happens to the work they asked for, and to what it produces.

A model's `on_disconnect` decides what a foreground response does when its client leaves:
"stop" ends it at once, `failed`, and stores it so; "continue" (the default but for
llama-cpp) lets it finish and stores it. Background responses always go on. Either way,
nothing more is kept in memory for a client that has left.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import psutil
import pytest

from tests.conftest import FAST_WORKERS
from tests.helpers import read_events, responses_of_conversation, script, wait_for

SLOW = {"text": "one two three four five six seven eight nine ten", "chunks": 10, "chunk_delay": 0.3}
# A model that would go on for a minute if nothing stopped it.
ENDLESS = ({"text": "begun "}, {"delay": 60}, {"text": "never reached"})
LEFT = "client disconnected"
# 20,000 deltas, written as fast as the server can while it serves others: kept for a client
# that left, they held about 7 MiB a response.
MANY = {"text": "x" * 20_000, "chunks": 20_000, "chunk_delay": 0.000001}
# More deltas than a connection's buffers hold together with the events a stream keeps for a
# client that stopped reading (engine/client_stream.py, MAX_UNREAD).
UNREAD = {"text": "x" * 60_000, "chunks": 60_000, "chunk_delay": 0.000001}


@pytest.fixture(scope="module")
def server(start_server):
    models = [
        {"id": "scripted", "provider": "scripted"},
        {"id": "scripted-stop", "provider": "scripted", "on_disconnect": "stop"},
        {"id": "scripted-many", "provider": "scripted", "options": {"script": [MANY]}},
        {"id": "scripted-stop-unread", "provider": "scripted", "on_disconnect": "stop", "options": {"script": [UNREAD]}},
    ]
    return start_server({"models": models, "workers": FAST_WORKERS})


def test_a_stopping_model_ends_a_stream_its_client_left(client, http):
    conversation = client.conversations.create()
    body = {"model": "scripted-stop", "input": script(SLOW), "stream": True, "conversation": conversation.id}
    events = read_events(http, "POST", "/v1/responses", body, stop_after=5)
    stopped = wait_for(client, events[0]["response"]["id"], timeout=5)
    assert stopped.status == "failed" and LEFT in stopped.error.message
    assert stopped.output_text and len(stopped.output_text) < len(SLOW["text"])  # what it had written, no more
    assert list(client.conversations.items.list(conversation.id)) == []


def test_a_stopping_model_ends_a_non_streamed_response_its_client_left(client, server):
    conversation = client.conversations.create()
    impatient = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        impatient.responses.create(model="scripted-stop", input=script(*ENDLESS), conversation=conversation.id)
    # The client never saw an id: the stored response is found by its conversation.
    deadline = time.monotonic() + 10
    while not (stored := responses_of_conversation(server.database_url, conversation.id)) and time.monotonic() < deadline:
        time.sleep(0.05)
    ((response_id, status),) = stored
    assert status == "failed" and LEFT in client.responses.retrieve(response_id).error.message
    assert list(client.conversations.items.list(conversation.id)) == []


def test_a_continuing_model_finishes_what_its_client_left(client, http):
    conversation = client.conversations.create()
    body = {"model": "scripted", "input": script(SLOW), "stream": True, "conversation": conversation.id}
    events = read_events(http, "POST", "/v1/responses", body, stop_after=5)
    done = wait_for(client, events[0]["response"]["id"])
    assert done.status == "completed" and done.output_text == SLOW["text"]
    assert len(list(client.conversations.items.list(conversation.id))) == 2


def test_background_responses_go_on_whatever_the_model_says(client, http):
    body = {"model": "scripted-stop", "input": script(SLOW), "stream": True, "background": True}
    events = read_events(http, "POST", "/v1/responses", body, stop_after=4)
    done = wait_for(client, events[0]["response"]["id"])
    assert done.status == "completed" and done.output_text == SLOW["text"]


def test_streams_abandoned_by_their_clients_keep_nothing_for_them(client, server):
    """Each response goes on writing its 20,000 deltas after its client left, and none is kept."""
    process = psutil.Process(server.process.pid)

    def abandon() -> str:
        with httpx.Client(base_url=server.url, timeout=20) as session:
            with session.stream("POST", "/v1/responses", json={"model": "scripted-many", "input": "Go on.", "stream": True}) as streamed:
                assert streamed.status_code == 200
                for line in streamed.iter_lines():
                    if line.startswith("data: "):
                        return json.loads(line[len("data: ") :])["response"]["id"]
        raise AssertionError("no event")

    abandon_one = abandon()
    wait_for(client, abandon_one, timeout=60)  # warm up: what one response costs anyway
    before = process.memory_info().rss
    response_ids = [abandon() for _ in range(4)]
    peak = before
    running = True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for response_id in response_ids:
            assert wait_for(client, response_id, timeout=60).status == "completed"
    finally:
        running = False
        sampler.join()
    # Kept, the four responses' events took 30 MiB; dropped, RSS grows by 1 to 2 MiB.
    assert peak - before < 16 * 2**20, f"RSS grew by {(peak - before) / 2**20:.1f} MiB"


def test_a_client_that_stops_reading_counts_as_gone(client, server):
    """It stays connected, its buffers full: once the events waiting for it pass the bound,
    it is treated as gone, and a stopping model's response ends failed at once."""
    body = json.dumps({"model": "scripted-stop-unread", "input": "Go on.", "stream": True}).encode()
    with socket.socket() as raw:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        raw.connect(("127.0.0.1", server.port))
        raw.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        first = b""
        while b"\n" not in first.partition(b"data: ")[2]:  # the first event whole
            received = raw.recv(1024)  # enough for the response's id; then it never reads again
            assert received, first
            first += received
        response_id = json.loads(first.partition(b"data: ")[2].partition(b"\n")[0])["response"]["id"]
        stopped = wait_for(client, response_id, timeout=60)
    assert stopped.status == "failed" and LEFT in stopped.error.message
    assert stopped.output_text and len(stopped.output_text) < len(UNREAD["text"])
