"""What the model sees of a long previous_response_id chain or a big conversation.

The history is read newest first and only as far as the context window needs; these tests
check that the model still gets exactly what the window rule gives (truncation "auto": the
newest items that fit; "disabled": a 400), on both databases, and, without a server, that the
reading stops early.
"""

from __future__ import annotations

import asyncio
import math

import httpx
import openai
import pytest

from tests.conftest import KEYS
from threadline.backends.base import ModelRequest
from threadline.engine.context import History, fit_to_window
from threadline.errors import APIError

WINDOW = 8192  # the "scripted" model's
MAX_OUTPUT_TOKENS = 64
CHAIN_TURNS = 70  # about 200 tokens a turn: the window holds some 40
CONVERSATION_ITEMS = 1000  # 27 tokens an item: the window holds some 300
# 104 characters, and the new input 16: every item's estimate is exactly what the scripted
# model counts, so where the cut falls does not depend on how much history was read.
NEW_INPUT = "newest question!"


def turn_text(turn: int) -> str:
    return f"turn {turn:03d} " + "word " * 78


def item_text(n: int) -> str:
    return f"message {n:04d}: " + "word " * 18


def texts(items: list[dict]) -> list[str]:
    return [item["content"][0]["text"] for item in items]


def is_newest_suffix(seen: list[str], history: list[str]) -> bool:
    return 0 < len(seen) < len(history) and history[-len(seen) :] == seen


@pytest.fixture(scope="module")
def long_chain(server) -> tuple[str, list[str]]:
    """The last response of a chain of CHAIN_TURNS turns, and the texts of its items in order."""
    history, previous_id = [], None
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['alpha']}"}, timeout=30) as http:
        for turn in range(CHAIN_TURNS):
            body = {"model": "scripted", "input": turn_text(turn), "truncation": "auto", "max_output_tokens": MAX_OUTPUT_TOKENS}
            if previous_id:
                body["previous_response_id"] = previous_id
            response = http.post("/v1/responses", json=body).json()
            assert response["status"] == "completed"
            previous_id = response["id"]
            history += [turn_text(turn), response["output"][0]["content"][0]["text"]]
    return previous_id, history


def conversation_of(client: openai.OpenAI, numbers: range) -> str:
    conversation = client.conversations.create()
    for start in range(numbers.start, numbers.stop, 20):
        client.conversations.items.create(
            conversation.id,
            items=[
                {"type": "message", "role": "user" if n % 2 == 0 else "assistant", "content": item_text(n)}
                for n in range(start, min(numbers.stop, start + 20))
            ],
        )
    return conversation.id


@pytest.fixture(scope="module")
def big_conversation(server) -> str:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS["alpha"], max_retries=0)
    return conversation_of(client, range(CONVERSATION_ITEMS))


def test_a_long_chain_sends_the_model_its_newest_turns_that_fit(client, model_requests, long_chain):
    last_id, history = long_chain
    response = client.responses.create(
        model="scripted", input=NEW_INPUT, previous_response_id=last_id, truncation="auto", max_output_tokens=MAX_OUTPUT_TOKENS
    )
    assert response.status == "completed"
    seen = texts(model_requests()[-1]["input"])
    assert seen[-1] == NEW_INPUT
    assert is_newest_suffix(seen[:-1], history)
    # It fills the window, leaving room for the answer.
    assert WINDOW // 2 < response.usage.input_tokens <= WINDOW - MAX_OUTPUT_TOKENS


def test_a_branch_of_a_long_chain_sees_its_own_history(client, model_requests, long_chain):
    last_id, history = long_chain
    middle = client.responses.retrieve(last_id).previous_response_id  # turn CHAIN_TURNS - 2
    client.responses.create(model="scripted", input=NEW_INPUT, previous_response_id=middle, truncation="auto", max_output_tokens=MAX_OUTPUT_TOKENS)
    seen = texts(model_requests()[-1]["input"])
    assert is_newest_suffix(seen[:-1], history[:-2])


def test_a_long_chain_over_the_window_is_refused_without_truncation(client, model_requests, long_chain):
    last_id, _ = long_chain
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input=NEW_INPUT, previous_response_id=last_id)
    assert raised.value.body["code"] == "context_length_exceeded"
    assert raised.value.body["param"] == "input"
    assert "context window" in raised.value.body["message"]
    assert model_requests() == []


def test_a_big_conversation_sends_the_model_its_newest_items_that_fit(client, model_requests, big_conversation):
    response = client.responses.create(
        model="scripted", input=NEW_INPUT, conversation=big_conversation, truncation="auto", max_output_tokens=MAX_OUTPUT_TOKENS
    )
    assert response.status == "completed"
    seen = texts(model_requests()[-1]["input"])
    assert seen[-1] == NEW_INPUT
    # The conversation now ends with this response's input and output.
    assert is_newest_suffix(seen[:-1], [item_text(n) for n in range(CONVERSATION_ITEMS)])
    assert WINDOW // 2 < response.usage.input_tokens <= WINDOW - MAX_OUTPUT_TOKENS
    # The same cut as for a conversation holding only its newest 400 items.
    small = conversation_of(client, range(CONVERSATION_ITEMS - 400, CONVERSATION_ITEMS))
    again = client.responses.create(model="scripted", input=NEW_INPUT, conversation=small, truncation="auto", max_output_tokens=MAX_OUTPUT_TOKENS)
    assert texts(model_requests()[-1]["input"]) == seen
    assert again.usage.input_tokens == response.usage.input_tokens


