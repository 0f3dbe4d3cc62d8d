"""The console's models & health page, in real Chromium, and its JSON: the configured models
and their status, the background queue, and two processes sharing one database."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.browser import sign_in
from tests.conftest import FAST_WORKERS, KEYS
from tests.spec_check import checked_client

# One background response at a time in each process, so a third one waits in the queue.
CONFIG = {
    "auth": {"api_keys": [{"key": KEYS["alpha"], "project": "alpha"}]},
    "models": [
        {"id": "scripted", "provider": "scripted"},
        # Nothing listens on port 9: an upstream that cannot be reached.
        {"id": "gone", "provider": "openai-chat", "base_url": "http://127.0.0.1:9/v1", "context_window": 4096},
    ],
    "workers": {**FAST_WORKERS, "max_background_jobs": 1},
}
LONG_WAIT = '#script [{"delay": 120}, {"text": "late"}]'


@pytest.fixture(scope="module")
def processes(start_server):
    """Two Threadline processes on one database."""
    return start_server(CONFIG), start_server(CONFIG)


@pytest.fixture(scope="module")
def server(processes):
    return processes[0]


def health(server) -> dict:
    answer = httpx.get(server.url + "/console/api/health", headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert answer.status_code == 200
    return answer.json()


def wait_for(condition, what: str, limit_s: float = 30):
    deadline = time.monotonic() + limit_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)
    return value


def test_the_models_and_their_status(page, server):
    sign_in(page, KEYS["alpha"])
    page.goto("/console/health")
    scripted = page.locator('[data-testid="model"][data-model="scripted"]')
    gone = page.locator('[data-testid="model"][data-model="gone"]')
    assert "scripted" in scripted.inner_text() and "(default)" in scripted.inner_text()
    assert scripted.get_by_test_id("context-window").inner_text() == "8,192 tokens"
    assert scripted.get_by_test_id("model-status").inner_text() == "ready"
    assert "openai-chat" in gone.inner_text() and gone.get_by_test_id("context-window").inner_text() == "4,096 tokens"
    assert gone.get_by_test_id("model-status").inner_text() == "unreachable"
    assert "no answer from http://127.0.0.1:9/v1" in gone.inner_text()
    models = {model["id"]: model for model in health(server)["models"]}
    assert models["scripted"] | {"detail": None} == {
        "id": "scripted", "provider": "scripted", "default": True, "context_window": 8192, "status": "ready", "detail": None,
    }  # fmt: skip
    assert (models["gone"]["status"], models["gone"]["context_window"], models["gone"]["default"]) == ("unreachable", 4096, False)


def test_the_background_queue(page, server, spec_check):
    client = checked_client(spec_check, server.url + "/v1", KEYS["alpha"])
    created = [client.responses.create(model="scripted", input=LONG_WAIT, background=True) for _ in range(3)]
    try:
        # Each process takes one; the third waits for a free one.
        statuses = lambda: [client.responses.retrieve(response.id).status for response in created]  # noqa: E731
        wait_for(lambda: sorted(statuses()) == ["in_progress", "in_progress", "queued"], "two running and one queued")
        waiting = next(response for response in created if client.responses.retrieve(response.id).status == "queued")

        queue = health(server)["queue"]
        assert [(row["model"], row["count"], row["oldest_created_at"]) for row in queue["queued"]] == [("scripted", 1, waiting.created_at)]
        assert queue["running"] == [{"model": "scripted", "count": 2}]
        running = {process["id"]: process["running"] for process in health(server)["processes"]}
        assert sorted(running.values()) == [1, 1]

        sign_in(page, KEYS["alpha"])
        page.goto("/console/health")
        row = page.locator('[data-testid="queue-row"][data-model="scripted"]')
        assert row.get_by_test_id("queued").inner_text() == "1"
        assert row.get_by_test_id("running").inner_text() == "2"
        assert " s, since " in row.get_by_test_id("oldest").inner_text()
    finally:
        # The queued one first, so that no process takes it up meanwhile.
        for response in sorted(created, key=lambda response: client.responses.retrieve(response.id).status != "queued"):
            client.responses.cancel(response.id)
    assert health(server)["queue"] == {"queued": [], "running": []}
    page.goto("/console/health")
    assert page.get_by_test_id("queue-empty").is_visible()


def test_two_processes_on_one_database_are_both_listed(page, processes):
    first, second = processes
    seen_by_first, seen_by_second = health(first)["processes"], health(second)["processes"]
    ids = [process["id"] for process in seen_by_first]
    assert len(ids) == 2 and ids == [process["id"] for process in seen_by_second]
    assert all(process["alive"] for process in seen_by_first + seen_by_second)
    (first_id,) = [process["id"] for process in seen_by_first if process["this_process"]]
    (second_id,) = [process["id"] for process in seen_by_second if process["this_process"]]
    assert first_id != second_id and {first_id, second_id} == set(ids)

    sign_in(page, KEYS["alpha"])
    page.goto("/console/health")
    rows = page.get_by_test_id("process")
    assert sorted(rows.nth(index).get_attribute("data-process") for index in range(rows.count())) == sorted(ids)
    assert [rows.nth(index).get_by_test_id("process-state").inner_text() for index in range(2)] == ["alive", "alive"]
    marked = page.locator('[data-testid="process"]:has([data-testid="this-process"])')
    assert marked.count() == 1 and marked.get_attribute("data-process") == first_id


def test_health_needs_a_signed_in_viewer(page, server):
    answer = httpx.get(server.url + "/console/api/health")
    assert answer.status_code == 401 and answer.json()["error"]["type"] == "invalid_request_error"
    page.goto("/console/health")
    assert page.url.endswith("/console/login?next=/console/health")
