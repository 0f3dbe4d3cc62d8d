"""The console's responses: the list (filters, live status, cancelling), a response's page
(request, usage, items, its event stream replayed, its chain as a tree) and their JSON under
/console/api/responses, in real Chromium and over HTTP, on a server of this module's own."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import chromium, new_page, sign_in
from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import script, wait_for

ADMIN = "sk-ops-admin-key"
SLOW = {"text": "one two three four five six seven eight nine ten", "chunks": 10, "chunk_delay": 0.4}
ANSWER = "Hello there, world"


@pytest.fixture(scope="module")
def server(start_server):
    keys = [{"key": key, "project": project} for project, key in KEYS.items()] + [{"key": ADMIN, "project": "ops", "admin": True}]
    models = [{"id": "scripted", "provider": "scripted"}, {"id": "scripted-other", "provider": "scripted"}]
    return start_server({"auth": {"api_keys": keys}, "models": models, "workers": FAST_WORKERS})


@pytest.fixture(scope="module")
def browser(server):
    """Chromium, started after the module's server (and closed before the next database's):
    Playwright's loop must not be running while a PostgreSQL database is made."""
    with chromium() as running:
        yield running


@pytest.fixture
def console(server):
    """The console's JSON as project alpha."""
    with httpx.Client(base_url=server.url + "/console/api", headers={"Authorization": f"Bearer {KEYS['alpha']}"}, timeout=20) as session:
        yield session


def as_key(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/console/api", headers={"Authorization": f"Bearer {key}"}, timeout=20)


def listed(session: httpx.Client, **params) -> list[str]:
    answer = session.get("/responses", params={"limit": 100, **params})
    assert answer.status_code == 200, answer.text
    return [row["id"] for row in answer.json()["data"]]


def row(page, response_id: str):
    return page.locator(f"[data-testid=response-row][data-id='{response_id}']")


def run(branch) -> list[str]:
    """The ids of a tree branch's run of responses, in order."""
    return branch.locator(":scope > [data-testid=tree-node]").evaluate_all("nodes => nodes.map(node => node.dataset.id)")


# -- pages ------------------------------------------------------------------------------


def test_the_list_shows_only_ones_own_responses_and_filters_them(page, client, beta_client):
    mine = client.responses.create(model="scripted", input="a question for the list")
    other_model = client.responses.create(model="scripted-other", input="asked of another model")
    theirs = beta_client.responses.create(model="scripted", input="beta's own question")
    sign_in(page, KEYS["alpha"])
    page.goto("/console/responses")
    expect(row(page, mine.id)).to_contain_text("a question for the list")
    expect(row(page, mine.id)).to_contain_text("Reply to: a question for the list")
    expect(row(page, mine.id).get_by_test_id("status")).to_have_text("completed")
    expect(row(page, other_model.id)).to_be_visible()
    expect(row(page, theirs.id)).to_have_count(0)

    page.get_by_label("Model").fill("scripted-other")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**model=scripted-other**")
    expect(row(page, other_model.id)).to_be_visible()
    expect(row(page, mine.id)).to_have_count(0)

    page.get_by_label("Model").fill("")
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=cancelled**")
    expect(row(page, mine.id)).to_have_count(0)
    expect(row(page, other_model.id)).to_have_count(0)

    # Times are picked in local time and travel as Unix seconds.
    page.goto("/console/responses")
    page.get_by_label("Created since").fill("2000-01-01T00:00")
    page.get_by_label("Created before").fill("2000-01-02T00:00")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"since=\d+&until=\d+"))
    expect(page.get_by_test_id("empty")).to_have_text("No responses match these filters.")
    expect(page.get_by_label("Created since")).to_have_value("2000-01-01T00:00")
    page.get_by_label("Created before").fill("")
    page.get_by_role("button", name="Filter").click()
    expect(row(page, mine.id)).to_be_visible()

    answer = page.goto("/console/responses?status=finished&since=yesterday")
    assert answer.status == 400
    expect(page.get_by_test_id("filter-error")).to_contain_text("Invalid status 'finished'")


