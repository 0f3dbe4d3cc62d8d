"""The console's playground in real Chromium, and its JSON endpoint over HTTP.

The module's server has two projects and an admin key, the scripted model (answers and
delays written in the message), a model on the mock upstream (replies scripted by the test,
for tool calls answered in turn), and MCP servers allowed on loopback (tests/mcp_servers.py).
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.browser import new_page, sign_in
from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import sse_events
from tests.mcp_servers import run_mcp_server
from tests.mock_upstream import finish, reply, text, tool_call, usage
from tests.spec_check import checked_client

ADMIN_KEY = "sk-ops-admin-test-key"
ENDPOINT = "/console/api/playground/responses"
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.fixture(scope="module")
def server(start_server, upstream):
    return start_server(
        {
            "auth": {
                "api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]
                + [{"key": ADMIN_KEY, "project": "ops", "admin": True}]
            },
            "models": [
                {"id": "scripted", "provider": "scripted"},
                {"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "context_window": 8192},
            ],
            "tools": {"mcp": {"allowed_hosts": ["127.0.0.1"], "call_timeout_s": 10}},
            "workers": FAST_WORKERS,
        }
    )


@pytest.fixture(scope="module")
def mcp_server():
    with run_mcp_server() as running:
        yield running


@pytest.fixture
def playground(page):
    """The playground, signed in as project alpha."""
    sign_in(page, KEYS["alpha"])
    page.goto("/console/playground")
    page.wait_for_selector("body[data-playground-ready]")
    return page


def script(*steps: dict) -> str:
    """A message the scripted model answers by following `steps`."""
    return "#script " + json.dumps(list(steps))


def send(page, message: str) -> None:
    page.get_by_test_id("input").fill(message)
    page.get_by_test_id("send").click()


def turn(page, index: int):
    return page.get_by_test_id("turn").nth(index)


def wait_until_ended(page, index: int) -> None:
    """Waits for the response of exchange `index` to reach its end, whatever its status."""
    turn(page, index).locator('[data-testid="status"]:text-matches("^(completed|failed|incomplete|error)$")').wait_for()


def response_id(page, index: int) -> str:
    return turn(page, index).get_by_test_id("response-link").inner_text()


def shown_usage(page, index: int) -> tuple[int, int, int]:
    part = lambda name: int(turn(page, index).get_by_test_id(f"usage-{name}").inner_text())  # noqa: E731
    return part("input"), part("output"), part("total")


def add_function(page, name: str, parameters: str) -> None:
    page.get_by_test_id("add-function").click()
    editor = page.get_by_test_id("function-tool").last
    editor.get_by_test_id("function-name").fill(name)
    editor.get_by_test_id("function-parameters").fill(parameters)


# --- streaming ------------------------------------------------------------------------------


def test_an_answer_streams_into_the_page_before_it_ends(playground, client):
    send(playground, script({"text": "The first half, "}, {"delay": 4}, {"text": "then the rest.", "chunks": 3}))
    # One look at the page, taken as soon as any text is there: text and status together.
    seen = playground.wait_for_function(
        """() => {
            const text = document.querySelector('[data-testid="turn"] [data-type="message"]:not(.user) [data-testid="item-text"]');
            const status = document.querySelector('[data-testid="turn"] [data-testid="status"]');
            return text && text.textContent ? {text: text.textContent, status: status.textContent} : null;
        }"""
    ).json_value()
    assert seen == {"text": "The first half, ", "status": "in_progress"}

    wait_until_ended(playground, 0)
    answer = turn(playground, 0)
    assert answer.get_by_test_id("status").inner_text() == "completed"
    assert answer.locator('[data-type="message"].assistant [data-testid="item-text"]').inner_text() == "The first half, then the rest."
    assert answer.get_attribute("data-deltas") == "4"  # one delta, then three
    stored = client.responses.retrieve(response_id(playground, 0))
    assert stored.output_text == "The first half, then the rest."
    assert shown_usage(playground, 0) == (stored.usage.input_tokens, stored.usage.output_tokens, stored.usage.total_tokens)
    assert answer.get_by_test_id("response-link").get_attribute("href") == f"/console/responses/{stored.id}"


def test_without_streaming_the_answer_comes_whole(playground, client):
    playground.get_by_test_id("stream").uncheck()
    playground.get_by_test_id("instructions").fill("Be brief.")
    send(playground, "Hello there")
    wait_until_ended(playground, 0)
    answer = turn(playground, 0)
    assert answer.locator(".assistant [data-testid='item-text']").inner_text() == "Reply to: Hello there"
    assert answer.get_attribute("data-deltas") == "0"
    stored = client.responses.retrieve(response_id(playground, 0))
    assert stored.instructions == "Be brief." and stored.output_text == "Reply to: Hello there"
    assert shown_usage(playground, 0) == (stored.usage.input_tokens, stored.usage.output_tokens, stored.usage.total_tokens)


def test_reasoning_and_call_arguments_stream_into_the_page(playground):
    add_function(playground, "get_weather", json.dumps(WEATHER_SCHEMA))
    send(
        playground,
        script(
            {"summary": "Plan: ask for the weather."}, {"delay": 3}, {"reasoning": "Paris is in France."}, {"delay": 3},
            {"tool_call": {"name": "get_weather", "arguments": '{"city": "Paris"}', "call_id": "call_1", "chunks": 2}}, {"delay": 3},
        ),
    )  # fmt: skip
    parts = {
        "summary": '[data-type="reasoning"] [data-testid="item-text"]',
        "reasoning": '[data-type="reasoning"] [data-testid="item-reasoning"]',
        "arguments": '[data-type="function_call"] [data-testid="item-arguments"]',
    }

    def seen_once(part: str, whole: str) -> dict:
        """One look at the page, taken as soon as `part` reads `whole`."""
        return playground.wait_for_function(
            """([parts, part, whole]) => {
                const text = (selector) => {
                    const element = document.querySelector(`[data-testid="turn"] ${selector}`);
                    return element ? element.textContent : null;
                };
                if (text(parts[part]) !== whole) return null;
                const seen = {status: text('[data-testid="status"]')};
                for (const name of Object.keys(parts)) seen[name] = text(parts[name]);
                return seen;
            }""",
            arg=[parts, part, whole],
        ).json_value()

    summary, reasoning, arguments = "Plan: ask for the weather.", "Paris is in France.", '{"city": "Paris"}'
    assert seen_once("summary", summary) == {"status": "in_progress", "summary": summary, "reasoning": "", "arguments": None}
    assert seen_once("reasoning", reasoning) == {"status": "in_progress", "summary": summary, "reasoning": reasoning, "arguments": None}
    assert seen_once("arguments", arguments) == {"status": "in_progress", "summary": summary, "reasoning": reasoning, "arguments": arguments}
    wait_until_ended(playground, 0)
    assert turn(playground, 0).get_by_test_id("status").inner_text() == "completed"
    assert turn(playground, 0).get_by_test_id("function-output-form").is_visible()


@pytest.mark.slow
def test_the_embedded_model_streams_into_the_page(browser, embedded):
    with new_page(browser, embedded.url) as page:
        page.goto("/console/playground")  # an open server: nobody signs in
        page.wait_for_selector("body[data-playground-ready]")
        assert page.get_by_test_id("model").input_value() == "smollm2-135m-instruct"
        page.get_by_test_id("max-output-tokens").fill("16")
        send(page, "Say hello.")
        answer = page.get_by_test_id("turn")
        answer.locator('[data-testid="status"]:text-matches("^(completed|incomplete|failed|error)$")').wait_for(timeout=180_000)
        # Incomplete when the 16 tokens run out before the model stops.
        assert answer.get_by_test_id("status").inner_text() in ("completed", "incomplete")
        assert answer.locator(".assistant [data-testid='item-text']").inner_text().strip()
        assert int(answer.get_attribute("data-deltas")) > 1  # it came in pieces
        assert 0 < shown_usage(page, 0)[1] <= 16


# --- tools ----------------------------------------------------------------------------------


def test_a_function_call_answered_by_hand_continues_the_response(playground, client, mock):
    mock.script(
        reply(tool_call(0, id="call_paris", name="get_weather", arguments='{"city": "Paris"}'), finish("tool_calls"), usage(20, 5)),
        reply(text("It is sunny in Paris."), finish("stop"), usage(40, 6)),
    )
    playground.get_by_test_id("model").select_option("chat")
    add_function(playground, "get_weather", json.dumps(WEATHER_SCHEMA))
    send(playground, "What is the weather in Paris?")
    wait_until_ended(playground, 0)
    call = turn(playground, 0).locator('[data-type="function_call"]')
    assert "get_weather" in call.inner_text() and json.loads(call.get_by_test_id("item-arguments").inner_text()) == {"city": "Paris"}
    assert shown_usage(playground, 0) == (20, 5, 25)

    playground.get_by_test_id("function-output").fill("sunny, 24 °C")
    playground.get_by_test_id("send-function-output").click()
    wait_until_ended(playground, 1)
    assert turn(playground, 1).locator(".assistant [data-testid='item-text']").inner_text() == "It is sunny in Paris."
    assert shown_usage(playground, 1) == (40, 6, 46)
    # The model was told the typed output, in the response continuing the first one.
    assert [m for m in mock.requests[1]["messages"] if m["role"] == "tool"] == [{"role": "tool", "tool_call_id": "call_paris", "content": "sunny, 24 °C"}]
    assert mock.requests[1]["tools"][0]["function"]["parameters"] == WEATHER_SCHEMA
    assert client.responses.retrieve(response_id(playground, 1)).previous_response_id == response_id(playground, 0)
    # The call is answered: its form takes no second answer.
    expect(turn(playground, 0).get_by_test_id("send-function-output")).to_be_disabled()


def test_an_mcp_call_is_approved_in_the_page(playground, client, mock, mcp_server):
    mock.script(
        reply(tool_call(0, id="call_count", name="increment", arguments="{}"), finish("tool_calls")),
        reply(text("Counted."), finish("stop")),
    )
    playground.get_by_test_id("model").select_option("chat")
    playground.get_by_test_id("add-mcp").click()
    playground.get_by_test_id("mcp-label").fill("calc")
    playground.get_by_test_id("mcp-url").fill(mcp_server.url)
    playground.get_by_test_id("mcp-approval").select_option("always")
    send(playground, "Count once.")
    wait_until_ended(playground, 0)
    request = turn(playground, 0).locator('[data-type="mcp_approval_request"]')
    assert "calc · increment" in request.inner_text()
    before = mcp_server.state.increments  # nothing has run yet: the call waits for its approval

    turn(playground, 0).get_by_test_id("approve").click()
    wait_until_ended(playground, 1)
    answered = turn(playground, 1)
    assert "approved" in answered.locator('[data-type="mcp_approval_response"]').inner_text()
    assert answered.locator('[data-type="mcp_call"] [data-testid="item-output"]').inner_text() == str(before + 1)
    assert answered.locator(".assistant [data-testid='item-text']").inner_text() == "Counted."
    assert mcp_server.state.increments == before + 1
    stored = client.responses.retrieve(response_id(playground, 1))
    assert [item.type for item in stored.output] == ["mcp_call", "message"] and stored.previous_response_id == response_id(playground, 0)
    expect(turn(playground, 0).get_by_test_id("approve")).to_be_disabled()
    expect(turn(playground, 0).get_by_test_id("deny")).to_be_disabled()


def test_a_denied_mcp_call_is_not_run(playground, mock, mcp_server):
    mock.script(
        reply(tool_call(0, id="call_count", name="increment", arguments="{}"), finish("tool_calls")),
        reply(text("Not counted."), finish("stop")),
    )
    playground.get_by_test_id("model").select_option("chat")
    playground.get_by_test_id("add-mcp").click()
    playground.get_by_test_id("mcp-label").fill("calc")
    playground.get_by_test_id("mcp-url").fill(mcp_server.url)
    send(playground, "Count once.")
    wait_until_ended(playground, 0)
    before = mcp_server.state.increments
    turn(playground, 0).get_by_test_id("deny").click()
    wait_until_ended(playground, 1)
    assert "denied" in turn(playground, 1).locator('[data-type="mcp_approval_response"]').inner_text()
    assert turn(playground, 1).locator(".assistant [data-testid='item-text']").inner_text() == "Not counted."
    assert mcp_server.state.increments == before


def test_a_schema_that_is_not_json_is_reported_and_nothing_is_sent(playground):
    sent = []
    playground.on("request", lambda request: sent.append(request.url) if "/console/api/playground" in request.url else None)
    add_function(playground, "get_weather", '{"type": "object", "properties": ')
    problem = playground.get_by_test_id("function-error")
    assert "not valid JSON" in problem.inner_text()  # said as it is typed
    send(playground, "What is the weather?")
    assert "A tool is not right" in playground.get_by_test_id("error").inner_text()
    assert playground.get_by_test_id("turn").count() == 0 and sent == []
    assert playground.get_by_test_id("input").input_value() == "What is the weather?"

    playground.get_by_test_id("function-parameters").fill("[1, 2]")
    assert "must be a JSON object" in problem.inner_text()
    playground.get_by_test_id("function-parameters").fill(json.dumps(WEATHER_SCHEMA))
    assert problem.is_hidden()


# --- conversations --------------------------------------------------------------------------


def test_continuing_in_a_new_conversation_then_an_existing_one(playground, client, beta_client):
    playground.get_by_test_id("conversation-new").check()
    send(playground, "first")
    wait_until_ended(playground, 0)
    send(playground, "second")
    wait_until_ended(playground, 1)
    link = playground.get_by_test_id("conversation-link")
    conversation_id = link.inner_text()
    assert link.get_attribute("href") == f"/console/conversations/{conversation_id}"
    assert client.responses.retrieve(response_id(playground, 1)).conversation.id == conversation_id

    playground.get_by_test_id("conversation-existing").check()
    playground.get_by_test_id("conversation-id").fill(conversation_id)
    send(playground, "third")
    wait_until_ended(playground, 0)

    items = client.conversations.items.list(conversation_id, order="asc").data
    said = [(item.role, item.content[0].text) for item in items]
    assert said == [
        ("user", "first"), ("assistant", "Reply to: first"),
        ("user", "second"), ("assistant", "Reply to: second"),
        ("user", "third"), ("assistant", "Reply to: third"),
    ]  # fmt: skip
    with pytest.raises(openai.NotFoundError):
        beta_client.conversations.retrieve(conversation_id)


def test_an_api_error_is_shown_in_the_page(playground, client):
    playground.get_by_test_id("conversation-existing").check()
    playground.get_by_test_id("conversation-id").fill("conv_missing")
    send(playground, "hello")
    with pytest.raises(openai.NotFoundError) as refused:
        client.responses.create(model="scripted", input="hello", conversation="conv_missing")
    # The page's request may still be on its way: wait for what it shows.
    expect(playground.get_by_test_id("error")).to_have_text(refused.value.body["message"])
    expect(turn(playground, 0).get_by_test_id("status")).to_have_text("error")
    # The message refused is back in the box, to be sent again once the id is put right.
    expect(playground.get_by_test_id("input")).to_have_value("hello")


def test_a_response_that_fails_shows_why(playground):
    send(playground, script({"text": "Starting"}, {"fail": {"message": "The scripted model broke down."}}))
    wait_until_ended(playground, 0)
    assert turn(playground, 0).get_by_test_id("status").inner_text() == "failed"
    assert turn(playground, 0).get_by_test_id("response-error").inner_text() == "The scripted model broke down."
    assert "The scripted model broke down." in playground.get_by_test_id("error").inner_text()


def test_an_incomplete_response_says_why_and_can_be_continued(playground, client):
    send(playground, script({"text": "Cut sh", "chunks": 2}, {"finish": "length"}))
    wait_until_ended(playground, 0)
    assert turn(playground, 0).get_by_test_id("status").inner_text() == "incomplete"
    assert turn(playground, 0).locator(".assistant [data-testid='item-text']").inner_text() == "Cut sh"
    assert "Incomplete: max_output_tokens" in turn(playground, 0).locator(".turn-foot").inner_text()
    send(playground, "Go on")
    wait_until_ended(playground, 1)
    assert client.responses.retrieve(response_id(playground, 1)).previous_response_id == response_id(playground, 0)


def test_file_search_offers_only_the_projects_vector_stores(playground, client, beta_client):
    ours = client.vector_stores.create(name="Alpha handbook")
    theirs = beta_client.vector_stores.create(name="Beta handbook")
    playground.reload()
    playground.wait_for_selector("body[data-playground-ready]")
    offered = [box.get_attribute("value") for box in playground.get_by_test_id("vector-store").all()]
    assert ours.id in offered and theirs.id not in offered
    assert "Beta handbook" not in playground.get_by_test_id("file-search").inner_text()

    playground.locator(f'[data-testid="vector-store"][value="{ours.id}"]').check()
    send(playground, "Hello")
    wait_until_ended(playground, 0)
    stored = client.responses.retrieve(response_id(playground, 0))
    assert [(tool.type, tool.vector_store_ids) for tool in stored.tools] == [("file_search", [ours.id])]


# --- the JSON endpoint ------------------------------------------------------------------------


REFUSED_BODIES = [
    {"model": "no-such-model", "input": "hi"},
    {"model": "scripted", "input": 5},
    {"model": "scripted", "input": "hi", "temperature": 5},
    {"model": "scripted", "input": "hi", "tools": [{"type": "function"}]},
    {"model": "scripted", "input": "hi", "previous_response_id": "resp_missing"},
    {"model": "scripted", "input": "hi", "conversation": "conv_missing"},
]


@pytest.mark.parametrize("body", REFUSED_BODIES, ids=["model", "input", "temperature", "tools", "previous_response_id", "conversation"])
def test_the_endpoint_refuses_what_v1_refuses(quick_http, body):
    console = quick_http.post(ENDPOINT, json=body)
    v1 = quick_http.post("/v1/responses", json=body)
    assert console.status_code == v1.status_code and console.status_code in (400, 404)
    assert console.json() == v1.json() and set(console.json()["error"]) == {"message", "type", "param", "code"}


def test_the_endpoint_refuses_a_body_that_is_not_json(quick_http):
    console = quick_http.post(ENDPOINT, content=b'{"model": ', headers={"Content-Type": "application/json"})
    v1 = quick_http.post("/v1/responses", content=b'{"model": ', headers={"Content-Type": "application/json"})
    assert console.status_code == v1.status_code == 400 and console.json() == v1.json()


def test_the_endpoint_refuses_another_projects_objects(quick_http, beta_client):
    """Beta's response, conversation and vector store are, to alpha, as if they did not exist."""
    response = beta_client.responses.create(model="scripted", input="hi")
    conversation = beta_client.conversations.create()
    store = beta_client.vector_stores.create(name="Beta handbook")
    for fields in (
        {"previous_response_id": response.id},
        {"conversation": conversation.id},
        {"tools": [{"type": "file_search", "vector_store_ids": [store.id]}]},
    ):
        body = {"model": "scripted", "input": "hi", **fields}
        console, v1 = quick_http.post(ENDPOINT, json=body), quick_http.post("/v1/responses", json=body)
        assert console.status_code == v1.status_code and console.status_code in (400, 404)
        assert console.json() == v1.json() and "not found" in console.json()["error"]["message"]


