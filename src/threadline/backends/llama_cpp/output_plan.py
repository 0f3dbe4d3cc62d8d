"""What the model's output must be: which tools it may call, and the grammar that holds it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from threadline.backends.base import BackendError, ModelRequest

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


def plan_output(request: ModelRequest) -> OutputPlan:
    choice = request.tool_choice
    tools = [tool for tool in request.tools if tool.get("type", "function") == "function"]
    if choice == "none":
        tools = []
    forced = False
    if choice == "required":
        forced = True
    elif isinstance(choice, dict) and choice.get("type") == "function":
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
            "properties": {"name": {"const": tool["name"]}, "arguments": tool.get("parameters") or {"type": "object"}},
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for tool in tools
    ]
    return choices[0] if len(choices) == 1 else {"anyOf": choices}


def output_grammar(plan: OutputPlan) -> str | None:
    """The GBNF grammar the output must follow, or None when it is free text."""
    # Imported here: planning output needs no llama.cpp, only its grammar does.
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

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