def test_another_projects_response_is_not_found_but_an_admin_sees_it(browser, page, server, beta_client):
    theirs = beta_client.responses.create(model="scripted", input="only beta may read this")
    sign_in(page, KEYS["alpha"])
    answer = page.goto(f"/console/responses/{theirs.id}")
    assert answer.status == 404
    expect(page.get_by_test_id("not-found")).to_contain_text(theirs.id)
    expect(page.get_by_text("only beta may read this")).to_have_count(0)

    with new_page(browser, server.url) as admin:
        sign_in(admin, ADMIN)
        admin.goto("/console/responses")
        expect(row(admin, theirs.id).get_by_test_id("project-cell")).to_have_text("beta")
        row(admin, theirs.id).get_by_role("link", name=theirs.id).click()
        expect(admin.get_by_test_id("response-project")).to_have_text("beta")
        expect(admin.get_by_test_id("input-items")).to_contain_text("only beta may read this")


def test_a_background_responses_status_is_followed_live_and_it_can_be_cancelled_from_the_list(page, client):
    running = client.responses.create(model="scripted", input=script({"delay": 60}), background=True)
    finishing = client.responses.create(model="scripted", input=script({"delay": 4}, {"text": "done"}), background=True)
    wait_for(client, running.id, statuses=("in_progress",))
    sign_in(page, KEYS["alpha"])
    page.goto("/console/responses?background=true")
    # Opened while it ran, the row reaches its end without the page being loaded again.
    expect(row(page, finishing.id).get_by_test_id("status")).to_have_text(re.compile("queued|in_progress"))
    expect(row(page, finishing.id).get_by_test_id("status")).to_have_text("completed")
    expect(row(page, finishing.id).get_by_test_id("cancel")).to_have_count(0)

    expect(row(page, running.id).get_by_test_id("status")).to_have_text("in_progress")
    row(page, running.id).get_by_role("button", name="Cancel").click()
    expect(row(page, running.id).get_by_test_id("status")).to_have_text("cancelled")
    expect(row(page, running.id).get_by_test_id("cancel")).to_have_count(0)
    assert client.responses.retrieve(running.id).status == "cancelled"


def test_a_chains_tree_shows_its_branches_with_the_current_response_marked(page, client):
    root = client.responses.create(model="scripted", input="first question")
    middle = client.responses.create(model="scripted", input="second question", previous_response_id=root.id)
    branch = client.responses.create(model="scripted-other", input="a different second question", previous_response_id=root.id)
    leaf = client.responses.create(model="scripted", input="third question", previous_response_id=middle.id)
    unrelated = client.responses.create(model="scripted", input="not in the chain")
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/responses/{middle.id}")

    tree = page.get_by_test_id("tree")
    node = lambda response_id: tree.locator(f"[data-testid=tree-node][data-id='{response_id}']")  # noqa: E731
    # A branch is a run of responses, each continuing the one above; forks nest the branches.
    trunk = tree.locator(":scope > ul > [data-testid=tree-branch]")
    expect(trunk).to_have_count(1)
    assert run(trunk) == [root.id]
    forks = trunk.locator(":scope > ul > [data-testid=tree-branch]")
    expect(forks).to_have_count(2)
    assert sorted(run(fork) for fork in forks.all()) == sorted([[middle.id, leaf.id], [branch.id]])
    expect(forks.locator("[data-testid=tree-branch]")).to_have_count(0)
    expect(node(unrelated.id)).to_have_count(0)
    expect(tree.locator("[aria-current=true]")).to_have_count(1)
    expect(tree.locator("[aria-current=true]")).to_have_attribute("data-id", middle.id)
    expect(node(branch.id)).to_contain_text("a different second question")
    expect(node(branch.id)).to_contain_text("scripted-other")
    expect(node(leaf.id)).to_contain_text("Reply to: third question")

    node(leaf.id).get_by_role("link", name=leaf.id).click()
    page.wait_for_url(f"**/console/responses/{leaf.id}")
    expect(page.get_by_test_id("tree").locator("[aria-current=true]")).to_have_attribute("data-id", leaf.id)
    expect(page.get_by_test_id("tree").locator("[data-testid=tree-node]")).to_have_count(4)


