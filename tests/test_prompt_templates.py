"""Prompt templates named by `prompt: {id, version, variables}`, through the SDK, on both databases:
what the model receives (the scripted model records it), what the Response echoes, and the
400s for a template, version or variable that does not fit."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from tests.conftest import FAST_WORKERS, KEYS
from tests.helpers import wait_for

# The smallest PNG: one transparent pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
MAX_BODY_BYTES = 256 * 1024

SUPPORT = {
    "id": "pmpt_support",
    "version": "2",
    "model": "scripted",
    "temperature": 0.25,
    "instructions": "You help {{customer}} with {{product}}.",
    "input": [{"role": "user", "content": "My question: {{question}} Here is the screen: {{screenshot}} Thanks."}],
}
# A note the model is handed, and the assistant's word that it has it.
NOTE = {"id": "pmpt_note", "input": [{"role": "user", "content": "{{ note }}"}, {"role": "assistant", "content": "Noted: {{note}}"}]}
# Versions 9 and 10 of one template come from files in prompts_dir: 10 is the highest.
GREETING_FILES = {
    "greeting-9.toml": 'id = "pmpt_greeting"\nversion = "9"\ninstructions = "Greet {{name}} in French."\n',
    "greeting-10.toml": 'id = "pmpt_greeting"\nversion = "10"\ninstructions = "Greet {{name}} in Italian."\n',
}


@pytest.fixture(scope="module")
def server(start_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prompts")
    for name, text in GREETING_FILES.items():
        (folder / name).write_text(text)
    record = folder / "model_requests.jsonl"
    record.touch()
    scripted = {"provider": "scripted", "options": {"record_to": str(record)}}
    running = start_server(
        {
            "auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]},
            "models": [{"id": "scripted", **scripted}, {"id": "scripted-other", **scripted}],
            "default_model": "scripted-other",
            "workers": FAST_WORKERS,
            # Small enough that an image variable's file can be most of what a request may carry.
            "limits": {"max_body_bytes": MAX_BODY_BYTES},
            "prompts": [SUPPORT, NOTE],
            "prompts_dir": str(folder),
        }
    )
    running.model_requests_path = record
    return running


def support_variables(screenshot: dict) -> dict:
    return {
        "customer": "Ann",
        "product": {"type": "input_text", "text": "Threadline"},
        "question": "Why is the button grey?",
        "screenshot": screenshot,
    }


def bad_request(call) -> dict:
    with pytest.raises(openai.BadRequestError) as raised:
        call()
    return raised.value.body


def test_a_template_with_text_and_image_variables(client, model_requests):
    variables = support_variables({"type": "input_image", "image_url": PNG_URL})
    response = client.responses.create(prompt={"id": "pmpt_support", "variables": variables}, input="Please be quick.")

    [received] = model_requests()
    assert received["model"] == "scripted"  # the template's model: the server's default is another
    assert received["temperature"] == 0.25
    assert received["instructions"] == "You help Ann with Threadline."
    template_message, request_message = received["input"]
    assert template_message["role"] == "user"
    assert template_message["content"] == [
        {"type": "input_text", "text": "My question: Why is the button grey? Here is the screen: "},
        {"type": "input_image", "image_url": PNG_URL, "detail": "auto"},
        {"type": "input_text", "text": " Thanks."},
    ]
    assert request_message["content"] == [{"type": "input_text", "text": "Please be quick."}]

    assert response.status == "completed" and response.model == "scripted"
    assert response.prompt.id == "pmpt_support" and response.prompt.version == "2"
    assert response.prompt.model_dump(exclude_none=True)["variables"] == {**variables, "screenshot": {**variables["screenshot"], "detail": "auto"}}
    assert response.instructions == "You help Ann with Threadline."
    assert client.responses.retrieve(response.id).prompt.version == "2"
    # Like instructions, the template's messages are not the response's input items.
    items = client.responses.input_items.list(response.id).data
    assert [item.content[0].text for item in items] == ["Please be quick."]


def test_an_image_variable_names_an_uploaded_file(client, model_requests):
    file = client.files.create(file=("screen.png", PNG), purpose="vision")
    client.responses.create(prompt={"id": "pmpt_support", "version": "2", "variables": support_variables({"type": "input_image", "file_id": file.id})})
    [received] = model_requests()
    assert received["input"][0]["content"][1]["image_url"] == PNG_URL


def test_a_background_response_reads_the_image_as_it_runs(client, model_requests):
    file = client.files.create(file=("screen.png", PNG), purpose="vision")
    variables = support_variables({"type": "input_image", "file_id": file.id})
    queued = client.responses.create(background=True, prompt={"id": "pmpt_support", "variables": variables}, input="Later")
    assert wait_for(client, queued.id).status == "completed"
    [received] = model_requests()
    assert received["input"][0]["content"][1]["image_url"] == PNG_URL
    assert received["input"][1]["content"] == [{"type": "input_text", "text": "Later"}]


def test_an_image_file_variable_counts_once_toward_what_a_request_may_carry(client, model_requests):
    """A file of 60% of `limits.max_body_bytes` is one file the request may carry: the model gets it, not a note."""
    large = PNG + bytes(int(0.6 * MAX_BODY_BYTES))
    file = client.files.create(file=("large.png", large), purpose="vision")
    client.responses.create(prompt={"id": "pmpt_support", "variables": support_variables({"type": "input_image", "file_id": file.id})})
    [received] = model_requests()
    assert received["input"][0]["content"][1] == {"type": "input_image", "image_url": "data:image/png;base64," + base64.b64encode(large).decode(), "detail": "auto"}


def test_an_empty_variable_fills_its_placeholder(client, model_requests):
    client.responses.create(prompt={"id": "pmpt_note", "variables": {"note": ""}}, input="Go on")
    [received] = model_requests()
    texts = [part["text"] for item in received["input"] for part in item["content"]]
    assert texts == ["", "Noted: ", "Go on"]


def test_request_fields_override_the_templates(client, model_requests):
    response = client.responses.create(
        model="scripted-other",
        instructions="Answer in one word.",
        temperature=0.9,
        prompt={"id": "pmpt_support", "variables": support_variables({"type": "input_text", "text": "(none)"})},
    )
    [received] = model_requests()
    assert (received["model"], received["temperature"]) == ("scripted-other", 0.9)
    assert received["instructions"] == "Answer in one word."
    # The template's messages stay; only what the request sets is replaced.
    assert received["input"][0]["content"] == [
        {"type": "input_text", "text": "My question: Why is the button grey? Here is the screen: (none) Thanks."}
    ]
    assert response.model == "scripted-other" and response.temperature == 0.9


def test_the_highest_version_unless_one_is_named(client, model_requests):
    latest = client.responses.create(prompt={"id": "pmpt_greeting", "variables": {"name": "Bo"}}, input="Hi")
    named = client.responses.create(prompt={"id": "pmpt_greeting", "version": "9", "variables": {"name": "Bo"}}, input="Hi")
    assert [request["instructions"] for request in model_requests()] == ["Greet Bo in Italian.", "Greet Bo in French."]
    assert (latest.prompt.version, named.prompt.version) == ("10", "9")
    assert latest.instructions == "Greet Bo in Italian."
    # No model in the request or the template: the server's default.
    assert latest.model == "scripted-other"


def test_the_template_is_not_carried_to_the_next_response(client, model_requests):
    first = client.responses.create(prompt={"id": "pmpt_support", "variables": support_variables({"type": "input_text", "text": "-"})}, input="One")
    client.responses.create(model="scripted", previous_response_id=first.id, input="Two")
    second = model_requests()[-1]
    assert second["instructions"] is None
    assert [item["content"][0]["text"] for item in second["input"] if item.get("role") == "user"] == ["One", "Two"]


def test_the_template_comes_before_a_conversations_items(client, model_requests):
    conversation = client.conversations.create(items=[{"role": "user", "content": "Earlier words"}])
    variables = support_variables({"type": "input_text", "text": "-"})
    client.responses.create(conversation=conversation.id, prompt={"id": "pmpt_support", "variables": variables}, input="Now")
    [received] = model_requests()
    texts = [item["content"][0]["text"] for item in received["input"] if item.get("role") == "user"]
    assert texts[0].startswith("My question:") and texts[1:3] == ["Earlier words", "Now"]
    # The conversation keeps what the client added and the answer, not the template.
    stored = client.conversations.items.list(conversation.id, order="asc").data
    assert [item.role for item in stored] == ["user", "user", "assistant"]


def test_streamed(client, model_requests):
    stream = client.responses.create(stream=True, prompt={"id": "pmpt_greeting", "variables": {"name": "Cy"}}, input="Hi")
    events = list(stream)
    assert events[0].response.prompt.version == "10"
    assert events[-1].type == "response.completed"
    assert model_requests()[0]["instructions"] == "Greet Cy in Italian."


def test_input_tokens_count_the_template(client):
    """OpenAI's token count body has no `prompt` (the SDK sends it as an extra); Threadline's takes a create body, prompt and all."""
    plain = client.responses.input_tokens.count(model="scripted-other", input="Hi")
    templated = client.responses.input_tokens.count(extra_body={"prompt": {"id": "pmpt_greeting", "variables": {"name": "Bo"}}}, input="Hi")
    assert templated.input_tokens > plain.input_tokens
    body = bad_request(lambda: client.responses.input_tokens.count(extra_body={"prompt": {"id": "pmpt_greeting", "variables": {}}}, input="Hi"))
    assert body["param"] == "prompt.variables.name"


@pytest.mark.parametrize(
    ("prompt", "param", "words"),
    [
        ({"id": "pmpt_nothing"}, "prompt.id", "Prompt with id 'pmpt_nothing' not found"),
        ({"id": "pmpt_greeting", "version": "3", "variables": {"name": "Bo"}}, "prompt.version", "its versions: 9, 10"),
        ({"id": "pmpt_greeting"}, "prompt.variables.name", "Missing prompt variable 'name'"),
        ({"id": "pmpt_greeting", "variables": {"name": "Bo", "mood": "glad"}}, "prompt.variables.mood", "Unknown prompt variable 'mood'"),
        (
            {"id": "pmpt_greeting", "variables": {"name": {"type": "input_image", "image_url": PNG_URL}}},
            "prompt.variables.name",
            "not in its instructions",
        ),
        (
            {"id": "pmpt_note", "variables": {"note": {"type": "input_image", "image_url": PNG_URL}}},
            "prompt.variables.note",
            "assistant",
        ),
        ({"id": "pmpt_greeting", "variables": {"name": {"type": "input_text"}}}, "prompt.variables.name.text", "Missing required parameter"),
        ({"id": "pmpt_greeting", "variables": {"name": {"type": "input_audio"}}}, "prompt.variables.name", ""),
    ],
)
def test_a_prompt_that_does_not_fit_is_refused(client, row_counts, model_requests, prompt, param, words):
    before = row_counts()
    body = bad_request(lambda: client.responses.create(prompt=prompt, input="Hi"))
    assert body["param"] == param and words in body["message"]
    assert row_counts() == before and model_requests() == []


def test_a_file_variable_the_project_does_not_have_is_refused(client, beta_client, row_counts):
    foreign = beta_client.files.create(file=("beta.png", PNG), purpose="vision")
    before = row_counts()
    variables = support_variables({"type": "input_image", "file_id": foreign.id})
    body = bad_request(lambda: client.responses.create(prompt={"id": "pmpt_support", "variables": variables}))
    assert foreign.id in body["message"] and body["param"].startswith("prompt")
    assert row_counts() == before


def test_the_loaded_templates_are_logged_at_start(server):
    log = Path(server.log.name).read_text()
    line = next(line for line in log.splitlines() if "Prompt templates loaded" in line)
    assert "pmpt_greeting (versions 9, 10)" in line and "pmpt_support (version 2)" in line


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ('id = "pmpt_x"\ninput = [{ role = "wizard", content = "hi" }]\n', ["broken.toml", "role"]),
        ('id = "pmpt_x"\ninstruction = "Misspelt."\n', ["broken.toml", "instruction"]),
        ("id = \n", ["broken.toml"]),
        # A model the server does not have: named with the template, not one request at a time.
        ('id = "pmpt_x"\nmodel = "scripted-typo"\n', ["pmpt_x", "scripted-typo"]),
    ],
)
def test_a_template_that_is_not_valid_stops_the_start(tmp_path, template, words):
    """prompts_dir is read relative to the config file; a broken template is one line naming it."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "broken.toml").write_text(template)
    (tmp_path / "threadline.toml").write_text('prompts_dir = "prompts"\n[[models]]\nid = "scripted"\nprovider = "scripted"\n')
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "serve", "--config", str(tmp_path / "threadline.toml"), "--database", f"sqlite:///{tmp_path}/t.db"],
        capture_output=True,
        text=True,
        timeout=60,
        # Run from elsewhere, so the folder is found from the config file; this checkout's code all the same.
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert result.returncode == 2
    assert all(word in result.stderr for word in words) and len(result.stderr.strip().splitlines()) == 1
