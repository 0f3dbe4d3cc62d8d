"""A previous_response_id chain kept in one process's memory, with another process deleting
responses of it: the first process sees each delete on its next turn, as if it read the chain
from the database (store/chain_cache.py)."""

from __future__ import annotations

import openai
import pytest

from tests.helpers import database_rows, recorded_from_now, wait_for
from tests.servers import ThreadlineServer, write_config

pytestmark = pytest.mark.slow


@pytest.fixture
def record(tmp_path):
    return tmp_path / "requests.jsonl"


@pytest.fixture
def config(tmp_path, record):
    return write_config(tmp_path / "threadline.toml", {"models": [{"id": "scripted", "provider": "scripted", "options": {"record_to": str(record)}}]})


def sdk(server: ThreadlineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def texts(items: list[dict]) -> list[str]:
    """Each item's text, as the model was sent it."""
    shown = []
    for item in items:
        content = item["content"]
        shown.append(content if isinstance(content, str) else "".join(part["text"] for part in content))
    return shown


def chain(client: openai.OpenAI, turns: int) -> list[str]:
    """A chain of `turns` responses, each continuing the one before; their ids."""
    ids: list[str] = []
    for turn in range(1, turns + 1):
        response = client.responses.create(model="scripted", input=f"turn {turn}", previous_response_id=ids[-1] if ids else None)
        ids.append(response.id)
    return ids


def seen_by_model(client: openai.OpenAI, record, previous_response_id: str) -> list[str]:
    """The texts the model is sent for one more turn of the chain."""
    received = recorded_from_now(record)
    client.responses.create(model="scripted", input="one more", previous_response_id=previous_response_id)
    (request,) = received()
    return texts(request["input"])


def test_a_response_deleted_in_the_middle_by_another_process_ends_the_chain_there(fresh_database_url, config, record):
    with ThreadlineServer(fresh_database_url, config) as first, ThreadlineServer(fresh_database_url, config) as second:
        a, b = sdk(first), sdk(second)
        ids = chain(a, 5)
        everything = [text for turn in range(1, 6) for text in (f"turn {turn}", f"Reply to: turn {turn}")] + ["one more"]
        assert seen_by_model(a, record, ids[-1]) == everything  # and the first process keeps the chain
        b.responses.delete(ids[2])
        after_delete = ["turn 4", "Reply to: turn 4", "turn 5", "Reply to: turn 5", "one more"]
        assert seen_by_model(a, record, ids[-1]) == after_delete
        assert seen_by_model(b, record, ids[-1]) == after_delete  # read from the database alone
        # A new turn on the shortened chain, continued by the other process and back.
        newer = a.responses.create(model="scripted", input="turn 6", previous_response_id=ids[-1])
        assert seen_by_model(b, record, newer.id) == after_delete[:-1] + ["turn 6", "Reply to: turn 6", "one more"]
        assert seen_by_model(a, record, newer.id) == after_delete[:-1] + ["turn 6", "Reply to: turn 6", "one more"]


def test_the_newest_response_deleted_by_another_process_is_not_found(fresh_database_url, config, record):
    with ThreadlineServer(fresh_database_url, config) as first, ThreadlineServer(fresh_database_url, config) as second:
        a, b = sdk(first), sdk(second)
        ids = chain(a, 4)
        seen_by_model(a, record, ids[-1])
        b.responses.delete(ids[-1])
        with pytest.raises(openai.BadRequestError) as refused:
            a.responses.create(model="scripted", input="one more", previous_response_id=ids[-1])
        assert refused.value.status_code == 400
        assert refused.value.body["code"] == "previous_response_not_found"
        assert refused.value.body["param"] == "previous_response_id"
        assert refused.value.body["message"] == f"Previous response with id '{ids[-1]}' not found."
        # The rest of the chain is still there, from either process.
        expected = ["turn 1", "Reply to: turn 1", "turn 2", "Reply to: turn 2", "turn 3", "Reply to: turn 3", "one more"]
        assert seen_by_model(a, record, ids[-2]) == expected
        assert seen_by_model(b, record, ids[-2]) == expected


def chain_version(database_url: str) -> int:
    """The version every process checks its kept chains against (migration 0009)."""
    ((version,),) = database_rows(database_url, "SELECT version FROM chain_version WHERE id = 1")
    return version


def test_responses_stored_any_way_leave_the_chain_version_and_deletes_move_it(fresh_database_url, config, record):
    with ThreadlineServer(fresh_database_url, config) as server:
        client = sdk(server)
        ids = chain(client, 3)
        with client.responses.stream(model="scripted", input="streamed", previous_response_id=ids[-1]) as stream:
            streamed = stream.get_final_response()
        queued = client.responses.create(model="scripted", input="in the background", previous_response_id=streamed.id, background=True)
        wait_for(client, queued.id)
        seen_by_model(client, record, queued.id)
        assert chain_version(fresh_database_url) == 0
        client.responses.delete(ids[0])
        assert chain_version(fresh_database_url) > 0


def test_a_response_deleted_deep_in_a_chain_checked_and_trusted_ends_it_there(fresh_database_url, config, record):
    with ThreadlineServer(fresh_database_url, config) as first, ThreadlineServer(fresh_database_url, config) as second:
        a, b = sdk(first), sdk(second)
        ids = chain(a, 8)
        other = chain(b, 2)
        everything = [text for turn in range(1, 9) for text in (f"turn {turn}", f"Reply to: turn {turn}")] + ["one more"]
        assert seen_by_model(a, record, ids[-1]) == everything
        # A delete elsewhere: the first process checks its chain once more, then trusts it again.
        b.responses.delete(other[0])
        assert seen_by_model(a, record, ids[-1]) == everything
        assert seen_by_model(a, record, ids[-1]) == everything
        b.responses.delete(ids[1])
        after_delete = everything[4:]
        assert seen_by_model(a, record, ids[-1]) == after_delete
        assert seen_by_model(b, record, ids[-1]) == after_delete  # read from the database alone
        assert seen_by_model(a, record, ids[-1]) == after_delete
        b.responses.delete(ids[-1])
        with pytest.raises(openai.BadRequestError) as refused:
            a.responses.create(model="scripted", input="one more", previous_response_id=ids[-1])
        assert refused.value.body["code"] == "previous_response_not_found"
        assert seen_by_model(a, record, ids[-2]) == after_delete[:-3] + ["one more"]
