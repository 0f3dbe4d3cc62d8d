"""Compaction through the official SDK, on SQLite and PostgreSQL: automatic compaction over a
`context_management` threshold, a `compaction_trigger` item, POST /v1/responses/compact, and
compaction items sent back as input by stateless clients.

The scripted model answers "Reply to: <newest user text>", so its summary of a transcript is
that transcript (cut to the summary's budget): what it saw is what the summary holds.
"""

from __future__ import annotations

import base64

import httpx
import openai
import pytest

from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import wait_for
from tests.spec_schemas import validate
from threadline.backends.base import ModelRequest
from threadline.backends.scripted import estimate_tokens
from threadline.engine.summaries import SUMMARY_HEADER, SUMMARY_INSTRUCTIONS
from threadline.engine.sealed_items import open_content
from threadline.tools.secrets import SecretBox

ENCRYPTION_KEY = base64.b64encode(b"compaction-tests-key-32-bytes!!!").decode()
WINDOW = 2048
THRESHOLD = 1000
COMPACTION = [{"type": "compaction", "compact_threshold": THRESHOLD}]
PADDING = "The rest of this message is padding to make it long. " * 55  # about 750 tokens


def turn_text(turn: int) -> str:
    return f"Turn {turn}: note number {turn} is about topic {turn * 7}. " + "filler " * 20


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    record = tmp_path_factory.mktemp("compaction") / "model_requests.jsonl"
    record.touch()
    running = start_server(
        {
            "auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]},
            "security": {"encryption_keys": [ENCRYPTION_KEY]},
            "models": [
                {"id": "scripted", "provider": "scripted", "context_window": WINDOW, "options": {"record_to": str(record)}},
                {"id": "failing", "provider": "scripted", "context_window": WINDOW, "options": {"script": [{"fail": {"message": "The model is down."}}]}},
            ],
            "prompts": [{"id": "pmpt_guide", "instructions": "You guide {{name}}.", "input": [{"role": "user", "content": "Template: my name is {{name}}."}]}],
            "workers": FAST_WORKERS,
        }
    )
    running.model_requests_path = record
    return running


def tokens(request: dict) -> int:
    """The scripted model's count of a request it received."""
    return estimate_tokens(ModelRequest(model=request["model"], input=request["input"], instructions=request["instructions"]))


def texts(request: dict) -> list[str]:
    """The text of each message the model read, in order."""
    texts = []
    for item in request["input"]:
        content = item.get("content")
        texts.append(content if isinstance(content, str) else "".join(part.get("text", "") for part in content or []))
    return texts


def answered(requests: list[dict]) -> list[dict]:
    return [request for request in requests if request["instructions"] != SUMMARY_INSTRUCTIONS]


def summary_calls(requests: list[dict]) -> list[dict]:
    return [request for request in requests if request["instructions"] == SUMMARY_INSTRUCTIONS]


def opened(item) -> dict:
    """What a compaction item holds, opened with the server's key."""
    return open_content(SecretBox([ENCRYPTION_KEY]), item.model_dump(), "item")


def as_input(items) -> list[dict]:
    return [item.model_dump(exclude_none=True) for item in items]


def test_a_300_turn_conversation_stays_within_the_window_and_keeps_every_item(client, model_requests):
    conversation = client.conversations.create()
    compactions = []
    for turn in range(300):
        response = client.responses.create(model="scripted", conversation=conversation.id, input=turn_text(turn), context_management=COMPACTION)
        assert response.status == "completed"
        kinds = [item.type for item in response.output]
        assert kinds in (["message"], ["compaction", "message"]), kinds
        assert response.output[-1].content[0].text == f"Reply to: {turn_text(turn)}"
        if kinds[0] == "compaction":
            compactions.append(turn)
            assert response.usage.input_tokens > THRESHOLD // 2  # the summary's call counts in the usage

    requests = model_requests()
    # Without compaction, the conversation would fill the window many times over.
    assert len(compactions) >= 20
    assert all(tokens(request) <= WINDOW for request in requests)
    turns = answered(requests)
    assert len(turns) == 300 and len(summary_calls(requests)) == len(compactions)
    for turn, request in enumerate(turns):
        seen = texts(request)
        assert seen[-1] == turn_text(turn)
        if turn:
            # The turn before is always there to read (kept, or in the summary).
            assert any(f"Turn {turn - 1}:" in text for text in seen)
        if turn in compactions:
            assert seen[0].startswith(SUMMARY_HEADER) and tokens(request) < THRESHOLD
    # Compaction changes what the model sees, never what the conversation holds.
    items = list(client.conversations.items.list(conversation.id, order="asc", limit=100))
    assert [item.content[0].text for item in items if item.type == "message" and item.role == "user"] == [turn_text(turn) for turn in range(300)]
    assert [item.content[0].text for item in items if item.type == "message" and item.role == "assistant"] == [
        f"Reply to: {turn_text(turn)}" for turn in range(300)
    ]
    assert len([item for item in items if item.type == "compaction"]) == len(compactions)
    assert len(items) == 600 + len(compactions)


