"""Every item type the API knows, with the prefix of the ids Threadline gives its items."""

from __future__ import annotations

from threadline.ids import new_id

ITEM_ID_PREFIXES: dict[str, str] = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
    "compaction": "cmp",
    "compaction_trigger": "cmpt",
    "computer_call": "cu",
    "computer_call_output": "cuo",
    "file_search_call": "fs",
    "web_search_call": "ws",
    "image_generation_call": "ig",
    "code_interpreter_call": "ci",
    "local_shell_call": "lsh",
    "local_shell_call_output": "lsho",
    "shell_call": "sh",
    "shell_call_output": "sho",
    "apply_patch_call": "apc",
    "apply_patch_call_output": "apco",
    "mcp_list_tools": "mcpl",
    "mcp_approval_request": "mcpr",
    "mcp_approval_response": "mcpa",
    "mcp_call": "mcp",
    "tool_search_call": "tsc",
    "tool_search_output": "tso",
    "additional_tools": "at",
    "program": "prg",
    "program_output": "prgo",
}


def new_item_id(item_type: str | None) -> str:
    """A fresh id for an item of this type; an easy message (no type) is a message."""
    return new_id(ITEM_ID_PREFIXES.get(item_type or "message", "item"))


def unfinished_status(item_type: str) -> str:
    """The status of a call stopped while it ran (it may or may not have taken effect):
    incomplete, or failed for a web search, which has no such status."""
    return "failed" if item_type == "web_search_call" else "incomplete"
