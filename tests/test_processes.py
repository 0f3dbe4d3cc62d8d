"""Several Threadline processes on one database, crashes (SIGKILL) and graceful shutdown (SIGTERM)."""

from __future__ import annotations

import signal
import threading
import time
import uuid

import httpx
import openai
import pytest

from tests.conftest import FAST_WORKERS
from tests.helpers import read_events, script, wait_for
from tests.servers import ThreadlineServer, postgres_database, write_config

pytestmark = pytest.mark.slow

LONG = {"text": " ".join(f"word{n}" for n in range(40)), "chunks": 40, "chunk_delay": 0.25}
SHORT = {"text": "a b c d e f g h", "chunks": 8, "chunk_delay": 0.25}
RECOVERY_S = FAST_WORKERS["lease_s"] + 3 * FAST_WORKERS["heartbeat_s"] + 3.0


@pytest.fixture
def config(tmp_path):
    return write_config(
        tmp_path / "threadline.toml",
        {
            "models": [{"id": "scripted", "provider": "scripted"}],
            "workers": FAST_WORKERS,
            "server": {"shutdown_grace_s": 8},
        },
    )


@pytest.fixture
def postgres_url():
    with postgres_database(f"threadline_procs_{uuid.uuid4().hex[:12]}") as url:
        yield url


def sdk(server: ThreadlineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_background_work_is_shared_by_two_servers(postgres_url, config):
    with ThreadlineServer(postgres_url, config) as first, ThreadlineServer(postgres_url, config) as second:
        a, b = sdk(first), sdk(second)
        created = a.responses.create(model="scripted", input=script(SHORT), background=True)
        assert wait_for(b, created.id).output_text == SHORT["text"]

        with httpx.Client(base_url=first.url, timeout=30) as http_a, httpx.Client(base_url=second.url, timeout=30) as http_b:
            started = read_events(http_a, "POST", "/v1/responses", {"model": "scripted", "input": script(SHORT), "background": True, "stream": True}, stop_after=4)
            response_id = started[0]["response"]["id"]
            rest = read_events(http_b, "GET", f"/v1/responses/{response_id}?stream=true&starting_after=3")
        events = started + rest
        assert [event["sequence_number"] for event in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"

        running = a.responses.create(model="scripted", input=script(LONG), background=True)
        wait_for(b, running.id, statuses=("in_progress",))
        assert b.responses.cancel(running.id).status == "cancelled"
        time.sleep(1.0)
        stopped = a.responses.retrieve(running.id)
        assert stopped.status == "cancelled" and len(stopped.output_text) < len(LONG["text"])


def test_a_job_whose_process_is_killed_is_failed_within_the_lease(postgres_url, config):
    worker = ThreadlineServer(postgres_url, config).start()
    try:
        job = sdk(worker).responses.create(model="scripted", input=script(LONG), background=True)
        wait_for(sdk(worker), job.id, statuses=("in_progress",))
    finally:
        worker.kill()
    with ThreadlineServer(postgres_url, config) as survivor:
        client = sdk(survivor)
        killed_at = time.monotonic()
        failed = wait_for(client, job.id, statuses=("failed",), timeout=RECOVERY_S)
        assert time.monotonic() - killed_at < RECOVERY_S
        assert "stopped before it finished" in failed.error.message
        with httpx.Client(base_url=survivor.url, timeout=30) as http:
            events = read_events(http, "GET", f"/v1/responses/{job.id}?stream=true")
        assert events[-1]["type"] == "response.failed"
        assert [event["sequence_number"] for event in events] == list(range(len(events)))


def test_a_foreground_stream_killed_midway_is_failed_after_restart(fresh_database_url, config):
    server = ThreadlineServer(fresh_database_url, config).start()
    client = sdk(server)
    conversation = client.conversations.create(items=[{"role": "user", "content": "before"}])
    with httpx.Client(base_url=server.url, timeout=30) as http:
        events = read_events(http, "POST", "/v1/responses", {"model": "scripted", "input": script(LONG), "stream": True, "conversation": conversation.id}, stop_after=6)
    response_id = events[0]["response"]["id"]
    server.kill()
    with ThreadlineServer(fresh_database_url, config) as restarted:
        client = sdk(restarted)
        failed = wait_for(client, response_id, statuses=("failed", "incomplete"), timeout=RECOVERY_S)
        assert failed.status == "failed"
        items = list(client.conversations.items.list(conversation.id, order="asc"))
        assert [item.content[0].text for item in items] == ["before"]


def test_sigterm_lets_running_responses_finish(fresh_database_url, config):
    server = ThreadlineServer(fresh_database_url, config).start()
    client = sdk(server)
    background = client.responses.create(model="scripted", input=script(SHORT), background=True)
    wait_for(client, background.id, statuses=("in_progress",))
    events: list[dict] = []

    def stream() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            events.extend(read_events(http, "POST", "/v1/responses", {"model": "scripted", "input": script(SHORT), "stream": True}))

    reader = threading.Thread(target=stream)
    reader.start()
    time.sleep(0.6)
    server.process.send_signal(signal.SIGTERM)
    reader.join(timeout=20)
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    server.stop()
    assert events[-1]["type"] == "response.completed"
    assert "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta") == SHORT["text"]
    with ThreadlineServer(fresh_database_url, config) as restarted:
        assert sdk(restarted).responses.retrieve(background.id).status == "completed"


def test_queued_work_left_at_shutdown_is_run_by_another_process(postgres_url, tmp_path):
    config = write_config(
        tmp_path / "one-at-a-time.toml",
        {"models": [{"id": "scripted", "provider": "scripted"}], "workers": {**FAST_WORKERS, "max_background_jobs": 1}, "server": {"shutdown_grace_s": 0}},
    )
    leaving = ThreadlineServer(postgres_url, config).start()
    client = sdk(leaving)
    first = client.responses.create(model="scripted", input=script(LONG), background=True)
    waiting = client.responses.create(model="scripted", input="run me elsewhere", background=True)
    wait_for(client, first.id, statuses=("in_progress",))
    leaving.stop()
    with ThreadlineServer(postgres_url, config) as staying:
        client = sdk(staying)
        assert wait_for(client, waiting.id).output_text == "Reply to: run me elsewhere"
        assert client.responses.retrieve(first.id).status == "failed"
