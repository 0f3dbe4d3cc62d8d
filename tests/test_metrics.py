"""GET /metrics: a known workload through the SDK, then Prometheus' text shows exactly it.

Each server runs on a database of its own, with one worker process and with two
(`threadline serve --workers 2`, whose workers' metrics a scrape sums), on SQLite and on
PostgreSQL. The tests compare scrapes before and after the workload, so what the server did
at start-up does not count.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.mock_upstream import error, finish, reply, text, tool_call, usage
from tests.search_server import SearchServer, hit
from tests.servers import ThreadlineServer, new_database, write_config

KEY = "sk-metrics-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
BODY_LIMIT = 64 * 1024
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture(scope="module")
def search():
    with SearchServer() as running:
        yield running


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def server(request, database_url, upstream, search, tmp_path_factory):
    """Threadline with `--workers` 1 or 2 on a database of its own, /metrics behind its key;
    each worker runs one background response at a time."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    folder = tmp_path_factory.mktemp(f"metrics-{request.param}")
    model = {"provider": "openai-chat", "base_url": upstream.base_url, "max_retries": 1, "options": {"retry_base_s": 0.01}}
    config = {
        "auth": {"api_keys": [{"key": KEY, "project": "ops"}]},
        "models": [{"id": "chat", **model}, {"id": "chat-quick", **model, "timeout_s": 0.5, "max_retries": 0}],
        "workers": {"heartbeat_s": 0.2, "lease_s": 1.5, "poll_s": 0.05, "max_background_jobs": 1},
        "tools": {"web_search": {"provider": "searxng", "base_url": search.base_url}},
        "metrics": {"require_key": True},
        "limits": {"max_body_bytes": BODY_LIMIT},
    }
    with new_database(kind, folder, f"metrics_{request.param}") as url:
        with ThreadlineServer(url, write_config(folder / "threadline.toml", config), flags=("--workers", str(request.param))) as running:
            running.workers = request.param
            yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    # No retries by the SDK: each request the test makes is one the server sees.
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as session:
        yield session


def scrape(http: httpx.Client) -> Samples:
    answer = http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


class Change:
    """What changed between two scrapes."""

    def __init__(self, before: Samples, after: Samples) -> None:
        self.before, self.after = before, after

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self.after.get(key, 0.0) - self.before.get(key, 0.0)

    def now(self, name: str, **labels: str) -> float:
        return self.after[(name, frozenset(labels.items()))]


def answer(input_tokens: int, output_tokens: int, reason: str = "stop"):
    return reply(text("Fine."), finish(reason), usage(input_tokens, output_tokens))


def web_search(query: str):
    return reply(tool_call(0, id="call_1", name="web_search", arguments=json.dumps({"query": query})), finish("tool_calls"), usage(4, 1))


