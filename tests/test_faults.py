"""Failing inference servers, end to end: the official SDK -> `threadline serve` -> a faulty upstream.

Every fault the mock upstream can inject (tests/mock_upstream.py), for both providers ("chat"
speaks Chat Completions, "resp" the Responses API), streamed and not, on both databases
(through `database_url`). For each, what the client sees:

- not streamed: the SDK raises with OpenAI's error envelope, `rate_limit_exceeded` (HTTP 429)
  for an upstream's 429 and `server_error` (HTTP 500, type server_error) for anything else;
- streamed: response.created, response.in_progress, whatever output came, then exactly one
  response.failed carrying the error, every event valid against OpenAI's schema;
- either way: the response is stored as failed with that error, it is the only response of
  its conversation, the conversation's items are unchanged, and the upstream was called as
  often as the retry policy says (retries only before any output, up to max_retries).

An error envelope names no response, so a failure that was not streamed is found in the
database by its conversation, then retrieved through the API like the others.

Then background responses that fail, retries that succeed, and Threadline's own memory, file
descriptors and upstream connections across a few hundred failures of mixed kinds.

Models (per provider): `chat` gives up after 1 s and retries twice; `chat-quick` after 0.5 s,
retrying once (the timeout faults); `chat-small` takes answers of up to 64 KiB;
`chat-blackhole` points at an address that never accepts a connection (and gives up
connecting after 0.3 s, within its 1 s), `chat-refused` at one that refuses it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace

import httpx
import openai
import pytest

from tests.helpers import PROVIDERS, responses_of_conversation, sse_events, upstream_models
from tests.mock_upstream import (
    BlackHole,
    Refused,
    Reply,
    cut,
    error,
    fail,
    finish,
    malformed,
    raw,
    reply,
    reset,
    sleep,
    text,
)
from threadline.backends.openai_chat import OpenAIChatBackend
from threadline.backends.base import BackendError
from threadline.backends.upstream import LOOKUP_RETRY_S, bounded_chunks, sse_lines
from threadline.config import ModelSettings

SMALL_ANSWER_BYTES = 64 * 1024
TIMEOUT_S = 1.0
QUICK_TIMEOUT_S = 0.5
CONNECT_TIMEOUT_S = 0.3


@pytest.fixture(scope="module")
def black_hole():
    with BlackHole() as hole:
        yield hole


@pytest.fixture(scope="module")
def refused():
    with Refused() as address:
        yield address


@pytest.fixture(scope="module")
def server(start_server, upstream, black_hole, refused):
    # total_timeout_s leaves room for every retry the faults below expect.
    models = upstream_models(
        upstream.base_url,
        {
            "": {"timeout_s": TIMEOUT_S, "max_retries": 2},
            "quick": {"timeout_s": QUICK_TIMEOUT_S, "max_retries": 1},
            "small": {"timeout_s": TIMEOUT_S, "max_retries": 2, "max_answer_bytes": SMALL_ANSWER_BYTES},
            "blackhole": {"timeout_s": TIMEOUT_S, "connect_timeout_s": CONNECT_TIMEOUT_S, "max_retries": 1, "base_url": black_hole.base_url},
            "refused": {"timeout_s": TIMEOUT_S, "max_retries": 2, "base_url": refused.base_url},
        },
        total_timeout_s=10,
        options={"retry_base_s": 0.01},
    )
    return start_server({"models": models})


# --- What the database holds ----------------------------------------------------------------


def conversation_items(http: httpx.Client, conversation_id: str) -> list[dict]:
    answer = http.get(f"/v1/conversations/{conversation_id}/items", params={"order": "asc", "limit": 100})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


@pytest.fixture
def conversation(client, http):
    """A conversation with one earlier message, which every failure must leave as it is."""
    created = client.conversations.create(items=[{"type": "message", "role": "user", "content": "An earlier message."}])
    before = conversation_items(http, created.id)
    assert len(before) == 1
    yield created
    assert conversation_items(http, created.id) == before


# --- The faults -----------------------------------------------------------------------------


@dataclass
class Fault:
    name: str
    replies: Callable[[bool], list[Reply]]  # what the mock answers, given whether the call streams
    attempts: tuple[int, int]  # upstream calls Threadline makes: (streamed, not streamed)
    model: str = ""  # the suffix of the model it happens on
    code: str = "server_error"
    partial: bool = False  # streamed: output reached the client before the failure
    message: str = ""  # a pattern the error's message matches
    streamed_only: bool = False  # a fault of server-sent events, which a JSON answer cannot have
    within: float = 5.0  # seconds the client waits for the failure at most

    @property
    def cases(self) -> list:
        modes = [True] if self.streamed_only else [True, False]
        return [pytest.param(self, stream, id=f"{self.name}-{'stream' if stream else 'plain'}") for stream in modes]


def always(*replies: Reply) -> Callable[[bool], list[Reply]]:
    return lambda _stream: list(replies)


TIMED_OUT = r"timed out|did not finish within 0\.5 s"
LONG_TEXT = "x" * 1024

FAULTS = [
    Fault("http-500", always(*[error(500, "engine down")] * 3), (3, 3), message=r"HTTP 500.*engine down"),
    Fault("http-502", always(*[error(502, "bad gateway")] * 3), (3, 3), message=r"HTTP 502.*bad gateway"),
    Fault("http-503", always(*[error(503, "overloaded")] * 3), (3, 3), message=r"HTTP 503.*overloaded"),
    # Threadline's own upstream settings are wrong: not the client's to fix, nor worth retrying.
    # The upstream's words are not passed on for a 401, as they may quote the key.
    Fault("http-401", always(error(401, "Incorrect API key provided: sk-secret")), (1, 1), message=r"^(?!.*sk-secret).*HTTP 401.*api_key"),
    Fault("http-404", always(error(404, "no such route")), (1, 1), message=r"HTTP 404.*no such route"),
    Fault(
        "429",
        always(*[error(429, "slow down", type="rate_limit_error", code="rate_limit_exceeded")] * 3),
        (3, 3),
        code="rate_limit_exceeded",
        message="slow down",
    ),
    # Retry-After beyond what is worth holding a request open for: not retried.
    Fault("429-retry-after-120s", always(error(429, "come back later", retry_after="120")), (1, 1), code="rate_limit_exceeded", message="come back later"),
    # Two attempts (and a context window lookup) of 0.3 s each, not of the whole 1 s timeout_s.
    Fault("connect-timeout", always(), (0, 0), model="-blackhole", message="Connecting to the upstream model timed out", within=1.8),
    Fault("connection-refused", always(), (0, 0), model="-refused", message="Could not connect"),
    Fault("read-timeout-before-headers", always(*[reply(text("late"), delay=3)] * 2), (2, 2), model="-quick", message=TIMED_OUT),
    # A stalled stream; not streamed, the stall comes before the body, so it is retried.
    Fault(
        "read-timeout-after-output",
        lambda stream: [reply(text("partial"), sleep(3))] * (1 if stream else 2),
        (1, 2),
        model="-quick",
        partial=True,
        message=TIMED_OUT,
    ),
    # A JSON body is cut halfway before anything of it is used, so that is retried.
    Fault("reset-mid-answer", lambda stream: [reply(text("partial"), reset())] * (1 if stream else 3), (1, 3), partial=True, message="Connection reset by peer"),
    Fault("closed-mid-answer", lambda stream: [reply(text("partial"), cut())] * (1 if stream else 3), (1, 3), partial=True, message="peer closed connection"),
    Fault("reset-before-output", always(*[reply(reset())] * 3), (3, 3), message="Connection reset by peer", streamed_only=True),
    Fault("malformed-json-body", always(malformed()), (1, 1), message="malformed JSON"),
    Fault("malformed-json-object", always(malformed("[1, 2, 3]")), (1, 1), message="not a JSON object"),
    Fault("sse-data-not-json", always(reply(text("partial"), raw("data: {oops\n\n"))), (1, 1), partial=True, message="malformed JSON", streamed_only=True),
    Fault("sse-data-not-json-first", always(reply(raw("data: {oops\n\n"))), (1, 1), message="malformed JSON", streamed_only=True),
    Fault("sse-data-not-an-object", always(reply(raw("data: [1, 2]\n\n"))), (1, 1), message="malformed stream event", streamed_only=True),
    Fault("sse-truncated", always(reply(text("partial"), done=False)), (1, 1), partial=True, message="ended early", streamed_only=True),
    Fault("sse-truncated-mid-event", always(reply(text("partial"), raw('data: {"choi'), done=False)), (1, 1), partial=True, message="malformed JSON", streamed_only=True),
    Fault("sse-truncated-before-output", always(*[reply(done=False)] * 3), (3, 3), message="ended early", streamed_only=True),
    Fault("upstream-error-event", always(reply(text("partial"), fail("the engine crashed"))), (1, 1), partial=True, message="the engine crashed", streamed_only=True),
    # Chat's error chunk, or the Responses API's response.failed, saying the upstream is rate limited.
    Fault(
        "rate-limit-error-event",
        always(*[reply(fail("slow down", code="rate_limit_exceeded"))] * 3),
        (3, 3),
        code="rate_limit_exceeded",
        message="slow down",
        streamed_only=True,
    ),
    Fault(
        "never-ends",
        lambda stream: [reply(text("partial"), forever=True)] * (1 if stream else 2),
        (1, 2),
        model="-quick",
        partial=True,
        message=TIMED_OUT,
    ),
    Fault("never-ends-before-output", always(*[reply(forever=True)] * 2), (2, 2), model="-quick", message=TIMED_OUT),
    # 100 KiB in 1 KiB deltas against a 64 KiB limit; not streamed, the body is refused whole.
    Fault("oversized-answer", always(reply(*[text(LONG_TEXT)] * 100, finish())), (1, 1), model="-small", partial=True, message="max_answer_bytes"),
    Fault("oversized-single-event", always(reply(text("x" * 100_000), finish())), (1, 1), model="-small", message="max_answer_bytes", streamed_only=True),
    Fault("oversized-endless-line", always(reply(raw("data: " + "x" * 200_000))), (1, 1), model="-small", message="max_answer_bytes", streamed_only=True),
]
FAULT_CASES = [case for fault in FAULTS for case in fault.cases]


@pytest.mark.parametrize(("fault", "stream"), FAULT_CASES)
def test_fault(client, http, mock, server, conversation, model, fault: Fault, stream: bool):
    mock.script(*fault.replies(stream))
    body = {"model": model + fault.model, "input": "Hi", "conversation": conversation.id}
    status = 429 if fault.code == "rate_limit_exceeded" else 500
    started = time.monotonic()
    if stream:
        events = sse_events(http, "/v1/responses", {**body, "stream": True})
        types = [event["type"] for event in events]
        assert types[:2] == ["response.created", "response.in_progress"]
        assert types[-1] == "response.failed" and types.count("response.failed") == 1
        assert not {"response.completed", "response.incomplete", "error"} & set(types)
        assert ("response.output_text.delta" in types) == fault.partial
        failed = events[-1]["response"]
        assert failed["status"] == "failed"
        error_code, message, response_id = failed["error"]["code"], failed["error"]["message"], failed["id"]
        if fault.partial:
            assert failed["output"][0]["status"] == "incomplete"
    else:
        with pytest.raises(openai.APIStatusError) as raised:
            client.responses.create(**body)
        assert raised.value.status_code == status
        assert isinstance(raised.value, openai.RateLimitError if status == 429 else openai.InternalServerError)
        envelope = raised.value.body
        assert set(envelope) == {"message", "type", "param", "code"}
        assert envelope["type"] == ("requests" if status == 429 else "server_error") and envelope["param"] is None
        error_code, message = envelope["code"], envelope["message"]
        ((response_id, _status),) = responses_of_conversation(server.database_url, conversation.id)
    assert time.monotonic() - started < fault.within
    assert error_code == fault.code
    assert re.search(fault.message, message), message

    # Stored as failed, with the error the client saw; the only response of its conversation.
    stored = client.responses.retrieve(response_id)
    assert stored.status == "failed"
    assert (stored.error.code, stored.error.message) == (fault.code, message)
    assert responses_of_conversation(server.database_url, conversation.id) == [(response_id, "failed")]
    if stream and fault.partial:
        assert stored.output[0].status == "incomplete" and stored.output[0].content[0].text.startswith("partial" if "oversized" not in fault.name else "x")

    assert len(mock.requests) == fault.attempts[0 if stream else 1]
    assert not mock.replies  # every scripted reply was asked for
    # (the `conversation` fixture checks that its items are unchanged)


def test_oversized_answer_keeps_at_most_the_limit(client, http, mock, model):
    """What a response that outgrew max_answer_bytes stored of its output is less than the limit."""
    mock.script(reply(*[text(LONG_TEXT)] * 200, finish()))
    events = sse_events(http, "/v1/responses", {"model": f"{model}-small", "input": "Hi", "stream": True})
    assert events[-1]["type"] == "response.failed"
    kept = client.responses.retrieve(events[-1]["response"]["id"]).output[0].content[0].text
    assert 0 < len(kept) < SMALL_ANSWER_BYTES


def test_answer_within_max_answer_bytes_completes(client, mock, model):
    # The limit counts the bytes sent, and a streamed Response sends its text about five times
    # over (deltas, the done events, the final Response): 10 KiB of text fits in 64 KiB.
    mock.script(*[reply(*[text(LONG_TEXT)] * 10, finish())] * 2)
    for stream in (True, False):
        if stream:
            with client.responses.stream(model=f"{model}-small", input="Hi") as events:
                response = events.get_final_response()
        else:
            response = client.responses.create(model=f"{model}-small", input="Hi")
        assert response.status == "completed" and response.output_text == LONG_TEXT * 10


def test_stray_lines_and_unicode_line_separators_are_not_faults(client, mock, model):
    """Lines that are no SSE field are ignored, as the SSE spec says, and U+2028, U+2029 or
    U+0085 inside an event's JSON (which encoders such as orjson or serde_json leave unescaped)
    do not end its line."""
    odd = "a\u2028b\u2029c\u0085d"
    if model == "chat":
        delta = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": odd}, "finish_reason": None}]}
    else:
        delta = {"type": "response.output_text.delta", "item_id": "msg_raw", "output_index": 0, "content_index": 0, "delta": odd, "sequence_number": 2, "logprobs": []}
    stray = ": a comment\nnot a field at all\nretry: 100\nid: 7\n\n\x00garbage\r\n\r\n"
    line = f"data: {json.dumps(delta, ensure_ascii=False)}\n\n"
    mock.script(reply(raw(stray), raw(line), text("!"), finish()))
    # Read with the SDK: Threadline passes those characters on unescaped too (valid JSON and SSE),
    # and httpx's iter_lines, which tests.helpers.sse_events reads with, splits lines at them.
    events = list(client.responses.create(model=model, input="Hi", stream=True))
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == odd + "!"


@pytest.mark.parametrize(
    ("replies", "attempts", "partial"),
    [([error(503)] * 3, 3, False), ([reply(text("partial"), reset())], 1, True)],
    ids=["503s", "reset-after-output"],
)
def test_background_failure_is_stored_and_replayed(client, http, mock, model, conversation, replies, attempts, partial):
    """A background response that fails: its stream, and the replay of its event log, end in one response.failed."""
    mock.script(*replies)
    body = {"model": model, "input": "Hi", "conversation": conversation.id, "background": True, "stream": True}
    streamed = sse_events(http, "/v1/responses", body)
    response_id = streamed[0]["response"]["id"]
    stored = client.responses.retrieve(response_id)
    assert stored.status == "failed" and stored.error.code == "server_error"
    replayed = sse_events(http, f"/v1/responses/{response_id}?stream=true", method="GET")
    assert replayed == streamed
    types = [event["type"] for event in replayed]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types[-1] == "response.failed" and types.count("response.failed") == 1
    assert ("response.output_text.delta" in types) == partial
    assert replayed[-1]["response"]["error"] == stored.error.model_dump(exclude_unset=True)
    assert len(mock.requests) == attempts


# --- Retries --------------------------------------------------------------------------------


def create(client: openai.OpenAI, stream: bool, **body):
    if stream:
        with client.responses.stream(**body) as events:
            return events.get_final_response()
    return client.responses.create(**body)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_503_then_success(client, mock, model, stream):
    mock.script(error(503, "warming up"), reply(text("Hello"), finish()))
    response = create(client, stream, model=model, input="Hi")
    assert response.status == "completed" and response.output_text == "Hello"
    assert len(mock.requests) == 2


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_429_with_retry_after_then_success(client, mock, model, stream):
    mock.script(error(429, "slow down", retry_after="1"), reply(text("Hello"), finish()))
    response = create(client, stream, model=model, input="Hi")
    assert response.status == "completed" and response.output_text == "Hello"
    assert len(mock.requests) == 2
    assert mock.request_times[1] - mock.request_times[0] >= 0.95  # as long as the upstream asked


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_429_without_retry_after_backs_off_then_succeeds(client, mock, model, stream):
    mock.script(error(429, "slow down"), error(429, "slow down"), reply(text("Hello"), finish()))
    response = create(client, stream, model=model, input="Hi")
    assert response.status == "completed" and len(mock.requests) == 3


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_timeout_then_success(client, mock, model, stream):
    mock.script(reply(text("late"), delay=3), reply(text("Hello"), finish()))
    response = create(client, stream, model=f"{model}-quick", input="Hi")
    assert response.status == "completed" and response.output_text == "Hello"
    assert len(mock.requests) == 2


@pytest.mark.parametrize("trouble", [reset(), cut(), sleep(3), fail("the engine crashed"), raw("data: {oops\n\n")], ids=["reset", "cut", "stall", "error-event", "bad-sse"])
def test_failure_after_output_is_never_retried(http, mock, model, conversation, trouble):
    mock.script(reply(text("partial"), trouble), reply(text("A second answer."), finish()))
    events = sse_events(http, "/v1/responses", {"model": f"{model}-quick", "input": "Hi", "conversation": conversation.id, "stream": True})
    assert events[-1]["type"] == "response.failed"
    assert [event["delta"] for event in events if event["type"] == "response.output_text.delta"] == ["partial"]
    assert len(mock.requests) == 1 and len(mock.replies) == 1  # the second answer was never asked for


def test_retries_are_spaced_by_backoff(client, mock, model):
    mock.script(*[error(500)] * 3)
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=model, input="Hi")
    first, second, third = mock.request_times
    # retry_base_s 0.01: about 0.005-0.01 s, then 0.01-0.02 s; never all at once.
    assert 0.004 <= second - first < 1 and 0.009 <= third - second < 1


# --- Bounded resources ----------------------------------------------------------------------

# Each kind of failure: the model it goes to, and the mock's answer to every attempt.
SOAK_FAULTS: dict[str, tuple[str, Callable[[], Reply]]] = {
    "http500": ("", lambda: error(500)),
    "http503": ("", lambda: error(503)),
    "rate": ("", lambda: error(429, "slow down", retry_after="0")),
    "badjson": ("", lambda: malformed()),
    "badsse": ("", lambda: reply(text("partial"), raw("data: {oops\n\n"))),
    "reset": ("", lambda: reply(text("partial"), reset())),
    "cut": ("", lambda: reply(text("partial"), cut())),
    "truncated": ("", lambda: reply(text("partial"), done=False)),
    "crash": ("", lambda: reply(text("partial"), fail("the engine crashed"))),
    "oversized": ("-small", lambda: reply(*[text(LONG_TEXT)] * 100, finish())),
    "forever": ("-quick", lambda: reply(text("partial"), forever=True)),
    "late": ("-quick", lambda: reply(text("late"), delay=1)),
    "refused": ("-refused", lambda: error(418)),
    "blackhole": ("-blackhole", lambda: error(418)),
}
STREAMED_ONLY = {"badsse", "truncated", "crash"}  # a JSON answer has no such fault


def soak_reply(body: dict) -> Reply:
    return SOAK_FAULTS[re.search(r"fault:(\w+)", json.dumps(body)).group(1)][1]()


def fail_once(session: httpx.Client, number: int, conversation_id: str) -> tuple[str, str]:
    """One failing request: its kind of fault, and the error code it ended with (or what happened instead)."""
    kinds = list(SOAK_FAULTS)
    kind = kinds[number % len(kinds)]
    model = list(PROVIDERS)[(number // len(kinds)) % 2] + SOAK_FAULTS[kind][0]
    stream = number % 3 != 0 or kind in STREAMED_ONLY
    body = {"model": model, "input": f"fault:{kind}", "stream": stream}
    if number % 4 == 0:
        body["conversation"] = conversation_id
    if not stream:
        answer = session.post("/v1/responses", json=body)
        return kind, answer.json()["error"]["code"] if answer.status_code in (429, 500) else f"HTTP {answer.status_code}"
    with session.stream("POST", "/v1/responses", json=body) as answer:
        last = None
        for line in answer.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])
    return kind, last["response"]["error"]["code"] if last and last["type"] == "response.failed" else f"HTTP {answer.status_code}, ended with {last and last['type']}"


CONCURRENCY = 8
# The most sockets to the upstream Threadline may hold once its calls are done: idle ones kept
# for reuse, no more than were ever in use at once.
KEPT_CONNECTIONS = 32


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+) kB", status.read()).group(1))


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def sockets_to(pid: int, port: int) -> Counter:
    """The states of the TCP sockets process `pid` holds open to 127.0.0.1:`port`."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    states: Counter = Counter()
    with open(f"/proc/{pid}/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if fields[9] in inodes and remote_port == port:
                states[TCP_STATES.get(fields[3], fields[3])] += 1
    return states


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def port_of(base_url: str) -> int:
    return httpx.URL(base_url).port


def test_memory_and_connections_stay_bounded(server, mock, http, black_hole, refused, client):
    """A few hundred failures of every kind, 8 at a time: Threadline's RSS levels off, and it
    keeps no more connections to the upstream than its idle ones awaiting reuse."""
    pid = server.process.pid
    upstream_port = port_of(mock.base_url)
    # The count sees the connections Threadline keeps: one for a plain answer read whole.
    mock.script(reply(text("Hello"), finish()))
    assert client.responses.create(model="chat", input="Hi").status == "completed"
    assert sockets_to(pid, upstream_port)["ESTABLISHED"] >= 1

    mock.responder = soak_reply
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "An earlier message."}])
    before = conversation_items(http, conversation.id)
    peak = Counter()  # the most sockets to the upstream seen open at once, by state
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.05):
            for state, count in sockets_to(pid, upstream_port).items():
                peak[state] = max(peak[state], count)

    def run(numbers: range) -> list[tuple[str, str]]:
        with httpx.Client(base_url=server.url, timeout=30) as session, ThreadPoolExecutor(CONCURRENCY) as pool:
            outcomes = list(pool.map(lambda number: fail_once(session, number, conversation.id), numbers))
        unexpected = [(kind, code) for kind, code in outcomes if code != ("rate_limit_exceeded" if kind == "rate" else "server_error")]
        assert not unexpected, Counter(unexpected)
        return outcomes

    run(range(0, 56))
    rss_warm, fds_warm = rss_kib(pid), open_fds(pid)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    outcomes = run(range(56, 56 + 224))
    sampling.set()
    sampler.join()
    rss_after, fds_after = rss_kib(pid), open_fds(pid)
    assert conversation_items(http, conversation.id) == before
    assert {status for _id, status in responses_of_conversation(server.database_url, conversation.id)} == {"failed"}

    upstream_sockets = sockets_to(pid, upstream_port)
    print(
        f"\nRSS after warm-up {rss_warm} KiB, after {len(outcomes)} more failures {rss_after} KiB "
        f"({rss_after - rss_warm:+d} KiB); fds {fds_warm} -> {fds_after}; "
        f"sockets to the upstream {dict(upstream_sockets)} (at most {dict(peak)} during the run); to the black hole {dict(sockets_to(pid, port_of(black_hole.base_url)))}"
    )
    assert rss_after - rss_warm < 5 * 1024
    assert sum(upstream_sockets.values()) <= KEPT_CONNECTIONS
    assert peak["ESTABLISHED"] <= 2 * CONCURRENCY  # those in use and idle ones awaiting reuse, never one per failure
    assert upstream_sockets["CLOSE_WAIT"] <= 8  # idle ones the mock closed, until the pool next looks
    assert not sockets_to(pid, port_of(black_hole.base_url))  # abandoned connection attempts are closed
    assert not sockets_to(pid, port_of(refused.base_url))
    assert fds_after - fds_warm <= KEPT_CONNECTIONS


