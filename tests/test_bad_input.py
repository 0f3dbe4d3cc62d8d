"""Bad input, by hand: each case gets a clear answer in OpenAI's envelope and changes nothing.

Beside the generated requests of test_fuzz.py: bodies no generator writes (deep nesting,
invalid UTF-8, 10 MB strings, JSON that is not an object), wrong content types, query values
out of range, and the ids of every other object type in every path. A refused request must
leave the conversation and response it names as they were, and store no new rows.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import KEYS
from tests.helpers import sse_events

MAX_BODY_BYTES = 32 * 1024 * 1024  # the default limits.max_body_bytes the test servers run with


def assert_error(response: httpx.Response, status: int, *mentions: str, param: str | None = ...) -> dict:
    """OpenAI's envelope with this status: one sentence, no traceback or validator noise."""
    assert response.status_code == status, response.text[:2000]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error", error
    assert isinstance(error["message"], str) and error["message"].endswith("."), error
    assert "\n" not in error["message"] and "Traceback" not in error["message"], error
    if param is not ...:
        assert error["param"] == param, error
    for mention in mentions:
        assert mention in error["message"], (mention, error["message"])
    return error


@pytest.fixture
def objects(http):
    """A conversation with metadata and items, and a response with its output, in project alpha."""
    conversation = http.post(
        "/v1/conversations",
        json={"metadata": {"owner": "alpha"}, "items": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}]},
    ).json()
    items = http.get(f"/v1/conversations/{conversation['id']}/items").json()["data"]
    response = http.post("/v1/responses", json={"model": "scripted", "input": "hello", "conversation": conversation["id"]}).json()
    return {
        "conversation": conversation["id"],
        "item": items[-1]["id"],
        "response": response["id"],
        "output": response["output"][0]["id"],
    }


def stored(http: httpx.Client, objects: dict) -> list:
    conversation, response = objects["conversation"], objects["response"]
    return [
        http.get(f"/v1/conversations/{conversation}").json(),
        http.get(f"/v1/conversations/{conversation}/items", params={"limit": 100}).json(),
        http.get(f"/v1/responses/{response}").json(),
        http.get(f"/v1/responses/{response}/input_items", params={"limit": 100}).json(),
    ]


@pytest.fixture
def unchanged(http, objects, row_counts):
    """The test's objects; afterwards their state and the database's row counts are as before."""
    before, rows = stored(http, objects), row_counts()
    yield objects
    assert stored(http, objects) == before
    assert row_counts() == rows


def post_raw(http: httpx.Client, path: str, body: bytes, content_type: str | None = "application/json") -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type is not None else {}
    request = http.build_request("POST", path, content=body, headers=headers)
    if content_type is None:
        request.headers.pop("Content-Type", None)
    return http.send(request)


def body_paths(objects: dict) -> list[str]:
    """Every operation that takes a JSON body."""
    conversation = objects["conversation"]
    return ["/v1/conversations", f"/v1/conversations/{conversation}", f"/v1/conversations/{conversation}/items", "/v1/responses", "/v1/responses/input_tokens"]


# --- deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("opening, closing", [(b"[", b"]"), (b'{"a":', b"}")], ids=["arrays", "objects"])
def test_json_nested_ten_thousand_levels_is_refused(http, unchanged, opening, closing):
    deep = opening * 10_000 + b"1" + closing * 10_000
    bodies = {
        "/v1/conversations": b'{"metadata": ' + deep + b"}",
        f"/v1/conversations/{unchanged['conversation']}": b'{"metadata": ' + deep + b"}",
        f"/v1/conversations/{unchanged['conversation']}/items": b'{"items": [{"role": "user", "content": ' + deep + b"}]}",
        "/v1/responses": b'{"model": "scripted", "input": "x", "conversation": "' + unchanged["conversation"].encode() + b'", "tools": [{"type": "function", "name": "f", "parameters": ' + deep + b"}]}",
        "/v1/responses/input_tokens": b'{"model": "scripted", "input": ' + deep + b"}",
    }
    for path, body in bodies.items():
        assert_error(post_raw(http, path, body), 400, "nested deeper than 128 levels", param=None)