def wait_until(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_a_known_workload_shows_in_the_metrics(server, client, http, mock, search):
    search.reset()
    search.add("bakeries", hit("https://example.com/bread", "Bread", "Fresh bread."))
    search.fail(500)
    before = scrape(http)

    mock.script(answer(10, 4), answer(10, 4), answer(7, 3))
    done = [client.responses.create(model="chat", input="Hi") for _ in range(2)]
    with client.responses.stream(model="chat", input="Hi") as stream:
        assert stream.get_final_response().status == "completed"
    mock.script(error(503), answer(5, 1))  # retried once, then answered
    assert client.responses.create(model="chat", input="Hi").status == "completed"
    mock.script(answer(3, 2, reason="length"))
    assert client.responses.create(model="chat", input="Hi").incomplete_details.reason == "max_output_tokens"
    mock.script(error(400, "This model does not take that."))
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="chat", input="Hi")
    mock.script(reply(text("Slow."), finish("stop"), delay=2))
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="chat-quick", input="Hi")
    # Two web searches: one finds something, the search provider fails the other.
    mock.script(web_search("bakeries"), answer(6, 2), web_search("bakeries"), answer(6, 2))
    for _ in range(2):
        assert client.responses.create(model="chat", input="Bread?", tools=[{"type": "web_search"}]).status == "completed"
    for _ in range(2):
        assert client.responses.retrieve(done[0].id).status == "completed"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_" + "0" * 48)

    change = Change(before, scrape(http))
    assert change("threadline_http_request_duration_seconds_count", route="/v1/responses", method="POST", status="200") == 7
    assert change("threadline_http_request_duration_seconds_count", route="/v1/responses", method="POST", status="400") == 1
    assert change("threadline_http_request_duration_seconds_count", route="/v1/responses", method="POST", status="500") == 1
    by_id = {"route": "/v1/responses/{response_id}", "method": "GET"}
    assert change("threadline_http_request_duration_seconds_count", **by_id, status="200") == 2
    assert change("threadline_http_request_duration_seconds_count", **by_id, status="404") == 1
    # A histogram: every request is in the +Inf bucket, and took some time.
    assert change("threadline_http_request_duration_seconds_bucket", **by_id, status="200", le="+Inf") == 2
    assert change("threadline_http_request_duration_seconds_sum", **by_id, status="200") > 0
    assert change("threadline_stream_first_event_seconds_count", route="/v1/responses") == 1
    # The slow answer took at least the 0.5 s the model allows: it is past the 0.25 s bucket.
    quick_timeouts = {"model": "chat-quick", "outcome": "timeout"}
    assert change("threadline_upstream_call_duration_seconds_count", **quick_timeouts) == 1
    assert change("threadline_upstream_call_duration_seconds_bucket", **quick_timeouts, le="0.25") == 0

    assert change("threadline_responses_total", model="chat", status="completed", reason="") == 6
    assert change("threadline_responses_total", model="chat", status="incomplete", reason="max_output_tokens") == 1
    # The request the upstream refused got a 400, and no response: none ended failed.
    assert change("threadline_responses_total", model="chat", status="failed", reason="invalid_prompt") == 0
    assert change("threadline_responses_total", model="chat-quick", status="failed", reason="server_error") == 1
    assert change("threadline_tokens_total", model="chat", direction="input") == 10 + 10 + 7 + 5 + 3 + 2 * (4 + 6)
    assert change("threadline_tokens_total", model="chat", direction="output") == 4 + 4 + 3 + 1 + 2 + 2 * (1 + 2)

    assert change("threadline_upstream_call_duration_seconds_count", model="chat", outcome="ok") == 2 + 1 + 1 + 1 + 4
    assert change("threadline_upstream_call_duration_seconds_count", model="chat", outcome="5xx") == 1
    assert change("threadline_upstream_call_duration_seconds_count", model="chat", outcome="4xx") == 1
    assert change("threadline_upstream_retries_total", model="chat") == 1
    assert change("threadline_tool_calls_total", type="web_search_call", outcome="completed") == 1
    assert change("threadline_tool_calls_total", type="web_search_call", outcome="failed") == 1

    assert change.now("threadline_open_streams") == 0
    assert change.now("threadline_responses_running", mode="foreground") == 0
    assert change("threadline_db_write_batch_size_count") >= 1
    # Bounded labels: routes are templates, and no id reaches the metrics.
    text_ = http.get("/metrics").text
    assert done[0].id not in text_ and "resp_" not in text_


def test_background_queue_and_running_work(server, client, http, mock):
    """Each worker runs one background response at a time: with every worker busy, one
    more waits in the queue. Cancelled, they are counted as such."""
    mock.script(*[reply(text("..."), forever=True) for _ in range(server.workers)])
    running = [client.responses.create(model="chat", input="Go on.", background=True) for _ in range(server.workers)]
    wait_until(lambda: all(client.responses.retrieve(r.id).status == "in_progress" for r in running))
    before = scrape(http)
    waiting = client.responses.create(model="chat", input="Wait.", background=True)
    time.sleep(0.3)  # a few polls of the queue: nobody is free to take it
    now = Change(before, scrape(http))
    assert client.responses.retrieve(waiting.id).status == "queued"
    assert now.now("threadline_queue_depth", model="chat") == 1
    assert now.now("threadline_queue_depth", model="chat-quick") == 0
    assert now.now("threadline_queue_oldest_age_seconds", model="chat") >= 0.3
    assert now.now("threadline_responses_running", mode="background") == server.workers

    assert client.responses.cancel(waiting.id).status == "cancelled"
    for response in running:
        client.responses.cancel(response.id)
    wait_until(lambda: Change(before, scrape(http)).now("threadline_responses_running", mode="background") == 0)
    after = Change(before, scrape(http))
    # The responses that ran are counted as they ended; the one cancelled in the queue never ran.
    assert after("threadline_responses_total", model="chat", status="cancelled", reason="") == server.workers
    assert after("threadline_upstream_call_duration_seconds_count", model="chat", outcome="cancelled") == server.workers
    assert after.now("threadline_queue_depth", model="chat") == 0


