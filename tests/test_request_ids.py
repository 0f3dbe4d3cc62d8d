"""Request ids and the server's log, as an operator reads them: every answer carries
`x-request-id` (`req_` and 32 hex digits, OpenAI's form), every log line of a request names
it (with the client's own X-Client-Request-Id), `--log-format json` writes JSON lines, and no
line holds a key, a secret or message content. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import logging
import re

import httpx
import openai
import pytest
import websockets
from websockets.sync.client import connect

from threadline.ops.logs import JsonFormatter, TextFormatter
from tests.mcp_servers import run_mcp_server
from tests.mock_upstream import error, finish, reply, text, tool_call, usage
from tests.search_server import SearchServer
from tests.servers import ThreadlineServer, write_config

REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")
API_KEY = "sk-threadline-client-key-0001"
UPSTREAM_KEY = "sk-upstream-secret-0002"
ENCRYPTION_KEY = "encryption-secret-0003"
MCP_TOKEN = "mcp-bearer-token-0004"
# Message content: what the user asked, what the model answered.
QUESTION = "Where did the marmot hide the 7311 acorns?"
ANSWER = "Under the heliotrope, said the narwhal."


@pytest.fixture(scope="module")
def search():
    with SearchServer() as running:
        yield running


@pytest.fixture(scope="module")
def mcp_server():
    with run_mcp_server(token=MCP_TOKEN, require_token=True) as server:
        yield server


def config(upstream, search) -> dict:
    return {
        "auth": {"api_keys": [{"key": API_KEY, "project": "alpha"}]},
        "models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "api_key": UPSTREAM_KEY, "max_retries": 0}],
        "tools": {"mcp": {"allowed_hosts": ["127.0.0.1"]}, "web_search": {"provider": "searxng", "base_url": search.base_url}},
        "security": {"encryption_keys": [ENCRYPTION_KEY]},
    }


@pytest.fixture(scope="module")
def server(own_database, tmp_path_factory, upstream, search):
    """Logging JSON lines (THREADLINE_LOG_FORMAT, as --log-format)."""
    path = write_config(tmp_path_factory.mktemp("config") / "threadline.toml", config(upstream, search))
    with ThreadlineServer(own_database, path, env={"THREADLINE_LOG_FORMAT": "json"}) as running:
        yield running


@pytest.fixture(scope="module")
def text_server(own_database, tmp_path_factory, upstream, search):
    """Logging readable text lines, the default."""
    path = write_config(tmp_path_factory.mktemp("config") / "threadline.toml", config(upstream, search))
    with ThreadlineServer(own_database, path) as running:
        yield running


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)


@pytest.fixture
def log(server):
    """The JSON lines the server writes during the test, each parsed."""
    with open(server.log.name) as file:
        file.seek(0, 2)
        yield lambda: [json.loads(line) for line in file.read().splitlines() if line.strip()]


def test_every_answer_carries_a_request_id(server, client, mock):
    ids = []
    listed = client.models.with_raw_response.list()
    ids.append(listed.headers["x-request-id"])
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve("resp_missing")
    ids.append(missing.value.request_id)
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    ids.append(refused.value.request_id)
    with pytest.raises(openai.BadRequestError) as invalid:
        client.responses.create(model="chat", input=[{"role": "robot", "content": "hi"}])
    ids.append(invalid.value.request_id)
    mock.script(reply(text("Hello."), finish("stop")))
    with httpx.stream("POST", server.url + "/v1/responses", json={"model": "chat", "input": "Hi", "stream": True}, headers={"Authorization": f"Bearer {API_KEY}"}) as streamed:
        assert streamed.status_code == 200
        streamed.read()
        ids.append(streamed.headers["x-request-id"])
    ids.append(httpx.get(server.url + "/health").headers["x-request-id"])
    assert all(REQUEST_ID.fullmatch(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    # The SDK reads it as OpenAI's: an object's _request_id.
    mock.script(reply(text("Hello."), finish("stop")))
    assert REQUEST_ID.fullmatch(client.responses.create(model="chat", input="Hi")._request_id)


def test_a_refused_websocket_upgrade_carries_a_request_id(server):
    url = server.url.replace("http://", "ws://") + "/v1/responses"
    with pytest.raises(websockets.InvalidStatus) as refused:
        with connect(url, additional_headers={"Authorization": "Bearer sk-wrong"}, open_timeout=10):
            pass
    assert refused.value.response.status_code == 401
    assert REQUEST_ID.fullmatch(refused.value.response.headers["x-request-id"])


def test_a_client_request_id_is_logged_with_the_request_id(client, mock, log):
    mock.script(reply(text("Hello."), finish("stop")))
    raw = client.responses.with_raw_response.create(model="chat", input="Hi", extra_headers={"X-Client-Request-Id": "agent-run-42/turn-1"})
    lines = [line for line in log() if line.get("request_id") == raw.headers["x-request-id"]]
    assert lines and all(line["client_request_id"] == "agent-run-42/turn-1" for line in lines)
    assert any("POST /v1/responses" in line["message"] for line in lines)


def test_a_client_request_id_that_could_forge_a_line_is_not_logged(client, log):
    client.models.list(extra_headers={"X-Client-Request-Id": "x\tINFO forged"})
    assert all("forged" not in json.dumps(line) for line in log())


def test_a_problem_in_a_request_is_logged_with_its_request_id(client, mock, search, log):
    search.reset()
    search.fail(500)
    mock.script(
        reply(tool_call(0, id="call_1", name="web_search", arguments=json.dumps({"query": "acorns"})), finish("tool_calls")),
        reply(text("No idea."), finish("stop")),
    )
    raw = client.responses.with_raw_response.create(model="chat", input="Acorns?", tools=[{"type": "web_search"}])
    [warning] = [line for line in log() if "web search failed" in line["message"]]
    assert warning["level"] == "WARNING" and warning["request_id"] == raw.headers["x-request-id"]
    # A request that fails: its access line, the 500, carries its id.
    mock.script(error(500, f"upstream broke; key {UPSTREAM_KEY}"))
    with pytest.raises(openai.InternalServerError) as failed:
        client.responses.create(model="chat", input="Hi")
    [access] = [line for line in log() if line.get("request_id") == failed.value.request_id and line["logger"] == "uvicorn.access"]
    assert '"POST /v1/responses HTTP/1.1" 500' in access["message"]


def test_log_lines_are_json_and_hold_no_keys_secrets_or_content(server, client, mock, mcp_server, log):
    mcp = {"type": "mcp", "server_label": "acorns", "server_url": mcp_server.url, "require_approval": "never", "authorization": MCP_TOKEN}
    mock.script(
        reply(tool_call(0, id="call_1", name="echo", arguments=json.dumps({"text": QUESTION})), finish("tool_calls"), usage(10, 2)),
        reply(text(ANSWER), finish("stop"), usage(20, 5)),
    )
    assert client.responses.create(model="chat", input=QUESTION, tools=[mcp]).output_text == ANSWER
    mock.script(error(401, f"Incorrect API key provided: {UPSTREAM_KEY}"))
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="chat", input=QUESTION)
    httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer sk-guessed-{MCP_TOKEN}"})
    client.conversations.create(items=[{"role": "user", "content": QUESTION}])
    lines = log()
    assert lines and all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    written = json.dumps(lines)
    for secret in (API_KEY, UPSTREAM_KEY, ENCRYPTION_KEY, MCP_TOKEN, "marmot", "heliotrope"):
        assert secret not in written, secret


def test_text_lines_name_the_request(text_server, mock):
    mock.script(reply(text("Hello."), finish("stop")))
    with open(text_server.log.name) as file:
        file.seek(0, 2)
        answer = httpx.post(
            text_server.url + "/v1/responses",
            json={"model": "chat", "input": "Hi"},
            headers={"Authorization": f"Bearer {API_KEY}", "X-Client-Request-Id": "run-7"},
        )
        written = file.read()
    request_id = answer.headers["x-request-id"]
    [line] = [line for line in written.splitlines() if request_id in line]
    assert line.startswith("INFO uvicorn.access: ") and line.endswith(f'200 request_id={request_id} client_request_id=run-7')


@pytest.mark.parametrize("formatter", [TextFormatter, JsonFormatter])
def test_a_line_masks_configured_secrets_and_bearer_credentials(formatter):
    record = logging.LogRecord("threadline", logging.ERROR, __file__, 1, "sent %s with Authorization: Bearer %s and %s", ("hunter2-configured", "tok3n-value", "sk-abcdefghijkl"), None)
    line = formatter(secrets=["hunter2-configured"]).format(record)
    assert "hunter2" not in line and "tok3n" not in line and "sk-abcdefghijkl" not in line
    assert line.count("[redacted]") == 3