def test_nesting_just_past_the_limit_is_refused_and_within_it_is_kept(http, unchanged):
    def schema(depth: int) -> dict:
        value: dict = {"type": "string"}
        for _ in range(depth):
            value = {"type": "object", "properties": {"a": value}}
        return value

    # body -> tools -> tool -> parameters is 4 levels; the limit is 128 in all.
    too_deep = {"model": "scripted", "input": "x", "tools": [{"type": "function", "name": "f", "parameters": schema(70)}]}
    assert_error(http.post("/v1/responses", json=too_deep), 400, "nested deeper", param=None)
    fine = {"model": "scripted", "input": "x", "store": False, "tools": [{"type": "function", "name": "f", "parameters": schema(55)}]}
    answer = http.post("/v1/responses", json=fine)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tools"][0]["parameters"] == schema(55)


# --- huge strings and bodies -----------------------------------------------------------------


def test_a_ten_megabyte_item_is_stored_whole(http, objects):
    text = "word " * 2_000_000  # 10,000,000 characters, under OpenAI's 10 MiB limit on a text field
    added = http.post(f"/v1/conversations/{objects['conversation']}/items", json={"items": [{"role": "user", "content": text}]}, timeout=120)
    assert added.status_code == 200, added.text[:500]
    item = added.json()["data"][0]
    fetched = http.get(f"/v1/conversations/{objects['conversation']}/items/{item['id']}", timeout=120).json()
    assert fetched["content"][0]["text"] == text


def test_a_text_over_ten_mebibytes_is_refused(http, unchanged):
    text = "x" * (10 * 1024 * 1024 + 1)
    response = http.post(f"/v1/conversations/{unchanged['conversation']}/items", json={"items": [{"role": "user", "content": text}]}, timeout=120)
    assert_error(response, 400, "string too long", param="items[0].content")


def test_a_ten_megabyte_input_is_answered_or_refused_cleanly(http, unchanged):
    body = {"model": "scripted", "input": "word " * 2_000_000, "conversation": unchanged["conversation"]}
    response = http.post("/v1/responses", json=body, timeout=120)
    # The scripted model's context window is far smaller: the answer is a clear 400.
    error = assert_error(response, 400, "context window", param="input")
    assert error["code"] == "context_length_exceeded"


def test_a_body_over_the_configured_limit_is_a_413(http, unchanged):
    body = b'{"model": "scripted", "input": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    for path in body_paths(unchanged):
        error = assert_error(post_raw(http, path, body), 413, "larger than this server accepts", param=None)
        assert error["code"] == "request_too_large"


def test_ten_thousand_input_items_are_refused_clearly(http, unchanged):
    items = [{"role": "user", "content": f"message {n}"} for n in range(10_000)]
    response = http.post("/v1/responses", json={"model": "scripted", "input": items, "conversation": unchanged["conversation"]}, timeout=120)
    assert_error(response, 400, "context window", param="input")
    response = http.post(f"/v1/conversations/{unchanged['conversation']}/items", json={"items": items}, timeout=120)
    assert_error(response, 400, "array too long", param="items")
    assert_error(http.post("/v1/conversations", json={"items": items}, timeout=120), 400, "array too long", param="items")


# --- bytes that are not JSON, or not an object -------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"metadata": {"a": "\xff\xfe"}}', id="invalid-utf8"),
        pytest.param(b'{"metadata": {"a": "\xed\xa0\x80"}}', id="utf8-encoded-surrogate"),
        pytest.param(b'{"metadata": {"a": "\\ud800"}}', id="lone-surrogate-escape"),
        pytest.param(b'\xef\xbb\xbf{"metadata": {}}', id="byte-order-mark"),
        pytest.param(b'{"metadata": {"a": "b"}', id="truncated"),
        pytest.param(b'{"metadata": {"a": "b"},}', id="trailing-comma"),
        pytest.param(b"{'metadata': {}}", id="single-quotes"),
        pytest.param(b"   ", id="whitespace"),
    ],
)
def test_bytes_that_are_not_json_are_refused(http, unchanged, body):
    for path in body_paths(unchanged):
        assert_error(post_raw(http, path, body), 400, "could not parse the JSON body", param=None)


