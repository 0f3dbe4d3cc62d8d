"""Bad input to the Conversations API: a 4xx in OpenAI's envelope, naming the offending path,
in one short sentence, and the request changes nothing.

Raw HTTP where the SDK would refuse to send the input; the SDK where it can, to show the error
a user actually gets (openai.BadRequestError, openai.NotFoundError).
"""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest

# Pydantic's own wording, which must never reach a user.
PYDANTIC_NOISE = ("Input should be", "validation error", "union_tag", "tagged-union", "[type=", "pydantic", "'loc'", "Field required", "Value error")


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assert_error(response: httpx.Response, status: int, param: str | None, *mentions: str, max_length: int = 400) -> str:
    """The response is OpenAI's error envelope with this status and param; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param, error
    message = error["message"]
    assert isinstance(message, str) and message, error
    assert "\n" not in message and len(message) <= max_length, message
    assert not any(noise in message for noise in PYDANTIC_NOISE), message
    for mention in mentions:
        assert mention in message, (mention, message)
    return message


def assert_invalid(response: httpx.Response, param: str | None, *mentions: str, max_length: int = 400) -> str:
    """A 400 whose message is one sentence saying what was expected."""
    message = assert_error(response, 400, param, *mentions, max_length=max_length)
    assert message.endswith("."), message
    return message


@pytest.fixture
def conversation(http) -> str:
    """A conversation with metadata and two items, to show that rejected requests leave it alone."""
    response = http.post(
        "/v1/conversations",
        json={"metadata": {"owner": "alpha"}, "items": [user("one"), {"role": "assistant", "content": "two"}]},
    )
    assert response.status_code == 200, response.text
    return response.json()["id"]


def snapshot(http: httpx.Client, conversation_id: str) -> tuple[dict, dict]:
    conversation = http.get(f"/v1/conversations/{conversation_id}")
    items = http.get(f"/v1/conversations/{conversation_id}/items", params={"limit": 100})
    assert conversation.status_code == items.status_code == 200
    return conversation.json(), items.json()


@pytest.fixture
def unchanged(http, conversation):
    """Asserts, after the test, that the conversation's metadata and items are as they were."""
    before = snapshot(http, conversation)
    yield conversation
    assert snapshot(http, conversation) == before


@pytest.fixture
def nothing_created(row_counts):
    """A rejected create stores no conversation or item (there is no endpoint that lists conversations)."""
    before = row_counts(("conversations", "conversation_items"))
    yield
    assert row_counts(("conversations", "conversation_items")) == before


# --- malformed bodies ------------------------------------------------------------------------


MALFORMED = [b'{"items": [', b"not json", b'{"metadata": {"a": "b"}}}', b"\xff\xfe{}", b"{'items': []}"]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_json_on_create(http, nothing_created, body):
    response = http.post("/v1/conversations", content=body, headers={"Content-Type": "application/json"})
    assert_invalid(response, None, "JSON")


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_json_on_items_create(http, unchanged, body):
    response = http.post(f"/v1/conversations/{unchanged}/items", content=body, headers={"Content-Type": "application/json"})
    assert_invalid(response, None, "JSON")


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_json_on_update(http, unchanged, body):
    response = http.post(f"/v1/conversations/{unchanged}", content=body, headers={"Content-Type": "application/json"})
    assert_invalid(response, None, "JSON")


@pytest.mark.parametrize("body", [[], [1], "text", 5, True])
def test_a_body_that_is_not_an_object(http, unchanged, nothing_created, body):
    assert_invalid(http.post("/v1/conversations", json=body), None, "expected an object")
    assert_invalid(http.post(f"/v1/conversations/{unchanged}/items", json=body), None, "expected an object")
    assert_invalid(http.post(f"/v1/conversations/{unchanged}", json=body), None, "expected an object")


def test_missing_items_on_items_create(http, unchanged):
    assert_invalid(http.post(f"/v1/conversations/{unchanged}/items", json={}), "items", "Missing required parameter", "'items'")
    assert_invalid(http.post(f"/v1/conversations/{unchanged}/items"), "items", "'items'")


def test_missing_metadata_on_update(http, unchanged):
    assert_invalid(http.post(f"/v1/conversations/{unchanged}", json={}), "metadata", "Missing required parameter", "'metadata'")
    assert_invalid(http.post(f"/v1/conversations/{unchanged}"), "metadata", "'metadata'")


