"""What the model's output must be: which tools it may call, and the grammar that holds it.

Custom tools are offered as functions with one string parameter, `input`, as to any chat
model. When one custom tool alone is forced, the whole output is its raw input, held by the
tool's grammar where that converts to GBNF.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from threadline.backends.base import BackendError, ModelRequest
from threadline.backends.chat_messages import CUSTOM_INPUT_SCHEMA, custom_tool_names
from threadline.backends.grammar import custom_tool_gbnf

LOOSE_STRING_CHAR = r'char ::= [^"\\] |'
STRICT_STRING_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


@dataclass
class OutputPlan:
    """Which tools the prompt describes, and what constrains the model's output."""

    offered_tools: list[dict] = field(default_factory=list)  # described in the system prompt
    forced_tools: list[dict] = field(default_factory=list)  # non-empty: output one JSON call to one of these
    schema: dict | None = None  # text.format json_schema
    json_object: bool = False  # text.format json_object

    @property
    def scans_for_tool_calls(self) -> bool:
        return bool(self.offered_tools) and not self.forced_tools

    @property
    def custom_tool_names(self) -> set[str]:
        return custom_tool_names(self.offered_tools)

    @property
    def forced_custom(self) -> dict | None:
        """The custom tool whose raw input the whole output is: the one tool forced, if custom."""
        if len(self.forced_tools) == 1 and self.forced_tools[0].get("type") == "custom":
            return self.forced_tools[0]
        return None


def plan_output(request: ModelRequest) -> OutputPlan:
    choice = request.tool_choice
    tools = [tool for tool in request.tools if tool.get("type", "function") in ("function", "custom")]
    if choice == "none":
        tools = []
    forced = False
    if choice == "required":
        forced = True
    elif isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        tools, forced = [tool for tool in tools if tool["name"] == choice.get("name")], True
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = {entry.get("name") for entry in choice.get("tools", [])}
        tools, forced = [tool for tool in tools if tool["name"] in allowed], choice.get("mode") == "required"
    text_format = request.text_format or {}
    return OutputPlan(
        offered_tools=tools,
        forced_tools=tools if forced else [],
        schema=text_format.get("schema") if text_format.get("type") == "json_schema" else None,
        json_object=text_format.get("type") == "json_object",
    )


def tool_call_schema(tools: list[dict]) -> dict:
    """A JSON schema for {"name": <one tool>, "arguments": <that tool's parameters>}."""
    choices = [
        {
            "type": "object",
            "properties": {"name": {"const": tool["name"]}, "arguments": tool_parameters(tool)},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return choices[0] if len(choices) == 1 else {"anyOf": choices}


def tool_parameters(tool: dict) -> dict:
    if tool.get("type") == "custom":
        return CUSTOM_INPUT_SCHEMA
    return tool.get("parameters") or {"type": "object"}


def output_grammar(plan: OutputPlan) -> str | None:
    """The GBNF grammar the output must follow, or None when it is free text.

    For a forced custom tool, the grammar of its input: a GrammarError when that grammar does
    not convert (the caller then lets the model write it freely)."""
    # Imported here: planning output needs no llama.cpp, only its grammar does.
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    if plan.forced_custom is not None:
        return custom_tool_gbnf(plan.forced_custom.get("format"))
    schema = tool_call_schema(plan.forced_tools) if plan.forced_tools else plan.schema
    if schema is None:
        return JSON_GBNF if plan.json_object else None
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain errors for schema features it lacks
        raise BackendError(f"The JSON schema cannot be enforced by this model: {exc}", code="invalid_prompt", status=400) from exc
    # The converter lets raw control characters (a newline, say) into strings, which JSON
    # forbids: keep them out, as llama.cpp's own JSON grammar does.
    return grammar.replace(LOOSE_STRING_CHAR, STRICT_STRING_CHAR)
