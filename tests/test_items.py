"""Input items: every documented type validates and comes back in OpenAI's returned shape;
bad input gives one OpenAI-style (param, message). Pure unit tests: no server."""

from __future__ import annotations

import json

import pytest
from pydantic import TypeAdapter, ValidationError

from threadline.items import (
    ITEM_ID_PREFIXES,
    InputItem,
    describe_errors,
    is_item_reference,
    new_item_id,
    normalize_item,
)
from threadline.items.models import ITEM_TYPES

ITEMS = TypeAdapter(list[InputItem])


def prepared(item: dict) -> dict:
    """What the API stores for `item`: validated, dumped as the routes dump it, normalized."""
    (model,) = ITEMS.validate_python([item])
    data = model.model_dump(mode="json", exclude_unset=True)
    assert not is_item_reference(data)
    return normalize_item(data, "item_1")


def error_for(items: list) -> tuple[str | None, str]:
    with pytest.raises(ValidationError) as raised:
        ITEMS.validate_python(items)
    return describe_errors(raised.value.errors(), items, "items")


# Each input item type from the reference, with the item OpenAI returns for it.
ROUND_TRIPS = {
    "easy user message": (
        {"role": "user", "content": "Hello!"},
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hello!"}],
        },
    ),
    "easy assistant message": (
        {"type": "message", "role": "assistant", "content": "Hi there.", "phase": "final_answer"},
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hi there.", "annotations": [], "logprobs": []}],
            "phase": "final_answer",
        },
    ),
    "easy system and developer messages": (
        {"role": "developer", "content": "Be brief."},
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "developer",
            "content": [{"type": "input_text", "text": "Be brief."}],
        },
    ),
    "input message with every content part": (
        {
            "type": "message",
            "role": "user",
            "status": "in_progress",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
                {"type": "input_image", "file_id": "file_1"},
                {"type": "input_file", "file_id": "file_2", "filename": "a.pdf", "detail": "low"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,AAAA", "filename": "b.pdf"},
                {"type": "input_file", "file_url": "https://example.com/c.pdf"},
            ],
        },
        {
            "id": "item_1",
            "type": "message",
            "status": "in_progress",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "high"},
                {"type": "input_image", "file_id": "file_1", "detail": "auto"},
                {"type": "input_file", "file_id": "file_2", "filename": "a.pdf", "detail": "low"},
                {"type": "input_file", "filename": "b.pdf", "file_data": "data:application/pdf;base64,AAAA"},
                {"type": "input_file", "file_url": "https://example.com/c.pdf"},
            ],
        },
    ),
    "output message with annotations, logprobs and a refusal": (
        {
            "id": "msg_abc",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "See the doc.",
                    "annotations": [
                        {"type": "file_citation", "file_id": "file_1", "filename": "a.txt", "index": 3},
                        {
                            "type": "url_citation",
                            "url": "https://example.com",
                            "start_index": 0,
                            "end_index": 3,
                            "title": "Example",
                        },
                        {
                            "type": "container_file_citation",
                            "container_id": "cntr_1",
                            "file_id": "file_2",
                            "filename": "b.csv",
                            "start_index": 4,
                            "end_index": 7,
                        },
                        {"type": "file_path", "file_id": "file_3", "index": 8},
                    ],
                    "logprobs": [
                        {
                            "token": "See",
                            "logprob": -0.1,
                            "bytes": [83, 101, 101],
                            "top_logprobs": [{"token": "See", "logprob": -0.1, "bytes": [83, 101, 101]}],
                        }
                    ],
                },
                {"type": "refusal", "refusal": "I can't help with that."},
            ],
        },
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "See the doc.",
                    "annotations": [
                        {"type": "file_citation", "file_id": "file_1", "index": 3, "filename": "a.txt"},
                        {
                            "type": "url_citation",
                            "url": "https://example.com",
                            "start_index": 0,
                            "end_index": 3,
                            "title": "Example",
                        },
                        {
                            "type": "container_file_citation",
                            "container_id": "cntr_1",
                            "file_id": "file_2",
                            "start_index": 4,
                            "end_index": 7,
                            "filename": "b.csv",
                        },
                        {"type": "file_path", "file_id": "file_3", "index": 8},
                    ],
                    "logprobs": [
                        {
                            "token": "See",
                            "logprob": -0.1,
                            "bytes": [83, 101, 101],
                            "top_logprobs": [{"token": "See", "logprob": -0.1, "bytes": [83, 101, 101]}],
                        }
                    ],
                },
                {"type": "refusal", "refusal": "I can't help with that."},
            ],
        },
    ),
    "assistant history as the Vercel AI SDK sends it": (
        {"role": "assistant", "content": [{"type": "output_text", "text": "Sure."}], "id": "msg_from_client"},
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Sure.", "annotations": [], "logprobs": []}],
        },
    ),
    "assistant easy message with input_text parts": (
        {"role": "assistant", "content": [{"type": "input_text", "text": "Earlier answer."}]},
        {
            "id": "item_1",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Earlier answer.", "annotations": [], "logprobs": []}],
        },
    ),
    "function_call": (
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {
            "id": "item_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
    ),
    "function_call with namespace and caller": (
        {
            "type": "function_call",
            "id": "fc_client",
            "status": "in_progress",
            "call_id": "call_1",
            "namespace": "weather",
            "name": "get",
            "arguments": "{}",
            "caller": {"type": "program", "caller_id": "call_0"},
        },
        {
            "id": "item_1",
            "type": "function_call",
            "status": "in_progress",
            "call_id": "call_1",
            "namespace": "weather",
            "name": "get",
            "arguments": "{}",
            "caller": {"type": "program", "caller_id": "call_0"},
        },
    ),
    "function_call_output as a string": (
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 20}'},
        {
            "id": "item_1",
            "type": "function_call_output",
            "status": "completed",
            "call_id": "call_1",
            "output": '{"temp": 20}',
        },
    ),
    "function_call_output as content parts": (
        {
            "type": "function_call_output",
            "call_id": "call_1",
            "output": [{"type": "input_text", "text": "chart:"}, {"type": "input_image", "image_url": "https://e.com/c.png"}],
        },
        {
            "id": "item_1",
            "type": "function_call_output",
            "status": "completed",
            "call_id": "call_1",
            "output": [
                {"type": "input_text", "text": "chart:"},
                {"type": "input_image", "image_url": "https://e.com/c.png", "detail": "auto"},
            ],
        },
    ),
    "custom_tool_call": (
        {"type": "custom_tool_call", "call_id": "call_2", "name": "sql", "input": "SELECT 1"},
        {"id": "item_1", "type": "custom_tool_call", "call_id": "call_2", "name": "sql", "input": "SELECT 1"},
    ),
    "custom_tool_call_output": (
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "1"}]},
        {
            "id": "item_1",
            "type": "custom_tool_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "1"}],
        },
    ),
    "reasoning": (
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Thinking."}],
            "content": [{"type": "reasoning_text", "text": "Step 1."}],
            "encrypted_content": "gAAAA",
        },
        {
            "id": "item_1",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Thinking."}],
            "content": [{"type": "reasoning_text", "text": "Step 1."}],
            "encrypted_content": "gAAAA",
        },
    ),
    "compaction": (
        {"type": "compaction", "encrypted_content": "gAAAA"},
        {"id": "item_1", "type": "compaction", "encrypted_content": "gAAAA"},
    ),
    "computer_call": (
        {
            "type": "computer_call",
            "id": "cu_1",
            "call_id": "call_3",
            "status": "completed",
            "action": {"type": "click", "button": "left", "x": 10, "y": 20},
            "actions": [
                {"type": "double_click", "x": 1, "y": 2, "keys": None},
                {"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]},
                {"type": "keypress", "keys": ["CTRL", "C"]},
                {"type": "move", "x": 5, "y": 6},
                {"type": "screenshot"},
                {"type": "scroll", "x": 0, "y": 0, "scroll_x": 0, "scroll_y": 100},
                {"type": "type", "text": "hello"},
                {"type": "wait"},
            ],
            "pending_safety_checks": [{"id": "sc_1", "code": "malicious_instructions", "message": "Careful."}],
        },
        {
            "id": "item_1",
            "type": "computer_call",
            "status": "completed",
            "call_id": "call_3",
            "action": {"type": "click", "button": "left", "x": 10, "y": 20},
            "actions": [
                {"type": "double_click", "x": 1, "y": 2},
                {"type": "drag", "path": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]},
                {"type": "keypress", "keys": ["CTRL", "C"]},
                {"type": "move", "x": 5, "y": 6},
                {"type": "screenshot"},
                {"type": "scroll", "x": 0, "y": 0, "scroll_x": 0, "scroll_y": 100},
                {"type": "type", "text": "hello"},
                {"type": "wait"},
            ],
            "pending_safety_checks": [{"id": "sc_1", "code": "malicious_instructions", "message": "Careful."}],
        },
    ),
    "computer_call_output": (
        {
            "type": "computer_call_output",
            "call_id": "call_3",
            "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
            "acknowledged_safety_checks": [{"id": "sc_1"}],
        },
        {
            "id": "item_1",
            "type": "computer_call_output",
            "status": "completed",
            "call_id": "call_3",
            "output": {"type": "computer_screenshot", "image_url": "data:image/png;base64,AAAA"},
            "acknowledged_safety_checks": [{"id": "sc_1"}],
        },
    ),
    "file_search_call": (
        {
            "type": "file_search_call",
            "id": "fs_1",
            "status": "completed",
            "queries": ["q"],
            "results": [{"file_id": "file_1", "filename": "a.txt", "text": "x", "score": 0.5, "attributes": {"k": "v"}}],
        },
        {
            "id": "item_1",
            "type": "file_search_call",
            "status": "completed",
            "queries": ["q"],
            "results": [{"file_id": "file_1", "text": "x", "filename": "a.txt", "attributes": {"k": "v"}, "score": 0.5}],
        },
    ),
    "web_search_call": (
        {
            "type": "web_search_call",
            "id": "ws_1",
            "status": "completed",
            "action": {"type": "search", "queries": ["weather"], "sources": [{"type": "url", "url": "https://e.com"}]},
        },
        {
            "id": "item_1",
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "search", "queries": ["weather"], "sources": [{"type": "url", "url": "https://e.com"}]},
        },
    ),
    "web_search_call finding in a page": (
        {
            "type": "web_search_call",
            "id": "ws_2",
            "status": "completed",
            "action": {"type": "find_in_page", "url": "https://e.com", "pattern": "rain"},
        },
        {
            "id": "item_1",
            "type": "web_search_call",
            "status": "completed",
            "action": {"type": "find_in_page", "url": "https://e.com", "pattern": "rain"},
        },
    ),
    "image_generation_call": (
        {"type": "image_generation_call", "id": "ig_1", "status": "generating", "result": None},
        {"id": "item_1", "type": "image_generation_call", "status": "generating", "result": None},
    ),
    "code_interpreter_call": (
        {
            "type": "code_interpreter_call",
            "id": "ci_1",
            "status": "completed",
            "container_id": "cntr_1",
            "code": "print(1)",
            "outputs": [{"type": "logs", "logs": "1\n"}, {"type": "image", "url": "https://e.com/p.png"}],
        },
        {
            "id": "item_1",
            "type": "code_interpreter_call",
            "status": "completed",
            "container_id": "cntr_1",
            "code": "print(1)",
            "outputs": [{"type": "logs", "logs": "1\n"}, {"type": "image", "url": "https://e.com/p.png"}],
        },
    ),
    "local_shell_call": (
        {
            "type": "local_shell_call",
            "id": "lsh_1",
            "call_id": "call_4",
            "status": "completed",
            "action": {"type": "exec", "command": ["ls", "-l"], "env": {"HOME": "/root"}, "timeout_ms": 1000},
        },
        {
            "id": "item_1",
            "type": "local_shell_call",
            "status": "completed",
            "call_id": "call_4",
            "action": {"type": "exec", "command": ["ls", "-l"], "env": {"HOME": "/root"}, "timeout_ms": 1000},
        },
    ),
    "local_shell_call_output": (
        {"type": "local_shell_call_output", "id": "lsh_1", "output": '{"stdout": "a"}'},
        {"id": "item_1", "type": "local_shell_call_output", "output": '{"stdout": "a"}'},
    ),
    "shell_call": (
        {
            "type": "shell_call",
            "call_id": "call_5",
            "action": {"commands": ["pwd"], "timeout_ms": 500},
            "environment": {"type": "container_reference", "container_id": "cntr_1"},
        },
        {
            "id": "item_1",
            "type": "shell_call",
            "status": "completed",
            "call_id": "call_5",
            "action": {"commands": ["pwd"], "timeout_ms": 500, "max_output_length": None},
            "environment": {"type": "container_reference", "container_id": "cntr_1"},
        },
    ),
    "shell_call_output": (
        {
            "type": "shell_call_output",
            "call_id": "call_5",
            "output": [
                {"stdout": "/root\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
                {"stdout": "", "stderr": "", "outcome": {"type": "timeout"}},
            ],
        },
        {
            "id": "item_1",
            "type": "shell_call_output",
            "status": "completed",
            "call_id": "call_5",
            "output": [
                {"stdout": "/root\n", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}},
                {"stdout": "", "stderr": "", "outcome": {"type": "timeout"}},
            ],
            "max_output_length": None,
        },
    ),
    "apply_patch_call": (
        {
            "type": "apply_patch_call",
            "call_id": "call_6",
            "status": "completed",
            "operation": {"type": "update_file", "path": "a.py", "diff": "@@ -1 +1 @@\n-a\n+b\n"},
        },
        {
            "id": "item_1",
            "type": "apply_patch_call",
            "status": "completed",
            "call_id": "call_6",
            "operation": {"type": "update_file", "path": "a.py", "diff": "@@ -1 +1 @@\n-a\n+b\n"},
        },
    ),
    "apply_patch_call_output": (
        {"type": "apply_patch_call_output", "call_id": "call_6", "status": "failed", "output": "no such file"},
        {"id": "item_1", "type": "apply_patch_call_output", "status": "failed", "call_id": "call_6", "output": "no such file"},
    ),
    "mcp_list_tools": (
        {
            "type": "mcp_list_tools",
            "id": "mcpl_1",
            "server_label": "deepwiki",
            "tools": [{"name": "ask", "input_schema": {"type": "object"}, "description": None}],
        },
        {
            "id": "item_1",
            "type": "mcp_list_tools",
            "server_label": "deepwiki",
            "tools": [{"name": "ask", "input_schema": {"type": "object"}}],
        },
    ),
    "mcp_approval_request": (
        {"type": "mcp_approval_request", "id": "mcpr_1", "server_label": "s", "name": "ask", "arguments": "{}"},
        {"id": "item_1", "type": "mcp_approval_request", "server_label": "s", "name": "ask", "arguments": "{}"},
    ),
    "mcp_approval_response": (
        {"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True, "reason": "ok"},
        {"id": "item_1", "type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": True, "reason": "ok"},
    ),
    "mcp_call": (
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "s",
            "name": "ask",
            "arguments": "{}",
            "output": "answer",
            "error": None,
            "status": "completed",
        },
        {
            "id": "item_1",
            "type": "mcp_call",
            "status": "completed",
            "server_label": "s",
            "name": "ask",
            "arguments": "{}",
            "output": "answer",
        },
    ),
    "mcp_call with an error object": (
        {
            "type": "mcp_call",
            "id": "mcp_1",
            "server_label": "s",
            "name": "ask",
            "arguments": "{}",
            "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "boom"}]},
        },
        {
            "id": "item_1",
            "type": "mcp_call",
            "server_label": "s",
            "name": "ask",
            "arguments": "{}",
            "error": {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": "boom"}]},
        },
    ),
    "tool_search_call": (
        {"type": "tool_search_call", "call_id": "call_7", "execution": "client", "arguments": {"query": "weather"}},
        {
            "id": "item_1",
            "type": "tool_search_call",
            "status": "completed",
            "call_id": "call_7",
            "execution": "client",
            "arguments": {"query": "weather"},
        },
    ),
    "tool_search_output": (
        {
            "type": "tool_search_output",
            "call_id": "call_7",
            "execution": "client",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}, "strict": True}],
        },
        {
            "id": "item_1",
            "type": "tool_search_output",
            "status": "completed",
            "call_id": "call_7",
            "execution": "client",
            "tools": [{"type": "function", "name": "get_weather", "parameters": {}, "strict": True}],
        },
    ),
    "additional_tools": (
        {"type": "additional_tools", "role": "developer", "tools": [{"type": "web_search"}]},
        {"id": "item_1", "type": "additional_tools", "role": "developer", "tools": [{"type": "web_search"}]},
    ),
    "program": (
        {"type": "program", "id": "prg_1", "call_id": "call_8", "code": "x = 1", "fingerprint": "abc"},
        {"id": "item_1", "type": "program", "call_id": "call_8", "code": "x = 1", "fingerprint": "abc"},
    ),
    "program_output": (
        {"type": "program_output", "id": "prgo_1", "call_id": "call_8", "result": "1", "status": "completed"},
        {"id": "item_1", "type": "program_output", "status": "completed", "call_id": "call_8", "result": "1"},
    ),
    "compaction_trigger": (
        {"type": "compaction_trigger"},
        {"id": "item_1", "type": "compaction_trigger"},
    ),
}


