"""Queued background responses survive an upgrade: a job stored by an earlier version runs."""

from __future__ import annotations

import asyncio
import time

from threadline.ids import new_id
from threadline.store.database import Database
from threadline.store.responses import ResponseStore

ITEM = {"id": "msg_0123456789abcdef", "type": "message", "status": "completed", "role": "user", "content": [{"type": "input_text", "text": "From before the upgrade"}]}
# A job as Threadline stored it before jobs carried a version: ModelRequest's fields as they
# were then (no presence_penalty or frequency_penalty).
UNVERSIONED_JOB = {
    "model_request": {
        "model": "scripted",
        "input": [ITEM],
        "instructions": None,
        "tools": [],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "text_format": None,
        "max_output_tokens": None,
        "temperature": None,
        "top_p": None,
        "top_logprobs": None,
        "logprobs": False,
        "reasoning": None,
        "user": None,
        "stream": False,
    },
    "input_items": [ITEM],
}


def queue(http, database_url: str, job: dict) -> str:
    """Store a queued background response with this job, as an earlier (or later) version
    would have; the running server claims it. Returns its id."""
    created = http.post("/v1/responses", json={"model": "scripted", "input": "shape", "background": True}).json()
    response = {**created, "id": new_id("resp"), "status": "queued"}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": response},
        {"type": "response.queued", "sequence_number": 1, "response": response},
    ]

    async def write() -> None:
        database = Database(database_url)
        try:
            await ResponseStore(database).begin("alpha", response, job["input_items"], owner=None, job=job, events=events)
        finally:
            await database.dispose()

    asyncio.run(write())
    return response["id"]


def ended(client, response_id: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        response = client.responses.retrieve(response_id)
        if response.status not in ("queued", "in_progress") or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_a_job_queued_before_jobs_had_a_version_runs_to_completion(client, http, database_url):
    response = ended(client, queue(http, database_url, UNVERSIONED_JOB))
    assert response.status == "completed"
    assert response.output_text == "Reply to: From before the upgrade"
    assert [item.id for item in client.responses.input_items.list(response.id).data] == [ITEM["id"]]


def test_a_job_with_fields_this_version_does_not_know_runs(client, http, database_url):
    job = {"version": 2, **UNVERSIONED_JOB, "model_request": {**UNVERSIONED_JOB["model_request"], "a_later_field": 1}}
    assert ended(client, queue(http, database_url, job)).output_text == "Reply to: From before the upgrade"


def test_a_job_from_a_newer_version_fails_clearly_and_the_queue_goes_on(client, http, database_url):
    unreadable = queue(http, database_url, {**UNVERSIONED_JOB, "version": 99})
    readable = queue(http, database_url, UNVERSIONED_JOB)
    failed = ended(client, unreadable)
    assert failed.status == "failed"
    assert failed.error.code == "server_error" and "newer version of Threadline" in failed.error.message
    assert ended(client, readable).status == "completed"
    stream = list(client.responses.retrieve(unreadable, stream=True))
    assert [event.type for event in stream] == ["response.created", "response.queued", "response.failed"]