@pytest.mark.parametrize("body, kind", [(b"[]", "an array"), (b"[{}]", "an array"), (b"42", "an integer"), (b"1.5", "a decimal"), (b'"text"', "a string"), (b"true", "a boolean"), (b"null", "null")])
def test_a_body_that_is_not_an_object_is_refused(http, unchanged, body, kind):
    for path in body_paths(unchanged):
        assert_error(post_raw(http, path, body), 400, f"expected an object, but got {kind} instead", param=None)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", None])
def test_a_body_that_is_not_sent_as_json_is_refused(http, unchanged, content_type):
    body = json.dumps({"model": "scripted", "input": "hi", "metadata": {"a": "b"}, "items": [{"role": "user", "content": "x"}]}).encode()
    for path in body_paths(unchanged):
        error = assert_error(post_raw(http, path, body, content_type), 400, "Content-Type: application/json", param=None)
        assert (content_type or "no Content-Type").split(";")[0] in error["message"]


def test_json_with_a_charset_or_a_json_suffix_is_json(http):
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        response = post_raw(http, "/v1/conversations", b'{"metadata": {"via": "suffix"}}', content_type)
        assert response.status_code == 200 and response.json()["metadata"] == {"via": "suffix"}, response.text


def test_a_response_is_created_alike_whichever_way_its_body_is_read(http):
    # POST /v1/responses reads a plain application/json body on a lighter path than FastAPI's
    # (api/direct.py), and any other JSON type FastAPI's way: the answers must not differ.
    body = b'{"model": "scripted", "input": "hello", "metadata": {"via": "type"}, "instructions": "be brief"}'
    answers = [post_raw(http, "/v1/responses", body, content_type) for content_type in ("application/json", "application/json; charset=utf-8")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
    plain, charset = (answer.json() for answer in answers)
    varying = {"id", "created_at", "completed_at", "output"}
    assert {key: value for key, value in plain.items() if key not in varying} == {key: value for key, value in charset.items() if key not in varying}
    assert [item["content"] for item in plain["output"]] == [item["content"] for item in charset["output"]]
    assert [set(answer.headers) for answer in answers][0] == set(answers[1].headers)
    bad = b'{"model": "scripted", "input": "hello", "temperature": "hot"}'
    errors = [post_raw(http, "/v1/responses", bad, content_type).json() for content_type in ("application/json", "application/json; charset=utf-8")]
    assert errors[0] == errors[1] and errors[0]["error"]["param"] == "temperature"


def test_an_empty_body(http, unchanged):
    conversation = unchanged["conversation"]
    assert_error(post_raw(http, f"/v1/conversations/{conversation}", b""), 400, "'metadata'", param="metadata")
    assert_error(post_raw(http, f"/v1/conversations/{conversation}/items", b""), 400, "'items'", param="items")
    for path in ("/v1/responses", "/v1/responses/input_tokens"):
        assert_error(post_raw(http, path, b""), 400, "The request body is empty", param=None)


def test_no_body_creates_an_empty_conversation(http):
    # Every field of a new conversation is optional.
    created = post_raw(http, "/v1/conversations", b"")
    assert created.status_code == 200 and created.json()["metadata"] == {}


def test_the_api_key_is_checked_before_the_body(server):
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        for body in (b"[" * 10_000, b"\xff", b"not json", b"{}"):
            response = post_raw(anonymous, "/v1/responses", body)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["message"].startswith("You didn't provide an API key")


# --- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"1e309", b"-1e309", b"NaN", b"Infinity", b"-Infinity", b"1e999999"])
def test_numbers_json_cannot_hold_are_refused(http, unchanged, value):
    body = b'{"model": "scripted", "input": "x", "conversation": "' + unchanged["conversation"].encode() + b'", "temperature": ' + value + b"}"
    assert_error(post_raw(http, "/v1/responses", body), 400, "could not parse the JSON body", param=None)


@pytest.mark.parametrize(
    "field, value, mention",
    [
        ("temperature", 2.0000001, "Expected a value <= 2"),
        ("temperature", -0.0001, "Expected a value >= 0"),
        ("top_p", 1e300, "Expected a value <= 1"),
        ("max_output_tokens", 10**30, "expected an integer"),
        ("max_output_tokens", 3.0, "expected an integer"),
        ("max_output_tokens", 2**63, "Expected a value <= 9223372036854775807"),
        ("max_tool_calls", 2**64, "expected an integer"),
        ("max_output_tokens", 0, "Expected a value >= 1"),
        ("top_logprobs", 21, "Expected a value <= 20"),
        ("temperature", "1", "expected a number"),
        ("stream", "true", "expected a boolean"),
        ("store", 1, "expected a boolean"),
        ("top_logprobs", "5", "expected an integer"),
    ],
)
def test_numbers_out_of_range_are_refused(http, unchanged, field, value, mention):
    body = {"model": "scripted", "input": "x", "conversation": unchanged["conversation"], field: value}
    assert_error(http.post("/v1/responses", json=body), 400, mention, param=field)


# --- query strings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query, param, mention",
    [
        ("limit=-1", "limit", "Expected a value >= 1"),
        ("limit=0", "limit", "Expected a value >= 1"),
        ("limit=101", "limit", "Expected a value <= 100"),
        ("limit=1000000000", "limit", "Expected a value <= 100"),
        ("limit=99999999999999999999999999", "limit", "Expected a value <= 100"),
        ("limit=1e9", "limit", "expected an integer"),
        ("limit=2.5", "limit", "expected an integer"),
        ("limit=abc", "limit", "expected an integer"),
        ("limit=", "limit", "expected an integer"),
        ("order=sideways", "order", "'sideways'"),
        ("order=ASC", "order", "'ASC'"),
        ("include=junk", "include", "'junk'"),
        ("include[]=message.input_image.image_url&include[]=%00", "include", "Supported values are"),
    ],
)
def test_list_query_values_out_of_range(http, objects, query, param, mention):
    for path in (f"/v1/conversations/{objects['conversation']}/items", f"/v1/responses/{objects['response']}/input_items"):
        assert_error(http.get(f"{path}?{query}"), 400, mention, param=param)


