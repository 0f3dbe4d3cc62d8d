"""OpenTelemetry traces: a real `threadline serve` exports its spans over OTLP to a collector
in the test (tests/otlp_collector.py), on SQLite and on PostgreSQL. The model is the mock
upstream, its tool a real MCP server and a real search server.

What an operator sees in their tracing backend: a span per request; under it the response's
`invoke_agent` span, with a `chat` span per model turn and an `execute_tool` span per hosted
tool call, carrying OpenTelemetry's GenAI attributes; the trace continuing into the upstream
(`traceparent` header) and the MCP server (the request's `_meta`); no message content unless
the operator asked for it.
"""

from __future__ import annotations

import json
import secrets

import openai
import pytest

from tests.embeddings_server import EmbeddingsServer
from tests.mcp_servers import run_mcp_server
from tests.mock_upstream import finish, reply, text, tool_call, usage
from tests.otlp_collector import OtlpCollector, Span
from tests.search_server import SearchServer
from tests.servers import ThreadlineServer, write_config

# Spans leave the server in batches; a short delay keeps the tests quick.
QUICK_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "50"}
SECRET_QUESTION = "What is 2 + 3, asked the zebra?"
SECRET_ANSWER = "It is 5, said the okapi."


@pytest.fixture(scope="module")
def collector():
    with OtlpCollector() as running:
        yield running


@pytest.fixture(scope="module")
def mcp_server():
    with run_mcp_server() as server:
        yield server


@pytest.fixture(scope="module")
def embeddings():
    with EmbeddingsServer() as running:
        yield running


@pytest.fixture(scope="module")
def search():
    with SearchServer() as running:
        yield running


def config(upstream, search, embeddings, **tracing) -> dict:
    return {
        "embeddings": {"provider": "openai", "base_url": embeddings.base_url, "model": "text-embedding-3-small"},
        "models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "upstream_model": "mock-model", "context_window": 8192}],
        "tools": {"mcp": {"allowed_hosts": ["127.0.0.1"]}, "web_search": {"provider": "searxng", "base_url": search.base_url}},
        "tracing": tracing,
    }


@pytest.fixture(scope="module")
def server(own_database, tmp_path_factory, upstream, search, embeddings, collector):
    """Tracing switched on by the config file; content not captured (the default)."""
    path = write_config(tmp_path_factory.mktemp("config") / "threadline.toml", config(upstream, search, embeddings, otlp_endpoint=collector.url))
    with ThreadlineServer(own_database, path, env=QUICK_EXPORT) as running:
        yield running


@pytest.fixture(scope="module")
def capturing_server(own_database, tmp_path_factory, upstream, search, embeddings, collector):
    """Tracing switched on by OTEL_EXPORTER_OTLP_ENDPOINT; content captured, as configured."""
    path = write_config(tmp_path_factory.mktemp("config") / "threadline.toml", config(upstream, search, embeddings, capture_content=True))
    env = {**QUICK_EXPORT, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "threadline-capturing"}
    with ThreadlineServer(own_database, path, env=env) as running:
        yield running


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def mcp_tool(mcp_server) -> dict:
    return {"type": "mcp", "server_label": "calc", "server_url": mcp_server.url, "require_approval": "never"}


def script_tool_then_answer(mock) -> None:
    mock.script(
        reply(tool_call(0, id="call_1", name="add", arguments=json.dumps({"a": 2, "b": 3})), finish("tool_calls"), usage(30, 5)),
        reply(text(SECRET_ANSWER), finish("stop"), usage(50, 7)),
    )


def respond_with_a_tool_call(server, mock, mcp_server, collector, **headers) -> tuple[object, str, list[Span]]:
    """A response whose model calls an MCP tool, then answers: the response, its request id,
    and its trace, once every span of it has arrived."""
    script_tool_then_answer(mock)
    raw = sdk(server).responses.with_raw_response.create(model="chat", input=SECRET_QUESTION, tools=[mcp_tool(mcp_server)], extra_headers=headers)
    response = raw.parse()
    request_id = raw.headers["x-request-id"]
    spans = collector.trace_of("threadline.request_id", request_id, until=lambda spans: len(spans) >= 5 and any(span.kind == "SERVER" and span.end for span in spans))
    return response, request_id, spans