def test_empty_items_on_items_create(http, unchanged):
    assert_invalid(http.post(f"/v1/conversations/{unchanged}/items", json={"items": []}), "items", "minimum length 1")


def test_empty_items_through_the_sdk(client, unchanged):
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(unchanged, items=[])
    assert raised.value.status_code == 400
    assert raised.value.param == "items"
    assert raised.value.type == "invalid_request_error"


def test_more_than_20_items_on_items_create(http, unchanged):
    response = http.post(f"/v1/conversations/{unchanged}/items", json={"items": [user(str(n)) for n in range(21)]})
    assert_invalid(response, "items", "maximum length 20", "21")


def test_more_than_20_items_on_create(client, nothing_created):
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.create(items=[user(str(n)) for n in range(21)])
    assert raised.value.param == "items"
    assert "maximum length 20" in raised.value.body["message"]


# --- bad items: (items sent, param, words the message must hold) ----------------------------------

BAD_ITEMS = [
    pytest.param("hello", "items", ["expected an array"], id="items-not-an-array"),
    pytest.param({"role": "user"}, "items", ["expected an array"], id="items-an-object"),
    pytest.param(["hello"], "items[0]", ["expected an object"], id="item-not-an-object"),
    pytest.param([None], "items[0]", ["expected an object"], id="item-null"),
    pytest.param([{"type": "bogus"}], "items[0].type", ["'bogus'", "'message'", "'function_call'"], id="unknown-type"),
    pytest.param([{"type": 7, "role": "user", "content": "x"}], "items[0].type", ["expected a string"], id="type-not-a-string"),
    pytest.param(
        [user("a"), user("b"), {"type": "mystery_call", "call_id": "c"}], "items[2].type", ["'mystery_call'"], id="unknown-type-later"
    ),
    pytest.param([{"role": "tool", "content": "x"}], "items[0].role", ["'tool'", "'user'", "'assistant'"], id="role-not-allowed"),
    pytest.param(
        [{"type": "message", "role": "model", "content": "x"}], "items[0].role", ["'model'"], id="role-not-allowed-typed"
    ),
    pytest.param([{"type": "message", "content": "x"}], "items[0].role", ["Missing required parameter"], id="role-missing"),
    pytest.param([{"role": "user"}], "items[0].content", ["Missing required parameter"], id="content-missing"),
    pytest.param(
        [{"role": "user", "content": 5}], "items[0].content", ["expected a string or an array of content parts", "integer"], id="content-wrong-type"
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
        "items[0].content[0].type",
        ["'output_text'", "'input_text'"],
        id="user-with-output-text",
    ),
    pytest.param(
        [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}],
        "items[0].content[0].type",
        ["'input_image'", "'output_text'"],
        id="assistant-with-image",
    ),
    pytest.param(
        [user("a"), user("b"), user("c"), {"role": "user", "content": [{"type": "input_text", "text": "ok"}, {"type": "video", "url": "x"}]}],
        "items[3].content[1].type",
        ["'video'", "'input_text'"],
        id="unknown-content-part",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "input_text", "text": 5}]}],
        "items[0].content[0].text",
        ["expected a string", "integer"],
        id="text-wrong-type",
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "input_text"}]}], "items[0].content[0].text", ["Missing required parameter"], id="text-missing"
    ),
    pytest.param(
        [{"role": "user", "content": [{"type": "input_image", "image_url": "https://x", "detail": "huge"}]}],
        "items[0].content[0].detail",
        ["'huge'", "'auto'"],
        id="bad-enum-value",
    ),
    pytest.param(
        [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"city": "Paris"}}],
        "items[0].arguments",
        ["expected a string", "object"],
        id="arguments-not-a-string",
    ),
    pytest.param(
        [{"type": "function_call", "call_id": "c", "arguments": "{}"}], "items[0].name", ["Missing required parameter"], id="name-missing"
    ),
    pytest.param(
        [{"type": "function_call_output", "output": "x"}], "items[0].call_id", ["Missing required parameter"], id="call-id-missing"
    ),
    pytest.param(
        [{"type": "function_call_output", "call_id": "c", "output": 42}],
        "items[0].output",
        ["expected a string or an array of content parts"],
        id="output-wrong-type",
    ),
    pytest.param(
        [{"type": "mcp_approval_response", "approval_request_id": "r", "approve": "yes"}],
        "items[0].approve",
        ["expected a boolean", "string"],
        id="boolean-as-string",
    ),
    pytest.param(
        [{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "a"}, {"type": "summary_text"}]}],
        "items[0].summary[1].text",
        ["Missing required parameter"],
        id="deep-missing",
    ),
    pytest.param(
        [{"type": "item_reference"}], "items[0].id", ["Missing required parameter"], id="reference-without-id"
    ),
]


