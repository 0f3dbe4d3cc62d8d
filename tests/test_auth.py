"""API keys, projects and ids: who may see what.

With keys configured every /v1 request needs `Authorization: Bearer KEY`, and an object is
visible only to keys of the project that created it (to anyone else it does not exist: 404).
With no keys the server is open, and says so at start.
"""

from __future__ import annotations

import math
import re
import uuid

import httpx
import openai
import pytest

from tests.conftest import KEYS
from tests.servers import ThreadlineServer

MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assert_unauthorized(response: httpx.Response, code: str | None = None) -> None:
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] is None
    assert error["code"] == code
    assert "sk-" not in error["message"]  # never echo a key back


@pytest.fixture
def conversation(client):
    return client.conversations.create(metadata={"owner": "alpha"}, items=[user("alpha's note")])


def every_request(conversation_id: str, item_id: str) -> list[tuple[str, str, dict | None]]:
    return [
        ("POST", "/v1/conversations", {}),
        ("GET", f"/v1/conversations/{conversation_id}", None),
        ("POST", f"/v1/conversations/{conversation_id}", {"metadata": {"a": "b"}}),
        ("DELETE", f"/v1/conversations/{conversation_id}", None),
        ("GET", f"/v1/conversations/{conversation_id}/items", None),
        ("POST", f"/v1/conversations/{conversation_id}/items", {"items": [user("x")]}),
        ("GET", f"/v1/conversations/{conversation_id}/items/{item_id}", None),
        ("DELETE", f"/v1/conversations/{conversation_id}/items/{item_id}", None),
    ]


def item_id_of(client: openai.OpenAI, conversation_id: str) -> str:
    return client.conversations.items.list(conversation_id).data[0].id


def snapshot(client: openai.OpenAI, conversation_id: str) -> tuple[dict, list[dict]]:
    conversation = client.conversations.retrieve(conversation_id).to_dict()
    items = [item.to_dict() for item in client.conversations.items.list(conversation_id, limit=100)]
    return conversation, items


# --- keys ----------------------------------------------------------------------------------


def test_no_key_is_401_everywhere(server, client, conversation):
    item_id = item_id_of(client, conversation.id)
    before = snapshot(client, conversation.id)
    with httpx.Client(base_url=server.url) as anonymous:
        for method, path, body in every_request(conversation.id, item_id):
            response = anonymous.request(method, path, json=body)
            assert_unauthorized(response)
            assert response.json()["error"]["message"] == MISSING_KEY
    assert snapshot(client, conversation.id) == before


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sk-wrong", f"Bearer {KEYS['alpha']}x", f"Bearer {KEYS['alpha'][:-1]}", f"Bearer {KEYS['alpha'].upper()}"],
)
def test_a_wrong_key_is_401(server, client, conversation, authorization):
    item_id = item_id_of(client, conversation.id)
    before = snapshot(client, conversation.id)
    with httpx.Client(base_url=server.url, headers={"Authorization": authorization}) as stranger:
        for method, path, body in every_request(conversation.id, item_id):
            assert_unauthorized(stranger.request(method, path, json=body), code="invalid_api_key")
    assert snapshot(client, conversation.id) == before


@pytest.mark.parametrize("authorization", ["", "Bearer", f"Basic {KEYS['alpha']}", KEYS["alpha"], f"Token {KEYS['alpha']}"])
def test_a_malformed_authorization_header_is_401(server, authorization):
    response = httpx.get(server.url + "/v1/conversations/conv_x", headers={"Authorization": authorization})
    assert_unauthorized(response)


def test_the_bearer_scheme_is_case_insensitive(server, conversation):
    response = httpx.get(
        server.url + f"/v1/conversations/{conversation.id}", headers={"Authorization": f"bearer {KEYS['alpha']}"}
    )
    assert response.status_code == 200


def test_401_comes_before_validation(server):
    # A request without a valid key learns nothing about its body or query.
    with httpx.Client(base_url=server.url) as anonymous:
        assert_unauthorized(anonymous.post("/v1/conversations", content=b"{not json", headers={"Content-Type": "application/json"}))
        assert_unauthorized(anonymous.post("/v1/conversations", json={"metadata": "wrong"}))
        assert_unauthorized(anonymous.get("/v1/conversations/conv_x/items", params={"limit": 0}))
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk-wrong"}) as stranger:
        assert_unauthorized(stranger.post("/v1/conversations/conv_x/items", json={"items": []}), code="invalid_api_key")


