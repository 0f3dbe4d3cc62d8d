"""The console's conversations, in real Chromium: signing in, each project seeing only its own
conversations (an admin key every project's), a conversation made through the SDK with every
item rendered, a long conversation loaded as one scrolls, and metadata edited in the page and
read back through the SDK. The JSON listing under /console/api is checked with httpx."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import chromium, new_page, sign_in
from tests.conftest import KEYS
from tests.helpers import script

ADMIN_KEY = "sk-admin-test-key"
SCRIPTED = {"id": "scripted", "provider": "scripted"}
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="


@pytest.fixture(scope="module")
def server(start_server):
    """Projects alpha and beta, and an admin key (its own project, ops) that sees every project."""
    keys = [{"key": key, "project": project} for project, key in KEYS.items()] + [{"key": ADMIN_KEY, "project": "ops", "admin": True}]
    return start_server({"auth": {"api_keys": keys}, "models": [SCRIPTED]})


@pytest.fixture(scope="module")
def browser(server):
    """Chromium, started once this module's database exists: while Playwright's event loop runs,
    tests/servers.py cannot make a PostgreSQL database (it calls asyncio.run)."""
    with chromium() as running:
        yield running


@pytest.fixture(scope="module")
def open_server(start_server):
    """A server without API keys: open to anyone."""
    return start_server({"models": [SCRIPTED]})


def tag() -> str:
    """A value no other test's metadata holds."""
    return uuid.uuid4().hex[:12]


def items_of(page) -> list[str]:
    return page.locator("[data-testid=item]").evaluate_all("items => items.map(item => item.dataset.itemId)")


