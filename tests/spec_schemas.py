"""Validating what Threadline sends against both specifications it follows: OpenAI's API
description (openai-openapi.json) and the Open Responses specification
(openresponses-openapi.json).

Both are OpenAPI 3.1, whose schemas are JSON Schema 2020-12; each file is one resource, so
its `#/components/...` references resolve within it. Where the two disagree, or where OpenAI's
description disagrees with what OpenAI's API sends, Threadline sends what OpenAI's API sends.
Each such case is one patch below, and nothing else is set aside.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SPECS = Path(__file__).resolve().parents[2] / "shared" / "spec"
OPENAI = "openai-openapi.json"
OPEN_RESPONSES = "openresponses-openapi.json"
NULL = {"type": "null"}

# The events of hosted and custom tools, which Open Responses does not describe: OpenAI's
# description alone checks them.
OPENAI_ONLY_EVENTS = ("response.mcp_", "response.web_search_call.", "response.file_search_call.", "response.custom_tool_call_input.")

# OpenAI's names for the events of reasoning text; Open Responses calls them response.reasoning.*.
OPEN_RESPONSES_EVENT_NAMES = {
    "response.reasoning_text.delta": "response.reasoning.delta",
    "response.reasoning_text.done": "response.reasoning.done",
}


def _nullable(properties: dict, name: str) -> None:
    properties[name] = {"anyOf": [properties[name], NULL]}


def _openai_as_sent(schemas: dict) -> None:
    """OpenAI's API sends these as null until they have a value (and Open Responses requires
    them present); OpenAI's description has no null for them: a Response's `usage` and `user`,
    a json_schema text format's `description`."""
    own = next(part for part in schemas["Response"]["allOf"] if "usage" in part.get("properties", {}))
    _nullable(own["properties"], "usage")
    _nullable(schemas["ModelResponseProperties"]["properties"], "user")
    _nullable(schemas["TextResponseFormatJsonSchema"]["properties"], "description")


def _open_responses_as_openai_sends(schemas: dict) -> None:
    """Where Open Responses differs from OpenAI's API, OpenAI's shape is kept:
    - a json_schema text format echoes its schema (Open Responses allows only null there);
    - `tools` lists what the request gave, namespaces, custom and hosted tools included (Open
      Responses knows function tools alone; OpenAI's description checks the others);
    - `tool_choice` may name a hosted tool ({"type": "mcp", ...}, {"type": "web_search"}),
      itself or among `allowed_tools`, as OpenAI's description allows and checks;
    - output items of hosted tools (web_search_call, mcp_call, ...) are OpenAI's: Open
      Responses knows messages, function calls and their outputs, and reasoning alone, so
      OpenAI's description checks the others;
    - annotations of output text may cite files (file_citation, from file_search), as
      OpenAI's description allows and checks: Open Responses knows url_citation alone."""
    schemas["JsonSchemaResponseFormat"]["properties"]["schema"] = {"anyOf": [{"type": "object"}, NULL]}
    others = {"type": "object", "properties": {"type": {"type": "string", "not": {"const": "function"}}}, "required": ["type"]}
    schemas["Tool"] = {"anyOf": [{"$ref": "#/components/schemas/FunctionTool"}, others]}
    hosted_choice = {"type": "object", "properties": {"type": {"type": "string", "not": {"enum": ["function", "allowed_tools"]}}}, "required": ["type"]}
    schemas["ResponseResource"]["properties"]["tool_choice"]["oneOf"].append(hosted_choice)
    schemas["AllowedToolChoice"]["properties"]["tools"]["items"]["oneOf"].append(hosted_choice)
    described = ["message", "function_call", "function_call_output", "reasoning"]
    hosted = {"type": "object", "properties": {"type": {"type": "string", "not": {"enum": described}}}, "required": ["type"]}
    schemas["ItemField"]["oneOf"].append(hosted)
    schemas["Annotation"]["oneOf"].append({"type": "object", "properties": {"type": {"const": "file_citation"}}, "required": ["type"]})


PATCHES = {OPENAI: _openai_as_sent, OPEN_RESPONSES: _open_responses_as_openai_sends}


@functools.cache
def _spec(name: str) -> dict:
    spec = json.loads((SPECS / name).read_text())
    PATCHES[name](spec["components"]["schemas"])
    return spec


def spec_schema(schema_name: str, spec: str = OPENAI) -> dict:
    """The named schema of `spec`, as written there (with the patches above)."""
    return _spec(spec)["components"]["schemas"][schema_name]


@functools.cache
def _registry(name: str) -> Registry:
    return Registry().with_resource(name, Resource.opaque(_spec(name)))


@functools.cache
def validator(schema_name: str, spec: str = OPENAI) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"{spec}#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry(spec))


def validate(instance: dict, schema_name: str, spec: str = OPENAI) -> None:
    """`instance` is valid as the named schema of `spec` (OpenAI's description by default)."""
    errors = sorted(validator(schema_name, spec).iter_errors(instance), key=lambda error: len(error.path))
    if errors:
        error = errors[0]
        raise AssertionError(f"{spec}: {schema_name} invalid at {list(error.path)}: {error.message}\n{json.dumps(instance)[:2000]}")


def validate_response(response: dict) -> None:
    """A Response object, valid in both specifications."""
    validate(response, "Response", OPENAI)
    validate(response, "ResponseResource", OPEN_RESPONSES)


@functools.cache
def _event_schemas(spec: str) -> dict[str, str]:
    """Streaming event type -> the name of its schema in `spec`."""
    document = _spec(spec)
    if spec == OPENAI:
        refs = document["components"]["schemas"]["ResponseStreamEvent"]["anyOf"]
    else:
        stream = document["paths"]["/responses"]["post"]["responses"]["200"]["content"]["text/event-stream"]
        refs = stream["schema"]["oneOf"]
    names = {}
    for ref in refs:
        name = ref["$ref"].rsplit("/", 1)[1]
        for event_type in document["components"]["schemas"][name]["properties"]["type"].get("enum", []):
            names[event_type] = name
    return names


def validate_event(event: dict) -> None:
    """A streamed event, valid in both specifications as the schema for its type."""
    openai_schema = _event_schemas(OPENAI).get(event["type"])
    assert openai_schema, f"event type {event['type']!r} is not in OpenAI's description"
    validate(event, openai_schema, OPENAI)
    if event["type"].startswith(OPENAI_ONLY_EVENTS):
        return
    open_type = OPEN_RESPONSES_EVENT_NAMES.get(event["type"], event["type"])
    open_schema = _event_schemas(OPEN_RESPONSES).get(open_type)
    assert open_schema, f"event type {event['type']!r} is not in the Open Responses specification"
    validate({**event, "type": open_type}, open_schema, OPEN_RESPONSES)
