"""Reasoning kept across `store: false` turns through `encrypted_content`, the way stateless
agents (Codex, the Vercel AI SDK) use it: the client resends the whole history each turn,
reasoning items included, and the model reads the earlier reasoning again.

A real `threadline serve` on SQLite and on PostgreSQL, no key configured (so it generates
one), a scripted model that records what it is sent, and a mock Responses upstream.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import FAST_WORKERS
from tests.helpers import recorded_from_now, upstream_models, wait_for
from tests.mock_upstream import finish, reply, text
from threadline.engine.sealed_items import seal_content
from threadline.tools.secrets import SecretBox

INCLUDE = ["reasoning.encrypted_content"]
# A reasoning item as OpenAI seals it: not Threadline's format.
OPENAI_SEALED = "gAAAAABpF3Nf0b2Vt1a9c2xKZq3mR8pLw7yT6uE5iO4aS3dF2gH1jK0lZ9xC8vB7nM6qW5eR4tY3uI2oP1aS0dF9gH8jK7lL6=="


def script(*steps: dict) -> str:
    return "#script " + json.dumps(list(steps))


def user(content: str) -> dict:
    return {"role": "user", "content": content}


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    path = tmp_path_factory.mktemp("record") / "model_requests.jsonl"
    path.touch()
    return path


@pytest.fixture(scope="module")
def key_file(tmp_path_factory):
    return tmp_path_factory.mktemp("keys") / "threadline.key"


@pytest.fixture(scope="module")
def server(start_server, upstream, record, key_file):
    return start_server(
        {
            "models": [{"id": "scripted", "provider": "scripted", "options": {"record_to": str(record)}}, *upstream_models(upstream.base_url, {"": {"max_retries": 0}})],
            "security": {"key_file": str(key_file)},
            "workers": FAST_WORKERS,
        }
    )


@pytest.fixture
def model_requests(record):
    """What the scripted model received during this test, one dict per request."""
    return recorded_from_now(record)


def sent_back(item) -> dict:
    """An output item as a stateless client sends it back: a reasoning item without its
    readable text, as Codex sends it, so only its encrypted_content can carry it."""
    data = item.model_dump(exclude_none=True)
    if data["type"] == "reasoning":
        data.pop("content", None)
    return data


def reasoning_texts(request: dict) -> list[str]:
    """The reasoning the model was shown, text and summary, in order."""
    return [
        part["text"]
        for item in request["input"]
        if item.get("type") == "reasoning"
        for part in [*(item.get("content") or []), *(item.get("summary") or [])]
    ]


def test_a_20_turn_stateless_chain_keeps_its_reasoning(client, model_requests, row_counts):
    """Each turn resends the whole history; the model sees every earlier turn's reasoning
    again, streamed turns and whole ones alike, and the server stores nothing."""
    stored = row_counts()
    history: list[dict] = []
    for turn in range(1, 21):
        steps = [{"reasoning": f"Thought {turn}: the code is {turn * 7}."}, {"summary": f"Summary {turn}."}, {"text": f"Answer {turn}."}]
        history.append(user(script(*steps)))
        request = {"model": "scripted", "input": history, "store": False, "include": INCLUDE}
        if turn % 2:
            response = client.responses.create(**request)
            output = response.output
        else:
            events = list(client.responses.create(**request, stream=True))
            # OpenAI's advice: take a reasoning item from response.output_item.done.
            output = [event.item for event in events if event.type == "response.output_item.done"]
            response = events[-1].response
            assert [item.model_dump() for item in output] == [item.model_dump() for item in response.output]
        reasoning = next(item for item in output if item.type == "reasoning")
        assert reasoning.encrypted_content and f"the code is {turn * 7}" not in reasoning.encrypted_content
        assert response.output_text == f"Answer {turn}."
        history += [sent_back(item) for item in output]

        seen = reasoning_texts(model_requests()[-1])
        earlier = [text for n in range(1, turn) for text in (f"Thought {n}: the code is {n * 7}.", f"Summary {n}.")]
        assert seen == earlier
    assert row_counts() == stored


def test_encrypted_content_only_when_included(client):
    """Without the include, a reasoning item carries no encrypted_content; a stored response
    sealed with it shows it again only to a client that asks for it."""
    steps = script({"reasoning": "Hidden."}, {"text": "Done."})
    plain = client.responses.create(model="scripted", input=steps, store=False)
    assert plain.output[0].type == "reasoning" and plain.output[0].encrypted_content is None

    sealed = client.responses.create(model="scripted", input=steps, include=INCLUDE)
    assert sealed.output[0].encrypted_content
    assert client.responses.retrieve(sealed.id).output[0].encrypted_content is None
    assert client.responses.retrieve(sealed.id, include=INCLUDE).output[0].encrypted_content == sealed.output[0].encrypted_content


def test_a_providers_own_encrypted_reasoning_is_kept(client):
    steps = script({"reasoning": "Mine."}, {"encrypted_reasoning": "provider-sealed"}, {"text": "Done."})
    response = client.responses.create(model="scripted", input=steps, store=False, include=INCLUDE)
    assert response.output[0].encrypted_content == "provider-sealed"


def test_background_responses_seal_their_reasoning(client, model_requests):
    """A queued response (run from its stored job) seals its reasoning too, and the item then
    works in a stateless request."""
    steps = script({"reasoning": "Queued thought."}, {"text": "Done."})
    queued = client.responses.create(model="scripted", input=steps, background=True, include=INCLUDE)
    done = wait_for(client, queued.id)
    reasoning = client.responses.retrieve(done.id, include=INCLUDE).output[0]
    assert reasoning.encrypted_content

    again = [user(steps), sent_back(reasoning), user("And now?")]
    client.responses.create(model="scripted", input=again, store=False)
    assert reasoning_texts(model_requests()[-1]) == ["Queued thought."]


def test_a_tampered_item_is_a_400_naming_it(client, model_requests, row_counts):
    steps = script({"reasoning": "Secret plan."}, {"text": "Done."})
    first = client.responses.create(model="scripted", input=steps, store=False, include=INCLUDE)
    item = sent_back(first.output[0])
    sealed = item["encrypted_content"]
    changed = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    stored, asked = row_counts(), len(model_requests())

    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="scripted", input=[user("Hi"), {**item, "encrypted_content": changed}, user("Go on.")], store=False)
    error = refused.value.body
    assert refused.value.status_code == 400
    assert error["code"] == "invalid_encrypted_content"
    assert error["param"] == "input[1].encrypted_content"
    assert item["id"] in error["message"]
    assert row_counts() == stored and len(model_requests()) == asked


def test_reasoning_sent_back_as_codex_sends_it(client, model_requests):
    """Codex sends a reasoning item back without its id, and with `content: null`: the
    model reads the sealed reasoning again."""
    first = client.responses.create(model="scripted", input=script({"reasoning": "Codex thought."}, {"summary": "In short."}, {"text": "ok"}), store=False, include=INCLUDE)
    reasoning = first.output[0]
    as_codex_sends = {"type": "reasoning", "summary": [part.model_dump() for part in reasoning.summary], "content": None, "encrypted_content": reasoning.encrypted_content}
    client.responses.create(model="scripted", input=[user("Hi"), as_codex_sends, user("Go on.")], store=False, include=INCLUDE)
    assert reasoning_texts(model_requests()[-1]) == ["Codex thought.", "In short."]


def test_content_sealed_for_another_kind_of_item_is_a_400(client, key_file, model_requests, row_counts):
    """A compaction item's content, sealed under the same key, does not pass for reasoning."""
    compaction = seal_content(SecretBox([key_file.read_text().strip()]), "compaction", {"content": [], "summary": []})
    item = {"type": "reasoning", "summary": [], "encrypted_content": compaction}
    stored, asked = row_counts(), len(model_requests())
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="scripted", input=[user("Hi"), item], store=False)
    assert refused.value.body["code"] == "invalid_encrypted_content"
    assert refused.value.body["param"] == "input[1].encrypted_content"
    assert row_counts() == stored and len(model_requests()) == asked


