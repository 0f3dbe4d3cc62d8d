"""Server-side tools across processes and crashes: approvals answered on another process,
background MCP runs resumed elsewhere with their secrets sealed, a SIGKILL in the middle of a
tool call, cancels that stop a running call, and tools with nothing stored.

Real `threadline serve` processes on a mock Chat Completions upstream (the model) and real
MCP servers (tests/mcp_servers.py). The tests of several processes share one PostgreSQL
database and are slow; those a single process shows run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import FAST_WORKERS
from tests.helpers import database_rows, read_events, sse_events, wait_for
from tests.mcp_servers import run_mcp_server
from tests.mock_upstream import MockUpstream, finish, reply, text, tool_call
from tests.servers import ThreadlineServer, postgres_database, write_config
from tests.spec_check import checked_client, checked_http

RECOVERY_S = FAST_WORKERS["lease_s"] + 3 * FAST_WORKERS["heartbeat_s"] + 3.0
ENCRYPTION_KEY = "tool-processes-test-key"
SLEEP_S = 30  # how long `slow` sleeps: far longer than any test waits for it
UNFINISHED = ("failed", "incomplete")


def settings(upstream: MockUpstream, **workers) -> dict:
    return {
        "models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "max_retries": 0}],
        "tools": {"max_turns": 8, "mcp": {"allowed_hosts": ["127.0.0.1"], "call_timeout_s": 60}},
        "security": {"encryption_keys": [ENCRYPTION_KEY]},
        "workers": {**FAST_WORKERS, **workers},
        "server": {"shutdown_grace_s": 0},
    }


@pytest.fixture
def config(tmp_path, upstream):
    return write_config(tmp_path / "threadline.toml", settings(upstream))


@pytest.fixture
def postgres_url():
    with postgres_database(f"threadline_toolprocs_{uuid.uuid4().hex[:12]}") as url:
        yield url


@pytest.fixture(scope="module")
def server(start_server, upstream):
    """One process, on SQLite and on PostgreSQL, for what a single process shows."""
    return start_server(settings(upstream))


@pytest.fixture
def mcp():
    """A fresh MCP server for each test, so its counters and events are the test's own."""
    with run_mcp_server() as running:
        yield running


@contextlib.contextmanager
def running(database_url: str, config) -> Iterator[ThreadlineServer]:
    """A Threadline process that is stopped at the end, unless the test killed it."""
    process = ThreadlineServer(database_url, config).start()
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.stop()


def sdk(spec_check, process: ThreadlineServer) -> openai.OpenAI:
    return checked_client(spec_check, process.url + "/v1", "unused")


def mcp_tool(server, **fields) -> dict:
    return {"type": "mcp", "server_label": "calc", "server_url": server.url, "require_approval": "never", **fields}


def call(name: str, arguments: dict, call_id: str = "call_1") -> dict:
    return tool_call(0, id=call_id, name=name, arguments=json.dumps(arguments))


def tool_messages(body: dict) -> list[dict]:
    return [message for message in body["messages"] if message["role"] == "tool"]


def conversation_texts(client: openai.OpenAI, conversation_id: str) -> list[str]:
    return [item.content[0].text for item in client.conversations.items.list(conversation_id, order="asc")]


def stored_row(database_url: str, response_id: str) -> tuple:
    """(status, owner, job) of a response, read straight from the database."""
    return database_rows(database_url, "SELECT status, owner, job FROM responses WHERE id = {}", response_id)[0]


def stored_text(database_url: str, response_id: str) -> str:
    """Everything stored about a response: its row, its items and its event log."""
    rows = database_rows(database_url, "SELECT data, job FROM responses WHERE id = {}", response_id)
    rows += database_rows(database_url, "SELECT data, data FROM response_items WHERE response_id = {}", response_id)
    rows += database_rows(database_url, "SELECT data, data FROM response_events WHERE response_id = {}", response_id)
    return json.dumps(rows)


def until(condition, timeout: float = 15.0, message: str = "the condition never held") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.02)


# --- Two processes on one PostgreSQL database -------------------------------------------------


