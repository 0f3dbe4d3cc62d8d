"""Screenshots of every console page for the README: `make screenshots`.

Starts Threadline on a new SQLite database with the scripted model, makes a conversation,
a branching chain and a background response through the SDK, and photographs each page in
Debian's Chromium into docs/console/.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import openai

from tests.browser import chromium, new_page, sign_in
from tests.servers import ThreadlineServer, write_config

KEY = "sk-console-demo"


WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
PLAN = (
    "Sunny and warm, so:\n\n## Day 1\n- Alfama and the castle\n- Dinner in **Bairro Alto**\n\n"
    "## Day 2\n- Belém: the tower and *pastéis*\n- `Tram 28` back to the centre"
)
# Scripted models that answer as an agent would, so the pictures read naturally.
MODELS = [
    {"id": "travel-agent", "provider": "scripted", "options": {"script": [
        {"summary": "Check the weather first, then plan by day.", "part": 0},
        {"tool_call": {"name": "get_weather", "arguments": '{"city": "Lisbon"}', "call_id": "call_weather"}},
        {"finish": "tool_calls"},
    ]}},
    {"id": "travel-planner", "provider": "scripted", "options": {"script": [{"text": PLAN, "chunks": 12}]}},
    {"id": "scripted", "provider": "scripted"},
]


def seed(client: openai.OpenAI) -> dict[str, str]:
    """The objects the pages show; their ids by name."""
    conversation = client.conversations.create(metadata={"agent": "trip-planner", "user": "ada"})
    client.responses.create(model="travel-agent", conversation=conversation.id, input="Plan a **two-day** trip to Lisbon.", tools=[WEATHER])
    client.responses.create(
        model="travel-planner",
        conversation=conversation.id,
        input=[{"type": "function_call_output", "call_id": "call_weather", "output": '{"forecast": "sunny, 24 °C"}'}],
        tools=[WEATHER],
    )
    first = client.responses.create(model="scripted", input="Name three rivers.")
    client.responses.create(model="scripted", input="And three more.", previous_response_id=first.id)
    branch = client.responses.create(model="scripted", input="Only in Europe, please.", previous_response_id=first.id)
    client.responses.create(model="scripted", input="Which is the longest?", previous_response_id=branch.id)
    client.responses.create(model="scripted", input='#script [{"delay": 600}]', background=True)
    return {"conversation": conversation.id, "branch": branch.id}


def photograph(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        config = write_config(
            Path(scratch) / "threadline.toml",
            {"auth": {"api_keys": [{"key": KEY, "project": "demo"}]}, "models": MODELS},
        )
        with ThreadlineServer(f"sqlite:///{scratch}/console.db", config) as server:
            ids = seed(openai.OpenAI(base_url=server.url + "/v1", api_key=KEY))
            with chromium() as browser, new_page(browser, server.url) as page:
                page.goto("/console/login")
                page.screenshot(path=folder / "sign-in.png")
                sign_in(page, KEY)
                shots = {
                    "conversations": "/console/conversations",
                    "conversation": f"/console/conversations/{ids['conversation']}",
                    "responses": "/console/responses",
                    "response": f"/console/responses/{ids['branch']}",
                    "health": "/console/health",
                }
                for name, path in shots.items():
                    page.goto(path)
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=folder / f"{name}.png", full_page=True)
                page.goto("/console/playground")
                page.get_by_test_id("model").select_option("travel-planner")
                page.get_by_test_id("instructions").fill("You are a concise travel guide.")
                page.get_by_test_id("input").fill("The weather in Lisbon is sunny. Plan two days.")
                page.get_by_test_id("send").click()
                page.get_by_test_id("output").get_by_text("back to the centre").wait_for()
                page.wait_for_load_state("networkidle")
                page.screenshot(path=folder / "playground.png", full_page=True)


if __name__ == "__main__":
    photograph(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