def test_a_fact_from_the_turn_before_survives_compaction_in_the_summary(client, model_requests):
    first = client.responses.create(model="scripted", input="Remember this: the vault code is 7312. " + PADDING, context_management=COMPACTION)
    assert [item.type for item in first.output] == ["message"]  # one turn, under the threshold
    second = client.responses.create(
        model="scripted", previous_response_id=first.id, input="What is the vault code?", context_management=COMPACTION
    )
    assert [item.type for item in second.output] == ["compaction", "message"]
    assert second.output[0].id.startswith("cmp_") and second.output[0].encrypted_content

    summarised, request = model_requests()[-2:]
    assert summarised["instructions"] == SUMMARY_INSTRUCTIONS
    assert "User: Remember this: the vault code is 7312." in texts(summarised)[0]
    seen = texts(request)
    assert len(seen) == 2 and "the vault code is 7312" in seen[0] and seen[1] == "What is the vault code?"
    sealed = opened(second.output[0])
    assert "7312" in sealed["summary"] and [item["content"][0]["text"] for item in sealed["kept"]] == ["What is the vault code?"]

    # The chain is read back only as far as its compaction item.
    client.responses.create(model="scripted", previous_response_id=second.id, input="And again?")
    assert texts(model_requests()[-1]) == seen + ["Reply to: What is the vault code?", "And again?"]


def test_a_streamed_compaction_item_comes_first(client, http, model_requests):
    first = client.responses.create(model="scripted", input="Remember: my cat is called Miso. " + PADDING)
    stream = client.responses.create(
        model="scripted", previous_response_id=first.id, input="What is my cat called?", context_management=COMPACTION, stream=True
    )
    events = list(stream)
    kinds = [(event.type, getattr(event, "output_index", None)) for event in events]
    assert kinds[:4] == [("response.created", None), ("response.in_progress", None), ("response.output_item.added", 0), ("response.output_item.done", 0)]
    assert events[2].item.type == "compaction" and events[3].item.encrypted_content
    final = events[-1].response
    assert final.status == "completed" and [item.type for item in final.output] == ["compaction", "message"]
    stored = client.responses.retrieve(final.id)
    assert stored.output[0].id == events[3].item.id and stored.output[0].encrypted_content == events[3].item.encrypted_content


def test_a_background_response_compacts_as_it_runs(client, model_requests):
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "Remember: the port is 8443. " + PADDING * 2}])
    queued = client.responses.create(
        model="scripted", conversation=conversation.id, input="Which port?", context_management=COMPACTION, background=True
    )
    done = wait_for(client, queued.id)
    assert done.status == "completed" and [item.type for item in done.output] == ["compaction", "message"]
    assert "the port is 8443" in texts(model_requests()[-1])[0]