@pytest.mark.slow
def test_an_approval_asked_on_one_process_is_answered_on_the_other(postgres_url, config, mock, mcp, spec_check):
    with running(postgres_url, config) as first, running(postgres_url, config) as second:
        a, b = sdk(spec_check, first), sdk(spec_check, second)
        tool = mcp_tool(mcp, allowed_tools=["increment"], require_approval="always")
        mock.script(reply(call("increment", {}), finish("tool_calls")))
        asked = a.responses.create(model="chat", input="Count", tools=[tool])
        assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
        request = asked.output[1]
        assert mcp.state.increments == 0

        mock.script(reply(text("Counted."), finish("stop")))
        approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        answered = b.responses.create(model="chat", previous_response_id=asked.id, input=[approval], tools=[tool])
        # The other process read the request, and the listing, from the shared database.
        assert [item.type for item in answered.output] == ["mcp_call", "message"]
        mcp_call = answered.output[0]
        assert (mcp_call.name, mcp_call.approval_request_id, mcp_call.output, mcp_call.status) == ("increment", request.id, "1", "completed")
        assert answered.output_text == "Counted."
        assert mcp.state.increments == 1
        assert tool_messages(mock.requests[-1])[-1]["content"] == "1"
        assert a.responses.retrieve(answered.id).output[0].output == "1"

        # The same approval answered again, back on the first process, runs nothing.
        mock.script(reply(text("Already counted."), finish("stop")))
        again = a.responses.create(model="chat", previous_response_id=answered.id, input=[approval], tools=[tool])
        assert [item.type for item in again.output] == ["message"]
        assert mcp.state.increments == 1


@pytest.mark.slow
def test_a_background_mcp_run_waits_sealed_and_another_process_runs_it(postgres_url, tmp_path, mock, spec_check):
    token, team = f"tok-{uuid.uuid4().hex}", f"team-{uuid.uuid4().hex}"
    # The first process runs one background response at a time, and one is running there:
    # what is queued behind it can only be run by the second.
    config = write_config(tmp_path / "one-slot.toml", settings(mock, max_background_jobs=1))
    with run_mcp_server(token=token) as mcp, running(postgres_url, config) as first:
        a = sdk(spec_check, first)
        mock.script(
            reply(text("busy "), forever=True),
            reply(call("secret", {}), finish("tool_calls")),
            reply(text("The secret is 42."), finish("stop")),
        )
        blocker = a.responses.create(model="chat", input="Hold the only slot", background=True)
        until(lambda: len(mock.requests) == 1, message="the first process never ran its background response")

        tool = mcp_tool(mcp, allowed_tools=["secret"], authorization=token, headers={"X-Team": team})
        created = a.responses.create(model="chat", input="Tell me the secret", background=True, tools=[tool])
        assert created.status == "queued"
        status, owner, job = stored_row(postgres_url, created.id)
        assert (status, owner) == ("queued", None) and job is not None
        # The secrets wait sealed: neither is anywhere in the database in plain text.
        assert json.loads(job)["secrets"].startswith("tl1:")
        assert token not in job and team not in job
        assert token not in stored_text(postgres_url, created.id) and team not in stored_text(postgres_url, created.id)

        with running(postgres_url, config) as second:
            b = sdk(spec_check, second)
            done = wait_for(b, created.id, timeout=30)
            assert done.status == "completed", done.error
            assert [item.type for item in done.output] == ["mcp_list_tools", "mcp_call", "message"]
            assert done.output[1].output == "the secret is 42" and done.output_text == "The secret is 42."
            assert mcp.state.authorization == [f"Bearer {token}"]
            # The first process never had a free slot: its one response is still running.
            assert a.responses.retrieve(blocker.id).status == "in_progress"
            # Once the response ended, its job (and the sealed secrets in it) is gone.
            assert stored_row(postgres_url, created.id) == ("completed", None, None)
            assert token not in stored_text(postgres_url, created.id) and team not in stored_text(postgres_url, created.id)
            with httpx.Client(base_url=first.url, timeout=30) as http:
                events = read_events(http, "GET", f"/v1/responses/{created.id}?stream=true")
            assert [event["sequence_number"] for event in events] == list(range(len(events)))
            assert "response.mcp_call.completed" in [event["type"] for event in events]
            assert events[-1]["type"] == "response.completed"

            assert b.responses.cancel(blocker.id).status == "cancelled"
            assert wait_for(a, blocker.id, statuses=("cancelled",)).status == "cancelled"


