"""WebSocket mode: GET /v1/responses upgraded to a WebSocket that carries one response after another.

Driven by a real WebSocket client library (`websockets`) for the protocol's corners, and by
the official SDK's own WebSocket support (`client.responses.connect()`) for a 50-turn session;
each on SQLite and PostgreSQL, against a real `threadline serve` with the scripted model.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import httpx
import openai
import pytest
import websockets
from openai.lib.responses_websocket import ResponsesWebSocketLimits, ResponsesWebSocketSession
from openai.types.responses.responses_server_event import ResponseWsError
from websockets.sync.client import ClientConnection, connect

from tests.helpers import WEATHER_TOOL, database_rows, recorded_from_now, script, sse_events
from tests.spec_schemas import validate_event

KEYS = {"alpha": "sk-ws-alpha", "beta": "sk-ws-beta"}
TERMINAL = ("response.completed", "response.incomplete", "response.failed", "response.cancelled")
TURNS = 50


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = tmp_path_factory.mktemp("ws") / "model_requests.jsonl"
    path.touch()
    return path


@pytest.fixture(scope="module")
def server(start_server, record):
    return start_server(
        {
            "auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]},
            "models": [{"id": "scripted", "provider": "scripted", "options": {"record_to": str(record)}}],
            "default_model": "scripted",
        }
    )


@pytest.fixture
def model_requests(record):
    """What the scripted model received during this test, one dict per request."""
    return recorded_from_now(record)


@pytest.fixture
def row_counts_of():
    """The rows of responses and their items in a server's database."""

    def count(server) -> dict[str, int]:
        return {table: database_rows(server.database_url, f"SELECT count(*) FROM {table}")[0][0] for table in ("responses", "response_items")}

    return count


def socket_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/responses"


@contextmanager
def opened(server, key: str | None = KEYS["alpha"]):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with connect(socket_url(server), additional_headers=headers, open_timeout=10) as socket:
        yield socket


def receive(socket: ClientConnection) -> dict:
    return json.loads(socket.recv(timeout=30))


def turn(socket: ClientConnection, **body) -> list[dict]:
    """Send one response.create; its events up to and including its terminal event (or the
    error event that refused it), each checked against the specs, numbered from 0 in order."""
    socket.send(json.dumps({"type": "response.create", **body}))
    return events_of_one(socket)


def events_of_one(socket: ClientConnection) -> list[dict]:
    events = []
    while True:
        event = receive(socket)
        if event["type"] == "error":
            assert not events, events
            return [checked_error(event)]
        validate_event(event)
        events.append(event)
        if event["type"] in TERMINAL:
            assert [each["sequence_number"] for each in events] == list(range(len(events)))
            return events


def checked_error(event: dict) -> dict:
    """An error event, as the SDK's own type for it reads it."""
    parsed = ResponseWsError.model_validate(event)
    assert parsed.status and parsed.error.message
    return event


def completed(events: list[dict]) -> dict:
    assert events[-1]["type"] == "response.completed", events[-1]
    return events[-1]["response"]


def error_of(events: list[dict]) -> tuple[int, dict]:
    [event] = events
    assert event["type"] == "error", event
    return event["status"], event["error"]


def user_texts(request: dict) -> list[str]:
    """The user messages' texts the model received, in order."""
    texts = []
    for item in request["input"]:
        if item.get("role") == "user":
            content = item["content"]
            texts.append(content if isinstance(content, str) else "".join(part.get("text", "") for part in content))
    return texts