def test_a_stateless_client_sends_the_compaction_item_back(client, model_requests):
    history: list[dict] = []
    for turn in range(14):
        history.append({"type": "message", "role": "user", "content": turn_text(turn)})
        response = client.responses.create(model="scripted", input=history, store=False, context_management=COMPACTION)
        history += as_input(response.output)
    newest = max(index for index, item in enumerate(history) if item["type"] == "compaction")
    assert all(tokens(request) <= WINDOW for request in model_requests())

    # OpenAI's advice holds: the items before the newest compaction item may be dropped.
    question = {"type": "message", "role": "user", "content": "What now?"}
    client.responses.create(model="scripted", input=history + [question], store=False)
    client.responses.create(model="scripted", input=history[newest:] + [question], store=False)
    whole, pruned = model_requests()[-2:]
    assert texts(whole) == texts(pruned)
    assert texts(whole)[0].startswith(SUMMARY_HEADER) and texts(whole)[-1] == "What now?"
    assert "Turn 0:" not in "".join(texts(whole)[1:])  # the oldest turns only in the summary


def test_a_tampered_or_foreign_compaction_item_is_refused_naming_it(client, row_counts):
    compacted = client.responses.compact(model="scripted", input=[{"role": "user", "content": turn_text(0)}, {"role": "user", "content": turn_text(1)}])
    item = compacted.output[-1].model_dump()
    sealed = item["encrypted_content"]
    tampered = {**item, "encrypted_content": sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]}
    foreign = {"type": "compaction", "encrypted_content": "gAAAAABpAnotoursatall"}
    before = row_counts()
    for index, bad in ((1, tampered), (0, foreign)):
        items = [{"role": "user", "content": "hello"}, bad] if index else [bad]
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="scripted", input=items + [{"role": "user", "content": "Go on."}])
        error = refused.value.body
        assert refused.value.status_code == 400 and error["code"] == "invalid_encrypted_content"
        assert error["param"] == f"input[{index}].encrypted_content"
    assert row_counts() == before