@pytest.mark.slow
def test_a_background_tool_call_whose_process_is_killed_fails_on_the_other(postgres_url, config, mock, mcp, spec_check):
    tool = mcp_tool(mcp, allowed_tools=["increment", "slow"])
    mock.script(
        reply(call("increment", {}), finish("tool_calls")),
        reply(call("slow", {"seconds": SLEEP_S}, "call_2"), finish("tool_calls")),
        reply(text("Never asked."), finish("stop")),
    )
    first = ThreadlineServer(postgres_url, config).start()
    try:
        a = sdk(spec_check, first)
        conversation = a.conversations.create(items=[{"role": "user", "content": "before"}])
        created = a.responses.create(model="chat", input="Count, then sleep", background=True, tools=[tool], conversation=conversation.id)
        assert mcp.state.slow_started.wait(15), "the slow tool never started"
        with running(postgres_url, config) as second:
            first.kill()
            mcp.state.slow_started.clear()
            b = sdk(spec_check, second)
            failed = wait_for(b, created.id, statuses=("failed",), timeout=RECOVERY_S)
            assert "stopped before it finished" in failed.error.message
            listing, counted, slept = failed.output
            assert listing.type == "mcp_list_tools"
            assert (counted.name, counted.status, counted.output) == ("increment", "completed", "1")
            assert slept.name == "slow" and slept.status in UNFINISHED
            assert stored_row(postgres_url, created.id) == ("failed", None, None)
            with httpx.Client(base_url=second.url, timeout=30) as http:
                events = read_events(http, "GET", f"/v1/responses/{created.id}?stream=true")
            assert events[-1]["type"] == "response.failed"
            assert [event["sequence_number"] for event in events] == list(range(len(events)))
            # Nothing of it reached the conversation, and nothing ran again.
            assert conversation_texts(b, conversation.id) == ["before"]
            time.sleep(3 * FAST_WORKERS["heartbeat_s"])
            assert b.responses.retrieve(created.id).status == "failed"
            assert mcp.state.increments == 1 and not mcp.state.slow_started.is_set()
            assert len(mock.requests) == 2
    finally:
        if first.process.poll() is None:
            first.kill()


@pytest.mark.slow
def test_a_cancel_made_on_another_process_stops_the_running_tool_call(postgres_url, config, mock, mcp, spec_check):
    tool = mcp_tool(mcp, allowed_tools=["slow"])
    mock.script(reply(call("slow", {"seconds": SLEEP_S}), finish("tool_calls")), reply(text("Never asked."), finish("stop")))
    with running(postgres_url, config) as first:
        a = sdk(spec_check, first)
        conversation = a.conversations.create(items=[{"role": "user", "content": "before"}])
        created = a.responses.create(model="chat", input="Sleep", background=True, tools=[tool], conversation=conversation.id)
        assert mcp.state.slow_started.wait(15), "the slow tool never started"
        with running(postgres_url, config) as second:
            b = sdk(spec_check, second)
            assert b.responses.cancel(created.id).status == "cancelled"
            assert mcp.state.slow_cancelled.wait(10), "the running call was not stopped"
            until(lambda: stored_row(postgres_url, created.id)[1] is None, message="the first process never let go of the response")
            cancelled = a.responses.retrieve(created.id)
            assert cancelled.status == "cancelled"
            assert all(item.status != "completed" for item in cancelled.output if item.type == "mcp_call")
            assert conversation_texts(a, conversation.id) == ["before"]
            assert not mcp.state.slow_finished.is_set() and len(mock.requests) == 1