def test_an_unknown_cursor_is_not_found(http, objects):
    for path in (f"/v1/conversations/{objects['conversation']}/items", f"/v1/responses/{objects['response']}/input_items"):
        assert_error(http.get(path, params={"after": "msg_nonexistent"}), 404, "msg_nonexistent", param="after")


@pytest.mark.parametrize(
    "query, param, mention",
    [
        ("stream=maybe", "stream", "expected a boolean"),
        ("stream=true&starting_after=-5", "starting_after", "Expected a value >= 0"),
        ("stream=true&starting_after=abc", "starting_after", "expected an integer"),
        ("stream=true&starting_after=1e3", "starting_after", "expected an integer"),
        ("starting_after=3", "starting_after", "stream=true"),
        ("include=junk", "include", "'junk'"),
    ],
)
def test_retrieve_query_values_out_of_range(http, objects, query, param, mention):
    assert_error(http.get(f"/v1/responses/{objects['response']}?{query}"), 400, mention, param=param)


def test_unknown_query_parameters_are_ignored(http, objects):
    assert http.get(f"/v1/conversations/{objects['conversation']}?verbose=1&limit=zzz").status_code == 200
    assert http.get(f"/v1/responses/{objects['response']}?foo=bar").status_code == 200


# --- ids -------------------------------------------------------------------------------------


def paths_by_id(objects: dict, ids: dict[str, str]) -> list[tuple[str, str]]:
    """(method, path) of every operation that names an object, with these ids in it."""
    conversation, item, response = ids["conversation"], ids["item"], ids["response"]
    return [
        ("GET", f"/v1/conversations/{conversation}"),
        ("POST", f"/v1/conversations/{conversation}"),
        ("DELETE", f"/v1/conversations/{conversation}"),
        ("GET", f"/v1/conversations/{conversation}/items"),
        ("POST", f"/v1/conversations/{conversation}/items"),
        ("GET", f"/v1/conversations/{conversation}/items/{item}"),
        ("DELETE", f"/v1/conversations/{conversation}/items/{item}"),
        ("GET", f"/v1/responses/{response}"),
        ("GET", f"/v1/responses/{response}?stream=true"),
        ("DELETE", f"/v1/responses/{response}"),
        ("POST", f"/v1/responses/{response}/cancel"),
        ("GET", f"/v1/responses/{response}/input_items"),
    ]


