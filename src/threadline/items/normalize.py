"""Input items in the shape OpenAI stores and returns them (`ConversationItem` in the spec).

A client may send an easy message (no type, string content) or leave out fields that the
returned item always carries; here each item gets its id, an explicit type, a content list,
the returned shape's required fields, and a stable key order. Fields the client sent that the
API does not document are dropped, at every depth, so what comes back never depends on which
client wrote it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from threadline.items import models as m

# Fields the returned shape always has (required in `ConversationItem`), with the value an
# item gets when its client left them out or sent null.
RETURNED_DEFAULTS: dict[type[BaseModel], dict[str, Any]] = {
    m.InputMessage: {"status": "completed"},
    m.OutputMessage: {"status": "completed"},
    m.FunctionCall: {"status": "completed"},
    m.FunctionCallOutput: {"status": "completed"},
    m.ComputerCallOutput: {"status": "completed"},
    m.ToolSearchCall: {"status": "completed", "call_id": None, "execution": "server"},
    m.ToolSearchOutput: {"status": "completed", "call_id": None, "execution": "server"},
    m.ShellCall: {"status": "completed", "environment": None},
    m.ShellAction: {"timeout_ms": None, "max_output_length": None},
    m.ShellCallOutput: {"status": "completed", "max_output_length": None},
    m.OutputText: {"annotations": [], "logprobs": []},
    m.InputImage: {"detail": "auto"},
}

# Models that describe only part of an open-ended object: everything the client sent is kept.
OPEN_MODELS: tuple[type[BaseModel], ...] = (m.ToolDefinition, m.McpToolExecutionError)

# The key order of every returned item; other fields follow in the order the spec lists them.
LEADING_KEYS = ("id", "type", "status", "role", "content")

_items = TypeAdapter(m.InputItem)


def is_item_reference(item: dict) -> bool:
    """Whether the item names another item (resolved by the store) rather than being one."""
    if item.get("type") == "item_reference":
        return True
    return item.get("type") is None and m.looks_like_reference(item)


def normalize_item(item: dict | BaseModel, item_id: str) -> dict:
    """The item as it is stored and returned, under `item_id` (any id the client sent is dropped).

    `item` is an input item already validated against `InputItem`, as a model or as its
    `model_dump(mode="json", exclude_unset=True)`; an item reference cannot be normalized."""
    model = item
    if not isinstance(item, BaseModel):
        try:
            model = _items.validate_python(item)
        except ValidationError:
            # Not an input item: one the server produced in an output-only shape. Keep it whole.
            return _ordered({**item, "id": item_id})
    if isinstance(model, m.ItemReference):
        raise ValueError("an item_reference is resolved against the store, not normalized")
    returned = _returned(model)
    returned["id"] = item_id
    returned["type"] = m.item_type(model) if returned.get("type") is None else returned["type"]
    if isinstance(model, (m.InputMessage, m.OutputMessage)):
        returned["content"] = _message_content(model)
    return _ordered(returned)


def _returned(value: Any) -> Any:
    """A validated value as JSON: documented fields only, nulls dropped unless the shape needs them."""
    if isinstance(value, OPEN_MODELS):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, BaseModel):
        defaults = RETURNED_DEFAULTS.get(type(value), {})
        out = {}
        for name, field in type(value).model_fields.items():
            field_value = getattr(value, name) if name in value.model_fields_set else None
            if field_value is not None or (field.is_required() and name in value.model_fields_set):
                out[name] = _returned(field_value)
            elif name in defaults:
                out[name] = _copy(defaults[name])
        return out
    if isinstance(value, list):
        return [_returned(element) for element in value]
    return _copy(value)


def _message_content(message: m.InputMessage | m.OutputMessage) -> list[dict]:
    """A message's content as a list of parts of the kind its role returns."""
    assistant = isinstance(message, m.OutputMessage)
    if isinstance(message.content, str):
        parts: list[Any] = [m.InputText(type="input_text", text=message.content)]
    else:
        parts = list(message.content)
    if assistant:
        # OpenAI returns an assistant's text as output_text, however the client wrote it.
        parts = [m.OutputText(type="output_text", text=p.text) if isinstance(p, m.InputText) else p for p in parts]
    return [_returned(part) for part in parts]


def _ordered(item: dict) -> dict:
    leading = {key: item[key] for key in LEADING_KEYS if key in item}
    return {**leading, **{key: value for key, value in item.items() if key not in leading}}


def _copy(value: Any) -> Any:
    """Defaults and free-form values are copied, so no two items share a list or dict."""
    if isinstance(value, dict):
        return {key: _copy(element) for key, element in value.items()}
    if isinstance(value, list):
        return [_copy(element) for element in value]
    return value