def under(span: Span, ancestor: Span, spans: list[Span]) -> bool:
    parents = {candidate.span_id: candidate for candidate in spans}
    while span.parent_id in parents:
        span = parents[span.parent_id]
        if span.span_id == ancestor.span_id:
            return True
    return False


def one(spans: list[Span], name: str) -> Span:
    [span] = [span for span in spans if span.name == name]
    return span


def test_a_response_with_a_tool_call_is_traced_with_genai_attributes(server, mock, mcp_server, collector):
    response, request_id, spans = respond_with_a_tool_call(server, mock, mcp_server, collector)
    assert response.status == "completed" and response.output_text == SECRET_ANSWER

    request = one(spans, "POST /v1/responses")
    assert request.kind == "SERVER" and request.parent_id is None and request.service == "threadline"
    assert request.attributes["http.route"] == "/v1/responses" and request.attributes["http.response.status_code"] == 200
    assert request.attributes["threadline.request_id"] == request_id

    agent = one(spans, "invoke_agent chat")
    assert under(agent, request, spans)  # FastAPI's own endpoint span sits between the two
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.response.id"] == response.id
    assert agent.attributes["gen_ai.usage.input_tokens"] == 80 and agent.attributes["gen_ai.usage.output_tokens"] == 12

    model_calls = sorted((span for span in spans if span.name == "chat mock-model"), key=lambda span: span.start)
    assert len(model_calls) == 2 and all(call.is_child_of(agent) and call.kind == "CLIENT" for call in model_calls)
    for call in model_calls:
        assert call.attributes["gen_ai.operation.name"] == "chat"
        assert call.attributes["gen_ai.provider.name"] == "openai"
        assert call.attributes["gen_ai.request.model"] == "mock-model"
        assert call.attributes["server.address"] == "127.0.0.1"
    first, second = (call.attributes for call in model_calls)
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"], first["gen_ai.response.finish_reasons"]) == (30, 5, ["tool_calls"])
    assert (second["gen_ai.usage.input_tokens"], second["gen_ai.usage.output_tokens"], second["gen_ai.response.finish_reasons"]) == (50, 7, ["stop"])

    tool = one(spans, "execute_tool add")
    [mcp_call] = [item for item in response.output if item.type == "mcp_call"]
    assert tool.is_child_of(agent)
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "add" and tool.attributes["gen_ai.tool.type"] == "extension"
    assert tool.attributes["gen_ai.tool.call.id"] == mcp_call.id
    assert tool.attributes["threadline.mcp.server_label"] == "calc"
    assert not tool.error
    # The model asked, the tool ran, the model answered: in that order, within the request.
    assert request.start <= agent.start and model_calls[0].end <= tool.start and tool.end <= model_calls[1].start
    assert agent.end <= request.end


def test_the_trace_continues_into_the_upstream_and_the_mcp_server(server, mock, mcp_server, collector):
    mcp_server.state.call_metas.clear()
    _response, _request_id, spans = respond_with_a_tool_call(server, mock, mcp_server, collector)
    model_calls = sorted((span for span in spans if span.name == "chat mock-model"), key=lambda span: span.start)
    # Each upstream call carries the traceparent of its own `chat` span.
    assert [headers["traceparent"].split("-")[1:3] for headers in mock.headers] == [[call.trace_id, call.span_id] for call in model_calls]
    # The MCP server is told the trace in the call's _meta, under the tool's span (the MCP
    # SDK's own client span sits between the two).
    [meta] = mcp_server.state.call_metas
    _version, trace_id, parent_id, _flags = meta["traceparent"].split("-")
    tool = one(spans, "execute_tool add")
    assert trace_id == tool.trace_id
    [mcp_client] = [span for span in spans if span.span_id == parent_id]
    assert mcp_client.is_child_of(tool) and mcp_client.kind == "CLIENT"


def test_a_compaction_summary_is_a_model_call_of_its_own(server, mock, collector):
    mock.headers.clear()
    mock.script(reply(text("The user counted to four."), finish("stop"), usage(40, 6)))
    items = [{"role": "user", "content": f"Number {turn}: " + "count with me " * 200} for turn in range(4)]
    raw = sdk(server).responses.with_raw_response.compact(model="chat", input=items)
    assert raw.parse().output[-1].type == "compaction"
    spans = collector.trace_of("threadline.request_id", raw.headers["x-request-id"], until=lambda spans: any(span.name == "chat mock-model" for span in spans) and any(span.kind == "SERVER" and span.end for span in spans))
    request = one(spans, "POST /v1/responses/compact")
    summary = one(spans, "chat mock-model")
    assert under(summary, request, spans) and summary.kind == "CLIENT"
    assert (summary.attributes["gen_ai.usage.input_tokens"], summary.attributes["gen_ai.usage.output_tokens"], summary.attributes["gen_ai.response.finish_reasons"]) == (40, 6, ["stop"])
    [headers] = mock.headers
    assert headers["traceparent"].split("-")[1:3] == [summary.trace_id, summary.span_id]