def test_reasoning_from_another_server_is_left_out(client, model_requests, server):
    """An item OpenAI sealed cannot be read here: the model goes on without it (OpenAI drops
    reasoning it cannot use), and the log says so."""
    foreign = {"type": "reasoning", "id": "rs_from_openai", "summary": [{"type": "summary_text", "text": "Elsewhere."}], "encrypted_content": OPENAI_SEALED}
    response = client.responses.create(model="scripted", input=[user("Hi"), foreign, user("Go on.")], store=False, include=INCLUDE)
    assert response.status == "completed"
    assert [item.get("type", "message") for item in model_requests()[-1]["input"]] == ["message", "message"]
    with open(server.log.name) as log:
        assert "reasoning item rs_from_openai, was encrypted by another server" in log.read()


def test_a_responses_upstream_gets_its_own_reasoning_back(client, mock):
    """With an upstream that speaks the Responses API, the upstream is asked for its own
    encrypted reasoning, and reasoning another server sealed goes back to it, as it may be
    its own; Threadline's own sealed reasoning is opened, not sent."""
    mock.script(reply(text("Hi"), finish("stop")), reply(text("Hi"), finish("stop")))
    first = client.responses.create(model="resp", input="Hi", store=False, include=INCLUDE)
    assert "reasoning.encrypted_content" in mock.requests[0]["include"]
    ours = client.responses.create(model="scripted", input=script({"reasoning": "Ours."}, {"text": "ok"}), store=False, include=INCLUDE)
    foreign = {"type": "reasoning", "id": "rs_upstream", "summary": [], "encrypted_content": OPENAI_SEALED}
    client.responses.create(model="resp", input=[user("Hi"), foreign, sent_back(ours.output[0]), user("Go on.")], store=False, include=INCLUDE)
    assert first.status == "completed"
    passed_on = [item for item in mock.requests[1]["input"] if item["type"] == "reasoning"]
    assert [{key: value for key, value in item.items() if key != "id"} for item in passed_on] == [{"type": "reasoning", "summary": [], "encrypted_content": OPENAI_SEALED}]
    assert passed_on[0]["id"].startswith("rs_")  # an input reasoning item needs an id