def send(http: httpx.Client, method: str, path: str) -> httpx.Response:
    if method == "POST" and not path.endswith("/cancel"):
        body = {"items": [{"role": "user", "content": "x"}]} if path.endswith("/items") else {"metadata": {"x": "y"}}
        return http.request(method, path, json=body)
    return http.request(method, path)


def test_ids_of_every_other_type_are_not_found(http, unchanged):
    o = unchanged
    # Each slot gets every id that is not of its type: a response or item id as a conversation, ...
    wrong = {
        "conversation": [o["response"], o["item"], o["output"]],
        "item": [o["conversation"], o["response"]],
        "response": [o["conversation"], o["item"], o["output"]],
    }
    right = paths_by_id(o, o)
    for slot, ids in wrong.items():
        for wrong_id in ids:
            for (method, path), (_, right_path) in zip(paths_by_id(o, {**o, slot: wrong_id}), right):
                if path != right_path:  # the operation names an object of this slot's type
                    assert_error(send(http, method, path), 404, "not found")


def test_an_item_under_another_conversation_is_not_found(http, objects):
    other = http.post("/v1/conversations", json={}).json()["id"]
    o = objects
    assert_error(http.get(f"/v1/conversations/{other}/items/{o['item']}"), 404, o["item"])
    assert_error(http.delete(f"/v1/conversations/{other}/items/{o['item']}"), 404, o["item"])


def test_ids_of_another_project_are_not_found(server, unchanged):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['beta']}"}, timeout=30) as beta:
        for method, path in paths_by_id(unchanged, unchanged):
            assert_error(send(beta, method, path), 404, "not found")


@pytest.mark.parametrize(
    "odd_id",
    [
        pytest.param("conv_%00x", id="nul"),
        pytest.param("%F0%9F%92%A9", id="emoji"),
        pytest.param("%E2%80%AEevil", id="right-to-left-override"),
        pytest.param("%ED%A0%80", id="encoded-surrogate"),
        pytest.param("%FF%FE", id="invalid-utf8"),
        pytest.param("a" * 5000, id="5000-characters"),
        pytest.param("%20", id="space"),
        pytest.param("..%2F..%2Fetc", id="encoded-slashes"),
        pytest.param("conv_x%27%3B%20DROP%20TABLE%20conversations%3B--", id="sql"),
        pytest.param("%25s%25n", id="format-string"),
    ],
)
def test_odd_ids_are_not_found(http, unchanged, odd_id):
    right = paths_by_id(unchanged, unchanged)
    for slot in ("conversation", "item", "response"):
        for (method, path), (_, right_path) in zip(paths_by_id(unchanged, {**unchanged, slot: odd_id}), right):
            if path != right_path:
                response = send(http, method, path)
                assert response.status_code == 404, (method, path, response.text[:300])
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("field", ["conversation", "previous_response_id"])
@pytest.mark.parametrize("odd_id", ["c\u0000", "\ud7ff\ue000", "x" * 5000, "", "resp_' OR 1=1 --"])
def test_odd_ids_in_a_body_are_refused(http, unchanged, field, odd_id):
    for value in (odd_id, {"id": odd_id}) if field == "conversation" else (odd_id,):
        response = http.post("/v1/responses", json={"model": "scripted", "input": "x", field: value})
        assert response.status_code in (400, 404), response.text[:300]
        error = assert_error(response, response.status_code)
        assert error["param"].startswith(field), error


def test_odd_item_references_are_not_found(http, unchanged):
    for odd_id in ("\u0000", "x" * 5000, unchanged["conversation"], unchanged["response"], ""):
        response = http.post(f"/v1/conversations/{unchanged['conversation']}/items", json={"items": [{"type": "item_reference", "id": odd_id}]})
        assert_error(response, 404, param="items[0].id")
        response = http.post("/v1/responses", json={"model": "scripted", "input": [{"id": odd_id}], "conversation": unchanged["conversation"]})
        assert_error(response, 404, param="input[0].id")


# --- odd text --------------------------------------------------------------------------------

ODD_TEXT = "nul \u0000 bell \u0007 del \u007f nbsp \u00a0 ls \u2028 ps \u2029 bom \ufeff nonchar \uffff emoji \U0001f4a9 zwj \U0001f468\u200d\U0001f469 rtl \u202e combining e\u0301 cjk \u4e2d private \ue000"


