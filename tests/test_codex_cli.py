"""Codex CLI, unmodified and in its stock configuration, against Threadline on the mock upstream.

Codex (npm `@openai/codex`, installed by `make clients`, see tests/clients/) runs as a user
runs it: `codex exec` with Threadline as a custom model provider speaking the Responses API,
an API key from the environment, and everything else at Codex's defaults. Threadline speaks
Chat Completions to the mock, whose scripted answers are the model's turns: they call Codex's
own tools, and Codex runs them and sends their output back.

Which tools Codex offers depends on the model's name. For a name it has no metadata for, as
a self-hosted model's is (LOCAL_MODEL), it offers function tools such as `exec_command`, the
`multi_agent_v1` namespace and `web_search`. For one of OpenAI's (KNOWN_MODEL) it offers
`apply_patch` as a custom tool with a lark grammar, `tool_search` and `web_search` instead of
the namespace. With no search provider configured, Threadline accepts `web_search` and keeps
it from the model.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.clients.codex import codex_command
from tests.mock_upstream import MockUpstream, Reply, finish, reply, text, tool_call, usage
from tests.servers import ThreadlineServer, write_config

pytestmark = pytest.mark.slow

API_KEY = "sk-codex-test-key"
LOCAL_MODEL = "local-coder"
KNOWN_MODEL = "gpt-5.5"
# Codex's own default model: its tools come in an `additional_tools` input item, not in `tools`.
DEFAULT_MODEL = "gpt-6.2-sol"
# Codex's own sandbox for the commands it runs, writes limited to its working folder, and,
# under `codex exec`, no approval asked for.
SANDBOX = "workspace-write"


@pytest.fixture(scope="module")
def codex() -> list[str]:
    """The command that runs Codex. Not installed is an error, never a skip: CI installs it."""
    return codex_command()


@pytest.fixture(scope="module")
def server(start_server, upstream):
    models = [{"id": model, "provider": "openai-chat", "base_url": upstream.base_url} for model in (LOCAL_MODEL, KNOWN_MODEL, DEFAULT_MODEL)]
    return start_server({"auth": {"api_keys": [{"key": API_KEY, "project": "codex"}]}, "models": models})


def run_codex(
    codex: list[str], server: ThreadlineServer, tmp_path: Path, model: str, prompt: str, **provider_settings: object
) -> tuple[subprocess.CompletedProcess, Path]:
    """One `codex exec` in a new, empty working folder, with a CODEX_HOME of its own that holds
    only the provider (with `provider_settings` added); the finished process and the folder."""
    home, workdir = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    workdir.mkdir()
    provider = {"name": "Threadline", "base_url": server.url + "/v1", "env_key": "THREADLINE_API_KEY", "wire_api": "responses", **provider_settings}
    write_config(home / "config.toml", {"model": model, "model_provider": "threadline", "model_providers": {"threadline": provider}})
    environment = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home), "THREADLINE_API_KEY": API_KEY}
    command = [*codex, "exec", "--skip-git-repo-check", "--sandbox", SANDBOX, "--cd", str(workdir), prompt]
    result = subprocess.run(command, cwd=workdir, env=environment, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    return result, workdir


def offered(body: dict, name: str) -> dict | None:
    """The function an upstream request offered the model for Codex's tool `name` (a namespace's
    tool may be offered under a longer name that ends in its own)."""
    functions = [tool["function"] for tool in body.get("tools", [])]
    matching = [function for function in functions if function["name"] == name] or [
        function for function in functions if function["name"].endswith(name)
    ]
    return matching[0] if len(matching) == 1 else None


def tool_outputs(body: dict) -> list[str]:
    """The tool results an upstream request carried back to the model."""
    outputs = []
    for message in body["messages"]:
        if message["role"] == "tool":
            content = message["content"]
            outputs.append(content if isinstance(content, str) else "".join(part.get("text", "") for part in content))
    return outputs


def call_then_answer(mock: MockUpstream, name: str, arguments: Callable[[dict], dict], final: str) -> None:
    """Scripts the model: its first turn calls Codex's tool `name`, by the name and with the
    `arguments(function)` that the request offers it under; once the tool's output is back, it
    answers `final`."""

    def turn(body: dict) -> Reply:
        function = offered(body, name)
        if tool_outputs(body) or function is None:  # a missing tool fails the test below, by name
            return reply(text(final), finish("stop"), usage(950, 9))
        return reply(tool_call(0, id="call_1", name=function["name"], arguments=json.dumps(arguments(function))), finish("tool_calls"), usage(900, 20))

    mock.responder = turn


def assert_offered(mock: MockUpstream, name: str) -> None:
    names = [tool["function"]["name"] for tool in mock.requests[0].get("tools", [])]
    assert offered(mock.requests[0], name) is not None, f"{name} is not among the tools offered: {names}"


def succeeded(result: subprocess.CompletedProcess, final: str) -> None:
    """Codex ended well and printed the model's final answer, and only that, on stdout."""
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == final, result.stderr