def test_a_long_chains_page_opens_with_the_chain_as_one_run(page, client):
    """An agent's chain of hundreds of turns: one branch, in order, the current one marked."""
    chain = [client.responses.create(model="scripted", input="turn 0").id]
    for turn in range(1, 300):
        chain.append(client.responses.create(model="scripted", input=f"turn {turn}", previous_response_id=chain[-1]).id)
    sign_in(page, KEYS["alpha"])
    answer = page.goto(f"/console/responses/{chain[150]}")
    assert answer.status == 200
    tree = page.get_by_test_id("tree")
    expect(tree.locator("[data-testid=tree-branch]")).to_have_count(1)
    assert run(tree.locator("[data-testid=tree-branch]")) == chain
    expect(tree.locator("[aria-current=true]")).to_have_attribute("data-id", chain[150])
    expect(tree.locator(f"[data-testid=tree-node][data-id='{chain[-1]}']")).to_contain_text("turn 299")


def test_a_foreground_responses_stream_is_rebuilt_and_replayed(page, client):
    response = client.responses.create(model="scripted", input=script({"text": ANSWER, "chunks": 3}))
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/responses/{response.id}")
    events = page.get_by_test_id("events")
    expect(events.get_by_test_id("events-source")).to_contain_text("Rebuilt")
    expect(events.locator("li").first).to_have_attribute("data-type", "response.created")
    expect(events.locator("li").last).to_have_attribute("data-type", "response.completed")
    # Deltas are not kept for a response that was not in the background: one per content part.
    expect(events.locator("li[data-type='response.output_text.delta']")).to_have_count(1)
    expect(events.get_by_test_id("replay-text")).to_have_text("")
    events.get_by_role("button", name="Replay").click()
    expect(events.get_by_test_id("replay-text")).to_have_text(ANSWER)
    expect(events.get_by_test_id("replay-now")).to_have_text("response.completed")


def test_a_background_responses_event_log_is_followed_live_then_replayed(page, client):
    response = client.responses.create(model="scripted", input=script(SLOW), background=True)
    wait_for(client, response.id, statuses=("in_progress",))
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/responses/{response.id}")
    events = page.get_by_test_id("events")
    expect(events.get_by_test_id("events-source")).to_contain_text("event log")
    expect(events.get_by_test_id("events-source")).to_contain_text("live")
    # The text grows from the log's deltas as the model writes them.
    expect(events.get_by_test_id("replay-text")).to_contain_text("one two")
    # Once it ends, the page shows the response as it ended.
    expect(page.locator("h1").get_by_test_id("status")).to_have_text("completed")
    expect(page.get_by_test_id("output-items")).to_contain_text(SLOW["text"])
    expect(events.get_by_test_id("events-source")).not_to_contain_text("live")
    expect(events.locator("li[data-type='response.output_text.delta']")).to_have_count(10)
    events.get_by_role("button", name="Replay").click()
    expect(events.get_by_test_id("replay-text")).to_have_text(SLOW["text"])
    expect(events.get_by_test_id("replay-now")).to_have_text("response.completed")


def test_a_response_page_shows_its_request_usage_and_items(page, client):
    tool = {"type": "function", "name": "lookup", "description": "Looks a word up", "parameters": {"type": "object", "properties": {}}}
    response = client.responses.create(
        model="scripted",
        instructions="Answer in <b>one</b> word.",
        input=[
            {"role": "user", "content": "first input message"},
            {"role": "user", "content": "second input message"},
        ],
        tools=[tool],
        temperature=0.25,
        metadata={"ticket": "T-42"},
    )
    sign_in(page, KEYS["alpha"])
    page.goto(f"/console/responses/{response.id}")
    request = page.get_by_test_id("request")
    expect(request.locator("[data-field=instructions] td")).to_have_text("Answer in <b>one</b> word.")
    expect(request.locator("[data-field=temperature] td")).to_have_text("0.25")
    expect(request.locator("[data-field=tools] td")).to_contain_text('"name": "lookup"')
    expect(request.locator("[data-field=metadata] td")).to_contain_text('"ticket": "T-42"')
    expect(request.locator("[data-field=background] td")).to_have_text("false")
    usage = page.get_by_test_id("usage")
    expect(usage.locator("tr", has_text="Input tokens").first.locator("td")).to_have_text(str(response.usage.input_tokens))
    expect(usage.locator("tr", has_text="Output tokens").locator("td")).to_have_text(str(response.usage.output_tokens))
    expect(page.get_by_test_id("timings")).not_to_contain_text("not completed")
    inputs = page.get_by_test_id("input-items").get_by_test_id("item")
    expect(inputs).to_have_count(2)
    expect(inputs.nth(0)).to_contain_text("first input message")
    expect(inputs.nth(1)).to_contain_text("second input message")
    expect(page.get_by_test_id("output-items")).to_contain_text("Reply to: second input message")