@pytest.mark.slow
def test_a_process_killed_while_it_runs_an_approved_call_leaves_the_call_unfinished(postgres_url, config, mock, mcp, spec_check):
    """Asked on one process, approved on the other, which is killed while the approved call
    runs: the first recovers it, failed, and the call shows as unfinished, never as not made."""
    tool = mcp_tool(mcp, allowed_tools=["slow"], require_approval="always")
    with running(postgres_url, config) as first:
        a = sdk(spec_check, first)
        conversation = a.conversations.create(items=[{"role": "user", "content": "before"}])
        mock.script(reply(call("slow", {"seconds": SLEEP_S}), finish("tool_calls")))
        asked = a.responses.create(model="chat", input="Sleep", tools=[tool], conversation=conversation.id)
        request = asked.output[-1]
        assert request.type == "mcp_approval_request"
        mock.script(reply(text("Never asked."), finish("stop")))
        approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        second = ThreadlineServer(postgres_url, config).start()
        try:
            b = sdk(spec_check, second)
            created = b.responses.create(model="chat", conversation=conversation.id, input=[approval], tools=[tool], background=True)
            assert mcp.state.slow_started.wait(15), "the approved call never started"
            second.kill()
        finally:
            if second.process.poll() is None:
                second.kill()
        failed = wait_for(a, created.id, statuses=("failed",), timeout=RECOVERY_S)
        calls = [item for item in failed.output if item.type == "mcp_call"]
        assert [(item.name, item.approval_request_id) for item in calls] == [("slow", request.id)], failed.output
        assert calls[0].status in UNFINISHED
        assert stored_row(postgres_url, created.id) == ("failed", None, None)
        assert [item.type for item in a.conversations.items.list(conversation.id, order="asc")][-1] == "mcp_approval_request"
        assert len(mock.requests) == 1