def test_cookie_borne_posts_from_another_origin_are_refused(server):
    """The sign-in cookie sent by another site's page creates nothing; from the console's own pages it works."""
    requests = ((ENDPOINT, {"model": "scripted", "input": "hi"}), ("/console/api/playground/conversations", None))
    with httpx.Client(base_url=server.url, cookies={"threadline_console": KEYS["alpha"]}) as browser_like:
        for path, body in requests:
            refused = browser_like.post(path, json=body, headers={"Origin": "http://elsewhere.example"})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "cross_origin_request"
            assert browser_like.post(path, json=body, headers={"Origin": server.url}).status_code == 200


def test_the_endpoint_needs_a_key(server):
    for headers in ({}, {"Authorization": "Bearer sk-unknown"}):
        answer = httpx.post(server.url + ENDPOINT, json={"model": "scripted", "input": "hi"}, headers=headers)
        assert answer.status_code == 401 and answer.json()["error"]["type"] == "invalid_request_error"


def test_what_the_endpoint_creates_is_the_callers_project(server, client, beta_client, spec_check):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['beta']}"}) as beta:
        created = beta.post(ENDPOINT, json={"model": "scripted", "input": "hi"})
    assert created.status_code == 200 and created.json()["output"][0]["content"][0]["text"] == "Reply to: hi"
    assert beta_client.responses.retrieve(created.json()["id"]).output_text == "Reply to: hi"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.json()["id"])

    # An admin key sees every project in the console, but runs in its own key's project.
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        by_admin = admin.post(ENDPOINT, json={"model": "scripted", "input": "hi"}).json()["id"]
    ops = checked_client(spec_check, server.url + "/v1", ADMIN_KEY)
    assert ops.responses.retrieve(by_admin).id == by_admin
    for other in (client, beta_client):
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(by_admin)


def test_the_endpoint_streams_the_events_of_v1(http, client):
    events = sse_events(http, ENDPOINT, {"model": "scripted", "input": script({"text": "One two three", "chunks": 3}), "stream": True})
    types = [event["type"] for event in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert [event["delta"] for event in events if event["type"] == "response.output_text.delta"] == ["One t", "wo th", "ree"]
    assert client.responses.retrieve(events[-1]["response"]["id"]).output_text == "One two three"
