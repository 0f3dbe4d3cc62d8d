"""Server-side tools through the official SDK: the turn loop, MCP with approvals, web search.

Threadline runs on a mock Chat Completions upstream (the model), with real MCP servers
(tests/mcp_servers.py) and a real SearXNG-speaking search server (tests/search_server.py);
every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import uuid

import openai
import pytest

from tests.helpers import sse_events
from tests.spec_check import checked_client
from tests.mcp_servers import run_mcp_server
from tests.mock_upstream import custom_call, finish, reply, text, tool_call, usage
from tests.search_server import SearchServer, hit


@pytest.fixture(scope="module")
def mcp_server():
    with run_mcp_server(tool_count=30) as server:
        yield server


@pytest.fixture(scope="module")
def sse_server():
    with run_mcp_server("sse") as server:
        yield server


@pytest.fixture(scope="module")
def search():
    with SearchServer() as search:
        yield search


@pytest.fixture(scope="module")
def server(start_server, upstream, search):
    return start_server(
        {
            "models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "context_window": 8192}],
            "tools": {
                "max_turns": 4,
                "mcp": {"allowed_hosts": ["127.0.0.1"], "call_timeout_s": 10},
                "web_search": {"provider": "searxng", "base_url": search.base_url, "max_results": 5},
            },
        }
    )


def mcp_tool(server, **fields) -> dict:
    return {"type": "mcp", "server_label": "calc", "server_url": server.url, "require_approval": "never", **fields}


def call(name: str, arguments: dict, call_id: str = "call_1", index: int = 0) -> list[dict]:
    return [tool_call(index, id=call_id, name=name, arguments=json.dumps(arguments))]


def tool_messages(body: dict) -> list[dict]:
    return [message for message in body["messages"] if message["role"] == "tool"]


def offered(body: dict) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


# --- MCP ------------------------------------------------------------------------------------


def test_mcp_call_runs_and_the_model_goes_on(client, mock, mcp_server):
    mock.script(
        reply(*call("add", {"a": 2, "b": 3}), finish("tool_calls"), usage(30, 5)),
        reply(text("It is 5."), finish("stop"), usage(50, 4)),
    )
    response = client.responses.create(model="chat", input="What is 2 + 3?", tools=[mcp_tool(mcp_server, allowed_tools=["add", "echo"])])
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    listing, mcp_call, message = response.output
    assert listing.server_label == "calc" and sorted(tool.name for tool in listing.tools) == ["add", "echo"]
    assert (mcp_call.name, mcp_call.server_label, json.loads(mcp_call.arguments)) == ("add", "calc", {"a": 2, "b": 3})
    assert mcp_call.output == "5" and mcp_call.error is None and mcp_call.status == "completed"
    assert response.output_text == "It is 5."
    # Usage adds up both turns.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (80, 9)
    first, second = mock.requests
    assert sorted(offered(first)) == ["add", "echo"]
    assert tool_messages(second) == [{"role": "tool", "tool_call_id": "call_1", "content": "5"}]
    # The echo of the tool keeps no secrets and the stored response is the one returned.
    assert client.responses.retrieve(response.id).output[1].output == "5"


def test_mcp_events_stream_in_order(http, mock, mcp_server):
    mock.script(reply(*call("echo", {"text": "hi"}), finish("tool_calls")), reply(text("Done."), finish("stop")))
    events = sse_events(http, "/v1/responses", {"model": "chat", "input": "Echo hi", "stream": True, "tools": [mcp_tool(mcp_server, allowed_tools=["echo"])]})
    types = [event["type"] for event in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    listing = types.index("response.mcp_list_tools.in_progress")
    assert types[listing - 1 : listing + 3] == [
        "response.output_item.added",
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.output_item.done",
    ]
    start = types.index("response.mcp_call.in_progress")
    assert types[start - 1 : start + 5] == [
        "response.output_item.added",
        "response.mcp_call.in_progress",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.completed",
        "response.output_item.done",
    ]
    assert types[-1] == "response.completed"
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    done = events[start + 4]["item"]
    assert done["type"] == "mcp_call" and done["output"] == "hi" and done["status"] == "completed"


def test_a_conversation_lists_a_server_once(client, mock, mcp_server):
    tool = mcp_tool(mcp_server, allowed_tools=["add"])
    conversation = client.conversations.create()
    mock.script(reply(text("One."), finish("stop")), reply(*call("add", {"a": 1, "b": 1}), finish("tool_calls")), reply(text("Two."), finish("stop")))
    first = client.responses.create(model="chat", input="Hi", tools=[tool], conversation=conversation.id)
    second = client.responses.create(model="chat", input="1+1?", tools=[tool], conversation=conversation.id)
    assert [item.type for item in first.output] == ["mcp_list_tools", "message"]
    assert [item.type for item in second.output] == ["mcp_call", "message"]
    assert offered(mock.requests[1]) == ["add"]


def test_a_call_that_outlasts_its_timeout_fails_and_the_model_goes_on(start_server, upstream, mock, mcp_server, spec_check):
    quick = start_server(
        {"models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url}], "tools": {"mcp": {"allowed_hosts": ["127.0.0.1"], "call_timeout_s": 0.5}}}
    )
    client = checked_client(spec_check, quick.url + "/v1", "unused")
    mock.script(reply(*call("slow", {"seconds": 5}), finish("tool_calls")), reply(text("Too slow."), finish("stop")))
    response = client.responses.create(model="chat", input="Sleep", tools=[mcp_tool(mcp_server, allowed_tools=["slow"])])
    mcp_call = response.output[1]
    assert mcp_call.status == "failed" and "timed out" in json.dumps(mcp_call.model_dump()["error"])
    assert response.output_text == "Too slow."


def test_a_tool_that_raises_is_an_mcp_call_with_an_error(client, mock, mcp_server):
    mock.script(reply(*call("fail", {"message": "boom"}), finish("tool_calls")), reply(text("It failed."), finish("stop")))
    response = client.responses.create(model="chat", input="Fail", tools=[mcp_tool(mcp_server, allowed_tools=["fail"])])
    mcp_call = response.output[1]
    assert mcp_call.type == "mcp_call" and mcp_call.status == "failed" and mcp_call.error
    assert "boom" in json.dumps(mcp_call.model_dump()["error"])
    assert response.status == "completed" and response.output_text == "It failed."
    assert "boom" in tool_messages(mock.requests[1])[0]["content"]


def test_an_unreachable_server_is_a_failed_listing_and_the_response_goes_on(client, mock):
    mock.script(reply(text("No tools today."), finish("stop")))
    tool = {"type": "mcp", "server_label": "gone", "server_url": "http://127.0.0.1:9/mcp", "require_approval": "never"}
    response = client.responses.create(model="chat", input="Hi", tools=[tool])
    assert response.status == "completed"
    listing = response.output[0]
    assert listing.type == "mcp_list_tools" and listing.error and listing.tools == []
    assert response.output_text == "No tools today." and offered(mock.requests[0]) == []


def test_sse_transport(client, mock, sse_server):
    mock.script(reply(*call("add", {"a": 1, "b": 1}), finish("tool_calls")), reply(text("2"), finish("stop")))
    response = client.responses.create(model="chat", input="1+1", tools=[mcp_tool(sse_server, allowed_tools=["add"])])
    assert response.output[1].output == "2" and response.output_text == "2"


def test_tool_choice_mcp_makes_the_model_call_that_tool(client, mock, mcp_server):
    mock.script(reply(*call("echo", {"text": "x"}), finish("tool_calls")), reply(text("Done."), finish("stop")))
    choice = {"type": "mcp", "server_label": "calc", "name": "echo"}
    response = client.responses.create(model="chat", input="Hi", tools=[mcp_tool(mcp_server, allowed_tools=["add", "echo"])], tool_choice=choice)
    assert response.tool_choice.type == "mcp" and response.output_text == "Done."
    assert mock.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "echo"}}
    assert mock.requests[1]["tool_choice"] == "auto"


def test_allowed_tools_limit_what_the_model_sees(client, mock, mcp_server):
    mock.script(reply(text("ok"), finish("stop")))
    tool = mcp_tool(mcp_server, allowed_tools={"tool_names": ["tool_03", "tool_17"]})
    response = client.responses.create(model="chat", input="Hi", tools=[tool])
    assert sorted(tool.name for tool in response.output[0].tools) == ["tool_03", "tool_17"]
    assert sorted(offered(mock.requests[0])) == ["tool_03", "tool_17"]


def test_authorization_reaches_the_server_and_is_never_shown(client, http, mock, mcp_server):
    mock.script(reply(*call("secret", {}), finish("tool_calls")), reply(text("42 it is."), finish("stop")))
    tool = mcp_tool(mcp_server, allowed_tools=["secret"], authorization="s3cret", headers={"X-Team": "blue-team-secret"})
    response = client.responses.create(model="chat", input="Tell me", tools=[tool])
    assert response.output[1].output == "the secret is 42"
    assert mcp_server.state.authorization[-1] == "Bearer s3cret"
    shown = json.dumps(http.get(f"/v1/responses/{response.id}").json())
    assert "s3cret" not in shown and "blue-team-secret" not in shown
    assert response.tools[0].server_label == "calc" and "authorization" not in response.tools[0].model_dump(exclude_unset=True)


@pytest.mark.parametrize("url", ["http://10.1.2.3:1/mcp", "http://[::1]:1/mcp", "http://169.254.169.254/mcp"])
def test_a_private_server_not_allowed_is_refused(client, mock, url):
    tool = {"type": "mcp", "server_label": "local", "server_url": url, "require_approval": "never"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[tool])
    assert refused.value.body["param"] == "tools[0].server_url"
    assert mock.requests == []


def test_connector_id_is_refused(client):
    tool = {"type": "mcp", "server_label": "drive", "connector_id": "connector_googledrive", "authorization": "x"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[tool])
    assert refused.value.body["param"] == "tools[0].connector_id"


def test_calls_of_one_turn_run_at_once(client, mock, mcp_server):
    key = uuid.uuid4().hex  # each of them answers only once both run together
    mock.script(
        reply(*call("rendezvous", {"key": key, "count": 2}), *call("rendezvous", {"key": key, "count": 2}, "call_2", 1), finish("tool_calls")),
        reply(text("Met."), finish("stop")),
    )
    response = client.responses.create(model="chat", input="Meet", tools=[mcp_tool(mcp_server, allowed_tools=["rendezvous"])])
    assert [item.output for item in response.output if item.type == "mcp_call"] == ["2 calls met", "2 calls met"]


# --- Approvals ----------------------------------------------------------------------------------


def test_an_approved_call_runs_and_the_tools_are_not_listed_again(client, mock, mcp_server):
    before = mcp_server.state.increments
    tool = mcp_tool(mcp_server, allowed_tools=["increment"], require_approval="always")
    mock.script(reply(*call("increment", {}), finish("tool_calls")))
    asked = client.responses.create(model="chat", input="Count", tools=[tool])
    assert asked.status == "completed"
    assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
    request = asked.output[1]
    assert (request.name, request.server_label, request.arguments) == ("increment", "calc", "{}")
    assert mcp_server.state.increments == before  # nothing ran yet

    mock.script(reply(text("Counted."), finish("stop")))
    approval = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": True}
    answered = client.responses.create(model="chat", previous_response_id=asked.id, input=[approval], tools=[tool])
    assert [item.type for item in answered.output] == ["mcp_call", "message"]
    assert answered.output[0].approval_request_id == request.id and answered.output[0].output == str(before + 1)
    assert mcp_server.state.increments == before + 1
    assert tool_messages(mock.requests[-1])[-1]["content"] == str(before + 1)

    # Answering the same approval again runs nothing a second time.
    mock.script(reply(text("Already counted."), finish("stop")))
    again = client.responses.create(model="chat", previous_response_id=answered.id, input=[approval], tools=[tool])
    assert [item.type for item in again.output] == ["message"]
    assert mcp_server.state.increments == before + 1


def test_a_denied_call_is_not_run_and_the_model_is_told(client, mock, mcp_server):
    before = mcp_server.state.increments
    tool = mcp_tool(mcp_server, allowed_tools=["increment"], require_approval={"always": {"tool_names": ["increment"]}})
    mock.script(reply(*call("increment", {}), finish("tool_calls")))
    asked = client.responses.create(model="chat", input="Count", tools=[tool])
    request = asked.output[-1]
    mock.script(reply(text("Not counted."), finish("stop")))
    denial = {"type": "mcp_approval_response", "approval_request_id": request.id, "approve": False, "reason": "no"}
    answered = client.responses.create(model="chat", previous_response_id=asked.id, input=[denial], tools=[tool])
    assert [item.type for item in answered.output] == ["message"]
    assert mcp_server.state.increments == before
    assert "denied" in tool_messages(mock.requests[-1])[-1]["content"]


def test_an_approval_of_no_request_is_refused(client, mcp_server):
    approval = {"type": "mcp_approval_response", "approval_request_id": "mcpr_nothing", "approve": True}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input=[approval], tools=[mcp_tool(mcp_server)])
    assert refused.value.body["param"] == "input[0].approval_request_id"


def test_approval_without_storing_anything(client, mock, mcp_server):
    """Stateless: the client sends the approval request back itself, with its answer."""
    tool = mcp_tool(mcp_server, allowed_tools=["add"], require_approval="always")
    mock.script(reply(*call("add", {"a": 4, "b": 4}), finish("tool_calls")))
    asked = client.responses.create(model="chat", input="4+4", tools=[tool], store=False)
    request = asked.output[-1].model_dump(mode="json", exclude_none=True)
    mock.script(reply(text("8"), finish("stop")))
    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    answered = client.responses.create(model="chat", input=[request, approval], tools=[tool], store=False)
    # Nothing stored lists the server's tools for this response: it lists them again.
    assert [item.type for item in answered.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert answered.output[1].output == "8" and answered.output[1].approval_request_id == request["id"]


# --- Bounds ---------------------------------------------------------------------------------------


def test_max_tool_calls_stops_further_calls_and_the_model_answers(client, mock, mcp_server):
    mock.script(
        reply(*call("add", {"a": 1, "b": 2}), *call("add", {"a": 3, "b": 4}, "call_2", 1), finish("tool_calls")),
        reply(text("3, and no more."), finish("stop")),
    )
    response = client.responses.create(model="chat", input="Add twice", tools=[mcp_tool(mcp_server, allowed_tools=["add"])], max_tool_calls=1)
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [call.status for call in calls] == ["completed", "failed"]
    assert response.output_text == "3, and no more."
    assert offered(mock.requests[1]) == []  # no more tools offered


def test_max_turns_ends_a_model_that_loops(client, mock, mcp_server):
    looping = [reply(*call("add", {"a": n, "b": n}, f"call_{n}"), finish("tool_calls")) for n in range(3)]
    mock.script(*looping, reply(text("Enough."), finish("stop")))
    response = client.responses.create(model="chat", input="Loop", tools=[mcp_tool(mcp_server, allowed_tools=["add"])])
    assert len([item for item in response.output if item.type == "mcp_call"]) == 3
    assert response.output_text == "Enough."
    assert len(mock.requests) == 4 and offered(mock.requests[3]) == []  # max_turns = 4


def test_max_output_tokens_counts_every_turn(client, mock, mcp_server):
    mock.script(
        reply(*call("add", {"a": 1, "b": 1}), finish("tool_calls"), usage(10, 30)),
        reply(text("a"), finish("stop"), usage(20, 1)),
    )
    response = client.responses.create(model="chat", input="Hi", tools=[mcp_tool(mcp_server, allowed_tools=["add"])], max_output_tokens=30)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert len(mock.requests) == 1


# --- Web search ---------------------------------------------------------------------------------


def test_web_search_with_sources_and_citations(client, mock, search):
    search.reset()
    search.add("threadline durability", hit("https://docs.example.com/durable", "Durable", "It survives crashes."))
    mock.script(
        reply(*call("web_search", {"query": "threadline durability"}), finish("tool_calls")),
        reply(text("It survives crashes [1]."), finish("stop")),
    )
    tool = {"type": "web_search", "filters": {"allowed_domains": ["example.com"]}}
    response = client.responses.create(model="chat", input="Is it durable?", tools=[tool], include=["web_search_call.action.sources"])
    searched, message = response.output
    assert searched.type == "web_search_call" and searched.status == "completed"
    assert searched.action.type == "search" and searched.action.query == "threadline durability"
    assert [source.url for source in searched.action.sources] == ["https://docs.example.com/durable"]
    annotation = message.content[0].annotations[0]
    assert annotation.type == "url_citation" and annotation.url == "https://docs.example.com/durable"
    assert message.content[0].text[annotation.start_index : annotation.end_index] == "[1]"
    assert "https://docs.example.com/durable" in tool_messages(mock.requests[1])[0]["content"]
    # Sources are shown only when asked for.
    assert client.responses.retrieve(response.id).output[0].action.sources is None


def test_web_search_passes_the_user_location(client, mock, search):
    search.reset()
    mock.script(reply(*call("web_search", {"query": "bakeries"}), finish("tool_calls")), reply(text("None found."), finish("stop")))
    tool = {"type": "web_search", "user_location": {"type": "approximate", "country": "DE", "city": "Berlin"}, "search_context_size": "low"}
    response = client.responses.create(model="chat", input="Bakeries near me?", tools=[tool])
    assert response.output[0].status == "completed" and response.output_text == "None found."
    assert search.requests[-1].params["language"] == "de-DE"
    assert "found no results" in tool_messages(mock.requests[1])[0]["content"]


def test_web_search_events(http, mock, search):
    search.reset()
    search.add("weather", hit("https://example.org/w", "Weather", "Sunny."))
    mock.script(reply(*call("web_search", {"query": "weather"}), finish("tool_calls")), reply(text("Sunny."), finish("stop")))
    events = sse_events(http, "/v1/responses", {"model": "chat", "input": "Weather?", "stream": True, "tools": [{"type": "web_search_preview"}]})
    types = [event["type"] for event in events]
    start = types.index("response.web_search_call.in_progress")
    assert types[start - 1 : start + 4] == [
        "response.output_item.added",
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
        "response.output_item.done",
    ]


# --- Client-side tools alongside --------------------------------------------------------------


def test_a_namespaced_function_call_comes_back_with_its_namespace(client, mock):
    namespace = {
        "type": "namespace",
        "name": "multi_agent_v1",
        "description": "Agents",
        "tools": [{"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}],
    }
    mock.script(reply(*call("close_agent", {}), finish("tool_calls")))
    response = client.responses.create(model="chat", input="Close it", tools=[namespace])
    item = response.output[0].model_dump()
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "close_agent", "multi_agent_v1")
    mock.script(reply(text("Closed."), finish("stop")))
    output = {"type": "function_call_output", "call_id": item["call_id"], "output": "closed"}
    done = client.responses.create(model="chat", previous_response_id=response.id, input=[output], tools=[namespace])
    assert done.output_text == "Closed."


def test_a_client_call_beside_a_server_call_ends_the_response(client, mock, mcp_server):
    function = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    mock.script(reply(*call("add", {"a": 1, "b": 1}), *call("lookup", {}, "call_2", 1), finish("tool_calls")))
    response = client.responses.create(model="chat", input="Both", tools=[mcp_tool(mcp_server, allowed_tools=["add"]), function])
    assert [item.type for item in response.output] == ["mcp_list_tools", "mcp_call", "function_call"]
    assert response.output[1].output == "2" and len(mock.requests) == 1


def test_a_custom_tool_round_trip(client, mock):
    tool = {"type": "custom", "name": "run_sql", "description": "Runs SQL.", "format": {"type": "grammar", "syntax": "regex", "definition": "SELECT .+"}}
    mock.script(reply(custom_call(0, id="call_9", name="run_sql", input="SELECT 1"), finish("tool_calls")))
    response = client.responses.create(model="chat", input="Query", tools=[tool])
    item = response.output[0]
    assert (item.type, item.name, item.call_id, item.input) == ("custom_tool_call", "run_sql", "call_9", "SELECT 1")
    offered_tool = mock.requests[0]["tools"][0]["function"]
    assert offered_tool["name"] == "run_sql" and offered_tool["parameters"]["properties"]["input"]["type"] == "string"
    mock.script(reply(text("One row."), finish("stop")))
    output = {"type": "custom_tool_call_output", "call_id": "call_9", "output": "1"}
    done = client.responses.create(model="chat", previous_response_id=response.id, input=[output], tools=[tool])
    assert done.output_text == "One row."
    assert tool_messages(mock.requests[-1]) == [{"role": "tool", "tool_call_id": "call_9", "content": "1"}]


def test_tools_listed_in_an_additional_tools_item_are_offered(client, mock):
    listed = {"type": "additional_tools", "role": "developer", "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]}
    mock.script(reply(*call("lookup", {}), finish("tool_calls")))
    response = client.responses.create(model="chat", input=[listed, {"role": "user", "content": "Look it up"}])
    assert (response.output[0].type, response.output[0].name) == ("function_call", "lookup")
    assert offered(mock.requests[0]) == ["lookup"]
    assert [message["role"] for message in mock.requests[0]["messages"]] == ["user"]



# --- Found in review ----------------------------------------------------------------------------


def test_require_approval_never_frees_only_the_tools_it_names(client, mock, mcp_server):
    tool = mcp_tool(mcp_server, allowed_tools=["add", "echo"], require_approval={"never": {"tool_names": ["echo"]}})
    mock.script(reply(*call("add", {"a": 1, "b": 1}), finish("tool_calls")))
    asked = client.responses.create(model="chat", input="1+1", tools=[tool])
    assert [item.type for item in asked.output] == ["mcp_list_tools", "mcp_approval_request"]
    mock.script(reply(*call("echo", {"text": "free"}), finish("tool_calls")), reply(text("free"), finish("stop")))
    free = client.responses.create(model="chat", input="echo", tools=[tool])
    assert [item.type for item in free.output] == ["mcp_list_tools", "mcp_call", "message"]


def test_a_long_history_with_tool_items_is_counted_as_the_model_reads_it(client, mock, mcp_server):
    tool = mcp_tool(mcp_server, allowed_tools=["add"])
    mock.script(reply(*call("add", {"a": 1, "b": 2}), finish("tool_calls")), reply(text("3"), finish("stop")))
    first = client.responses.create(model="chat", input="word " * 4000, tools=[tool])  # past half the window
    mock.script(reply(text("Still 3."), finish("stop")))
    second = client.responses.create(model="chat", previous_response_id=first.id, input="And now?", tools=[tool])
    assert second.status == "completed" and second.output_text == "Still 3."
    assert tool_messages(mock.requests[-1])[0]["content"] == "3"


def test_a_header_that_cannot_be_sent_is_refused_without_repeating_it(client, mock, mcp_server):
    tool = mcp_tool(mcp_server, headers={"X-Key": "top-secret\nInjected: yes"})
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[tool])
    assert "top-secret" not in json.dumps(refused.value.body)
    assert mock.requests == []


def test_a_denied_approval_sent_back_without_storing_is_told_to_the_model(client, mock, mcp_server):
    tool = mcp_tool(mcp_server, allowed_tools=["increment"], require_approval="always")
    mock.script(reply(*call("increment", {}), finish("tool_calls")))
    asked = client.responses.create(model="chat", input="Count", tools=[tool], store=False)
    request = asked.output[-1].model_dump(mode="json", exclude_none=True)
    mock.script(reply(text("Not counted."), finish("stop")))
    denial = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": False}
    client.responses.create(model="chat", input=[request, denial], tools=[tool], store=False)
    assert "denied" in tool_messages(mock.requests[-1])[-1]["content"]


def test_a_model_that_calls_tools_it_is_no_longer_offered_runs_none(client, mock, mcp_server):
    looping = [reply(*call("add", {"a": n, "b": n}, f"call_{n}"), finish("tool_calls")) for n in range(5)]
    mock.script(*looping)
    response = client.responses.create(model="chat", input="Loop", tools=[mcp_tool(mcp_server, allowed_tools=["add"])])
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [call.status for call in calls] == ["completed"] * 3 + ["failed"]  # max_turns = 4
    assert len(mock.requests) == 4 and response.status == "completed"


def test_allowed_tools_hold_on_every_turn(client, mock, mcp_server):
    function = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}
    choice = {"type": "allowed_tools", "mode": "required", "tools": [{"type": "mcp", "server_label": "calc"}]}
    mock.script(reply(*call("add", {"a": 1, "b": 1}), finish("tool_calls")), reply(text("2"), finish("stop")))
    response = client.responses.create(model="chat", input="1+1", tools=[mcp_tool(mcp_server, allowed_tools=["add"]), function], tool_choice=choice)
    assert response.output_text == "2"
    assert "lookup" not in offered(mock.requests[0]) and "lookup" not in offered(mock.requests[1])


def test_a_server_whose_name_does_not_resolve_is_a_failed_listing(client, mock):
    mock.script(reply(text("No tools."), finish("stop")))
    tool = {"type": "mcp", "server_label": "nowhere", "server_url": "http://no-such-host.invalid/mcp", "require_approval": "never"}
    response = client.responses.create(model="chat", input="Hi", tools=[tool])
    assert response.output[0].type == "mcp_list_tools" and response.output[0].error
    assert response.output_text == "No tools."


def test_tool_choice_can_name_a_custom_tool(client, mock):
    tool = {"type": "custom", "name": "run_sql"}
    mock.script(reply(custom_call(0, id="call_7", name="run_sql", input="SELECT 2"), finish("tool_calls")))
    response = client.responses.create(model="chat", input="Query", tools=[tool], tool_choice={"type": "custom", "name": "run_sql"})
    assert response.output[0].input == "SELECT 2"
    assert mock.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "run_sql"}}