@pytest.mark.parametrize("model", [LOCAL_MODEL, KNOWN_MODEL])
def test_a_plain_turn(codex, server, mock, tmp_path, model):
    mock.script(reply(text("Hello from "), text("Threadline."), finish("stop"), usage(900, 4)))
    result, _ = run_codex(codex, server, tmp_path, model, "Say hello.")
    succeeded(result, "Hello from Threadline.")
    assert len(mock.requests) == 1
    assert mock.requests[0]["messages"][-1] == {"role": "user", "content": "Say hello."}
    names = [tool["function"]["name"] for tool in mock.requests[0]["tools"]]
    # With no search provider configured, Codex's web_search is accepted and not shown to the model.
    assert "exec_command" in names and not any("web_search" in name for name in names), names


def test_a_plain_turn_on_codex_default_model(codex, server, mock, tmp_path):
    mock.script(reply(text("Hello."), finish("stop"), usage(900, 2)))
    result, _ = run_codex(codex, server, tmp_path, DEFAULT_MODEL, "Say hello.")
    succeeded(result, "Hello.")
    # The tools Codex lists in its additional_tools item are offered to the model as tools.
    names = [tool["function"]["name"] for tool in mock.requests[0]["tools"]]
    assert "exec" in names, names


@pytest.mark.parametrize("model", [LOCAL_MODEL, KNOWN_MODEL])
def test_the_model_runs_a_command_through_codex(codex, server, mock, tmp_path, model):
    """The model calls Codex's shell tool; Codex runs the command and sends its output back."""
    command = "printf 'threadline-%s-ok' tool"  # what it prints is not in its own text
    call_then_answer(mock, "exec_command", lambda _: {"cmd": command}, "The command printed threadline-tool-ok.")
    result, _ = run_codex(codex, server, tmp_path, model, "Run the check.")
    assert_offered(mock, "exec_command")
    succeeded(result, "The command printed threadline-tool-ok.")
    assert len(mock.requests) == 2
    [output] = tool_outputs(mock.requests[1])
    assert "threadline-tool-ok" in output and "exited with code 0" in output, output


def test_a_namespaced_tool_reaches_codex_with_its_namespace(codex, server, mock, tmp_path):
    """The model calls `close_agent` of Codex's `multi_agent_v1` namespace, and Codex dispatches
    it (a call that comes back without its namespace gets "unsupported call: close_agent")."""
    call_then_answer(mock, "close_agent", lambda _: {"target": "no-such-agent"}, "No such agent.")
    result, _ = run_codex(codex, server, tmp_path, LOCAL_MODEL, "Close the agent no-such-agent.")
    assert_offered(mock, "close_agent")
    succeeded(result, "No such agent.")
    assert len(mock.requests) == 2
    [output] = tool_outputs(mock.requests[1])
    assert "invalid agent id no-such-agent" in output, output


def test_the_model_edits_a_file_with_codex_apply_patch(codex, server, mock, tmp_path):
    """`apply_patch`, a custom tool with a lark grammar, reaches a chat upstream as a function of
    one string; the model's patch comes back to Codex as the raw input of a custom tool call,
    and Codex applies it."""
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+threadline-patch-ok\n*** End Patch\n"
    call_then_answer(mock, "apply_patch", lambda function: {next(iter(function["parameters"]["properties"])): patch}, "Added hello.txt.")
    result, workdir = run_codex(codex, server, tmp_path, KNOWN_MODEL, "Add hello.txt.")
    assert_offered(mock, "apply_patch")
    succeeded(result, "Added hello.txt.")
    assert (workdir / "hello.txt").read_text() == "threadline-patch-ok\n"
    assert len(mock.requests) == 2
    [output] = tool_outputs(mock.requests[1])
    assert "Success. Updated the following files:\nA hello.txt" in output, output


def test_codex_runs_a_tool_loop_over_a_websocket(codex, server, mock, tmp_path):
    """With `supports_websockets = true` on its provider, Codex's setting for a custom provider
    that speaks OpenAI's WebSocket mode, Codex opens one WebSocket to /v1/responses and no HTTP
    request. On it Codex warms up (`generate: false`, `store: false`), then sends each turn as
    only its new items with `previous_response_id`: the model still sees the whole turn."""
    command = "printf 'threadline-%s-ok' socket"
    call_then_answer(mock, "exec_command", lambda _: {"cmd": command}, "The command printed threadline-socket-ok.")
    with open(server.log.name) as log:
        log.seek(0, 2)
        result, _ = run_codex(codex, server, tmp_path, LOCAL_MODEL, "Run the check.", supports_websockets=True)
        requests_seen = log.read()
    succeeded(result, "The command printed threadline-socket-ok.")
    assert '"WebSocket /v1/responses" [accepted]' in requests_seen, requests_seen
    assert "POST /v1/responses" not in requests_seen, requests_seen
    assert len(mock.requests) == 2
    [output] = tool_outputs(mock.requests[1])
    assert "threadline-socket-ok" in output
    assert {"role": "user", "content": "Run the check."} in mock.requests[1]["messages"]
