"""What a hostile or unlucky client cannot do to the server: expand references past the body
limit, lock an Idempotency-Key for a day, hold connections open, read secrets, or make
waiting cost the server work."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace

import httpx
import openai
import psutil
import pytest

from sqlalchemy import event, insert, select
from sqlalchemy.exc import OperationalError

from tests.conftest import DATABASES, FAST_WORKERS
from tests.helpers import idempotency_key, script, sse_events, wait_for
from tests.mock_upstream import MockUpstream, error
from tests.servers import ThreadlineServer, postgres_database, write_config
from threadline.engine.new_items import new_items, normalized
from threadline.engine.runner import Runner
from threadline.jobs.follow import follow
from threadline.services.idempotency import Idempotency, KeyedRequest
from threadline.store.conversations import ConversationStore
from threadline.store.database import Database
from threadline.store.idempotency import IdempotencyStore
from threadline.store.jobs import JobStore
from threadline.store.migrate import migrate
from threadline.store.responses import ResponseStore
from threadline.store.tables import conversation_items, responses, workers

MAX_BODY_BYTES = 64 * 1024
MAX_INPUT_ITEMS = 50
TIMEOUT_S = 1.0
# How long a connection the server should close may take to be closed, with every timeout 1 s.
CLOSED_WITHIN_S = 15.0


@pytest.fixture(scope="module")
def hardened(start_server):
    """Threadline with small limits and one-second connection timeouts."""
    return start_server(
        {
            "models": [{"id": "scripted", "provider": "scripted", "context_window": 1_000_000}],
            "limits": {"max_body_bytes": MAX_BODY_BYTES, "max_input_items": MAX_INPUT_ITEMS},
            "server": {"header_timeout_s": TIMEOUT_S, "body_timeout_s": TIMEOUT_S, "keep_alive_s": TIMEOUT_S},
        }
    )


@pytest.fixture
def hardened_http(hardened):
    with httpx.Client(base_url=hardened.url, timeout=30) as session:
        yield session


# --- References and item counts -------------------------------------------------------------


def test_item_references_count_at_the_size_of_the_item_they_name(hardened_http):
    http = hardened_http
    big = {"role": "user", "content": "x" * (MAX_BODY_BYTES * 2 // 3)}
    conversation = http.post("/v1/conversations", json={"items": [big]}).json()
    stored = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"]
    reference = {"type": "item_reference", "id": stored[0]["id"]}

    twice = http.post(f"/v1/conversations/{conversation['id']}/items", json={"items": [reference, reference]})
    assert twice.status_code == 413, twice.text
    assert twice.json()["error"]["code"] == "request_too_large" and twice.json()["error"]["param"] == "items[1]"
    assert len(http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"]) == 1

    refused = http.post("/v1/responses", json={"model": "scripted", "input": [reference, {"role": "user", "content": "hi"}, reference]})
    assert refused.status_code == 413 and refused.json()["error"]["param"] == "input[2]"
    refused = http.post("/v1/conversations", json={"items": [reference, reference]})
    assert refused.status_code == 413 and refused.json()["error"]["param"] == "items[1]"

    once = http.post(f"/v1/conversations/{conversation['id']}/items", json={"items": [reference]})
    assert once.status_code == 200 and once.json()["data"][0]["content"] == stored[0]["content"]
    assert http.post("/v1/responses", json={"model": "scripted", "input": [reference]}).status_code == 200


def test_input_holds_at_most_max_input_items(hardened_http):
    http = hardened_http
    items = [{"role": "user", "content": str(n)} for n in range(MAX_INPUT_ITEMS + 1)]
    refused = http.post("/v1/responses", json={"model": "scripted", "input": items})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "input" and f"maximum length {MAX_INPUT_ITEMS}," in refused.json()["error"]["message"]
    assert http.post("/v1/responses", json={"model": "scripted", "input": items[:MAX_INPUT_ITEMS]}).status_code == 200
    # As OpenAI documents: up to 20 items at a time into a conversation.
    conversation = http.post("/v1/conversations", json={}).json()
    too_many = http.post(f"/v1/conversations/{conversation['id']}/items", json={"items": items[:21]})
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "items"


def test_item_references_are_read_in_one_query_per_item_table(fresh_database_url):
    async def scenario() -> None:
        database = Database(fresh_database_url)
        await migrate(database)
        stored = [{"type": "message", "role": "user", "content": f"item {number}"} for number in range(30)]
        await ConversationStore(database).create("p", None, normalized(stored))
        async with database.read() as connection:
            ids = [row.id for row in await connection.execute(select(conversation_items.c.id).order_by(conversation_items.c.position))]
        statements = []
        event.listen(database.engine.sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        references = [{"type": "item_reference", "id": item_id} for item_id in ids * 2]
        copies = await new_items(database, "p", references, param="items", max_bytes=10**6)
        await database.dispose()
        assert [copy["content"][0]["text"] for copy in copies] == [f"item {number}" for number in range(30)] * 2
        # Sizes, then the items, each from the response items and the conversation items.
        assert len([statement for statement in statements if statement.lstrip().upper().startswith("SELECT")]) == 4

    asyncio.run(scenario())


# --- Idempotency-Key --------------------------------------------------------------------------


def test_a_rate_limited_attempt_is_not_the_keys_answer(http, model_requests):
    headers = idempotency_key()
    limited = {"model": "scripted", "input": script({"fail": {"message": "slow down", "code": "rate_limit_exceeded"}})}
    answers = [http.post("/v1/responses", json=limited, headers=headers) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [429, 429]
    assert len(model_requests()) == 2  # the retry ran again, rather than replaying the 429


@pytest.mark.slow
def test_a_key_held_by_a_killed_process_is_free_once_its_lease_runs_out(fresh_database_url, tmp_path):
    config = write_config(
        tmp_path / "threadline.toml",
        {"models": [{"id": "scripted", "provider": "scripted"}], "workers": FAST_WORKERS, "server": {"idempotency_wait_s": 5}},
    )
    headers = idempotency_key()
    body = {"model": "scripted", "input": script({"text": "a b c d e f g h", "chunks": 8, "chunk_delay": 0.3}), "stream": True}
    crashing = ThreadlineServer(fresh_database_url, config).start()
    with httpx.Client(base_url=crashing.url, timeout=30) as http:
        with http.stream("POST", "/v1/responses", json=body, headers=headers) as stream:
            assert stream.status_code == 200
            lines = stream.iter_lines()
            while not next(lines).startswith("data: "):
                pass  # the first event is out: the request is under way, holding the key
            crashing.kill()
    time.sleep(FAST_WORKERS["lease_s"])
    with ThreadlineServer(fresh_database_url, config) as restarted, httpx.Client(base_url=restarted.url, timeout=30) as http:
        events = sse_events(http, "/v1/responses", body, headers=headers)
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "a b c d e f g h"


async def keys_held_by(database_url: str, *owners: str) -> tuple[Database, IdempotencyStore]:
    """A migrated database whose `owners` are live processes, and a key store on it."""
    database = Database(database_url)
    await migrate(database)
    async with database.write() as connection:
        for owner in owners:
            await connection.execute(insert(workers).values(id=owner, lease_expires_at=time.time() + 3600))
    return database, IdempotencyStore(database, ttl_s=3600)


async def the_run_broke() -> dict:
    raise RuntimeError("the run broke")


async def a_response() -> dict:
    return {"id": "resp_1", "object": "response"}


async def cannot_write(*_args) -> None:
    raise RuntimeError("the database is gone")


@pytest.mark.parametrize(("result", "record_fails"), [(the_run_broke, False), (a_response, True)], ids=["run-failed", "record-failed"])
def test_a_key_whose_outcome_cannot_be_recorded_is_free_again_though_its_process_lives(fresh_database_url, result, record_fails):
    async def scenario() -> None:
        database, store = await keys_held_by(fresh_database_url, "proc_here")
        idempotency = Idempotency(store, owner="proc_here", wait_s=1, poll_s=0.05)
        request = KeyedRequest.of("key-1", b"{}")
        assert await idempotency.claim("p", request) is None
        if record_fails:
            store.record = cannot_write
        ended = asyncio.get_running_loop().create_future()
        ended.set_result(None)
        with pytest.raises(RuntimeError):
            await idempotency.record_run("p", request, SimpleNamespace(response_id="resp_1", task=ended, result=result))
        assert store._running_here == set()
        assert await idempotency.claim("p", request) is None  # a retry runs again, rather than a 409
        await database.dispose()

    asyncio.run(scenario())


def test_repeats_waiting_on_a_key_are_answered_after_a_failed_read(fresh_database_url):
    async def scenario() -> None:
        database, here = await keys_held_by(fresh_database_url, "proc_elsewhere")
        elsewhere = IdempotencyStore(database, ttl_s=3600)  # the process running the first request
        assert await elsewhere.claim("p", "key-1", "fingerprint", owner="proc_elsewhere") is None
        reads = []

        async def first_read_fails(*name):
            reads.append(name)
            if len(reads) == 1:
                raise OperationalError("SELECT", {}, ConnectionError("the connection was lost"))
            return await IdempotencyStore.outcome(here, *name)

        here.outcome = first_read_fails
        waiting = asyncio.ensure_future(here.wait("p", "key-1", timeout_s=60, poll_s=0.05))
        while not reads:
            await asyncio.sleep(0.05)
        await elsewhere.record("p", "key-1", 200, {"id": "resp_1"})
        async with asyncio.timeout(30):
            assert (await waiting).body == {"id": "resp_1"}
        await database.dispose()

    asyncio.run(scenario())


# --- Streams resumed past the end -----------------------------------------------------------


def test_starting_after_is_bounded_to_what_a_sequence_number_can_be(client, http):
    response = client.responses.create(model="scripted", input="hi", background=True)
    wait_for(client, response.id)
    too_large = http.get(f"/v1/responses/{response.id}", params={"stream": "true", "starting_after": 2**63})
    assert too_large.status_code == 400
    assert too_large.json()["error"]["param"] == "starting_after"
    with http.stream("GET", f"/v1/responses/{response.id}", params={"stream": "true", "starting_after": 2**63 - 1}) as past_the_end:
        assert past_the_end.status_code == 200
        assert [line for line in past_the_end.iter_lines() if line.startswith("data: ")] == []


# --- Nothing secret in output ---------------------------------------------------------------

UPSTREAM_KEY = "sk-upstream-secret-0123456789"
INTERNAL_URL = "http://10.20.30.40:8001/internal/v1/chat/completions"
ECHO = f"bad gateway: POST {INTERNAL_URL} with headers {{'Authorization': 'Bearer {UPSTREAM_KEY}'}}"


@pytest.mark.skipif("postgresql" not in DATABASES, reason="only PostgreSQL URLs carry a password")
def test_migrate_does_not_print_the_database_password():
    with postgres_database(f"threadline_migrate_{uuid.uuid4().hex[:12]}") as url:
        with_password = url.replace("postgresql://postgres@", "postgresql://postgres:s3cret-password@")
        assert with_password != url
        done = subprocess.run([sys.executable, "-m", "threadline", "migrate", "--database", with_password], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "s3cret-password" not in done.stdout + done.stderr
    assert "Migrated postgresql://postgres:***@" in done.stdout


def test_upstream_errors_reach_no_client_store_or_log_with_their_credentials_and_addresses(fresh_database_url, tmp_path):
    with MockUpstream() as upstream:
        config = write_config(
            tmp_path / "threadline.toml",
            {"models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY, "max_retries": 0}]},
        )
        with ThreadlineServer(fresh_database_url, config) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            seen = []
            for status in (502, 400):
                upstream.script(error(status, ECHO))
                answer = http.post("/v1/responses", json={"model": "chat", "input": "Hi"})
                assert answer.status_code == (500 if status == 502 else 400)
                seen.append(answer.json()["error"]["message"])
            assert "HTTP 502" in seen[0] and "bad gateway" in seen[0]
            upstream.script(error(502, ECHO))
            events = sse_events(http, "/v1/responses", {"model": "chat", "input": "Hi", "stream": True})
            assert events[-1]["type"] == "response.failed"
            seen.append(json.dumps(events[-1]))
            seen.append(http.get(f"/v1/responses/{events[-1]['response']['id']}").text)
        seen.append(open(server.log.name).read())
    for text in seen:
        assert UPSTREAM_KEY not in text and "10.20.30.40" not in text, text


# --- Connections held open ------------------------------------------------------------------


def connect(server: ThreadlineServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(CLOSED_WITHIN_S)
    return sock


def closed_by_server(sock: socket.socket, drip: bytes = b"") -> bytes:
    """What the server sent before closing the connection; `drip` is sent a little at a time
    meanwhile, as a slow client would."""
    received = b""
    deadline = time.monotonic() + CLOSED_WITHIN_S
    with sock:
        while time.monotonic() < deadline:
            try:
                if drip:
                    sock.sendall(drip)
                    sock.settimeout(0.3)
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return received
            if not chunk:
                return received
            received += chunk
    raise AssertionError(f"the connection is still open after {CLOSED_WITHIN_S} s")


def test_a_connection_that_sends_nothing_is_closed(hardened):
    assert closed_by_server(connect(hardened)) == b""


def test_headers_that_never_end_lose_their_connection(hardened):
    sock = connect(hardened)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: threadline\r\n")
    closed_by_server(sock, drip=b"X-Slow: 1\r\n")


def test_a_later_request_whose_headers_never_end_loses_its_connection(hardened):
    # The first request is answered; the second one's headers have their own time limit.
    sock = connect(hardened)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: threadline\r\n\r\nGET /health HTTP/1.1\r\nHost: threadline\r\n")
    answer = closed_by_server(sock, drip=b"X-Slow: 1\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1, answer


def test_a_body_that_never_ends_is_a_408(hardened):
    sock = connect(hardened)
    sock.sendall(b"POST /v1/conversations HTTP/1.1\r\nHost: threadline\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"


def upload_head(length: int) -> bytes:
    return (
        b"POST /v1/files HTTP/1.1\r\nHost: threadline\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


def upload_body(content: bytes) -> bytes:
    return (
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="slow.txt"\r\n\r\n' + content + b"\r\n--b--\r\n"
    )


def test_an_upload_that_keeps_arriving_may_take_longer_than_body_timeout_s(hardened):
    body = upload_body(b"x" * (256 * 1024))
    sock = connect(hardened)
    sock.sendall(upload_head(len(body)))
    # 3 s for 256 KiB: past the 1 s body timeout, yet faster than an upload's slowest rate.
    pieces = [body[start : start + len(body) // 6 + 1] for start in range(0, len(body), len(body) // 6 + 1)]
    for piece in pieces:
        sock.sendall(piece)
        time.sleep(0.5)
    answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["bytes"] == 256 * 1024


def test_an_upload_that_stops_arriving_is_a_408(hardened):
    body = upload_body(b"x" * 1024)
    sock = connect(hardened)
    sock.sendall(upload_head(len(body)) + body[:100])
    answer = closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_an_idle_connection_is_closed_after_keep_alive_s(hardened):
    sock = connect(hardened)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: threadline\r\n\r\n")
    assert closed_by_server(sock).startswith(b"HTTP/1.1 200")


# --- Waiting costs nothing ------------------------------------------------------------------

WAITERS = 50
MEASURED_S = 3.0
# Measured on 2 cores: fifty clients polling cost the server 0.37 to 0.61 s of CPU a second;
# sleeping on a signal, 0.01 to 0.03. The bound sits far from both.
MAX_CPU_S = 0.15 * MEASURED_S


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def wait_then_measure(server: ThreadlineServer, requests: list, ready) -> float:
    """The server's CPU seconds over MEASURED_S while `requests` (coroutines) wait on it;
    `ready()` says when they are all waiting."""
    waiting = [asyncio.ensure_future(request) for request in requests]
    deadline = time.monotonic() + 30
    while not ready() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert ready()
    await asyncio.sleep(0.5)
    process = psutil.Process(server.process.pid)
    before = cpu_seconds(process)
    await asyncio.sleep(MEASURED_S)
    used = cpu_seconds(process) - before
    for request in waiting:
        request.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    return used


@pytest.mark.slow
def test_fifty_followers_of_a_queued_response_sleep(fresh_database_url, tmp_path):
    config = write_config(
        tmp_path / "threadline.toml",
        {"models": [{"id": "scripted", "provider": "scripted"}], "workers": {"max_background_jobs": 1}},
    )
    with ThreadlineServer(fresh_database_url, config) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        running = client.responses.create(model="scripted", input=script({"delay": 60}), background=True)
        queued = client.responses.create(model="scripted", input="wait your turn", background=True)
        assert client.responses.retrieve(queued.id).status == "queued"
        following = []

        async def follow(http: httpx.AsyncClient) -> None:
            async with http.stream("GET", f"/v1/responses/{queued.id}", params={"stream": "true"}) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: ") and json.loads(line[6:])["type"] == "response.queued":
                        following.append(True)

        async def measure() -> float:
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=None)) as http:
                return await wait_then_measure(server, [follow(http) for _ in range(WAITERS)], lambda: len(following) == WAITERS)

        used = asyncio.run(measure())
        client.responses.cancel(running.id)
    assert used < MAX_CPU_S, f"{WAITERS} followers cost {used:.2f} s of CPU in {MEASURED_S} s"


@pytest.mark.slow
def test_fifty_repeats_waiting_on_one_key_sleep(fresh_database_url, tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"models": [{"id": "scripted", "provider": "scripted"}]})
    headers = idempotency_key()
    body = {"model": "scripted", "input": script({"delay": 30}, {"text": "at last"})}
    with ThreadlineServer(fresh_database_url, config) as server:
        sent = []

        async def post(http: httpx.AsyncClient) -> None:
            sent.append(True)
            await http.post("/v1/responses", json=body, headers=headers)

        async def measure() -> float:
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=None)) as http:
                first = asyncio.ensure_future(post(http))
                await asyncio.sleep(0.5)
                used = await wait_then_measure(server, [post(http) for _ in range(WAITERS)], lambda: len(sent) == WAITERS + 1)
                first.cancel()
                return used

        used = asyncio.run(measure())
    assert used < MAX_CPU_S, f"{WAITERS} waiting repeats cost {used:.2f} s of CPU in {MEASURED_S} s"


def test_followers_share_one_signal_and_leave_nothing_behind(fresh_database_url):
    """Runner keeps a log signal only while someone follows the response."""

    async def scenario() -> None:
        database = Database(fresh_database_url)
        await migrate(database)
        jobs = JobStore(database)
        runner = Runner(ResponseStore(database), jobs, owner="proc_here")
        async with database.write() as connection:
            for response_id, status, owner in (("resp_done", "completed", None), ("resp_running", "in_progress", "proc_elsewhere")):
                values = {"project": "p", "created_at": 0, "status": status, "model": "scripted", "data": "{}", "background": True}
                await connection.execute(insert(responses).values(id=response_id, owner=owner, **values))
        created = {"type": "response.created", "sequence_number": 0, "response": {}}
        await jobs.append_events("resp_done", [created, {"type": "response.completed", "sequence_number": 1, "response": {}}])
        await jobs.append_events("resp_running", [created])

        for _ in range(20):  # replays of an ended log
            assert [event["sequence_number"] async for event in follow(runner, "p", {"id": "resp_done"}, -1, 0.05)] == [0, 1]
        assert runner._signals == {}

        followers = [follow(runner, "p", {"id": "resp_running"}, -1, 0.05) for _ in range(5)]
        for follower in followers:
            assert (await anext(follower))["sequence_number"] == 0
        waiting = [asyncio.ensure_future(anext(follower)) for follower in followers]
        await asyncio.sleep(0.3)
        assert list(runner._signals) == ["resp_running"]  # one signal, and one poll, for all five
        await jobs.append_events("resp_running", [{"type": "response.in_progress", "sequence_number": 1, "response": {}}])
        assert [(await next_event)["sequence_number"] for next_event in waiting] == [1] * 5
        for follower in followers:  # the clients leave
            await follower.aclose()
        assert runner._signals == {}
        await asyncio.sleep(0.1)
        assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []
        await database.dispose()

    asyncio.run(scenario())
