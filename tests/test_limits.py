"""Request size limits and Idempotency-Key retries."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.helpers import idempotency_key, script, sse_events
from tests.servers import ThreadlineServer, write_config

SMALL_LIMIT = 4096


@pytest.fixture(scope="module")
def small_server(database_url, tmp_path_factory):
    config = write_config(
        tmp_path_factory.mktemp("limits") / "threadline.toml",
        {
            "models": [{"id": "scripted", "provider": "scripted"}],
            "limits": {"max_body_bytes": SMALL_LIMIT},
            "server": {"idempotency_ttl_s": 1},
        },
    )
    with ThreadlineServer(database_url, config) as server:
        yield server


def test_a_body_over_the_limit_is_a_413_and_changes_nothing(small_server):
    with httpx.Client(base_url=small_server.url, timeout=30) as http:
        conversation = http.post("/v1/conversations", json={}).json()
        big = {"items": [{"role": "user", "content": "x" * SMALL_LIMIT}]}
        for send in (
            lambda: http.post(f"/v1/conversations/{conversation['id']}/items", json=big),
            # No Content-Length: the body arrives in chunks and is counted as it comes.
            lambda: http.post(f"/v1/conversations/{conversation['id']}/items", content=iter([json.dumps(big).encode()[i : i + 1000] for i in range(0, SMALL_LIMIT + 1000, 1000)]), headers={"content-type": "application/json"}),
        ):
            response = send()
            assert response.status_code == 413
            error = response.json()["error"]
            assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
        assert http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"] == []
        assert http.post("/v1/responses", json={"model": "scripted", "input": "x" * (SMALL_LIMIT // 2)}).status_code == 200


def test_a_repeated_create_returns_the_first_response(client, model_requests):
    headers = idempotency_key()
    first = client.responses.create(model="scripted", input="only once", extra_headers=headers)
    again = client.responses.create(model="scripted", input="only once", extra_headers=headers)
    assert again.id == first.id and again.output_text == first.output_text
    assert len(model_requests()) == 1


def test_a_repeat_that_arrives_while_the_first_runs_waits_for_it(http, model_requests):
    headers = idempotency_key()
    body = {"model": "scripted", "input": script({"text": "slow answer", "chunks": 4, "chunk_delay": 0.2})}
    answers = []
    first = threading.Thread(target=lambda: answers.append(http.post("/v1/responses", json=body, headers=headers).json()))
    first.start()
    second = http.post("/v1/responses", json=body, headers=headers).json()
    first.join()
    assert second["id"] == answers[0]["id"] and second["output"][0]["content"][0]["text"] == "slow answer"
    assert len(model_requests()) == 1


def test_a_repeated_stream_replays_the_first_response(http, model_requests):
    headers = idempotency_key()
    body = {"model": "scripted", "input": "stream once", "stream": True}
    events = []
    for _ in range(2):
        events.append(sse_events(http, "/v1/responses", body, headers=headers))
    assert events[0][-1]["response"]["id"] == events[1][-1]["response"]["id"]
    assert events[1][-1]["response"]["output"] == events[0][-1]["response"]["output"]
    assert len(model_requests()) == 1


def test_a_key_reused_with_another_body_is_refused(http):
    headers = idempotency_key()
    assert http.post("/v1/responses", json={"model": "scripted", "input": "a"}, headers=headers).status_code == 200
    reused = http.post("/v1/responses", json={"model": "scripted", "input": "b"}, headers=headers)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"


def test_a_refused_request_is_refused_again_and_a_server_failure_runs_again(http, model_requests):
    headers = idempotency_key()
    bad = {"model": "no-such-model", "input": "a"}
    assert [http.post("/v1/responses", json=bad, headers=headers).status_code for _ in range(2)] == [400, 400]
    headers = idempotency_key()
    failing = {"model": "scripted", "input": script({"fail": {"message": "broken"}})}
    assert [http.post("/v1/responses", json=failing, headers=headers).status_code for _ in range(2)] == [500, 500]
    assert len(model_requests()) == 2


def test_keys_belong_to_their_project(client, beta_client):
    headers = idempotency_key()
    mine = client.responses.create(model="scripted", input="same key", extra_headers=headers)
    theirs = beta_client.responses.create(model="scripted", input="same key", extra_headers=headers)
    assert mine.id != theirs.id


def test_keys_are_forgotten_after_their_time_to_live(small_server):
    headers = idempotency_key()
    with httpx.Client(base_url=small_server.url, timeout=30) as http:
        body = {"model": "scripted", "input": "twice, a while apart"}
        first = http.post("/v1/responses", json=body, headers=headers).json()
        assert http.post("/v1/responses", json=body, headers=headers).json()["id"] == first["id"]
        time.sleep(1.2)
        assert http.post("/v1/responses", json=body, headers=headers).json()["id"] != first["id"]