def longest_message(param: str) -> int:
    # An unknown item type is answered with the ~30 supported types: one sentence, if long.
    return 700 if param.endswith(".type") else 400


@pytest.mark.parametrize("items, param, mentions", BAD_ITEMS)
def test_bad_items_on_items_create(http, unchanged, items, param, mentions):
    response = http.post(f"/v1/conversations/{unchanged}/items", json={"items": items})
    assert_invalid(response, param, *mentions, max_length=longest_message(param))


@pytest.mark.parametrize("items, param, mentions", BAD_ITEMS)
def test_bad_items_on_create(http, nothing_created, items, param, mentions):
    response = http.post("/v1/conversations", json={"metadata": {"a": "b"}, "items": items})
    assert_invalid(response, param, *mentions, max_length=longest_message(param))


def test_unknown_item_type_names_the_types_in_one_sentence(http, unchanged):
    message = assert_invalid(
        http.post(f"/v1/conversations/{unchanged}/items", json={"items": [{"type": "bogus"}]}), "items[0].type", max_length=700
    )
    # One list of the supported values, not one error per member of the union.
    assert re.fullmatch(r"Invalid value: 'bogus'\. Supported values are: ('[a-z_]+', )+'[a-z_]+' and '[a-z_]+'\.", message), message
    for expected in ("'message'", "'function_call_output'", "'reasoning'", "'item_reference'"):
        assert expected in message


def test_bad_item_through_the_sdk(client, unchanged):
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.items.create(
            unchanged, items=[user("fine"), {"type": "message", "role": "user", "content": [{"type": "input_txt", "text": "x"}]}]
        )
    assert raised.value.status_code == 400
    assert raised.value.param == "items[1].content[0].type"
    assert raised.value.code is None
    assert "'input_txt'" in raised.value.message


# --- metadata ----------------------------------------------------------------------------------

BAD_METADATA = [
    pytest.param({f"k{n}": "v" for n in range(17)}, "metadata", ["16", "17"], id="17-pairs"),
    pytest.param({"k" * 65: "v"}, "metadata", ["64", "65"], id="key-over-64"),
    pytest.param({"k": "v" * 513}, "metadata.k", ["512", "513"], id="value-over-512"),
    pytest.param({"k": 1}, "metadata.k", ["expected a string", "integer"], id="value-an-integer"),
    pytest.param({"k": None}, "metadata.k", ["expected a string", "null"], id="value-null"),
    pytest.param({"k": {"nested": "x"}}, "metadata.k", ["expected a string", "object"], id="value-an-object"),
    pytest.param({"k": True}, "metadata.k", ["expected a string", "boolean"], id="value-a-boolean"),
    pytest.param(["a", "b"], "metadata", ["expected an object", "array"], id="an-array"),
    pytest.param("a=b", "metadata", ["expected an object", "string"], id="a-string"),
]


@pytest.mark.parametrize("metadata, param, mentions", BAD_METADATA)
def test_bad_metadata_on_create(http, nothing_created, metadata, param, mentions):
    response = http.post("/v1/conversations", json={"metadata": metadata, "items": [user("hi")]})
    assert_invalid(response, param, *mentions)


@pytest.mark.parametrize("metadata, param, mentions", BAD_METADATA)
def test_bad_metadata_on_update(http, unchanged, metadata, param, mentions):
    response = http.post(f"/v1/conversations/{unchanged}", json={"metadata": metadata})
    assert_invalid(response, param, *mentions)


def test_bad_metadata_through_the_sdk(client, unchanged):
    with pytest.raises(openai.BadRequestError) as raised:
        client.conversations.update(unchanged, metadata={f"k{n}": "v" for n in range(17)})
    assert raised.value.param == "metadata"