def test_a_body_refused_as_too_large_is_counted(server, http):
    """A body declared larger than the limit is refused before it is read or routed; the
    request still shows, with the status the client got."""
    before = scrape(http)
    refused = http.post("/v1/responses", content=b"x" * (BODY_LIMIT + 1), headers={"Content-Type": "application/json"})
    assert refused.status_code == 413
    change = Change(before, scrape(http))
    assert change("threadline_http_request_duration_seconds_count", route="unmatched", method="POST", status="413") == 1


def test_the_compact_endpoint_counts_its_tokens(server, client, http, mock):
    """POST /v1/responses/compact makes a summary call of the model: its tokens are counted
    by model as a response's are, and no response is (none is made)."""
    before = scrape(http)
    mock.script(answer(9, 5))
    earlier = [{"role": "user", "content": "Tell me about bread."}, {"role": "assistant", "content": "Bread is baked."}]
    compacted = client.responses.compact(model="chat", input=earlier + [{"role": "user", "content": "And cake?"}])
    assert (compacted.usage.input_tokens, compacted.usage.output_tokens) == (9, 5)
    change = Change(before, scrape(http))
    assert change("threadline_tokens_total", model="chat", direction="input") == 9
    assert change("threadline_tokens_total", model="chat", direction="output") == 5
    assert change("threadline_upstream_call_duration_seconds_count", model="chat", outcome="ok") == 1
    assert sum(value for (name, _), value in change.after.items() if name == "threadline_responses_total") == sum(
        value for (name, _), value in change.before.items() if name == "threadline_responses_total"
    )


def test_websocket_connections_are_counted_while_open(server, http):
    url = server.url.replace("http://", "ws://") + "/v1/responses"
    base = scrape(http)[("threadline_websocket_connections", frozenset())]
    with connect(url, additional_headers=AUTH):
        assert scrape(http)[("threadline_websocket_connections", frozenset())] == base + 1
    wait_until(lambda: scrape(http)[("threadline_websocket_connections", frozenset())] == base)


def test_metrics_need_the_key_when_configured(server):
    answer_ = httpx.get(server.url + "/metrics")
    assert answer_.status_code == 401
    assert answer_.json()["error"]["message"].startswith("You didn't provide an API key")
    assert httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer sk-wrong"}).status_code == 401


def test_metrics_are_open_by_default_and_can_be_switched_off(start_server):
    keyed = {"auth": {"api_keys": [{"key": KEY, "project": "ops"}]}}
    server = start_server(keyed)
    assert httpx.get(server.url + "/v1/models").status_code == 401
    assert "threadline_http_request_duration_seconds" in httpx.get(server.url + "/metrics").text
    server = start_server({**keyed, "metrics": {"enabled": False}})
    assert httpx.get(server.url + "/metrics").status_code == 404


def test_a_background_response_streams_again_from_any_worker(server, client, mock):
    """Whichever worker runs it, a background response's events can be read again, from the
    start or from the middle, through any worker."""
    mock.script(answer(2, 1))
    created = client.responses.create(model="chat", input="Hi", background=True)
    wait_until(lambda: client.responses.retrieve(created.id).status == "completed")
    for _ in range(3):  # requests spread over the workers
        events = list(client.responses.retrieve(created.id, stream=True))
        assert events[-1].type == "response.completed" and events[-1].response.output_text == "Fine."
        resumed = list(client.responses.retrieve(created.id, stream=True, starting_after=events[2].sequence_number))
        assert [event.sequence_number for event in resumed] == [event.sequence_number for event in events[3:]]