def test_the_trace_continues_into_the_embeddings_upstream(server, embeddings, collector):
    embeddings.reset()
    raw = sdk(server).embeddings.with_raw_response.create(model="text-embedding-3-small", input="Acorns.")
    assert len(raw.parse().data) == 1
    spans = collector.trace_of("threadline.request_id", raw.headers["x-request-id"], until=lambda spans: any(span.kind == "SERVER" and span.end for span in spans))
    request = one(spans, "POST /v1/embeddings")
    [sent] = embeddings.requests
    _version, trace_id, parent_id, _flags = sent.headers["traceparent"].split("-")
    assert trace_id == request.trace_id and any(span.span_id == parent_id for span in spans)


def test_a_client_trace_is_continued(server, mock, mcp_server, collector):
    # A trace of its own each run: the collector outlives one database's server.
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    _response, _request_id, spans = respond_with_a_tool_call(server, mock, mcp_server, collector, traceparent=f"00-{trace_id}-{parent_id}-01")
    request = one(spans, "POST /v1/responses")
    assert request.trace_id == trace_id and request.parent_id == parent_id


def test_no_message_content_is_recorded_by_default(server, mock, mcp_server, collector):
    _response, _request_id, spans = respond_with_a_tool_call(server, mock, mcp_server, collector)
    for span in spans:
        assert not any(key in span.attributes for key in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"))
        values = json.dumps(span.attributes)
        assert "zebra" not in values and "okapi" not in values


def test_content_is_recorded_when_asked(capturing_server, mock, mcp_server, collector):
    _response, _request_id, spans = respond_with_a_tool_call(capturing_server, mock, mcp_server, collector)
    assert {span.service for span in spans} >= {"threadline-capturing"}
    first, second = sorted((span for span in spans if span.name == "chat mock-model"), key=lambda span: span.start)
    assert json.loads(first.attributes["gen_ai.input.messages"]) == [{"role": "user", "parts": [{"type": "text", "content": SECRET_QUESTION}]}]
    [message] = json.loads(second.attributes["gen_ai.output.messages"])
    assert message["role"] == "assistant" and message["parts"] == [{"type": "text", "content": SECRET_ANSWER}] and message["finish_reason"] == "stop"
    [call] = json.loads(first.attributes["gen_ai.output.messages"])[0]["parts"]
    assert call["name"] == "add" and json.loads(call["arguments"]) == {"a": 2, "b": 3}
    tool = one(spans, "execute_tool add")
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"a": 2, "b": 3}
    assert "5" in tool.attributes["gen_ai.tool.call.result"]


def test_a_failed_tool_call_and_a_failed_model_call_are_errors(server, mock, search, collector):
    search.reset()
    search.fail(500)
    mock.script(
        reply(tool_call(0, id="call_1", name="web_search", arguments=json.dumps({"query": "weather"})), finish("tool_calls"), usage(10, 2)),
        reply(text("No idea."), finish("stop"), usage(20, 3)),
    )
    raw = sdk(server).responses.with_raw_response.create(model="chat", input="Weather?", tools=[{"type": "web_search"}])
    spans = collector.trace_of("threadline.request_id", raw.headers["x-request-id"], until=lambda spans: len(spans) >= 5)
    tool = one(spans, "execute_tool web_search")
    assert tool.error and tool.attributes["gen_ai.tool.type"] == "extension"

    mock.script(*[reply(text("x"), finish("stop"))] * 0)  # nothing scripted: the upstream answers 418
    with pytest.raises(openai.APIStatusError) as refused:
        sdk(server).responses.create(model="chat", input="Hi")
    spans = collector.trace_of("threadline.request_id", refused.value.response.headers["x-request-id"], until=lambda spans: len(spans) >= 3)
    call = one(spans, "chat mock-model")
    assert call.error and call.attributes["error.type"]