@pytest.mark.parametrize("store", [True, False])
def test_a_fifty_turn_session_through_the_sdk(server, model_requests, row_counts_of, store):
    """The SDK's WebSocket client drives 50 turns on one connection, each sending only its new
    input with previous_response_id; every turn's model sees all the turns before it."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alpha"])
    rows_before = row_counts_of(server)
    previous = None
    with client.responses.connect() as connection:
        for number in range(TURNS):
            connection.response.create(model="scripted", input=f"Turn {number}.", previous_response_id=previous, store=store)
            events = []
            for event in connection:
                raw = event.to_dict()
                assert raw["type"] != "error", raw
                validate_event(raw)
                events.append(raw)
                if raw["type"] in TERMINAL:
                    break
            assert [event["sequence_number"] for event in events] == list(range(len(events)))
            response = completed(events)
            assert response["output"][0]["content"][0]["text"] == f"Reply to: Turn {number}."
            assert response["previous_response_id"] == previous and response["store"] is store
            previous = response["id"]
    requests = model_requests()
    assert len(requests) == TURNS
    assert user_texts(requests[-1]) == [f"Turn {number}." for number in range(TURNS)]
    # The model saw the earlier replies too, in their places.
    assert sum(item.get("role") == "assistant" for item in requests[-1]["input"]) == TURNS - 1
    if store:
        stored = client.responses.retrieve(previous)
        assert stored.output_text == f"Reply to: Turn {TURNS - 1}."
        # Continued over HTTP, the chain the socket made is the same chain.
        client.responses.create(model="scripted", input="Over HTTP.", previous_response_id=previous)
        assert user_texts(model_requests()[-1]) == [f"Turn {number}." for number in range(TURNS)] + ["Over HTTP."]
    else:
        # Nothing was stored: not the responses, not their items.
        assert row_counts_of(server) == rows_before
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(previous)


def test_a_response_on_a_named_lane_comes_back_on_that_lane(server):
    """The SDK's session routes each event by the `stream_id` it echoes: a response created on
    a named lane ends on that lane, and a second lane's create while one runs is refused on
    its own lane (one response at a time per connection)."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alpha"])
    limits = ResponsesWebSocketLimits(max_lanes=4, max_events_per_lane=1000, max_events=4000, max_bytes_per_lane=1 << 24, max_bytes=1 << 26)
    with ResponsesWebSocketSession(client.responses.connect().enter(), limits=limits) as session:
        build, review = session.lane("build"), session.lane("review")
        build.send({"type": "response.create", "model": "scripted", "input": "On a lane."})
        assert build.get_final_response(timeout=30).output_text == "Reply to: On a lane."
        build.send({"type": "response.create", "model": "scripted", "input": script({"delay": 1.0}, {"text": "Slow."})})
        review.send({"type": "response.create", "model": "scripted", "input": "Too soon."})
        refused = review.recv(timeout=30).to_dict()
        assert (refused["type"], refused["status"], refused["stream_id"]) == ("error", 409, "review")
        assert build.get_final_response(timeout=30).output_text == "Slow."
    with opened(server) as socket:
        status, error = error_of(turn(socket, input="Hi.", stream_id=7))
        assert (status, error["param"]) == (400, "stream_id")


