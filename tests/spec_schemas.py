"""Validating what Threadline emits against the official OpenAI API description."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
from referencing import Registry, Resource

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "openai-openapi.json"


@functools.cache
def _spec() -> dict:
    return json.loads(SPEC.read_text())


@functools.cache
def _event_schemas() -> dict[str, str]:
    """Streaming event type -> the name of its schema in the spec."""
    schemas = _spec()["components"]["schemas"]
    names = {}
    for ref in schemas["ResponseStreamEvent"]["anyOf"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        for event_type in schemas[name]["properties"]["type"].get("enum", []):
            names[event_type] = name
    return names


@functools.cache
def validator(schema_name: str) -> jsonschema.Draft202012Validator:
    spec = _spec()
    registry = Registry().with_resource("spec", Resource.opaque(spec))
    schema = {"$ref": f"spec#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(instance: dict, schema_name: str) -> None:
    errors = sorted(validator(schema_name).iter_errors(instance), key=lambda error: len(error.path))
    if errors:
        error = errors[0]
        raise AssertionError(f"{schema_name} invalid at {list(error.path)}: {error.message}\n{json.dumps(instance)[:2000]}")


def validate_event(event: dict) -> None:
    """An SSE event Threadline sent, checked against the spec's schema for its type."""
    schema_name = _event_schemas().get(event["type"])
    assert schema_name, f"event type {event['type']!r} is not in the spec"
    validate(event, schema_name)