# -- JSON -------------------------------------------------------------------------------


def test_the_json_listing_filters_pages_and_holds_to_the_project(server, client, beta_client, console):
    start = int(time.time())
    first = client.responses.create(model="scripted", input="json one")
    second = client.responses.create(model="scripted-other", input="json two")
    background = client.responses.create(model="scripted", input="json three", background=True)
    wait_for(client, background.id)
    theirs = beta_client.responses.create(model="scripted", input="json beta")

    answer = console.get("/responses", params={"since": start, "limit": 100}).json()
    assert answer["object"] == "list"
    # Newest first; created_at is in seconds, and responses of one second come in id order.
    # (An earlier test's responses may share the first second.)
    assert {background.id, second.id, first.id} <= {entry["id"] for entry in answer["data"]}
    assert [(entry["created_at"], entry["id"]) for entry in answer["data"]] == sorted(((entry["created_at"], entry["id"]) for entry in answer["data"]), reverse=True)
    entry = next(entry for entry in answer["data"] if entry["id"] == first.id)
    assert entry["project"] == "alpha" and entry["model"] == "scripted" and entry["status"] == "completed"
    assert entry["input_preview"] == "json one" and entry["output_preview"] == "Reply to: json one" and entry["background"] is False
    assert theirs.id not in listed(console)

    assert second.id in listed(console, model="scripted-other") and first.id not in listed(console, model="scripted-other")
    assert background.id in listed(console, background="true", since=start) and first.id not in listed(console, background="true")
    assert background.id not in listed(console, background="false")
    assert first.id in listed(console, status="completed") and first.id not in listed(console, status="failed")
    assert first.id not in listed(console, until=start - 1) and first.id in listed(console, until=int(time.time()) + 10)

    paged, after = [], None
    while True:
        page = console.get("/responses", params={"since": start, "limit": 1} | ({"after": after} if after else {})).json()
        paged += [entry["id"] for entry in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert paged == [entry["id"] for entry in answer["data"]]

    with as_key(server, ADMIN) as admin:
        everyone = {entry["id"]: entry["project"] for entry in admin.get("/responses", params={"since": start, "limit": 100}).json()["data"]}
        assert everyone[theirs.id] == "beta" and everyone[first.id] == "alpha"
        assert admin.get(f"/responses/{theirs.id}").json()["project"] == "beta"


@pytest.mark.parametrize(
    "params, param, message",
    [
        ({"status": "finished"}, "status", "Invalid status 'finished'"),
        ({"since": "yesterday"}, "since", "Invalid since 'yesterday'"),
        ({"until": "1.5e9"}, "until", "Invalid until '1.5e9'"),
        ({"background": "maybe"}, "background", "Invalid background 'maybe'"),
        ({"limit": "0"}, "limit", "Invalid limit '0'"),
        ({"limit": "ten"}, "limit", "Invalid limit 'ten'"),
        ({"since": str(10**20)}, "since", f"Invalid since '{10**20}'"),
        ({"until": str(-(10**20))}, "until", f"Invalid until '{-(10**20)}'"),
    ],
)
def test_a_bad_filter_is_a_400_in_openais_envelope(console, params, param, message):
    answer = console.get("/responses", params=params)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"].startswith(message)


def test_a_model_no_response_can_have_lists_nothing(console, client):
    client.responses.create(model="scripted", input="listed by its model")
    answer = console.get("/responses", params={"model": "scripted\x00"})
    assert answer.status_code == 200 and answer.json()["data"] == []


def test_an_events_cursor_beyond_any_sequence_number_is_a_400(client, console):
    background = client.responses.create(model="scripted", input="a short one", background=True)
    wait_for(client, background.id)
    answer = console.get(f"/responses/{background.id}/events", params={"after": str(10**20)})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "after"


def test_the_next_page_of_a_status_follows_a_response_that_has_left_it(client, console):
    """The last response of a page of running ones ends before the next page is asked for:
    that page still comes, after it."""
    running = {client.responses.create(model="scripted", input=script({"delay": 60}), background=True).id for _ in range(2)}
    for response_id in running:
        wait_for(client, response_id, statuses=("in_progress",))
    try:
        first = console.get("/responses", params={"status": "in_progress", "limit": 1}).json()
        ended = first["data"][0]["id"]
        assert ended in running and first["has_more"] is True
        client.responses.cancel(ended)
        following = console.get("/responses", params={"status": "in_progress", "limit": 1, "after": ended})
        assert following.status_code == 200, following.text
        assert [entry["id"] for entry in following.json()["data"]] == list(running - {ended})
    finally:
        for response_id in running:
            if client.responses.retrieve(response_id).status in ("queued", "in_progress"):
                client.responses.cancel(response_id)


def test_an_unknown_cursor_is_a_404(console):
    answer = console.get("/responses", params={"after": "resp_unknown"})
    assert answer.status_code == 404 and answer.json()["error"]["param"] == "after"


def test_without_a_key_the_json_is_a_401_and_another_projects_response_a_404(server, console, beta_client):
    theirs = beta_client.responses.create(model="scripted", input="beta's")
    with httpx.Client(base_url=server.url + "/console/api", timeout=20) as anonymous:
        answer = anonymous.get("/responses")
        assert answer.status_code == 401 and "error" in answer.json()
    for method, path in [
        ("GET", f"/responses/{theirs.id}"),
        ("GET", f"/responses/{theirs.id}/events"),
        ("GET", f"/responses/{theirs.id}/tree"),
        ("POST", f"/responses/{theirs.id}/cancel"),
    ]:
        answer = console.request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["error"]["message"] == f"Response with id '{theirs.id}' not found."
    with as_key(server, ADMIN) as admin:
        assert admin.get("/responses/resp_unknown/tree").status_code == 404


def test_events_json_reads_the_log_of_a_background_response_and_rebuilds_the_others(client, console):
    background = client.responses.create(model="scripted", input=script({"text": ANSWER, "chunks": 3}), background=True)
    wait_for(client, background.id)
    log = console.get(f"/responses/{background.id}/events").json()
    assert log["source"] == "log" and log["done"] is True
    assert [event["sequence_number"] for event in log["data"]] == list(range(len(log["data"])))
    assert "".join(event["delta"] for event in log["data"] if event["type"] == "response.output_text.delta") == ANSWER
    assert len([event for event in log["data"] if event["type"] == "response.output_text.delta"]) == 3
    later = console.get(f"/responses/{background.id}/events", params={"after": 3}).json()
    assert later["data"] == log["data"][4:]

    foreground = client.responses.create(model="scripted", input=script({"text": ANSWER, "chunks": 3}))
    rebuilt = console.get(f"/responses/{foreground.id}/events").json()
    assert rebuilt["source"] == "rebuilt" and rebuilt["done"] is True
    assert rebuilt["data"][-1]["type"] == "response.completed" and rebuilt["data"][-1]["response"]["id"] == foreground.id
    assert [event["delta"] for event in rebuilt["data"] if event["type"] == "response.output_text.delta"] == [ANSWER]
    assert console.get(f"/responses/{foreground.id}/events", params={"after": "x"}).json()["error"]["param"] == "after"


def test_tree_json_and_cancel_json(client, console):
    root = client.responses.create(model="scripted", input="root")
    left = client.responses.create(model="scripted", input="left", previous_response_id=root.id)
    right = client.responses.create(model="scripted", input="right", previous_response_id=root.id)
    tree = console.get(f"/responses/{left.id}/tree").json()
    assert tree["root_id"] == root.id and tree["current_id"] == left.id and tree["truncated"] is False
    assert {node["id"]: node["previous_response_id"] for node in tree["nodes"]} == {root.id: None, left.id: root.id, right.id: root.id}

    refused = console.post(f"/responses/{left.id}/cancel")
    assert refused.status_code == 400 and "background" in refused.json()["error"]["message"]
    running = client.responses.create(model="scripted", input=script({"delay": 60}), background=True)
    cancelled = console.post(f"/responses/{running.id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.responses.retrieve(running.id).status == "cancelled"
