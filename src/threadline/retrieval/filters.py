"""OpenAI's attribute filters: a ComparisonFilter, or a CompoundFilter of them, nested at will.

`parse_filters` checks a request's `filters` (a 400 with param "filters" when malformed);
`Filter.matches` tells whether a vector store file's attributes pass.

Where OpenAI's description is silent:
- eq, ne, in and nin compare like with like: the string "1" is not the number 1, and true is
  not 1; 1 and 1.0 are equal.
- gt, gte, lt and lte compare numbers with numbers and strings with strings (in code point
  order); an attribute of another type does not match.
- A file without the attribute matches only ne and nin (it is not equal, and not in the list).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from threadline.errors import APIError, invalid

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "nin")
COMPOUNDS = ("and", "or")
ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
# Far deeper than any real filter; it bounds the work one request can ask for.
MAX_DEPTH = 16


def _kind(value: Any) -> str | None:
    """"string", "number" or "boolean": the attribute types OpenAI allows."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _same(left: Any, right: Any) -> bool:
    return _kind(left) == _kind(right) and left == right


@dataclass(frozen=True)
class ComparisonFilter:
    type: str
    key: str
    value: Any

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        if self.key not in attributes:
            return self.type in ("ne", "nin")
        actual = attributes[self.key]
        if self.type == "eq":
            return _same(actual, self.value)
        if self.type == "ne":
            return not _same(actual, self.value)
        if self.type in ("in", "nin"):
            found = any(_same(actual, candidate) for candidate in self.value)
            return found if self.type == "in" else not found
        kind = _kind(actual)
        return kind in ("number", "string") and kind == _kind(self.value) and ORDERINGS[self.type](actual, self.value)


@dataclass(frozen=True)
class CompoundFilter:
    type: str
    filters: tuple[Filter, ...]

    def matches(self, attributes: Mapping[str, Any]) -> bool:
        results = (inner.matches(attributes) for inner in self.filters)
        return all(results) if self.type == "and" else any(results)


Filter = ComparisonFilter | CompoundFilter


def parse_filters(filters: Any) -> Filter:
    """The filter a request's `filters` describes; raises a 400 (param "filters") when it is malformed."""
    return _parse(filters, "filters", 1)


def _refuse(message: str) -> APIError:
    return invalid(message, param="filters")


def _parse(data: Any, where: str, depth: int) -> Filter:
    if depth > MAX_DEPTH:
        raise _refuse(f"Invalid '{where}': filters may be nested at most {MAX_DEPTH} deep.")
    if not isinstance(data, dict):
        raise _refuse(f"Invalid type for '{where}': expected an object, but got {_json_type(data)} instead.")
    kind = data.get("type")
    if kind in COMPOUNDS:
        return _compound(data, where, depth)
    if kind in COMPARISONS:
        return _comparison(data, where)
    choices = ", ".join(f"'{choice}'" for choice in COMPARISONS + COMPOUNDS)
    raise _refuse(f"Invalid value for '{where}.type': expected one of {choices}.")


def _compound(data: dict, where: str, depth: int) -> CompoundFilter:
    _only_fields(data, ("type", "filters"), where)
    inner = data.get("filters")
    if not isinstance(inner, list) or not inner:
        raise _refuse(f"Invalid '{where}.filters': expected a non-empty array of filters.")
    return CompoundFilter(data["type"], tuple(_parse(item, f"{where}.filters[{index}]", depth + 1) for index, item in enumerate(inner)))


def _comparison(data: dict, where: str) -> ComparisonFilter:
    _only_fields(data, ("type", "key", "value"), where)
    kind, key = data["type"], data.get("key")
    if not isinstance(key, str):
        raise _refuse(f"Invalid '{where}.key': expected a string.")
    if "value" not in data:
        raise _refuse(f"Missing required parameter: '{where}.value'.")
    value = data["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not all(_kind(item) in ("string", "number") for item in value):
            raise _refuse(f"Invalid '{where}.value': '{kind}' compares with an array of strings and numbers.")
        return ComparisonFilter(kind, key, tuple(value))
    allowed = ("string", "number", "boolean") if kind in ("eq", "ne") else ("string", "number")
    if _kind(value) not in allowed:
        raise _refuse(f"Invalid '{where}.value': '{kind}' compares with a {' or '.join(allowed)}.")
    return ComparisonFilter(kind, key, value)


def _only_fields(data: dict, fields: tuple[str, ...], where: str) -> None:
    for name in data:
        if name not in fields:
            raise _refuse(f"Unknown parameter: '{where}.{name}'.")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return {"boolean": "a boolean", "number": "a number", "string": "a string"}.get(_kind(value) or "", "a value")