def listing(server, key: str | None, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(server.url + "/console/api/conversations", params=params, headers=headers, timeout=30)


# --- Signing in ------------------------------------------------------------------------------


def test_signing_in_with_a_wrong_key_then_the_right_one_and_signing_out(page):
    page.goto("/console/conversations")
    expect(page).to_have_url("/console/login?next=/console/conversations")

    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That API key is not one this server knows.")

    page.get_by_label("API key").fill(KEYS["alpha"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url("/console/conversations")
    expect(page.get_by_role("heading", name="Conversations")).to_be_visible()
    expect(page.get_by_test_id("project")).to_have_text("project alpha")
    expect(page.get_by_test_id("open-banner")).to_have_count(0)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url("/console/login")
    page.goto("/console/conversations")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_an_open_server_says_so_in_a_banner(browser, open_server):
    with new_page(browser, open_server.url) as page:
        page.goto("/console")
        expect(page).to_have_url("/console/conversations")
        expect(page.get_by_test_id("open-banner")).to_contain_text("This server is open")
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


# --- Projects --------------------------------------------------------------------------------


def test_a_project_sees_only_its_own_conversations(page, server, client, beta_client):
    mine = client.conversations.create(metadata={"owner": "alpha"})
    theirs = beta_client.conversations.create(metadata={"owner": "beta"}, items=[{"type": "message", "role": "user", "content": "beta's secret"}])

    sign_in(page, KEYS["alpha"])
    rows = page.get_by_test_id("conversation-row")
    expect(rows.first).to_be_visible()
    shown = rows.evaluate_all("rows => rows.map(row => row.dataset.conversationId)")
    assert mine.id in shown and theirs.id not in shown  # beta's is the newest: it would be on this first page

    page.get_by_label("ID (or its start)").fill(theirs.id)
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("empty")).to_have_text("No conversation matches this search.")

    page.goto(f"/console/conversations/{theirs.id}")
    expect(page.get_by_role("heading", name="Conversation not found")).to_be_visible()
    expect(page.get_by_text("beta's secret")).to_have_count(0)
    assert page.request.get(f"/console/conversations/{theirs.id}/items").status == 404

    listed = listing(server, KEYS["alpha"], limit=100).json()["data"]
    assert theirs.id not in {conversation["id"] for conversation in listed}
    assert {conversation["project"] for conversation in listed} == {"alpha"}
    refused = page.request.post(f"/console/api/conversations/{theirs.id}", data={"metadata": {"owner": "alpha"}})
    assert refused.status == 404 and refused.json()["error"]["message"] == f"Conversation with id '{theirs.id}' not found."
    assert beta_client.conversations.retrieve(theirs.id).metadata == {"owner": "beta"}


def test_an_admin_key_sees_every_project(page, server, client, beta_client):
    run = tag()
    alpha_one = client.conversations.create(metadata={"run": run})
    beta_one = beta_client.conversations.create(metadata={"run": run}, items=[{"type": "message", "role": "user", "content": "Hello from *beta*"}])

    sign_in(page, ADMIN_KEY)
    expect(page.get_by_test_id("project")).to_have_text("admin · every project")
    page.get_by_label("Metadata").fill(f"run={run}")
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(2)
    projects = {row.get_attribute("data-conversation-id"): row.get_by_test_id("conversation-project").inner_text() for row in rows.all()}
    assert projects == {alpha_one.id: "alpha", beta_one.id: "beta"}

    page.get_by_label("Project").fill("beta")
    page.get_by_role("button", name="Search").click()
    expect(rows).to_have_count(1)
    rows.get_by_role("link").click()
    expect(page.get_by_test_id("conversation-id")).to_have_text(beta_one.id)
    expect(page.get_by_test_id("conversation-project")).to_have_text("beta")
    expect(page.locator("[data-role=user] em")).to_have_text("beta")

    # The admin's change lands in the conversation's own project.
    page.get_by_role("textbox", name="Value").first.fill("edited by ops")
    page.get_by_role("button", name="Save metadata").click()
    expect(page.get_by_test_id("metadata-status")).to_have_text("Saved.")
    assert beta_client.conversations.retrieve(beta_one.id).metadata == {"run": "edited by ops"}

    by_admin = listing(server, ADMIN_KEY, metadata=f"run={run}").json()["data"]
    assert {(conversation["id"], conversation["project"]) for conversation in by_admin} == {(alpha_one.id, "alpha")}


# --- A conversation's items ------------------------------------------------------------------

WEB_SEARCH = {
    "id": "ws_upstream", "type": "web_search_call", "status": "completed",
    "action": {"type": "search", "query": "weather in Paris", "sources": [{"type": "url", "url": "https://weather.example/paris"}]},
}
MCP_CALL = {
    "id": "mcp_upstream", "type": "mcp_call", "status": "completed", "server_label": "forecasts", "name": "lookup",
    "arguments": '{"city": "Paris"}', "output": "21 degrees and sunny", "error": None,
}
CITATION = {"type": "url_citation", "url": "https://weather.example/report", "title": "Paris report", "start_index": 0, "end_index": 5}
FILE_CITATION = {"type": "file_citation", "file_id": "file-forecast", "filename": "forecast.pdf", "index": 5}


def test_a_conversation_made_through_the_sdk_shows_every_item(page, client):
    conversation = client.conversations.create(
        metadata={"agent": "weather-bot"},
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Is it **warm** in Paris? See [the docs](https://docs.example/paris).\n\n<script>window.injected = 1</script>"},
                    {"type": "input_image", "image_url": PIXEL},
                ],
            }
        ],
    )
    client.conversations.items.create(
        conversation.id,
        items=[
            {"type": "function_call", "call_id": "call_weather", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_weather", "output": '{"temperature": 21}'},
        ],
    )
    client.responses.create(
        model="scripted",
        conversation=conversation.id,
        input=script(
            {"summary": "Check the **forecast** first."},
            {"tool_item": WEB_SEARCH},
            {"tool_item": MCP_CALL},
            {"text": "Sunny, 21 degrees."},
            {"annotation": CITATION},
            {"annotation": FILE_CITATION},
        ),
    )
    stored = list(client.conversations.items.list(conversation.id, order="asc", limit=100))

    sign_in(page, KEYS["alpha"])
    page.get_by_role("link", name=conversation.id).click()
    expect(page.get_by_test_id("conversation-id")).to_have_text(conversation.id)
    expect(page.get_by_test_id("item").first).to_be_visible()
    assert items_of(page) == [item.id for item in stored]
    assert [item.type for item in stored] == ["message", "function_call", "function_call_output", "message", "reasoning", "web_search_call", "mcp_call", "message"]

    question = page.locator("[data-testid=item][data-role=user]").first
    expect(question.locator("[data-testid=text] strong")).to_have_text("warm")
    expect(question.get_by_role("link", name="the docs")).to_have_attribute("href", "https://docs.example/paris")
    expect(question).to_contain_text("<script>window.injected = 1</script>")  # shown as text, never run
    assert page.evaluate("window.injected") is None
    image = question.get_by_test_id("image")
    expect(image).to_have_attribute("src", PIXEL)
    page.wait_for_function("image => image.complete && image.naturalWidth === 1", arg=image.element_handle())

    call = page.locator("[data-item-type=function_call]")
    expect(call.get_by_test_id("item-name")).to_have_text("get_weather")
    expect(call.get_by_test_id("arguments")).to_contain_text('"city": "Paris"')
    expect(page.locator("[data-item-type=function_call_output]")).to_contain_text("call_weather")
    expect(page.locator("[data-item-type=function_call_output] [data-testid=output]")).to_have_text('{\n  "temperature": 21\n}')

    expect(page.locator("[data-item-type=reasoning] [data-testid=summary] strong")).to_have_text("forecast")
    search = page.locator("[data-item-type=web_search_call]")
    expect(search.get_by_test_id("query")).to_have_text("searched for “weather in Paris”")
    expect(search.get_by_role("link", name="https://weather.example/paris")).to_be_visible()
    mcp = page.locator("[data-item-type=mcp_call]")
    expect(mcp.get_by_test_id("item-name")).to_have_text("forecasts · lookup")
    expect(mcp.get_by_test_id("output")).to_have_text("21 degrees and sunny")

    answer = page.locator("[data-testid=item][data-role=assistant]")
    expect(answer.get_by_test_id("text")).to_have_text("Sunny, 21 degrees.")
    expect(answer.get_by_role("link", name="Paris report")).to_have_attribute("href", CITATION["url"])
    expect(answer.locator("[data-annotation-type=file_citation]")).to_contain_text("forecast.pdf")
    expect(answer.locator("[data-annotation-type=file_citation]")).to_contain_text("file-forecast")


def test_a_long_conversation_loads_as_one_scrolls(page, client):
    conversation = client.conversations.create()
    for start in range(0, 120, 20):
        client.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "user", "content": f"Message {n}"} for n in range(start, start + 20)]
        )

    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/conversations/{conversation.id}")
    items = page.get_by_test_id("item")
    expect(items).to_have_count(50)
    expect(items.last.get_by_test_id("text")).to_have_text("Message 49")

    page.get_by_test_id("item").last.scroll_into_view_if_needed()  # near the end: the next page comes by itself
    expect(items).to_have_count(100)

    more = page.get_by_role("button", name="Load more")
    expect(more).to_have_count(1)
    more.click()
    expect(items).to_have_count(120)
    expect(page.get_by_test_id("more")).to_have_count(0)
    texts = page.locator("[data-testid=item] [data-testid=text]").all_inner_texts()
    assert texts == [f"Message {n}" for n in range(120)]


