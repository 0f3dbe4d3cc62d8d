"""Pydantic's validation errors told as OpenAI tells them: one parameter, one sentence.

Pydantic reports every failed union member, and its `loc` mixes the request's keys and
indexes with union tags and type names ('message', 'str', 'list[...]', ...). We walk the
request data alongside `loc` to keep only the real path, pick the deepest error, and word it
the way OpenAI's API does.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

_MISSING = object()

_EXPECTED_KINDS = {
    "string_type": "a string",
    "string_sub_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "list_type": "an array",
    "tuple_type": "an array",
    "set_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "dataclass_type": "an object",
    "none_required": "null",
}

_BOUNDS = {
    "greater_than": ("below minimum value", ">", "gt"),
    "greater_than_equal": ("below minimum value", ">=", "ge"),
    "less_than": ("above maximum value", "<", "lt"),
    "less_than_equal": ("above maximum value", "<=", "le"),
}


def describe_errors(errors: list[dict], data: object, root: str = "") -> tuple[str | None, str]:
    """The (param, message) that best explains `errors`, raised while validating `data`.

    `errors` is pydantic's `ValidationError.errors()`, with each `loc` relative to `data`;
    `root` names `data` in the reported param (e.g. "items")."""
    if not errors:
        return (root or None), "The request is invalid."
    described = [_locate(error, data) for error in errors]
    # The deepest path is the most specific: a content part's type beats its message's content.
    error, path, value = max(described, key=lambda found: len(found[1]))
    return _describe(error, path, value, root)


# --- finding the real path ---------------------------------------------------------------


def _locate(error: dict, data: object) -> tuple[dict, list[str | int], Any]:
    """The error, the real path its loc points at, and the value found there (or _MISSING)."""
    loc = list(error.get("loc") or ())
    missing = error.get("type") == "missing"
    if data is None:  # nothing to walk (e.g. query parameters): drop what looks like a type name
        path, value = [part for part in loc if not _looks_like_type_name(part)], _MISSING
    else:
        path, value = _walk(loc, data, [], missing) or _walk(loc, data, [], False) or ([], data)
    # Pydantic's `input` is the failing value itself; it is absent only for a missing field.
    return error, path, _MISSING if missing else error.get("input", value)


def _walk(loc: list, current: Any, path: list, missing: bool) -> tuple[list, Any] | None:
    """Match `loc` against the data, keeping or dropping each element; None if no match.

    An element is kept when it is a key or index of the value reached so far; tags and type
    names are dropped. A union tag can equal a key (a `refusal` part has a `refusal` field, a
    `type` action a `type` field), so both choices are tried and the longest match wins."""
    if not loc:
        return (path, current) if not missing else None
    part, rest = loc[0], loc[1:]
    if missing and not rest and isinstance(current, dict) and isinstance(part, str) and part not in current:
        return path + [part], _MISSING
    is_key = (isinstance(current, dict) and isinstance(part, str) and part in current) or (
        isinstance(current, list) and isinstance(part, int) and not isinstance(part, bool) and 0 <= part < len(current)
    )
    is_tag = isinstance(current, dict) and part == current.get("type")
    if is_key and not is_tag:
        # A real key is kept; dropping it is only tried if nothing below matches.
        return _walk(rest, current[part], path + [part], missing) or _walk(rest, current, path, missing)
    dropped = _walk(rest, current, path, missing)
    kept = _walk(rest, current[part], path + [part], missing) if is_key else None
    return max((found for found in (dropped, kept) if found is not None), key=lambda f: len(f[0]), default=None)


def _looks_like_type_name(part: object) -> bool:
    return isinstance(part, str) and (
        part in {"str", "int", "float", "bool", "list", "dict", "none"} or bool(re.fullmatch(r"[\w-]+\[.*\]", part))
    )


def _param(root: str, path: Iterable[str | int]) -> str | None:
    text = root
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or None


# --- wording -----------------------------------------------------------------------------


def _describe(error: dict, path: list, value: Any, root: str) -> tuple[str | None, str]:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found", "invalid_value"):
        # A tagged union names the field it switches on; report that field, not the whole object.
        if not isinstance(value, dict):
            return _param(root, path), _invalid_type(_param(root, path), "an object", value)
        field = ctx.get("field") or str(ctx.get("discriminator", "type")).strip("'")
        path, value = path + [field], value.get(field, _MISSING)
        expected = ctx.get("expected") or _quoted_values(ctx.get("expected_tags", ""))
        return _param(root, path), _invalid_value(_param(root, path), value, expected)

    param = _param(root, path)
    if kind == "missing":
        return param, f"Missing required parameter: '{param}'." if param else "Missing required parameter."
    if kind in ("literal_error", "enum"):
        return param, _invalid_value(param, value, _quoted_values(ctx.get("expected", "")))
    if kind in _EXPECTED_KINDS:
        return param, _invalid_type(param, _EXPECTED_KINDS[kind], value)
    if kind == "invalid_type":
        return param, _invalid_type(param, ctx.get("expected", "another type"), value)
    if kind in ("string_too_long", "string_too_short"):
        return param, _bad_length(param, "string", kind, ctx, value)
    if kind in ("too_long", "too_short"):
        return param, _bad_length(param, "array", kind, ctx, value)
    if kind in _BOUNDS:
        problem, sign, key = _BOUNDS[kind]
        number = "integer" if isinstance(value, int) else "decimal"
        return param, (
            f"Invalid {_name(param)}: {number} {problem}. "
            f"Expected a value {sign} {ctx.get(key)}, but got {value} instead."
        )
    if kind == "extra_forbidden":
        return param, f"Unknown parameter: '{param}'."
    message = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
    return param, f"Invalid {_name(param)}: {message.rstrip('.')}."


def _name(param: str | None) -> str:
    return f"'{param}'" if param else "request body"


def _invalid_type(param: str | None, expected: str, value: Any) -> str:
    return f"Invalid type for {_name(param)}: expected {expected}, but got {_kind_of(value)} instead."


def _invalid_value(param: str | None, value: Any, expected: list[str]) -> str:
    if value is _MISSING:
        return f"Missing required parameter: '{param}'."
    if not isinstance(value, str):
        return _invalid_type(param, "a string", value)
    supported = _join([f"'{option}'" for option in expected])
    return f"Invalid value: '{value}'. Supported values are: {supported}." if supported else f"Invalid value: '{value}'."


def _bad_length(param: str | None, noun: str, kind: str, ctx: dict, value: Any) -> str:
    size = len(value) if isinstance(value, (str, list, dict)) else ctx.get("actual_length")
    if kind.endswith("long"):
        limit = ctx.get("max_length")
        return (
            f"Invalid {_name(param)}: {noun} too long. Expected {_a(noun)} with maximum length {limit}, "
            f"but got {_a(noun)} with length {size} instead."
        )
    limit = ctx.get("min_length")
    got = f"an empty {noun}" if size == 0 else f"{_a(noun)} with length {size}"
    problem = f"empty {noun}" if size == 0 else f"{noun} too short"
    return f"Invalid {_name(param)}: {problem}. Expected {_a(noun)} with minimum length {limit}, but got {got} instead."


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "another type"


def _quoted_values(text: str) -> list[str]:
    """The values in pydantic's "'a', 'b' or 'c'" lists."""
    return re.findall(r"'((?:[^'\\]|\\.)*)'", text)


def _join(options: list[str]) -> str:
    if len(options) <= 1:
        return "".join(options)
    return ", ".join(options[:-1]) + " and " + options[-1]