# --- Reading answers, unit by unit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"data: a\n\ndata: b\n"], ["data: a", "", "data: b"]),
        ([b"data: a\r", b"\ndata: b\r\n", b"\r\n"], ["data: a", "data: b", ""]),  # CRLF split between chunks
        ([b"data: a\rdata: b\r"], ["data: a", "data: b"]),  # lone CRs end lines too
        ([b"da", b"ta: ", b"abc", b"\n"], ["data: abc"]),
        (["data: é\n".encode()[:7], "data: é\n".encode()[7:]], ["data: é"]),  # a character split between chunks
        (["data: a\u2028b\u2029c\u0085d\x0b\x0ce\n".encode()], ["data: a\u2028b\u2029c\u0085d\x0b\x0ce"]),
        ([b"data: \xff\n"], ["data: \ufffd"]),  # not UTF-8: replaced, not fatal
        ([b"data: tail without a line end"], ["data: tail without a line end"]),
    ],
)
def test_sse_lines_end_only_at_cr_or_lf(chunks, lines):
    async def read() -> list[str]:
        async def received():
            for chunk in chunks:
                yield chunk

        return [line async for line in sse_lines(received())]

    assert asyncio.run(read()) == lines


def test_an_answer_read_at_once_past_the_limit_keeps_the_events_within_it():
    """A reader that fell behind gets much of an answer in one read: the events that ended
    within max_answer_bytes still count, and then the answer is too large."""
    answer = [b"".join(f"data: {n}\n\n".encode() for n in range(100))]  # 100 bytes end with event 10

    class Content:
        async def readany(self) -> bytes:
            return answer.pop() if answer else b""

    async def read() -> list[str]:
        lines = []
        with pytest.raises(BackendError, match="max_answer_bytes"):
            async for line in sse_lines(bounded_chunks(SimpleNamespace(headers={}, content=Content()), 100)):
                lines.append(line)
        return lines

    assert asyncio.run(read()) == [line for n in range(11) for line in (f"data: {n}", "")]


def test_a_failed_context_window_lookup_waits_before_trying_again(upstream, refused):
    """An upstream that is down costs each request its own call only, not a /models lookup too."""

    async def run() -> None:
        upstream.reset(max_model_len=4096)
        backend = OpenAIChatBackend(ModelSettings(id="chat", provider="openai-chat", base_url=refused.base_url))
        try:
            assert await backend.resolve_context_window() is None
            backend.base_url = upstream.base_url.rstrip("/")  # the upstream is back
            assert await backend.resolve_context_window() is None and upstream.models_requests == 0
            backend._lookup_failed_at -= LOOKUP_RETRY_S
            assert await backend.resolve_context_window() == 4096 and upstream.models_requests == 1
        finally:
            await backend.close()

    asyncio.run(run())