def test_odd_text_is_stored_and_returned_exactly(http, objects):
    metadata = {"k\u0000\u2028": ODD_TEXT[:512]}
    created = http.post("/v1/conversations", json={"metadata": metadata, "items": [{"role": "user", "content": ODD_TEXT}]})
    assert created.status_code == 200, created.text
    conversation = created.json()["id"]
    assert http.get(f"/v1/conversations/{conversation}").json()["metadata"] == metadata
    assert http.get(f"/v1/conversations/{conversation}/items").json()["data"][0]["content"][0]["text"] == ODD_TEXT
    answer = http.post("/v1/responses", json={"model": "scripted", "input": ODD_TEXT, "instructions": ODD_TEXT, "metadata": metadata})
    assert answer.status_code == 200, answer.text
    stored_answer = http.get(f"/v1/responses/{answer.json()['id']}").json()
    assert stored_answer["instructions"] == ODD_TEXT and stored_answer["metadata"] == metadata
    # Streamed too: every event still parses, whatever the text holds, and the stream read
    # again by id (a background response's event log) is the same stream.
    body = {"model": "scripted", "input": ODD_TEXT, "instructions": ODD_TEXT, "metadata": metadata, "background": True, "stream": True}
    streamed = sse_events(http, "/v1/responses", body)
    final = streamed[-1]["response"]
    assert streamed[-1]["type"] == "response.completed"
    assert final["instructions"] == ODD_TEXT and final["metadata"] == metadata
    deltas = "".join(event["delta"] for event in streamed if event["type"] == "response.output_text.delta")
    assert deltas == final["output"][0]["content"][0]["text"] and ODD_TEXT in deltas
    assert sse_events(http, f"/v1/responses/{final['id']}?stream=true", method="GET") == streamed


# --- JSON oddities ---------------------------------------------------------------------------


def test_duplicate_keys_take_the_last_value(http):
    response = post_raw(http, "/v1/conversations", b'{"metadata": {"a": "first"}, "metadata": {"a": "last"}}')
    assert response.status_code == 200 and response.json()["metadata"] == {"a": "last"}
    response = post_raw(http, "/v1/responses", b'{"model": "scripted", "input": "x", "store": true, "store": false}')
    assert response.status_code == 200 and response.json()["store"] is False


def test_unknown_top_level_fields_are_tolerated(http, objects):
    extra = {"some_future_field": {"nested": [1, 2, 3]}, "x-trace": "abc"}
    assert http.post("/v1/conversations", json={"metadata": {}, **extra}).status_code == 200
    assert http.post(f"/v1/conversations/{objects['conversation']}", json={"metadata": {"a": "b"}, **extra}).status_code == 200
    assert http.post(f"/v1/conversations/{objects['conversation']}/items", json={"items": [{"role": "user", "content": "x"}], **extra}).status_code == 200
    answer = http.post("/v1/responses", json={"model": "scripted", "input": "x", "store": False, **extra})
    assert answer.status_code == 200 and "some_future_field" not in answer.json()
    assert http.post("/v1/responses/input_tokens", json={"model": "scripted", "input": "x", **extra}).status_code == 200


# --- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata, mention",
    [
        ({f"k{n}": "v" for n in range(17)}, "at most 16 pairs"),
        ({"k" * 65: "v"}, "at most 64 characters"),
        ({"k": "v" * 513}, "string too long"),
        ({f"k{n}": "v" * 100_000 for n in range(16)}, "string too long"),
        ({"k": 1}, "expected a string"),
        ({"k": None}, "expected a string"),
        ({"k": {"nested": "v"}}, "expected a string"),
        (["k", "v"], "expected an object"),
        ("k=v", "expected an object"),
    ],
)
def test_bad_metadata_is_refused_everywhere(http, unchanged, metadata, mention):
    conversation = unchanged["conversation"]
    for path, body in (
        ("/v1/conversations", {"metadata": metadata}),
        (f"/v1/conversations/{conversation}", {"metadata": metadata}),
        ("/v1/responses", {"model": "scripted", "input": "x", "conversation": conversation, "metadata": metadata}),
    ):
        error = assert_error(http.post(path, json=body), 400, mention)
        assert error["param"].startswith("metadata"), error