# --- Metadata --------------------------------------------------------------------------------


def test_metadata_edited_in_the_page_is_what_the_sdk_reads(page, client):
    conversation = client.conversations.create(metadata={"owner": "ana", "stage": "draft"})
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/conversations/{conversation.id}")
    rows = page.get_by_test_id("metadata-row")
    expect(rows).to_have_count(2)

    rows.filter(has=page.locator("input[name=key][value=stage]")).get_by_role("textbox", name="Value").fill("review")
    rows.filter(has=page.locator("input[name=key][value=owner]")).get_by_role("button", name="Remove").click()
    page.get_by_role("button", name="Add a pair").click()
    rows.last.get_by_role("textbox", name="Key").fill("ticket")
    rows.last.get_by_role("textbox", name="Value").fill("T-42")
    page.get_by_role("button", name="Save metadata").click()
    expect(page.get_by_test_id("metadata-status")).to_have_text("Saved.")
    assert client.conversations.retrieve(conversation.id).metadata == {"stage": "review", "ticket": "T-42"}

    page.reload()
    keys = page.locator("[data-testid=metadata-row] input[name=key]")
    expect(keys).to_have_count(2)
    assert [key.input_value() for key in keys.all()] == ["stage", "ticket"]

    # Too long a value: OpenAI's words in the page, and nothing changed.
    page.get_by_role("button", name="Add a pair").click()
    rows.last.get_by_role("textbox", name="Key").fill("notes")
    rows.last.get_by_role("textbox", name="Value").fill("x" * 513)
    page.get_by_role("button", name="Save metadata").click()
    expect(page.get_by_test_id("metadata-error")).to_have_text(
        "Invalid 'metadata.notes': string too long. Expected a string with maximum length 512, but got a string with length 513 instead."
    )
    assert client.conversations.retrieve(conversation.id).metadata == {"stage": "review", "ticket": "T-42"}

    rows.nth(2).get_by_role("textbox", name="Value").fill("short enough")
    for index in range(14):  # 17 pairs in all
        page.get_by_role("button", name="Add a pair").click()
        rows.last.get_by_role("textbox", name="Key").fill(f"k{index}")
    page.get_by_role("button", name="Save metadata").click()
    expect(page.get_by_test_id("metadata-error")).to_have_text(
        "Invalid 'metadata': too many key-value pairs. Expected an object with at most 16 pairs, but got 17 pairs instead."
    )
    assert client.conversations.retrieve(conversation.id).metadata == {"stage": "review", "ticket": "T-42"}