def test_a_big_conversation_over_the_window_is_refused_without_truncation(client, model_requests, big_conversation):
    before = client.conversations.items.list(big_conversation, limit=1).data[0].id
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="scripted", input=NEW_INPUT, conversation=big_conversation, truncation="disabled")
    assert raised.value.body["code"] == "context_length_exceeded"
    assert raised.value.body["param"] == "input"
    assert model_requests() == []
    assert client.conversations.items.list(big_conversation, limit=1).data[0].id == before


def test_a_chain_whose_ancestor_was_deleted_ends_there(client, model_requests):
    first = client.responses.create(model="scripted", input="first")
    second = client.responses.create(model="scripted", input="second", previous_response_id=first.id)
    third = client.responses.create(model="scripted", input="third", previous_response_id=second.id)
    client.responses.delete(second.id)
    client.responses.create(model="scripted", input="fourth", previous_response_id=third.id, truncation="auto")
    assert texts(model_requests()[-1]["input"]) == ["third", "Reply to: third", "fourth"]


# --- Without a server: how far the history is read ------------------------------------------


class CountingModel:
    """A backend that counts `tokens_per_item` a item; its window is `window`."""

    counts_tokens = True

    def __init__(self, window: int | None, tokens_per_item: float = 3) -> None:
        self.context_window = window
        self.tokens_per_item = tokens_per_item

    async def resolve_context_window(self) -> int | None:
        return self.context_window

    async def count_tokens(self, request: ModelRequest) -> int | None:
        return math.ceil(self.tokens_per_item * len(request.input))


class UncountingModel(CountingModel):
    """A backend with no tokenizer to ask: the estimates are all there is."""

    async def count_tokens(self, request: ModelRequest) -> None:
        return None


def message(n: int) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"m{n:06d}"}]}  # 3 tokens estimated


class Stored:
    """A history of `items` (oldest first), served newest first in the batches asked for."""

    def __init__(self, items: list[dict]) -> None:
        self.items = items
        self.served = 0

    async def batches(self):
        size = 64
        while self.served < len(self.items):
            batch = self.items[::-1][self.served : self.served + size]
            self.served += len(batch)
            size = (yield batch) or size * 2


def fit(model: CountingModel, stored: Stored, truncation: str, new: list[dict] | None = None) -> list[dict]:
    async def run() -> list[dict]:
        history = History(stored.batches())
        await history.read()
        request = ModelRequest(model="m", input=new or [message(-1)], max_output_tokens=MAX_OUTPUT_TOKENS)
        return (await fit_to_window(model, request, history, truncation)).input

    return asyncio.run(run())


def test_a_model_without_a_known_window_gets_the_whole_history():
    stored = Stored([message(n) for n in range(10_000)])
    assert fit(CountingModel(None), stored, "disabled") == stored.items + [message(-1)]


def test_a_history_that_fits_is_read_whole_and_sent_in_order():
    stored = Stored([message(n) for n in range(1000)])
    assert fit(CountingModel(WINDOW), stored, "disabled") == stored.items + [message(-1)]


@pytest.mark.parametrize("truncation", ["auto", "disabled"])
def test_reading_stops_once_the_history_cannot_fit(truncation):
    stored = Stored([message(n) for n in range(100_000)])
    try:
        seen = fit(CountingModel(WINDOW), stored, truncation)
    except APIError as error:
        assert truncation == "disabled" and error.code == "context_length_exceeded"
        assert "at least" in error.message  # what was counted, not the whole
    else:
        assert truncation == "auto"
        assert seen[:-1] == stored.items[-(len(seen) - 1) :] and len(seen) > WINDOW // 2 // 3
    assert stored.served < 2 * WINDOW // 3  # the window holds WINDOW / 3 items


def test_an_estimate_that_runs_high_is_checked_against_the_count():
    # The model counts half the estimate: 4,000 items estimated at 12,000 tokens fit in 6,000.
    stored = Stored([message(n) for n in range(4000)])
    assert fit(CountingModel(WINDOW, tokens_per_item=1.5), stored, "disabled") == stored.items + [message(-1)]


@pytest.mark.parametrize("truncation", ["auto", "disabled"])
def test_a_model_that_cannot_count_is_judged_by_the_estimate(truncation):
    stored = Stored([message(n) for n in range(100_000)])
    try:
        seen = fit(UncountingModel(WINDOW), stored, truncation)
    except APIError as error:
        assert truncation == "disabled" and error.code == "context_length_exceeded"
    else:
        assert truncation == "auto"
        # The newest items, as many as the estimate puts within the window (3 tokens each).
        assert seen[:-1] == stored.items[-(len(seen) - 1) :] and WINDOW // 2 // 3 < len(seen) <= WINDOW // 3
    assert stored.served < 2 * WINDOW // 3


def test_the_cut_never_leaves_a_tool_output_first():
    # The cut falls among the outputs, so every one left after it goes too.
    outputs = [{"type": "function_call_output", "call_id": f"c{n}", "output": "ok"} for n in range(5000)]
    messages = [message(n) for n in range(100)]
    assert fit(CountingModel(WINDOW), Stored(outputs + messages), "auto") == messages + [message(-1)]