# --- query parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, param, mentions",
    [
        pytest.param("limit=0", "limit", [">= 1", "got 0"], id="limit-0"),
        pytest.param("limit=-5", "limit", [">= 1", "-5"], id="limit-negative"),
        pytest.param("limit=101", "limit", ["<= 100", "got 101"], id="limit-101"),
        pytest.param("limit=ten", "limit", ["expected an integer"], id="limit-not-a-number"),
        pytest.param("limit=2.5", "limit", ["expected an integer"], id="limit-a-decimal"),
        pytest.param("order=up", "order", ["'up'", "'asc'", "'desc'"], id="order-unknown"),
        pytest.param("order=ASC", "order", ["'ASC'", "'asc'"], id="order-uppercase"),
        pytest.param("include=bogus", "include", ["'bogus'", "'reasoning.encrypted_content'"], id="include-unknown"),
        pytest.param("include[]=bogus", "include", ["'bogus'"], id="include-brackets-unknown"),
        pytest.param(
            "include=reasoning.encrypted_content&include=nope", "include", ["'nope'"], id="include-one-of-several-unknown"
        ),
    ],
)
def test_bad_list_query(http, conversation, query, param, mentions):
    response = http.get(f"/v1/conversations/{conversation}/items?{query}")
    assert_invalid(response, param, *mentions)


def test_limit_out_of_range_through_the_sdk(client, conversation):
    for limit in (0, 101):
        with pytest.raises(openai.BadRequestError) as raised:
            client.conversations.items.list(conversation, limit=limit)
        assert raised.value.param == "limit"


def test_bad_include_on_items_create_adds_nothing(http, unchanged):
    response = http.post(f"/v1/conversations/{unchanged}/items?include=bogus", json={"items": [user("x")]})
    assert_invalid(response, "include", "'bogus'")


def test_bad_include_on_item_retrieve(http, conversation):
    item_id = http.get(f"/v1/conversations/{conversation}/items").json()["data"][0]["id"]
    response = http.get(f"/v1/conversations/{conversation}/items/{item_id}?include[]=bogus")
    assert_invalid(response, "include", "'bogus'")


# --- nothing half-done ---------------------------------------------------------------------------


def test_an_unresolvable_reference_adds_none_of_the_items(http, unchanged):
    response = http.post(
        f"/v1/conversations/{unchanged}/items",
        json={"items": [user("would be first"), {"type": "item_reference", "id": "msg_doesnotexist"}]},
    )
    assert_error(response, 404, "items[1].id", "'msg_doesnotexist'")


def test_an_unresolvable_reference_creates_no_conversation(http, nothing_created):
    response = http.post("/v1/conversations", json={"items": [user("a"), {"type": "item_reference", "id": "fc_nope"}]})
    assert_error(response, 404, "items[1].id", "'fc_nope'")


def test_a_reference_to_another_projects_item_is_not_found(http, beta_client, unchanged):
    theirs = beta_client.conversations.create(items=[user("beta's secret")])
    (their_item,) = beta_client.conversations.items.list(theirs.id).data

    response = http.post(f"/v1/conversations/{unchanged}/items", json={"items": [{"type": "item_reference", "id": their_item.id}]})

    assert_error(response, 404, "items[0].id")
    assert "secret" not in response.text


# --- 404s ------------------------------------------------------------------------------------


def test_unknown_conversation(client, http):
    missing = "conv_" + "0" * 48
    for call in (
        lambda: client.conversations.retrieve(missing),
        lambda: client.conversations.update(missing, metadata={"a": "b"}),
        lambda: client.conversations.delete(missing),
        lambda: client.conversations.items.list(missing),
        lambda: client.conversations.items.create(missing, items=[user("x")]),
        lambda: client.conversations.items.retrieve("msg_" + "0" * 48, conversation_id=missing),
        lambda: client.conversations.items.delete("msg_" + "0" * 48, conversation_id=missing),
    ):
        with pytest.raises(openai.NotFoundError) as raised:
            call()
        assert raised.value.status_code == 404
        assert missing in raised.value.message
    assert_error(http.get(f"/v1/conversations/{missing}"), 404, None, missing)