# --- Searching -------------------------------------------------------------------------------


def test_the_list_is_searched_by_metadata_and_by_id(page, client):
    run = tag()
    red = client.conversations.create(metadata={"run": run, "color": "red"})
    blue = client.conversations.create(metadata={"run": run, "color": "blue"})

    sign_in(page, KEYS["alpha"])
    page.get_by_label("Metadata").fill(f"run={run}")
    page.get_by_role("button", name="Search").click()
    rows = page.get_by_test_id("conversation-row")
    expect(rows).to_have_count(2)
    assert {row.get_attribute("data-conversation-id") for row in rows.all()} == {red.id, blue.id}
    expect(rows.filter(has_text="color=blue")).to_have_count(1)

    page.goto(f"/console/conversations?metadata=color%3Dred&id={red.id[:24]}")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-conversation-id", red.id)
    expect(page.get_by_label("ID (or its start)")).to_have_value(red.id[:24])

    page.get_by_label("Metadata").fill("color")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("error")).to_have_text("Invalid metadata filter 'color': write it as key=value.")
    expect(rows).to_have_count(0)


def test_a_conversation_that_does_not_exist_is_a_not_found_page(page):
    sign_in(page, KEYS["alpha"])
    answer = page.goto("/console/conversations/conv_missing")
    assert answer.status == 404
    expect(page.get_by_test_id("not-found")).to_have_text("There is no conversation conv_missing in project alpha.")


# --- The JSON listing ------------------------------------------------------------------------


def test_the_json_listing_filters_pages_and_keeps_to_the_project(server, client, beta_client):
    run = tag()
    made = {client.conversations.create(metadata={"run": run, "n": str(n)}).id for n in range(3)}
    beta_client.conversations.create(metadata={"run": run})

    first = listing(server, KEYS["alpha"], metadata=f"run={run}", limit=2).json()
    assert first["object"] == "list" and len(first["data"]) == 2 and first["has_more"] is True
    assert first["first_id"] == first["data"][0]["id"] and first["last_id"] == first["data"][1]["id"]
    rest = listing(server, KEYS["alpha"], metadata=f"run={run}", limit=2, after=first["last_id"]).json()
    assert len(rest["data"]) == 1 and rest["has_more"] is False
    listed = first["data"] + rest["data"]
    assert {conversation["id"] for conversation in listed} == made
    assert all(conversation["object"] == "conversation" and conversation["project"] == "alpha" for conversation in listed)
    assert [conversation["created_at"] for conversation in listed] == sorted((conversation["created_at"] for conversation in listed), reverse=True)

    both = listing(server, KEYS["alpha"], metadata=[f"run={run}", "n=1"]).json()["data"]
    assert len(both) == 1 and both[0]["metadata"] == {"run": run, "n": "1"}
    one_id = next(iter(made))
    assert [conversation["id"] for conversation in listing(server, KEYS["alpha"], id=one_id).json()["data"]] == [one_id]
    assert [conversation["id"] for conversation in listing(server, KEYS["alpha"], id=one_id[:30]).json()["data"]] == [one_id]
    assert listing(server, KEYS["alpha"], id="conv_%").json()["data"] == []  # a wildcard is a character like any other
    # Project filters are for admins; a project key stays on its own project.
    assert {conversation["project"] for conversation in listing(server, KEYS["alpha"], project="beta", metadata=f"run={run}").json()["data"]} == {"alpha"}