def test_the_sdk_raises_authentication_error(server):
    stranger = openai.OpenAI(base_url=server.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        stranger.conversations.create()
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_health_needs_no_key(server):
    assert httpx.get(server.url + "/health").status_code == 200


# --- projects --------------------------------------------------------------------------------


def test_another_project_cannot_see_or_touch_a_conversation(client, beta_client, conversation):
    item_id = item_id_of(client, conversation.id)
    before = snapshot(client, conversation.id)

    for call in (
        lambda: beta_client.conversations.retrieve(conversation.id),
        lambda: beta_client.conversations.update(conversation.id, metadata={"owner": "beta"}),
        lambda: beta_client.conversations.update(conversation.id, metadata=None),
        lambda: beta_client.conversations.items.list(conversation.id),
        lambda: beta_client.conversations.items.create(conversation.id, items=[user("beta was here")]),
        lambda: beta_client.conversations.items.retrieve(item_id, conversation_id=conversation.id),
        lambda: beta_client.conversations.items.delete(item_id, conversation_id=conversation.id),
        lambda: beta_client.conversations.delete(conversation.id),
    ):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert "alpha's note" not in raised.value.response.text

    # Alpha's conversation is exactly as it was.
    assert snapshot(client, conversation.id) == before


def test_another_projects_404_looks_like_an_unknown_id(server, beta_client, conversation):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['beta']}"}) as beta:
        foreign = beta.get(f"/v1/conversations/{conversation.id}")
        unknown_id = "conv_" + uuid.uuid4().hex + uuid.uuid4().hex[:16]
        unknown = beta.get(f"/v1/conversations/{unknown_id}")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["message"].replace(conversation.id, "ID") == unknown.json()["error"][
        "message"
    ].replace(unknown_id, "ID")


def test_another_projects_item_cannot_be_referenced(client, beta_client, conversation):
    item_id = item_id_of(client, conversation.id)
    theirs = beta_client.conversations.create()

    with pytest.raises(openai.NotFoundError):
        beta_client.conversations.items.create(theirs.id, items=[{"type": "item_reference", "id": item_id}])
    with pytest.raises(openai.NotFoundError):
        beta_client.conversations.create(items=[{"type": "item_reference", "id": item_id}])
    assert beta_client.conversations.items.list(theirs.id).data == []


def test_each_project_sees_its_own(client, beta_client):
    ours = client.conversations.create(items=[user("ours")])
    theirs = beta_client.conversations.create(items=[user("theirs")])

    assert beta_client.conversations.items.list(theirs.id).data[0].content[0].text == "theirs"
    assert client.conversations.items.list(ours.id).data[0].content[0].text == "ours"
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(theirs.id)


# --- open mode -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_server(database_url, tmp_path_factory):
    """A second server on the same database, with no keys configured."""
    with ThreadlineServer(database_url, config=None) as running:
        yield running


def test_open_mode_accepts_any_request(open_server):
    for api_key in ("anything", "sk-alpha-test-key", "x"):
        anyone = openai.OpenAI(base_url=open_server.url + "/v1", api_key=api_key, max_retries=0)
        conversation = anyone.conversations.create(items=[user("hello")], metadata={"who": api_key})
        assert anyone.conversations.retrieve(conversation.id).metadata == {"who": api_key}
    with httpx.Client(base_url=open_server.url) as anonymous:
        response = anonymous.post(f"/v1/conversations/{conversation.id}/items", json={"items": [user("no key at all")]})
        assert response.status_code == 200, response.text
        listed = anonymous.get(f"/v1/conversations/{conversation.id}/items", params={"order": "asc"}).json()
    assert [item["content"][0]["text"] for item in listed["data"]] == ["hello", "no key at all"]


def test_open_mode_says_so_at_start(open_server):
    with open(open_server.log.name) as log:
        assert re.search(r"WARNING.*API key", log.read(), re.IGNORECASE)


def test_open_mode_has_no_access_to_a_projects_objects(open_server, conversation):
    anyone = openai.OpenAI(base_url=open_server.url + "/v1", api_key="anything", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        anyone.conversations.retrieve(conversation.id)


# --- ids -------------------------------------------------------------------------------------


def random_bits(object_id: str, prefix: str) -> float:
    """How many random bits the part after the prefix can carry, judged by its alphabet."""
    assert object_id.startswith(prefix + "_"), object_id
    random_part = object_id[len(prefix) + 1 :]
    assert re.fullmatch(r"[0-9A-Za-z]+", random_part), object_id
    alphabet = 16 if re.fullmatch(r"[0-9a-f]+", random_part) else 36 if re.fullmatch(r"[0-9a-z]+", random_part) else 62
    return len(random_part) * math.log2(alphabet)


def test_ids_are_a_prefix_and_at_least_128_random_bits(client):
    conversation = client.conversations.create(
        items=[user("a"), {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}, {"type": "function_call_output", "call_id": "c", "output": "x"}]
    )
    items = client.conversations.items.list(conversation.id, order="asc").data

    assert random_bits(conversation.id, "conv") >= 128
    for item, prefix in zip(items, ["msg", "fc", "fco"]):
        assert random_bits(item.id, prefix) >= 128


def test_ids_are_unique_and_unpredictable(client):
    conversations = [client.conversations.create(items=[user(str(n)), user(str(n))]) for n in range(10)]
    conversation_ids = [conversation.id for conversation in conversations]
    item_ids = [item.id for conversation in conversations for item in client.conversations.items.list(conversation.id)]

    assert len(set(conversation_ids)) == 10
    assert len(set(item_ids)) == 20
    # No shared stem beyond the prefix, as a counter or a timestamp would leave.
    stems = {conversation_id[: len("conv_") + 8] for conversation_id in conversation_ids}
    assert len(stems) == 10