def test_unknown_item(client, http, unchanged):
    missing = "msg_" + "0" * 48
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.retrieve(missing, conversation_id=unchanged)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete(missing, conversation_id=unchanged)
    assert_error(http.get(f"/v1/conversations/{unchanged}/items/{missing}"), 404, None, missing)


def test_after_an_unknown_item(http, conversation):
    response = http.get(f"/v1/conversations/{conversation}/items", params={"after": "msg_unknown"})
    assert_error(response, 404, "after", "'msg_unknown'")


def test_ids_of_other_object_types(http, client, unchanged):
    item_id = http.get(f"/v1/conversations/{unchanged}/items").json()["data"][0]["id"]
    # An item's id is not a conversation's, and a conversation's id is not an item's.
    assert_error(http.get(f"/v1/conversations/{item_id}"), 404, None)
    assert_error(http.get(f"/v1/conversations/{item_id}/items"), 404, None)
    assert_error(http.delete(f"/v1/conversations/{item_id}"), 404, None)
    assert_error(http.get(f"/v1/conversations/{unchanged}/items/{unchanged}"), 404, None)
    assert_error(http.delete(f"/v1/conversations/{unchanged}/items/{unchanged}"), 404, None)
    # Nor is an item of one conversation reachable through another.
    other = client.conversations.create()
    assert_error(http.get(f"/v1/conversations/{other.id}/items/{item_id}"), 404, None)
    assert_error(http.delete(f"/v1/conversations/{other.id}/items/{item_id}"), 404, None)
    assert_error(http.get(f"/v1/conversations/{other.id}/items", params={"after": item_id}), 404, "after")


@pytest.mark.parametrize("odd_id", ["x", "conv_", "conv_%2F..", "conv_'; DROP TABLE conversations; --", "c" * 500, "conv_%00"])
def test_odd_ids_are_simply_not_found(http, odd_id):
    for response in (
        http.get(f"/v1/conversations/{odd_id}"),
        http.post(f"/v1/conversations/{odd_id}", json={"metadata": {}}),
        http.get(f"/v1/conversations/{odd_id}/items"),
        http.get(f"/v1/conversations/{odd_id}/items/{odd_id}"),
    ):
        assert response.status_code == 404, (odd_id, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_nul_character_in_an_id_is_simply_not_found(http, unchanged):
    # PostgreSQL cannot hold NUL in text: such an id must be "not found", never a 500.
    odd = "msg_\u0000x"
    assert_error(http.get(f"/v1/conversations/{unchanged}/items", params={"after": odd}), 404, "after")
    assert_error(http.get(f"/v1/conversations/{unchanged}/items/msg_%00x"), 404, None)
    assert_error(http.delete(f"/v1/conversations/{unchanged}/items/msg_%00x"), 404, None)
    assert_error(http.delete("/v1/conversations/conv_%00x"), 404, None)
    assert_error(http.post("/v1/conversations/conv_%00x/items", json={"items": [user("x")]}), 404, None)
    response = http.post(f"/v1/conversations/{unchanged}/items", json={"items": [{"type": "item_reference", "id": odd}]})
    assert_error(response, 404, "items[0].id")


def test_unknown_routes_and_methods(http):
    assert_error(http.get("/v1/conversation"), 404, None)
    assert_error(http.get("/v1/conversations"), 405, None)
    assert_error(http.put("/v1/conversations/conv_x", json={}), 405, None)


def test_no_bad_input_yields_a_500(http, conversation):
    hostile = [
        {"items": [{"type": None}]},
        {"items": [{"type": ["message"]}]},
        {"items": [{"role": ["user"], "content": "x"}]},
        {"items": [{"role": "user", "content": [None]}]},
        {"items": [{"role": "user", "content": [[]]}]},
        {"items": [{"role": "user", "content": [{"type": {"a": 1}}]}]},
        {"items": [{"id": 5}]},
        {"items": [{"type": "item_reference", "id": ["x"]}]},
        {"items": [{"role": "user", "content": "\u0000"}]},
        {"items": [{"role": "user", "content": "x" * 20}] * 3, "metadata": {"\u0000": "\ud7ff"}},
        {"items": [{}]},
        {"items": None},
        {"items": {"0": user("x")}},
    ]
    for body in hostile:
        response = http.post(f"/v1/conversations/{conversation}/items", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body, response.text)
        response = http.post("/v1/conversations", content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert response.status_code < 500, (body, response.text)