def test_the_json_listing_refuses_clearly(server):
    anonymous = listing(server, None)
    assert anonymous.status_code == 401 and set(anonymous.json()["error"]) == {"message", "type", "param", "code"}
    bad_filter = listing(server, KEYS["alpha"], metadata="color")
    assert bad_filter.status_code == 400
    assert bad_filter.json()["error"] == {
        "message": "Invalid metadata filter 'color': write it as key=value.", "type": "invalid_request_error", "param": "metadata", "code": None
    }
    too_many = listing(server, KEYS["alpha"], limit=101)
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "limit"
    unknown_cursor = listing(server, KEYS["alpha"], after="conv_unknown")
    assert unknown_cursor.status_code == 404 and unknown_cursor.json()["error"]["message"] == "Conversation with id 'conv_unknown' not found."


def test_the_sdk_still_reads_what_the_console_lists(server, client):
    """The console's listing and the public API agree on a conversation's fields."""
    made = client.conversations.create(metadata={"source": "sdk"})
    listed = listing(server, KEYS["alpha"], id=made.id).json()["data"][0]
    assert {key: value for key, value in listed.items() if key != "project"} == client.conversations.retrieve(made.id).model_dump()


# Items of every other kind a conversation can hold, each as a client would add it.
MORE_ITEMS = [
    {"type": "message", "role": "developer", "content": "Answer in *French*."},
    {"type": "message", "role": "user", "content": "[run me](javascript:alert(1)) [page](data:text/html,<b>hi</b>) [mail](mailto:ops@example.com)"},
    {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot help with that."}]},
    {"type": "custom_tool_call", "call_id": "call_patch", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "call_patch", "output": "applied"},
    {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "forecasts", "tools": [{"name": "lookup", "description": "Weather by city", "input_schema": {"type": "object"}}]},
    {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "forecasts", "name": "lookup", "arguments": '{"city": "Oslo"}'},
    {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": False, "reason": "not today"},
    {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["umbrella policy"], "results": [{"file_id": "file-p", "filename": "policy.md", "score": 0.91, "text": "Umbrellas are lent at the desk."}]},
    {"type": "web_search_call", "id": "ws_2", "status": "completed", "action": {"type": "open_page", "url": "https://weather.example/oslo"}},
    {"type": "shell_call", "call_id": "call_shell", "action": {"commands": ["ls -la"]}, "status": "completed"},
    {"type": "shell_call_output", "call_id": "call_shell", "output": [{"stdout": "README.md", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}]},
    {"type": "local_shell_call", "id": "lsh_1", "call_id": "call_local", "status": "completed", "action": {"type": "exec", "command": ["uptime"], "env": {}}},
    {"type": "local_shell_call_output", "id": "call_local", "output": "up 3 days"},
]
LABELS = [
    "Developer", "User", "Assistant", "Custom tool call", "Custom tool output", "MCP tools listed", "MCP approval request",
    "MCP approval response", "File search", "Web search", "Shell call", "Shell output", "Local shell call", "Local shell output",
]


def test_every_kind_of_item_is_labelled_and_links_only_go_to_the_web_or_mail(page, client):
    conversation = client.conversations.create()
    client.conversations.items.create(conversation.id, items=MORE_ITEMS[:10])
    client.conversations.items.create(conversation.id, items=MORE_ITEMS[10:])

    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/conversations/{conversation.id}")
    items = page.get_by_test_id("item")
    expect(items).to_have_count(len(MORE_ITEMS))
    assert items.evaluate_all("items => items.map(item => item.dataset.itemType)") == [item["type"] for item in MORE_ITEMS]
    assert [label.strip() for label in page.locator("[data-testid=item] .kind strong").all_inner_texts()] == LABELS

    links = items.nth(1).locator("[data-testid=text]")
    expect(links.get_by_role("link")).to_have_count(1)
    expect(links.get_by_role("link", name="mail")).to_have_attribute("href", "mailto:ops@example.com")
    expect(links).to_contain_text("[run me](javascript:alert(1))")
    expect(items.nth(2).get_by_test_id("refusal")).to_contain_text("I cannot help with that.")
    expect(items.nth(5).get_by_test_id("tools")).to_contain_text("lookup Weather by city")
    expect(items.nth(7).get_by_test_id("decision")).to_contain_text("denied")
    expect(items.nth(7).get_by_test_id("decision")).to_contain_text("not today")
    expect(items.nth(8).get_by_test_id("results")).to_contain_text("policy.md score 0.910")
    expect(items.nth(9).get_by_role("link", name="https://weather.example/oslo")).to_be_visible()
    expect(items.nth(10).get_by_test_id("item-fields")).to_contain_text("ls -la")
    expect(items.nth(11).get_by_test_id("item-fields")).to_contain_text("README.md")


def test_searches_find_the_same_on_either_database(server, client):
    """Quotes, unicode and LIKE's wildcards are plain characters; an id prefix is matched case and
    all; a NUL, searched for or held by some conversation's metadata, is no server error."""
    run = tag()
    odd = client.conversations.create(metadata={"run": run, 'say "hi"': "it's", "city": "Zürich 東京", "share": "50%_off"})
    nul = client.conversations.create(metadata={"run": run, "note": "a\x00b"})  # PostgreSQL's JSON refuses \u0000

    def found(key: str = KEYS["alpha"], **params) -> list[str]:
        answer = listing(server, key, **params)
        assert answer.status_code == 200, answer.text
        return [conversation["id"] for conversation in answer.json()["data"]]

    assert set(found(metadata=f"run={run}")) == {odd.id, nul.id}
    assert found(metadata=['say "hi"=it\'s', "city=Zürich 東京", "share=50%_off"]) == [odd.id]
    assert found(metadata=[f"run={run}", "share=50%"]) == [] and found(metadata=[f"run={run}", "share=50__off"]) == []
    assert found(metadata="note=a\x00b") == [nul.id]
    assert found(metadata=["city=Oslo", "city=Zürich 東京"]) == []  # each term must hold, one key's twice too
    assert found(metadata="no\x00te=a") == []
    assert found(id=odd.id[:20]) == [odd.id]
    assert found(id=odd.id[:20].upper()) == []
    assert found(ADMIN_KEY, project="al\x00pha") == []


def test_signing_in_from_another_sites_page_is_refused(server):
    """Another site's page cannot sign the browser in with a key of its choosing (login CSRF)."""
    answer = httpx.post(
        server.url + "/console/login", data={"key": KEYS["beta"], "next": "/console/conversations"}, headers={"Origin": "http://evil.example"}, timeout=30
    )
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert answer.json()["error"]["code"] == "cross_origin_request"


def test_a_message_shows_each_of_its_parts_and_files_once(page, client):
    conversation = client.conversations.create(
        items=[
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "First part."},
                    {"type": "input_text", "text": "Second part."},
                    {"type": "input_image", "file_id": "file-photo"},
                    {"type": "input_file", "file_id": "file-contract"},
                    {"type": "input_file", "filename": "notes.txt", "file_data": "data:text/plain;base64,aGVsbG8="},
                    {"type": "input_file", "file_url": "https://files.example/report.pdf"},
                ],
            },
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-opaque"},
            {"type": "compaction", "encrypted_content": "gAAAAB-compacted"},
        ],
    )
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/conversations/{conversation.id}")
    message = page.locator("[data-testid=item][data-role=user]")
    expect(message.get_by_test_id("text")).to_have_text(["First part.", "Second part."])
    expect(message.get_by_test_id("image-file")).to_have_text("image: file file-photo")
    expect(message.get_by_test_id("file")).to_have_text(
        ["file: file-contract", "file: notes.txt (31 characters inline)", "file: https://files.example/report.pdf"]
    )
    expect(message.get_by_role("link", name="https://files.example/report.pdf")).to_have_attribute("href", "https://files.example/report.pdf")
    expect(page.locator("[data-item-type=reasoning]")).to_contain_text("no summary")
    expect(page.get_by_test_id("compaction")).to_contain_text("compacted")
