"""Reasoning summaries, encrypted reasoning, annotations and hosted tools' items, through the
server and the official SDK: streamed, stored, retrieved (every event and Response is checked
against both specs by the clients' fixtures)."""

from __future__ import annotations

from tests.helpers import script

CITATION = {"type": "url_citation", "url": "https://example.com/paris", "title": "Paris", "start_index": 0, "end_index": 6}
WEB_SEARCH = {"id": "ws_upstream", "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "weather in Paris"}}
STEPS = (
    {"summary": "**Plan**"},
    {"summary": "Look it up.", "part": 1},
    {"encrypted_reasoning": "opaque-blob"},
    {"tool_item": WEB_SEARCH},
    {"text": "Sunny."},
    {"annotation": CITATION},
)


def test_streamed_then_retrieved(client):
    stream = client.responses.create(model="scripted", input=script(*STEPS), stream=True)
    events = list(stream)
    kinds = [event.type for event in events]
    for kind in ("response.reasoning_summary_part.added", "response.reasoning_summary_text.delta", "response.output_text.annotation.added"):
        assert kind in kinds
    final = events[-1].response
    assert final.status == "completed"
    reasoning, search, message = final.output
    assert [part.text for part in reasoning.summary] == ["**Plan**", "Look it up."]
    assert reasoning.encrypted_content is None  # not asked for
    assert (search.type, search.status, search.action.query) == ("web_search_call", "completed", "weather in Paris")
    assert search.id.startswith("ws_") and search.id != WEB_SEARCH["id"]
    assert message.content[0].text == "Sunny." and message.content[0].annotations[0].url == CITATION["url"]

    stored = client.responses.retrieve(final.id)
    assert stored.model_dump() == final.model_dump()
    shown = client.responses.retrieve(final.id, include=["reasoning.encrypted_content"])
    assert shown.output[0].encrypted_content == "opaque-blob"


def test_not_streamed_in_a_conversation(client):
    conversation = client.conversations.create()
    response = client.responses.create(model="scripted", input=script(*STEPS), conversation=conversation.id)
    assert [item.type for item in response.output] == ["reasoning", "web_search_call", "message"]
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.type for item in items] == ["message", "reasoning", "web_search_call", "message"]
    assert items[2].model_dump() == response.output[1].model_dump()