@pytest.mark.parametrize("given, returned", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_item_is_returned_as_openai_returns_it(given, returned):
    normalized = prepared(given)
    assert normalized == returned
    assert list(normalized)[:2] == ["id", "type"]


def test_every_item_type_is_covered():
    covered = {(given.get("type") or "message") for given, _ in ROUND_TRIPS.values()}
    assert covered | {"item_reference"} == set(ITEM_TYPES)


@pytest.mark.parametrize("given, returned", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_normalizing_a_returned_item_again_changes_only_its_id(given, returned):
    # The store copies referenced items this way.
    again = normalize_item(returned, "item_2")
    assert again == {**returned, "id": "item_2"}


def test_message_keys_come_in_openai_order():
    normalized = prepared({"content": "hi", "role": "user", "type": "message", "status": "completed"})
    assert list(normalized) == ["id", "type", "status", "role", "content"]


def test_unknown_fields_are_accepted_and_dropped_at_every_depth():
    normalized = prepared(
        {
            "role": "user",
            "id": "msg_we_never_issued",
            "providerOptions": {"openai": {}},
            "content": [{"type": "input_text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
        }
    )
    assert normalized == {
        "id": "item_1",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_text", "text": "hi"}],
    }


def test_free_form_objects_keep_all_their_fields():
    tool = {"type": "function", "name": "f", "description": None, "parameters": {"type": "object"}, "strict": None}
    normalized = prepared({"type": "additional_tools", "role": "developer", "tools": [tool]})
    assert normalized["tools"] == [tool]


def test_normalize_accepts_a_validated_model_too():
    (model,) = ITEMS.validate_python([{"role": "user", "content": "hi"}])
    assert normalize_item(model, "item_1") == prepared({"role": "user", "content": "hi"})


@pytest.mark.parametrize(
    "item",
    [{"type": "item_reference", "id": "msg_1"}, {"id": "msg_1"}, {"type": None, "id": "msg_1"}],
)
def test_item_references_validate_and_are_recognized(item):
    (model,) = ITEMS.validate_python([item])
    assert is_item_reference(model.model_dump(mode="json", exclude_unset=True))
    with pytest.raises(ValueError):
        normalize_item(model, "item_1")


def test_messages_are_not_item_references():
    assert not is_item_reference({"role": "user", "content": "hi", "id": "msg_1"})
    assert not is_item_reference({"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f", "arguments": ""})


def test_id_prefixes_cover_every_stored_type():
    assert set(ITEM_ID_PREFIXES) == set(ITEM_TYPES) - {"item_reference"}
    assert len(set(ITEM_ID_PREFIXES.values())) == len(ITEM_ID_PREFIXES)
    assert ITEM_ID_PREFIXES["message"] == "msg" and ITEM_ID_PREFIXES["function_call_output"] == "fco"


def test_new_item_ids():
    assert new_item_id("function_call").startswith("fc_")
    assert new_item_id(None).startswith("msg_")
    assert new_item_id("message") != new_item_id("message")


# --- errors --------------------------------------------------------------------------------

USER = {"role": "user", "content": "hi"}

ERRORS = {
    "unknown item type": (
        [{"type": "fancy_call"}],
        "items[0].type",
        "Invalid value: 'fancy_call'. Supported values are: 'message', ",
    ),
    "item type not a string": (
        [{"type": 3}],
        "items[0].type",
        "Invalid type for 'items[0].type': expected a string, but got an integer instead.",
    ),
    "item not an object": (
        [USER, "hello"],
        "items[1]",
        "Invalid type for 'items[1]': expected an object, but got a string instead.",
    ),
    "role tool": (
        [{"role": "tool", "content": "x"}],
        "items[0].role",
        "Invalid value: 'tool'. Supported values are: 'user', 'assistant', 'system' and 'developer'.",
    ),
    "missing role": (
        [{"content": "x"}],
        "items[0].role",
        "Missing required parameter: 'items[0].role'.",
    ),
    "missing content": (
        [{"type": "message", "role": "user"}],
        "items[0].content",
        "Missing required parameter: 'items[0].content'.",
    ),
    "content of the wrong type": (
        [{"role": "user", "content": 42}],
        "items[0].content",
        "Invalid type for 'items[0].content': expected a string or an array of content parts, "
        "but got an integer instead.",
    ),
    "output content part in a user message": (
        [USER, USER, USER, {"role": "user", "content": [{"type": "output_text", "text": "x"}]}],
        "items[3].content[0].type",
        "Invalid value: 'output_text'. Supported values are: 'input_text', 'input_image' and 'input_file'.",
    ),
    "image in an assistant message": (
        [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://e.com/a.png"}]}],
        "items[0].content[0].type",
        "Invalid value: 'input_image'. Supported values are: 'output_text', 'refusal' and 'input_text'.",
    ),
    "content part without type": (
        [{"role": "user", "content": [{"text": "x"}]}],
        "items[0].content[0].type",
        "Missing required parameter: 'items[0].content[0].type'.",
    ),
    "content part not an object": (
        [{"role": "user", "content": ["x"]}],
        "items[0].content[0]",
        "Invalid type for 'items[0].content[0]': expected an object, but got a string instead.",
    ),
    "missing call_id": (
        [{"type": "function_call_output", "output": "x"}],
        "items[0].call_id",
        "Missing required parameter: 'items[0].call_id'.",
    ),
    "empty call_id": (
        [{"type": "function_call_output", "call_id": "", "output": "x"}],
        "items[0].call_id",
        "Invalid 'items[0].call_id': empty string. Expected a string with minimum length 1, "
        "but got an empty string instead.",
    ),
    "call_id too long": (
        [{"type": "computer_call_output", "call_id": "c" * 65, "output": {"type": "computer_screenshot"}}],
        "items[0].call_id",
        "Invalid 'items[0].call_id': string too long. Expected a string with maximum length 64, "
        "but got a string with length 65 instead.",
    ),
    "function output of the wrong type": (
        [{"type": "function_call_output", "call_id": "c", "output": {"text": "x"}}],
        "items[0].output",
        "Invalid type for 'items[0].output': expected a string or an array of content parts, "
        "but got an object instead.",
    ),
    "bad enum value": (
        [{"role": "user", "content": [{"type": "input_image", "image_url": "https://e.com/a.png", "detail": "max"}]}],
        "items[0].content[0].detail",
        "Invalid value: 'max'. Supported values are: 'low', 'high', 'auto' and 'original'.",
    ),
    "boolean given as a string": (
        [{"type": "mcp_approval_response", "approval_request_id": "mcpr_1", "approve": "yes"}],
        "items[0].approve",
        "Invalid type for 'items[0].approve': expected a boolean, but got a string instead.",
    ),
    "number given as a string": (
        [{"type": "shell_call_output", "call_id": "c", "output": [{"stdout": "", "stderr": "", "outcome": {"type": "exit", "exit_code": "0"}}]}],
        "items[0].output[0].outcome.exit_code",
        "Invalid type for 'items[0].output[0].outcome.exit_code': expected an integer, but got a string instead.",
    ),
    "refusal field shares its name with its tag": (
        [{"role": "assistant", "content": [{"type": "refusal", "refusal": 5}]}],
        "items[0].content[0].refusal",
        "Invalid type for 'items[0].content[0].refusal': expected a string, but got an integer instead.",
    ),
    "type action missing text": (
        [
            {
                "type": "computer_call",
                "id": "cu_1",
                "call_id": "c",
                "status": "completed",
                "pending_safety_checks": [],
                "action": {"type": "type"},
            }
        ],
        "items[0].action.text",
        "Missing required parameter: 'items[0].action.text'.",
    ),
    "reference without id": (
        [{"type": "item_reference"}],
        "items[0].id",
        "Missing required parameter: 'items[0].id'.",
    ),
}


@pytest.mark.parametrize("items, param, message", ERRORS.values(), ids=ERRORS.keys())
def test_bad_input_gives_one_openai_style_error(items, param, message):
    got_param, got_message = error_for(items)
    assert got_param == param
    assert got_message.startswith(message) if message.endswith(", ") else got_message == message


def test_unknown_type_lists_the_supported_types():
    _, message = error_for([{"type": "fancy_call"}])
    assert "'function_call_output'" in message and "'item_reference'" in message
    assert message.endswith("'item_reference'.")


def test_errors_from_fastapi_name_the_body_field():
    # FastAPI's loc starts with "body"; the caller strips it and passes the whole body.
    body = {"items": [USER, {"type": "function_call", "name": "f", "arguments": "{}"}]}
    with pytest.raises(ValidationError) as raised:
        ITEMS.validate_python(body["items"])
    errors = [{**error, "loc": ("items", *error["loc"])} for error in raised.value.errors()]
    assert describe_errors(errors, body) == ("items[1].call_id", "Missing required parameter: 'items[1].call_id'.")


def test_errors_without_data_keep_their_loc():
    errors = [{"type": "less_than_equal", "loc": ("limit",), "msg": "", "input": 500, "ctx": {"le": 100}}]
    assert describe_errors(errors, None) == (
        "limit",
        "Invalid 'limit': integer above maximum value. Expected a value <= 100, but got 500 instead.",
    )


def test_unknown_fields_are_tolerated_but_documented_ones_checked():
    ITEMS.validate_python([{"role": "user", "content": "hi", "id": "x", "anything": [1, 2]}])
    with pytest.raises(ValidationError):
        ITEMS.validate_python([{"role": "user", "content": "hi", "status": "done"}])


# --- schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_json_schema_generates(mode):
    schema = ITEMS.json_schema(mode=mode)
    definitions = schema["$defs"]
    json.dumps(schema)
    assert {"InputItem", "InputMessage", "OutputMessage", "FunctionCall", "ItemReference"} <= set(definitions)
    assert len(definitions["InputItem"]["oneOf"]) == len(ITEM_TYPES)


def test_validated_items_serialize():
    items = [given for given, _ in ROUND_TRIPS.values()]
    dumped = ITEMS.dump_python(ITEMS.validate_python(items), mode="json", exclude_unset=True)
    assert len(dumped) == len(items)