@pytest.mark.slow
def test_one_approval_answered_on_both_processes_at_once_runs_the_call_once(postgres_url, config, mock, mcp, spec_check):
    """Two answers to one approval request of a conversation, one on each process, at once:
    the side effect happens once (the other answer runs nothing, or is refused)."""
    with running(postgres_url, config) as first, running(postgres_url, config) as second:
        a, b = sdk(spec_check, first), sdk(spec_check, second)
        tool = mcp_tool(mcp, allowed_tools=["increment"], require_approval="always")
        conversation = a.conversations.create(items=[{"role": "user", "content": "before"}])
        mock.script(reply(call("increment", {}), finish("tool_calls")))
        asked = a.responses.create(model="chat", input="Count", tools=[tool], conversation=conversation.id)
        request = asked.output[-1]
        approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
        # The model takes a moment to answer, so that both answers are in flight together.
        mock.script(*[reply(text("Counted."), finish("stop"), delay=1.0) for _ in range(2)])
        outcomes: dict[str, object] = {}

        def answer(name: str, client: openai.OpenAI) -> None:
            try:
                outcomes[name] = client.responses.create(model="chat", conversation=conversation.id, input=[approval], tools=[tool])
            except openai.APIStatusError as refused:
                outcomes[name] = refused

        threads = [threading.Thread(target=answer, args=pair) for pair in (("a", a), ("b", b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for outcome in outcomes.values():
            assert not isinstance(outcome, openai.APIStatusError) or 400 <= outcome.status_code < 500, outcome
        assert len(outcomes) == 2
        assert mcp.state.increments == 1
        items = list(a.conversations.items.list(conversation.id, order="asc"))
        assert [item.approval_request_id for item in items if item.type == "mcp_call"] == [request.id]

# --- One process, on SQLite and on PostgreSQL -------------------------------------------------


@pytest.mark.slow
def test_a_stream_killed_in_the_middle_of_a_tool_call_is_failed_after_restart(fresh_database_url, config, mock, mcp, spec_check):
    tool = mcp_tool(mcp, allowed_tools=["increment", "slow"])
    mock.script(
        reply(call("increment", {}), finish("tool_calls")),
        reply(call("slow", {"seconds": SLEEP_S}, "call_2"), finish("tool_calls")),
        reply(text("Never asked."), finish("stop")),
    )
    first = ThreadlineServer(fresh_database_url, config).start()
    try:
        client = sdk(spec_check, first)
        conversation = client.conversations.create(items=[{"role": "user", "content": "before"}])
        body = {"model": "chat", "input": "Count, then sleep", "stream": True, "tools": [tool], "conversation": conversation.id}
        events: list[dict] = []
        with httpx.Client(base_url=first.url, timeout=30) as http, http.stream("POST", "/v1/responses", json=body) as streamed:
            assert streamed.status_code == 200
            for line in streamed.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
                    if [event["type"] for event in events].count("response.mcp_call.in_progress") == 2:
                        break
            assert mcp.state.slow_started.wait(15), "the slow tool never started"
            # Killed with its client still reading, in the middle of the call.
            first.kill()
    finally:
        if first.process.poll() is None:
            first.kill()
    response_id = events[0]["response"]["id"]
    mcp.state.slow_started.clear()
    with running(fresh_database_url, config) as restarted:
        client = sdk(spec_check, restarted)
        failed = wait_for(client, response_id, statuses=("failed",), timeout=RECOVERY_S)
        assert "stopped before it finished" in failed.error.message
        listing, counted, slept = failed.output
        assert listing.type == "mcp_list_tools"
        assert (counted.name, counted.status, counted.output) == ("increment", "completed", "1")
        assert slept.name == "slow" and slept.status in UNFINISHED
        assert stored_row(fresh_database_url, response_id) == ("failed", None, None)
        assert conversation_texts(client, conversation.id) == ["before"]
        time.sleep(3 * FAST_WORKERS["heartbeat_s"])
        assert client.responses.retrieve(response_id).status == "failed"
        # Neither call ran again, and the model was not asked again.
        assert mcp.state.increments == 1 and not mcp.state.slow_started.is_set()
        assert len(mock.requests) == 2


def test_cancel_stops_a_running_tool_call_and_the_conversation_keeps_nothing(server, mock, mcp, spec_check):
    client = sdk(spec_check, server)
    tool = mcp_tool(mcp, allowed_tools=["slow"])
    mock.script(reply(call("slow", {"seconds": SLEEP_S}), finish("tool_calls")), reply(text("Never asked."), finish("stop")))
    conversation = client.conversations.create(items=[{"role": "user", "content": "before"}])
    created = client.responses.create(model="chat", input="Sleep", background=True, tools=[tool], conversation=conversation.id)
    assert mcp.state.slow_started.wait(15), "the slow tool never started"
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    assert mcp.state.slow_cancelled.wait(10), "the running call was not stopped"
    until(lambda: stored_row(server.database_url, created.id)[1:] == (None, None), message="the cancelled response kept its owner or job")
    stored = client.responses.retrieve(created.id)
    assert stored.status == "cancelled"
    assert all(item.status != "completed" for item in stored.output if item.type == "mcp_call")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        events = read_events(http, "GET", f"/v1/responses/{created.id}?stream=true")
    # A cancelled stream ends as OpenAI's do: response.failed, carrying the cancelled response.
    assert (events[-1]["type"], events[-1]["response"]["status"]) == ("response.failed", "cancelled")
    assert "response.mcp_call.completed" not in [event["type"] for event in events]
    assert conversation_texts(client, conversation.id) == ["before"]
    assert not mcp.state.slow_finished.is_set() and len(mock.requests) == 1


def test_an_mcp_call_streams_with_nothing_stored(server, mock, mcp, spec_check):
    client = sdk(spec_check, server)
    mock.script(reply(call("echo", {"text": "hi"}), finish("tool_calls")), reply(text("It said hi."), finish("stop")))
    body = {"model": "chat", "input": "Echo hi", "stream": True, "store": False, "tools": [mcp_tool(mcp, allowed_tools=["echo"])]}
    with checked_http(spec_check, server.url, timeout=30) as http:
        events = sse_events(http, "/v1/responses", body)
    types = [event["type"] for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.mcp_list_tools.completed" in types and "response.mcp_call.completed" in types
    done = events[types.index("response.mcp_call.completed") + 1]["item"]
    assert (done["type"], done["name"], done["output"], done["status"]) == ("mcp_call", "echo", "hi", "completed")
    final = events[-1]["response"]
    assert final["store"] is False
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][2]["content"][0]["text"] == "It said hi."
    assert tool_messages(mock.requests[1]) == [{"role": "tool", "tool_call_id": "call_1", "content": "hi"}]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(final["id"])
    assert database_rows(server.database_url, "SELECT count(*) FROM responses WHERE id = {}", final["id"]) == [(0,)]