def test_the_events_are_those_of_the_same_request_over_sse(server):
    body = {"model": "scripted", "tools": [WEATHER_TOOL], "input": script({"text": "Let me check.", "chunks": 2}, {"tool_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}', "chunks": 2}})}
    with opened(server) as socket:
        over_socket = turn(socket, **body)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['alpha']}"}, timeout=30) as http:
        over_sse = sse_events(http, "/v1/responses", {**body, "stream": True})

    def shape(events: list[dict]) -> list[tuple]:
        return [(event["type"], event["sequence_number"], event.get("delta"), event.get("output_index")) for event in events]

    assert shape(over_socket) == shape(over_sse)
    assert completed(over_socket)["output"][1]["name"] == "get_weather"


def test_a_tool_loop_continues_on_the_connection_with_store_false(server, model_requests):
    """The client's function output continues the response that called the function, which
    was never stored: the model sees the call and its output."""
    with opened(server) as socket:
        call = turn(socket, tools=[WEATHER_TOOL], store=False, input=script({"tool_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}', "call_id": "call_9"}}))
        called = completed(call)
        answer = turn(
            socket,
            tools=[WEATHER_TOOL],
            store=False,
            previous_response_id=called["id"],
            input=[{"type": "function_call_output", "call_id": "call_9", "output": "Sunny, 21 C"}],
        )
        completed(answer)
    seen = model_requests()[-1]["input"]
    assert [item["type"] for item in seen[-2:]] == ["function_call", "function_call_output"]
    assert seen[-1]["output"] == "Sunny, 21 C"


def test_only_the_latest_unstored_response_can_be_continued(server):
    """OpenAI's rule: the connection keeps its most recent response; with store false an
    older one, or one from another connection, is previous_response_not_found."""
    with opened(server) as socket:
        first = completed(turn(socket, input="One.", store=False))
        second = completed(turn(socket, input="Two.", store=False, previous_response_id=first["id"]))
        status, error = error_of(turn(socket, input="Three.", store=False, previous_response_id=first["id"]))
        assert (status, error["code"], error["param"]) == (400, "previous_response_not_found", "previous_response_id")
        assert first["id"] in error["message"]
        # The connection goes on: the latest is still there to continue from.
        completed(turn(socket, input="Three.", store=False, previous_response_id=second["id"]))
    with opened(server) as other:
        status, error = error_of(turn(other, input="Four.", previous_response_id=second["id"]))
        assert (status, error["code"]) == (400, "previous_response_not_found")


def test_an_older_stored_response_is_read_from_the_store(server, model_requests):
    with opened(server) as socket:
        first = completed(turn(socket, input="Alpha fact."))
        completed(turn(socket, input="Beta fact.", previous_response_id=first["id"]))
        branch = completed(turn(socket, input="From the first again.", previous_response_id=first["id"]))
        assert user_texts(model_requests()[-1]) == ["Alpha fact.", "From the first again."]
        # The remembered response goes on into the stored chain it continued.
        completed(turn(socket, input="Then on.", store=False, previous_response_id=branch["id"]))
        assert user_texts(model_requests()[-1]) == ["Alpha fact.", "From the first again.", "Then on."]
    with opened(server) as other:
        completed(turn(other, input="On another connection.", previous_response_id=first["id"]))
        assert user_texts(model_requests()[-1]) == ["Alpha fact.", "On another connection."]


def test_a_failed_continuation_evicts_the_response_it_continued(server):
    """OpenAI's rule: a turn continuing from the remembered response that fails (4xx or 5xx)
    evicts it, so an unstored one can no longer be continued."""
    with opened(server) as socket:
        first = completed(turn(socket, input="One.", store=False))
        status, error = error_of(turn(socket, input="Two.", store=False, previous_response_id=first["id"], tool_choice="required"))
        assert (status, error["param"]) == (400, "tool_choice")
        status, error = error_of(turn(socket, input="Two.", store=False, previous_response_id=first["id"]))
        assert error["code"] == "previous_response_not_found"
        # A response that fails as it runs does the same.
        second = completed(turn(socket, input="Again.", store=False))
        failed = turn(socket, input=script({"fail": {"message": "The model broke."}}), store=False, previous_response_id=second["id"])
        assert failed[-1]["type"] == "response.failed"
        status, error = error_of(turn(socket, input="Once more.", store=False, previous_response_id=second["id"]))
        assert error["code"] == "previous_response_not_found"


def test_a_second_create_while_one_runs_gets_an_error_and_the_connection_stays(server):
    with opened(server) as socket:
        socket.send(json.dumps({"type": "response.create", "input": script({"delay": 1.0}, {"text": "Slow answer."})}))
        socket.send(json.dumps({"type": "response.create", "input": "Too soon."}))
        refused, events = None, []
        while not events or events[-1]["type"] not in TERMINAL:
            event = receive(socket)
            if event["type"] == "error":
                refused = checked_error(event)
            else:
                events.append(event)
        assert refused["status"] == 409 and refused["error"]["code"] == "response_in_progress"
        assert completed(events)["output"][0]["content"][0]["text"] == "Slow answer."
        # Right after the terminal event the next one is taken.
        assert completed(turn(socket, input="Now."))["output"][0]["content"][0]["text"] == "Reply to: Now."


def test_background_is_refused_and_stream_is_implied(server):
    with opened(server) as socket:
        status, error = error_of(turn(socket, input="Later.", background=True))
        assert (status, error["param"]) == (400, "background")
        assert completed(turn(socket, input="Streamed anyway.", stream=False))["status"] == "completed"


def test_bad_messages_get_error_events_and_change_nothing(server, row_counts_of):
    rows_before = row_counts_of(server)
    with opened(server) as socket:
        socket.send("not json")
        assert error_of([checked_error(receive(socket))])[0] == 400
        socket.send(json.dumps({"type": "response.cancel"}))
        status, error = error_of([checked_error(receive(socket))])
        assert (status, error["param"]) == (400, "type")
        status, error = error_of(turn(socket, input=[{"type": "message", "role": "user"}]))
        assert status == 400 and error["param"].startswith("input[0]")
        status, error = error_of(turn(socket, input="Hi.", temperature="hot"))
        assert (status, error["param"]) == (400, "temperature")
        assert completed(turn(socket, input="Still here."))["status"] == "completed"
    assert row_counts_of(server)["responses"] == rows_before["responses"] + 1


def test_generate_false_warms_up_a_response_to_continue_from(server, model_requests):
    with opened(server) as socket:
        warm = turn(socket, instructions="Be brief.", input="Context for later.", generate=False, store=False)
        assert [event["type"] for event in warm] == ["response.created", "response.in_progress", "response.completed"]
        assert completed(warm)["output"] == []
        assert model_requests() == []
        completed(turn(socket, input="The question.", store=False, previous_response_id=completed(warm)["id"]))
    assert user_texts(model_requests()[-1]) == ["Context for later.", "The question."]


def test_the_bearer_key_is_checked_before_the_upgrade(server):
    for key, code in ((None, None), ("sk-wrong", "invalid_api_key")):
        with pytest.raises(websockets.InvalidStatus) as refused:
            with opened(server, key):
                pass
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error"]["code"] == code
    # A key sees its own project only.
    with opened(server) as socket:
        alpha = completed(turn(socket, input="Alpha's."))
    with opened(server, KEYS["beta"]) as socket:
        status, error = error_of(turn(socket, input="Beta's.", previous_response_id=alpha["id"]))
        assert error["code"] == "previous_response_not_found"



LIMITED = {"default_model": "scripted", "models": [{"id": "scripted", "provider": "scripted"}]}


@pytest.fixture(scope="module")
def limited(start_server):
    """A server whose connections close after 1 s idle or 3 messages."""
    return start_server({**LIMITED, "websocket": {"idle_timeout_s": 1.0, "max_messages": 3}})


@pytest.fixture(scope="module")
def short_lived(start_server):
    """A server whose connections live 1 s."""
    return start_server({**LIMITED, "websocket": {"max_lifetime_s": 1.0}})


def closed_code(socket: ClientConnection) -> int:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        socket.recv(timeout=30)
    return closed.value.rcvd.code


def test_a_web_page_of_another_site_cannot_open_a_socket(limited):
    """A browser sends no API key but its page's Origin: on a server without keys, a page of
    any site the user visits must not drive the model or read stored responses (HTTP is kept
    from them by the same-origin rule, which WebSockets do not have)."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        with connect(socket_url(limited), origin="http://attacker.example", open_timeout=10):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "cross_origin_websocket"
    # A page of the server's own origin, and a client that is no browser, are let in.
    with connect(socket_url(limited), origin=limited.url, open_timeout=10) as socket:
        assert completed(turn(socket, input="Same origin."))["status"] == "completed"


def test_an_idle_connection_is_closed(limited):
    with opened(limited, None) as socket:
        # The response outlasts the idle time: a connection is idle only while nothing runs.
        events = turn(socket, input=script({"delay": 1.5}, {"text": "Finished."}))
        assert completed(events)["output"][0]["content"][0]["text"] == "Finished."
        assert closed_code(socket) == 1000


def test_a_connection_takes_at_most_max_messages(limited):
    with opened(limited, None) as socket:
        for number in range(3):
            completed(turn(socket, input=f"Message {number}."))
        status, error = error_of(turn(socket, input="One too many."))
        assert (status, error["code"]) == (400, "websocket_connection_limit_reached")
        assert closed_code(socket) == 1000


def test_the_lifetime_limit_lets_the_running_response_end_first(short_lived):
    with opened(short_lived, None) as socket:
        events = turn(socket, input=script({"delay": 1.5}, {"text": "Finished."}))
        assert completed(events)["output"][0]["content"][0]["text"] == "Finished."
        status, error = error_of(events_of_one(socket))
        assert (status, error["code"]) == (400, "websocket_connection_limit_reached")
        assert "Create a new websocket connection" in error["message"]
        assert closed_code(socket) == 1000