def test_metadata_at_its_limits_is_kept(http):
    metadata = {f"{n:02d}" + "k" * 62: "v" * 512 for n in range(16)}
    created = http.post("/v1/conversations", json={"metadata": metadata})
    assert created.status_code == 200 and created.json()["metadata"] == metadata


# --- include ---------------------------------------------------------------------------------


@pytest.mark.parametrize("include", [["junk"], ["reasoning.encrypted_content", "junk"], [""], ["\u0000"], "reasoning.encrypted_content", [1], [None], {"a": 1}])
def test_bad_include_in_a_body_is_refused(http, unchanged, include):
    body = {"model": "scripted", "input": "x", "conversation": unchanged["conversation"], "include": include}
    error = assert_error(http.post("/v1/responses", json=body), 400)
    assert error["param"].startswith("include"), error


# --- content of the wrong kind, deep down ----------------------------------------------------


@pytest.mark.parametrize(
    "item, param, mention",
    [
        ({"role": "user", "content": [{"type": "output_text", "text": "x"}]}, "items[0].content[0].type", "'output_text'"),
        ({"role": "user", "content": [{"type": "input_text", "text": ["x"]}]}, "items[0].content[0].text", "expected a string"),
        ({"role": "user", "content": [[{"type": "input_text", "text": "x"}]]}, "items[0].content[0]", "expected an object"),
        ({"role": "user", "content": [{"type": "input_text"}]}, "items[0].content[0].text", "Missing required parameter"),
        ({"role": "assistant", "content": [{"type": "output_text", "text": "x", "annotations": [{"type": "url_citation", "url": "u", "start_index": "0", "end_index": 1, "title": "t"}]}]}, "items[0].content[0].annotations[0].start_index", "expected an integer"),
        ({"role": "assistant", "content": [{"type": "output_text", "text": "x", "annotations": [{"type": "nope"}]}]}, "items[0].content[0].annotations[0].type", "'nope'"),
        ({"type": "function_call_output", "call_id": "c", "output": [{"type": "refusal", "refusal": "no"}]}, "items[0].output[0].type", "'refusal'"),
        ({"type": "shell_call_output", "call_id": "c", "output": [{"stdout": "", "stderr": "", "outcome": {"type": "exit", "exit_code": "0"}}]}, "items[0].output[0].outcome.exit_code", "expected an integer"),
        ({"type": "computer_call", "id": "cu_1", "call_id": "c", "status": "completed", "pending_safety_checks": [], "action": {"type": "drag", "path": [{"x": 1, "y": [2]}]}}, "items[0].action.path[0].y", "expected an integer"),
        ({"type": "mcp_list_tools", "id": "m", "server_label": "s", "tools": [{"name": "t", "input_schema": "not an object"}]}, "items[0].tools[0].input_schema", "expected an object"),
        ({"role": "user", "content": [{"type": "input_text", "text": "x", "prompt_cache_breakpoint": {"mode": 1}}]}, "items[0].content[0].prompt_cache_breakpoint.mode", "expected a string"),
    ],
)
def test_content_of_the_wrong_kind_deep_in_an_item_is_refused(http, unchanged, item, param, mention):
    conversation = unchanged["conversation"]
    assert_error(http.post(f"/v1/conversations/{conversation}/items", json={"items": [item]}), 400, mention, param=param)
    assert_error(http.post("/v1/conversations", json={"items": [item]}), 400, mention, param=param)
    body = {"model": "scripted", "input": [item], "conversation": conversation}
    assert_error(http.post("/v1/responses", json=body), 400, mention, param="input" + param.removeprefix("items"))


# --- headers ---------------------------------------------------------------------------------


def test_an_idempotency_key_longer_than_kept_is_refused(http, unchanged):
    body = {"model": "scripted", "input": "x", "conversation": unchanged["conversation"]}
    response = http.post("/v1/responses", json=body, headers={"Idempotency-Key": "k" * 256})
    assert_error(response, 400, "Idempotency-Key", param="Idempotency-Key")


def test_an_empty_idempotency_key_is_no_key(http):
    body = {"model": "scripted", "input": "x", "store": False}
    first = http.post("/v1/responses", json=body, headers={"Idempotency-Key": ""})
    second = http.post("/v1/responses", json=body, headers={"Idempotency-Key": ""})
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] != second.json()["id"]
