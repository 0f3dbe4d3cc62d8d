"""The README's way into the console: configure keys as its "Web console" section shows, let an
agent hold a conversation through the SDK, then open /console, sign in, and find it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import openai
import pytest
from playwright.sync_api import expect

from tests.browser import new_page

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_console_config() -> dict:
    """The TOML the README's "Web console" section gives."""
    section = README.read_text().split("\n## Web console\n", 1)[1].split("\n## ", 1)[0]
    return tomllib.loads(re.search(r"```toml\n(.*?)```", section, re.S).group(1))


@pytest.fixture(scope="module")
def server(start_server):
    config = readme_console_config()
    return start_server({**config, "models": [{"id": "scripted", "provider": "scripted"}]})


def test_the_readme_leads_to_the_conversation_an_agent_just_had(browser, server):
    keys = {entry["project"]: entry["key"] for entry in readme_console_config()["auth"]["api_keys"]}
    agent = openai.OpenAI(base_url=server.url + "/v1", api_key=keys["alpha"])
    conversation = agent.conversations.create(metadata={"agent": "readme"})
    agent.responses.create(model="scripted", conversation=conversation.id, input="Where is Lisbon?")

    with new_page(browser, server.url) as page:
        page.goto("/console")
        page.get_by_label("API key").fill(keys["alpha"])
        page.get_by_role("button", name="Sign in").click()
        newest = page.get_by_test_id("conversation-row").first
        expect(newest).to_have_attribute("data-conversation-id", conversation.id)
        newest.get_by_role("link").first.click()
        items = page.get_by_test_id("item")
        expect(items).to_have_count(2)
        expect(items.nth(0)).to_contain_text("Where is Lisbon?")
        expect(items.nth(1)).to_contain_text("Reply to: Where is Lisbon?")
