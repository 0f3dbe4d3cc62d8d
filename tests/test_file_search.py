"""The hosted file_search tool through the official SDK: a model on the mock upstream searches
a vector store of an uploaded file, and its answer cites the file.

Files are uploaded and ingested through the API (Threadline's own embedder, chunks and
index); every test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import database_rows, sse_events, wait_for
from tests.mock_upstream import finish, reply, text, tool_call

HANDBOOK = """# Employee handbook

## Vacation
Every employee gets 25 days of paid vacation a year. Unused days carry over until March.

## Equipment
Laptops are replaced every three years. Ask the IT desk on the second floor.
"""


@pytest.fixture(scope="module")
def server(start_server, upstream):
    return start_server(
        {
            "auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]},
            "models": [{"id": "chat", "provider": "openai-chat", "base_url": upstream.base_url, "context_window": 8192}],
            "workers": FAST_WORKERS,
        }
    )


@pytest.fixture(scope="module")
def handbook(server) -> tuple[str, str]:
    """Project alpha's vector store holding the handbook, ingested: (vector store id, file id)."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alpha"])
    uploaded = client.files.create(file=("handbook.md", HANDBOOK.encode(), "text/markdown"), purpose="assistants")
    store = client.vector_stores.create(name="Handbook")
    attached = client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=uploaded.id, attributes={"team": "people"}, poll_interval_ms=100)
    assert attached.status == "completed", attached.last_error
    return store.id, uploaded.id


def file_search(vector_store_id: str, **fields) -> dict:
    return {"type": "file_search", "vector_store_ids": [vector_store_id], **fields}


def searches(query: str, answer: str) -> list:
    """The model's two turns: it searches for `query`, then answers `answer`."""
    return [
        reply(tool_call(0, id="call_1", name="file_search", arguments=json.dumps({"query": query})), finish("tool_calls")),
        reply(text(answer), finish("stop")),
    ]


def tool_output(body: dict) -> str:
    (message,) = [message for message in body["messages"] if message["role"] == "tool"]
    return message["content"]


def test_an_answer_from_a_file_cites_it(client, mock, handbook):
    store_id, file_id = handbook
    mock.script(*searches("vacation days", "You get 25 days a year [1]."))
    response = client.responses.create(model="chat", input="How much vacation do I get?", tools=[file_search(store_id)])
    assert response.status == "completed"
    searched, message = response.output
    assert searched.type == "file_search_call" and searched.id.startswith("fs_")
    assert searched.status == "completed" and searched.queries == ["vacation days"]
    assert searched.results is None  # not asked for
    (annotation,) = message.content[0].annotations
    assert (annotation.type, annotation.file_id, annotation.filename) == ("file_citation", file_id, "handbook.md")
    assert annotation.index == response.output_text.index("[1]")
    # The model read the passage, numbered, under its file's name.
    read = tool_output(mock.requests[1])
    assert "[1] handbook.md" in read and "25 days of paid vacation" in read
    assert [tool["function"]["name"] for tool in mock.requests[0]["tools"]] == ["file_search"]
    # The response echoes the tool as given.
    assert response.tools[0].type == "file_search" and response.tools[0].vector_store_ids == [store_id]


def test_results_are_included_when_asked_for(client, mock, handbook):
    store_id, file_id = handbook
    mock.script(*searches("vacation", "25 days [1]."))
    response = client.responses.create(
        model="chat", input="Vacation?", tools=[file_search(store_id, max_num_results=2)], include=["file_search_call.results"]
    )
    results = response.output[0].results
    assert results and len(results) <= 2
    best = results[0]
    assert (best.file_id, best.filename, best.attributes) == (file_id, "handbook.md", {"team": "people"})
    assert "25 days" in best.text and 0 <= best.score <= 1
    assert client.responses.retrieve(response.id).output[0].results is None
    shown = client.responses.retrieve(response.id, include=["file_search_call.results"]).output[0].results
    assert [result.text for result in shown] == [result.text for result in results]


def test_events_stream_in_openai_order(http, mock, handbook):
    store_id, file_id = handbook
    mock.script(*searches("laptops", "Every three years [1]."))
    body = {"model": "chat", "input": "Laptops?", "stream": True, "tools": [file_search(store_id)], "include": ["file_search_call.results"]}
    events = sse_events(http, "/v1/responses", body)  # each checked against both specifications
    types = [event["type"] for event in events]
    start = types.index("response.file_search_call.in_progress")
    assert types[start - 1 : start + 4] == [
        "response.output_item.added",
        "response.file_search_call.in_progress",
        "response.file_search_call.searching",
        "response.file_search_call.completed",
        "response.output_item.done",
    ]
    added, done = events[start - 1]["item"], events[start + 3]["item"]
    assert added["type"] == "file_search_call" and added["status"] == "in_progress" and added["results"] is None
    assert done["status"] == "completed" and done["queries"] == ["laptops"] and done["results"][0]["file_id"] == file_id
    (annotation,) = [event["annotation"] for event in events if event["type"] == "response.output_text.annotation.added"]
    assert annotation == {"type": "file_citation", "file_id": file_id, "filename": "handbook.md", "index": len("Every three years ")}
    assert types[-1] == "response.completed"