def test_a_conversation_takes_only_compaction_items_this_server_can_read_back(client, row_counts):
    compacted = client.responses.compact(model="scripted", input=[{"role": "user", "content": turn_text(0)}, {"role": "user", "content": turn_text(1)}])
    item = compacted.output[-1].model_dump()
    sealed = item["encrypted_content"]
    tampered = {**item, "encrypted_content": sealed[:20] + ("A" if sealed[20] != "A" else "B") + sealed[21:]}
    conversation = client.conversations.create()
    before = row_counts()
    for bad, param in ((tampered, "items[1].encrypted_content"), ({"type": "compaction_trigger"}, "items[1].type")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.conversations.items.create(conversation.id, items=[{"type": "message", "role": "user", "content": "hello"}, bad])
        assert refused.value.status_code == 400 and refused.value.body["param"] == param
    assert row_counts() == before
    added = client.conversations.items.create(conversation.id, items=[item])
    assert [entry.type for entry in added.data] == ["compaction"]


def test_the_compact_endpoint_compacts_input_a_chain_or_a_conversation(client, http, model_requests, row_counts):
    items = []
    for turn in range(16):
        items += [{"role": "user", "content": turn_text(turn)}, {"role": "assistant", "content": f"Reply to: {turn_text(turn)}"}]
    before = row_counts()
    answer = http.post("/v1/responses/compact", json={"model": "scripted", "input": items})
    assert answer.status_code == 200
    validate(answer.json(), "CompactResource")
    compacted = client.responses.compact(model="scripted", input=items)
    assert compacted.object == "response.compaction" and compacted.usage.output_tokens > 0
    *kept, item = compacted.output
    assert item.type == "compaction" and item.id.startswith("cmp_")
    assert kept and kept[0].role == "user" and [entry.content[0].text for entry in kept] == [entry["content"] for entry in items[-len(kept) :]]
    assert row_counts() == before  # nothing stored
    assert tokens(model_requests()[-1]) <= WINDOW

    # The output goes on as the input of the next request.
    client.responses.create(model="scripted", input=as_input(compacted.output) + [{"role": "user", "content": "Next?"}], store=False)
    seen = texts(model_requests()[-1])
    assert seen[0].startswith(SUMMARY_HEADER) and "Turn 0:" in seen[0]
    assert seen[1:] == [entry["content"] for entry in items[-len(kept) :]] + ["Next?"]

    # A chain, and a conversation.
    first = client.responses.create(model="scripted", input="Remember: the colour is teal.")
    second = client.responses.create(model="scripted", previous_response_id=first.id, input="And the shape is a hexagon.")
    from_chain = client.responses.compact(model="scripted", previous_response_id=second.id)
    assert [entry.type for entry in from_chain.output][-1] == "compaction"
    assert "the colour is teal" in opened(from_chain.output[-1])["summary"]
    conversation = client.conversations.create(items=[{"role": "user", "content": "Remember: the colour is teal."}, {"role": "user", "content": "Go."}])
    from_conversation = client.responses.compact(model="scripted", extra_body={"conversation": conversation.id})
    assert "the colour is teal" in opened(from_conversation.output[-1])["summary"]
    assert len(list(client.conversations.items.list(conversation.id))) == 2


def test_a_compaction_trigger_compacts_a_conversation_now(client, http, model_requests):
    conversation = client.conversations.create(items=[{"role": "user", "content": "Remember: the bridge is closed on Mondays."}])
    client.responses.create(model="scripted", conversation=conversation.id, input="Noted?")
    triggered = client.responses.create(model="scripted", conversation=conversation.id, input=[{"type": "compaction_trigger"}])
    # The model summarises and does not answer: the compaction item is the whole output.
    assert triggered.status == "completed" and [item.type for item in triggered.output] == ["compaction"]
    assert summary_calls(model_requests()[-1:])
    client.responses.create(model="scripted", conversation=conversation.id, input="When is the bridge closed?")
    seen = texts(model_requests()[-1])
    assert "the bridge is closed on Mondays" in seen[0] and seen[-1] == "When is the bridge closed?"
    # The trigger asked for compaction; it is no item of the conversation, nor of the response's input.
    listed = http.get(f"/v1/conversations/{conversation.id}/items", params={"order": "asc"}).json()
    validate(listed, "ConversationItemList")
    assert [item["type"] for item in listed["data"]] == ["message", "message", "message", "compaction", "message", "message"]
    assert client.responses.input_items.list(triggered.id).data == []


def test_an_agent_run_of_tool_calls_is_compacted_between_calls_never_within_one(client, model_requests):
    # As Codex sends it: one user message, then the agent's calls and their outputs, statelessly.
    tools = [{"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}}]
    history: list[dict] = [{"type": "message", "role": "user", "content": "Fix the failing test."}]
    for call in range(8):
        history.append({"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": f"I read file {call}."}]})
        history.append({"type": "function_call", "call_id": f"call_{call}", "name": "read_file", "arguments": "{}"})
        history.append({"type": "function_call_output", "call_id": f"call_{call}", "output": f"File {call}: " + PADDING})
    response = client.responses.create(model="scripted", input=history, tools=tools, store=False, context_management=COMPACTION)
    assert response.status == "completed" and [item.type for item in response.output] == ["compaction", "message"]

    summarised, request = model_requests()[-2:]
    assert summarised["instructions"] == SUMMARY_INSTRUCTIONS and tokens(request) <= WINDOW
    kinds = [item.get("type", "message") for item in request["input"]]
    # The user's task is in the summary, in their own words.
    assert kinds[0] == "message" and texts(request)[0].startswith(SUMMARY_HEADER) and "Fix the failing test." in texts(request)[0]
    # What is kept begins with a turn of the model: its reasoning, its call, then the call's output.
    assert kinds[1:] == ["reasoning", "function_call", "function_call_output"]
    assert request["input"][2]["call_id"] == request["input"][3]["call_id"] == "call_7"
    kept = opened(response.output[0])["kept"]
    assert [item["type"] for item in kept] == ["reasoning", "function_call", "function_call_output"]


def test_a_prompt_templates_messages_stay_in_front_of_a_compacted_context(client, model_requests):
    prompt = {"id": "pmpt_guide", "variables": {"name": "Ada"}}
    first = client.responses.create(model="scripted", prompt=prompt, input="Remember: the vault code is 7312. " + PADDING)
    asked = {"model": "scripted", "prompt": prompt, "previous_response_id": first.id, "input": "What is the vault code?", "context_management": COMPACTION}
    streamed = client.responses.create(**asked)
    queued = client.responses.create(**asked, background=True)
    for response in (streamed, wait_for(client, queued.id)):
        assert [item.type for item in response.output] == ["compaction", "message"]
    requests = model_requests()
    for summarised in summary_calls(requests):
        # The template's messages are no part of the conversation: never summarised.
        assert "Template:" not in texts(summarised)[0] and "the vault code is 7312" in texts(summarised)[0]
    for request in answered(requests)[1:]:
        seen = texts(request)
        assert request["instructions"] == "You guide Ada." and seen[0] == "Template: my name is Ada."
        assert seen[1].startswith(SUMMARY_HEADER) and seen[2:] == ["What is the vault code?"]
    # And on the next turn of the chain, once, still in front.
    client.responses.create(model="scripted", prompt=prompt, previous_response_id=streamed.id, input="Thanks.")
    seen = texts(model_requests()[-1])
    assert seen[0] == "Template: my name is Ada." and seen[1].startswith(SUMMARY_HEADER) and seen.count("Template: my name is Ada.") == 1


def test_a_failing_summary_call_fails_the_response(client, http):
    conversation = client.conversations.create(items=[{"role": "user", "content": "Remember: the gate is blue."}, {"role": "user", "content": "Go."}])
    stream = client.responses.create(model="failing", conversation=conversation.id, input=[{"type": "compaction_trigger"}], stream=True)
    events = list(stream)
    assert [event.type for event in events] == ["response.created", "response.in_progress", "response.failed"]
    assert [event.sequence_number for event in events] == [0, 1, 2]
    failed = client.responses.retrieve(events[-1].response.id)
    assert failed.status == "failed" and failed.error.code == "server_error" and failed.error.message == "The model is down."
    assert failed.output == []
    # The conversation gained no compaction item.
    assert [item.type for item in client.conversations.items.list(conversation.id)] == ["message", "message"]
    answer = http.post("/v1/responses/compact", json={"model": "failing", "input": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    assert answer.status_code == 500 and answer.json()["error"]["message"] == "The model is down."


def test_bad_compaction_requests_are_refused(client):
    cases = [
        ({"context_management": [{"type": "pruning"}]}, "context_management[0].type"),
        ({"context_management": [{"type": "compaction", "compact_threshold": 10}]}, "context_management[0].compact_threshold"),
        ({"input": [{"type": "compaction_trigger"}, {"role": "user", "content": "hi"}]}, "input[0]"),
    ]
    for fields, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(**{"model": "scripted", "input": "hi", **fields})
        assert refused.value.body["param"] == param


def test_a_server_without_configured_keys_compacts_under_the_key_it_generated(start_server):
    keyless = start_server({"models": [{"id": "scripted", "provider": "scripted"}]})
    with httpx.Client(base_url=keyless.url, timeout=30) as http:
        history = [{"role": "user", "content": "The ferry leaves at nine."}, {"role": "assistant", "content": "Noted."}]
        answer = http.post("/v1/responses", json={"model": "scripted", "store": False, "input": [*history, {"type": "compaction_trigger"}]})
        assert answer.status_code == 200, answer.text
        [item] = answer.json()["output"]
        assert item["type"] == "compaction"
        sent = [*history, item, {"role": "user", "content": "When does the ferry leave?"}]
        answer = http.post("/v1/responses", json={"model": "scripted", "store": False, "input": sent})
        assert answer.status_code == 200, answer.text
        # Opened under the generated key: the same item altered is refused.
        content = item["encrypted_content"]
        altered = {**item, "encrypted_content": content[:-8] + ("A" if content[-8] != "A" else "B") + content[-7:]}
        answer = http.post("/v1/responses", json={"model": "scripted", "store": False, "input": [*history, altered]})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_encrypted_content"


@pytest.mark.slow
def test_the_embedded_model_keeps_a_fact_through_compaction(start_server, spec_check):
    from tests.spec_check import checked_client

    embedded = start_server({"security": {"encryption_keys": [ENCRYPTION_KEY]}})
    client = checked_client(spec_check, embedded.url + "/v1", "unused")
    first = client.responses.create(input="Remember this: the vault code is 7312. " + PADDING * 2, max_output_tokens=16)
    second = client.responses.create(
        previous_response_id=first.id, input="What is the vault code?", context_management=COMPACTION, max_output_tokens=24
    )
    assert [item.type for item in second.output] == ["compaction", "message"]
    assert "7312" in opened(second.output[0])["summary"]
