"""The file_search tool on its own: a call the model makes becomes a file_search_call with
OpenAI's events, the passages found are numbered for the model, and its answer's markers
become file_citation annotations; the call's item in history, in a queued job, and as
`include` shows it.

The searcher here stands in for the vector stores' search (tests/test_file_search.py runs
the real one behind a real server).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import orjson
import pytest

from tests.spec_schemas import validate_event, validate_response
from tests.test_response_events import checked, types
from threadline.backends.base import Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from threadline.config import ToolsSettings
from threadline.errors import APIError
from threadline.jobs.payload import job_payload, read_job
from threadline.jobs.recovery import failed
from threadline.retrieval.embedders import EmbeddingError
from threadline.spec.request import CreateResponseBody
from threadline.spec.response import present, present_event, response_object
from threadline.spec.stream import ResponseEvents, search_queries
from threadline.tools.citations import FileSource, citations
from threadline.tools.model_view import model_view
from threadline.tools.plan import Served, tool_plan
from threadline.tools.search_providers import SearchResult
from threadline.tools.secrets import SecretBox
from threadline.tools.toolbox import Toolbox, ToolServices

SERVED = Served(web_search=False, file_search=True)
TOOL = {"type": "file_search", "vector_store_ids": ["vs_docs"], "max_num_results": 3}


@dataclass
class Passage:
    file_id: str
    filename: str
    score: float
    attributes: dict = field(default_factory=dict)
    content: list = field(default_factory=list)


def passage(file_id: str, filename: str, text: str, score: float = 0.9) -> Passage:
    return Passage(file_id, filename, score, {"team": "core"}, [{"type": "text", "text": text}])


class Searcher:
    """Answers from a fixed list and keeps what it was asked; `fail` makes it raise."""

    def __init__(self, results: list[Passage], fail: bool = False) -> None:
        self.results = results
        self.fail = fail
        self.asked: list[tuple] = []

    async def search(self, project, vector_store_ids, queries, *, filters, max_num_results, ranking_options):
        self.asked.append((project, vector_store_ids, queries, filters, max_num_results, ranking_options))
        if self.fail:
            raise EmbeddingError("the embeddings server is unreachable")
        return self.results


def body(**fields) -> CreateResponseBody:
    return CreateResponseBody.model_validate({"model": "m", "input": "What does the handbook say?", "tools": [TOOL], **fields})


def one_search(searcher: Searcher, answer: str, queries_argument: dict | None = None, **fields) -> tuple[list[dict], dict, Toolbox]:
    """A response in which the model searches once, then answers `answer`: its events
    (checked against both specs), its Response, and the toolbox that ran the search."""
    request = body(**fields)
    plan = tool_plan(request, SERVED)
    builder = ResponseEvents(response_object(request, "m", "auto"))
    events = builder.start()
    toolbox = Toolbox(plan, ToolServices(ToolsSettings(), SecretBox([]), searcher), builder, events.extend, project="alpha")
    arguments = orjson.dumps(queries_argument or {"query": "vacation policy"}).decode()
    events += builder.feed(ToolCallDelta(0, call_id="call_1", name="file_search", arguments=arguments))
    events += builder.end_turn(Finish("tool_calls", Usage(10, 2)))
    (call,) = builder.turn_calls
    assert call.kind == "file_search" and call.server_side
    asyncio.run(toolbox.run(call))
    events += builder.feed(TextDelta(answer))
    events += builder.finish(Finish("stop", Usage(20, 5)))
    events, response = checked(events, builder.response)
    return events, response, toolbox


def test_the_model_is_offered_a_function_with_one_query():
    plan = tool_plan(body(), SERVED)
    (offered,) = plan.model_tools
    assert offered["name"] == "file_search" and offered["parameters"]["required"] == ["query"]
    assert plan.file_search == TOOL


def test_a_search_streams_openai_events_in_order_and_its_passages_are_cited():
    searcher = Searcher([passage("file_a", "handbook.pdf", "Vacation is 25 days."), passage("file_b", "faq.md", "Ask HR.")])
    events, response, toolbox = one_search(searcher, "You get 25 days [1]. Ask HR [2][1].")
    assert searcher.asked == [("alpha", ["vs_docs"], ["vacation policy"], None, 3, None)]
    start = types(events).index("file_search_call.in_progress")
    assert types(events)[start - 1 : start + 4] == [
        "output_item.added",
        "file_search_call.in_progress",
        "file_search_call.searching",
        "file_search_call.completed",
        "output_item.done",
    ]
    assert events[start - 1]["item"] == {"id": events[start]["item_id"], "type": "file_search_call", "status": "in_progress", "queries": ["vacation policy"], "results": None}
    searched, message = response["output"]
    assert searched["id"].startswith("fs_") and searched["status"] == "completed"
    assert searched["results"] == [
        {"file_id": "file_a", "filename": "handbook.pdf", "score": 0.9, "text": "Vacation is 25 days.", "attributes": {"team": "core"}},
        {"file_id": "file_b", "filename": "faq.md", "score": 0.9, "text": "Ask HR.", "attributes": {"team": "core"}},
    ]
    text = message["content"][0]["text"]
    assert message["content"][0]["annotations"] == [
        {"type": "file_citation", "file_id": "file_a", "filename": "handbook.pdf", "index": text.index("[1]")},
        {"type": "file_citation", "file_id": "file_b", "filename": "faq.md", "index": text.index("[2]")},
        {"type": "file_citation", "file_id": "file_a", "filename": "handbook.pdf", "index": text.index("[2]") + 3},
    ]
    # The model read the passages numbered, with their files' names.
    read = toolbox.outputs[searched["id"]]
    assert "[1] handbook.pdf\nVacation is 25 days." in read and "[2] faq.md\nAsk HR." in read


def test_results_are_shown_only_when_include_asks_for_them():
    events, response, _ = one_search(Searcher([passage("file_a", "a.txt", "A.")]), "A [1].")
    assert present(response, ())["output"][0]["results"] is None
    assert present(response, ("file_search_call.results",))["output"][0]["results"][0]["text"] == "A."
    done = next(event for event in events if event["type"] == "response.output_item.done" and event["item"]["type"] == "file_search_call")
    assert present_event(done, ())["item"]["results"] is None
    for event in events:
        validate_event(present_event(event, ()))
    validate_response(present(response, ()))


def test_a_failed_search_fails_its_call_and_the_model_is_told():
    events, response, toolbox = one_search(Searcher([], fail=True), "I could not search the files.")
    searched = response["output"][0]
    assert searched["status"] == "failed" and searched["results"] is None
    assert "file_search_call.completed" not in types(events)
    assert "failed" in toolbox.outputs[searched["id"]]
    assert response["output"][1]["content"][0]["annotations"] == []


def test_nothing_found_is_a_completed_search_with_no_results():
    _, response, toolbox = one_search(Searcher([]), "Nothing [1].")
    searched = response["output"][0]
    assert searched["status"] == "completed" and searched["results"] == []
    assert "found nothing" in toolbox.outputs[searched["id"]]
    assert response["output"][1]["content"][0]["annotations"] == []  # [1] names no passage


def test_filters_and_ranking_options_reach_the_searcher():
    tool = {
        **TOOL,
        "filters": {"type": "eq", "key": "team", "value": "core"},
        "ranking_options": {"ranker": "auto", "score_threshold": 0.5, "hybrid_search": {"embedding_weight": 1, "text_weight": 0.5}},
    }
    searcher = Searcher([])
    one_search(searcher, "None.", tools=[tool])
    (_, _, _, filters, _, ranking) = searcher.asked[0]
    assert filters == tool["filters"] and ranking == tool["ranking_options"]


def test_queries_are_read_however_the_model_wrote_them():
    assert search_queries('{"query": "a"}') == ["a"]
    assert search_queries('{"queries": ["a", "b"]}') == ["a", "b"]
    assert search_queries("vacation") == ["vacation"]
    assert search_queries('{"q": 1}') == ['{"q": 1}']


def test_malformed_filters_are_refused_naming_the_tool():
    tool = {**TOOL, "filters": {"type": "like", "key": "team", "value": "core"}}
    with pytest.raises(APIError) as refused:
        tool_plan(body(tools=[tool]), SERVED)
    assert refused.value.status == 400 and refused.value.param.startswith("tools[0].filters")


def test_ranking_options_the_search_would_refuse_are_refused_up_front():
    tool = {**TOOL, "ranking_options": {"hybrid_search": {"embedding_weight": 0, "text_weight": 0}}}
    with pytest.raises(APIError) as refused:
        tool_plan(body(tools=[tool]), SERVED)
    assert refused.value.param == "tools[0].ranking_options.hybrid_search"


def test_file_search_is_refused_where_no_vector_search_is_configured():
    with pytest.raises(APIError) as refused:
        tool_plan(body(), Served())
    assert refused.value.status == 400 and refused.value.param == "tools[0].type"


def test_a_second_file_search_tool_is_refused():
    with pytest.raises(APIError) as refused:
        tool_plan(body(tools=[TOOL, {**TOOL, "vector_store_ids": ["vs_other"]}]), SERVED)
    assert refused.value.param == "tools[1]"


def test_in_history_a_search_is_the_call_and_output_the_model_made_and_read():
    _, response, _ = one_search(Searcher([passage("file_a", "handbook.pdf", "Vacation is 25 days.")]), "25 days [1].")
    plan = tool_plan(body(), SERVED)
    call, output, message = model_view(response["output"], plan)
    assert (call["type"], call["name"], orjson.loads(call["arguments"])) == ("function_call", "file_search", {"query": "vacation policy"})
    assert output["call_id"] == call["call_id"] and "handbook.pdf" in output["output"] and "Vacation is 25 days." in output["output"]
    assert message["type"] == "message"
    failed = {"id": "fs_1", "type": "file_search_call", "status": "failed", "queries": ["x"], "results": None}
    assert model_view([failed], plan)[1]["output"] == "The file search failed."


def test_a_queued_job_keeps_its_file_search():
    plan = tool_plan(body(), SERVED)
    request = ModelRequest(model="m", input=[], tools=plan.model_tools)
    payload = orjson.loads(orjson.dumps(job_payload(request, [], plan, SecretBox([]))))
    assert payload["version"] == 4
    assert read_job(payload, SecretBox([])).tools.file_search == TOOL
    # A job without one is written as before, for processes that know no file_search.
    assert job_payload(request, [], tool_plan(body(tools=[]), SERVED), SecretBox([]))["version"] == 3


def test_web_and_file_results_share_one_numbering():
    sources = [SearchResult("https://example.com/a", "A", "a"), FileSource("file_b", "b.md", "B.")]
    text = "Both [1, 2]."
    file, url = citations(text, sources)  # in the order they appear: the file's at the marker's start
    assert url["type"] == "url_citation" and text[url["start_index"] : url["end_index"]] == "1"
    assert file == {"type": "file_citation", "file_id": "file_b", "filename": "b.md", "index": text.index("[")}


def test_a_search_left_running_by_a_stopped_process_is_incomplete():
    running = {"id": "fs_1", "type": "file_search_call", "status": "in_progress", "queries": ["x"], "results": None}
    recovered = failed({"id": "resp_1", "status": "in_progress", "output": [running]}, "stopped")
    assert recovered["output"][0]["status"] == "incomplete"
    validate_event({"type": "response.output_item.done", "sequence_number": 0, "output_index": 0, "item": recovered["output"][0]})