def test_filters_narrow_the_search_to_matching_files(client, mock, handbook):
    store_id, _ = handbook
    mock.script(*searches("vacation", "I found nothing."))
    tool = file_search(store_id, filters={"type": "eq", "key": "team", "value": "sales"})
    response = client.responses.create(model="chat", input="Vacation?", tools=[tool], include=["file_search_call.results"])
    assert response.output[0].status == "completed" and response.output[0].results == []
    assert "found nothing" in tool_output(mock.requests[1])
    assert response.output[1].content[0].annotations == []


@pytest.mark.parametrize("whose", ["unknown", "another project's"])
def test_a_vector_store_not_the_projects_is_a_400_and_nothing_is_stored(client, beta_client, row_counts, handbook, whose):
    store_id, _ = handbook
    other = "vs_unknown" if whose == "unknown" else beta_client.vector_stores.create(name="Beta's").id
    before = row_counts()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[{"type": "file_search", "vector_store_ids": [store_id, other]}])
    error = refused.value.body
    assert error["param"] == "tools[0].vector_store_ids" and other in error["message"] and store_id not in error["message"]
    assert row_counts() == before


def test_a_search_makes_the_vector_store_active(client, server, mock, handbook):
    store_id, _ = handbook
    database_rows(server.database_url, "UPDATE vector_stores SET last_active_at = 1 WHERE id = {}", store_id)
    mock.script(*searches("vacation", "25 days [1]."))
    client.responses.create(model="chat", input="Vacation?", tools=[file_search(store_id)])
    assert client.vector_stores.retrieve(store_id).last_active_at > 1


def test_an_expired_vector_store_is_a_400(client, server, row_counts):
    store = client.vector_stores.create(name="Old", expires_after={"anchor": "last_active_at", "days": 1})
    database_rows(server.database_url, "UPDATE vector_stores SET expires_at = 1 WHERE id = {}", store.id)
    before = row_counts()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[file_search(store.id)])
    assert refused.value.body["param"] == "tools[0].vector_store_ids" and "expired" in refused.value.body["message"]
    assert row_counts() == before


def test_malformed_filters_are_a_400_and_nothing_is_stored(client, row_counts, handbook):
    store_id, _ = handbook
    before = row_counts()
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Hi", tools=[file_search(store_id, filters={"type": "like", "key": "team", "value": "x"})])
    assert refused.value.body["param"].startswith("tools[0].filters")
    assert row_counts() == before


def test_a_background_response_searches_and_cites(client, mock, handbook):
    store_id, file_id = handbook
    mock.script(*searches("vacation carry over", "Until March [1]."))
    queued = client.responses.create(model="chat", input="Do days carry over?", tools=[file_search(store_id)], background=True)
    response = wait_for(client, queued.id)
    assert response.status == "completed", response.error
    assert response.output[0].type == "file_search_call" and response.output[0].status == "completed"
    assert response.output[1].content[0].annotations[0].file_id == file_id
    assert "carry over" in tool_output(mock.requests[1])


def test_without_storing_the_search_runs_and_nothing_is_kept(client, mock, handbook):
    store_id, file_id = handbook
    mock.script(*searches("equipment", "Ask the IT desk [1]."))
    response = client.responses.create(model="chat", input="Who replaces laptops?", tools=[file_search(store_id)], store=False)
    assert response.output[1].content[0].annotations[0].file_id == file_id
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_a_later_turn_reads_the_earlier_search(client, mock, handbook):
    store_id, _ = handbook
    mock.script(*searches("vacation", "25 days [1]."), reply(text("Yes."), finish("stop")))
    first = client.responses.create(model="chat", input="Vacation?", tools=[file_search(store_id)])
    client.responses.create(model="chat", input="Sure?", previous_response_id=first.id, tools=[file_search(store_id)])
    history = mock.requests[2]["messages"]
    call = next(message for message in history if message.get("tool_calls"))
    assert call["tool_calls"][0]["function"]["name"] == "file_search"
    assert "25 days of paid vacation" in next(message for message in history if message["role"] == "tool")["content"]


def test_tool_choice_file_search_makes_the_model_search(client, mock, handbook):
    store_id, _ = handbook
    mock.script(*searches("vacation", "25 days [1]."))
    response = client.responses.create(model="chat", input="Vacation?", tools=[file_search(store_id)], tool_choice={"type": "file_search"})
    assert response.tool_choice.type == "file_search"
    assert mock.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "file_search"}}
    assert mock.requests[1].get("tool_choice") in (None, "auto")  # required of the first turn only
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="chat", input="Vacation?", tool_choice={"type": "file_search"})
    assert refused.value.body["param"] == "tool_choice.type"
