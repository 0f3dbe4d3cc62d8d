"""Responses items as Chat Completions messages: one conversion, one policy, for every chat model.

The policy:
- `instructions` come first, as a system message. System and developer messages become
  system messages where they stand: most chat templates (vLLM's, llama.cpp's) know no
  "developer" role.
- A message's text parts become one string; a user message's images and files stay parts.
  Other roles carry text only. A model that reads only text (`text_only`) is sent the text
  alone: images and files are left out wherever they stand, in any form, and the text parts
  of a message or a tool output are joined as they are, with nothing between them.
- A function call joins the assistant message before it as a `tool_calls` entry (one model
  turn, its text and every call it made, is one assistant message); its output becomes a
  "tool" message of text. A function call's `namespace` is the engine's business: the call
  goes by its `name`.
- A custom tool is offered as a function with one string parameter, `input`; a call to it
  goes as a call of that function with `{"input": ...}`, its output as a "tool" message.
- Reasoning items are left out: chat templates strip earlier thinking.
- Any other item, role or part cannot be said in chat: a 400 that names it, before any call.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

from threadline.backends.base import BackendError, ModelRequest
from threadline.items.ended import derived

ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
TEXT_PARTS = ("input_text", "output_text", "text")
UNSEEN_PARTS = ("input_image", "input_file")  # what a text-only model leaves out


def cannot_send(message: str) -> BackendError:
    return BackendError(message, code="invalid_request_error", status=400)


def chat_messages(request: ModelRequest, *, text_only: bool = False) -> list[dict]:
    """The request's instructions and input as Chat Completions messages, by the policy above;
    for a `text_only` model, every message's content is a string (or None beside tool calls).

    Raises a 400 BackendError for anything chat cannot carry."""
    messages: list[dict] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    form_of = CHAT_FORMS[text_only]
    for item in request.input:
        form = derived(item, form_of, form_of)
        if type(form) is tuple:
            add_tool_call(messages, *form)
        elif form is not None:
            messages.append(handed_out(form))
    return messages


def chat_form(item: dict, text_only: bool) -> dict | tuple[str, str, str] | None:
    """What the item is in chat: a message; a tool call, (call_id, name, arguments), which
    joins the assistant message before it; or None, left out. The same for the same item, so
    an ended one's is kept with it (items/ended.py)."""
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        return chat_message(item, text_only)
    if kind == "function_call":
        return item["call_id"], item["name"], item.get("arguments") or "{}"
    if kind == "custom_tool_call":
        return item["call_id"], item["name"], custom_arguments(item.get("input") or "")
    if kind in ("function_call_output", "custom_tool_call_output"):
        return {"role": "tool", "tool_call_id": item["call_id"], "content": tool_output_text(item.get("output"), text_only)}
    if kind != "reasoning":
        raise cannot_send(f"Input items of type '{kind}' cannot be sent to this model.")
    return None


# For full and for text-only models; each is also its own key for the form kept with an ended item.
CHAT_FORMS = {text_only: functools.partial(chat_form, text_only=text_only) for text_only in (False, True)}


def handed_out(message: dict) -> dict:
    """A message of its own for the caller to change: a kept form stays as it was."""
    content = message["content"]
    return {**message, "content": copy.deepcopy(content)} if isinstance(content, list) else {**message}


def add_tool_call(messages: list[dict], call_id: str, name: str, arguments: str) -> None:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    previous = messages[-1] if messages else None
    if previous is not None and previous["role"] == "assistant":
        previous.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def chat_message(item: dict, text_only: bool) -> dict:
    role = ROLES.get(item.get("role", ""))
    if role is None:
        raise cannot_send(f"Messages with role '{item.get('role')}' cannot be sent to this model.")
    return {"role": role, "content": chat_content(item.get("content"), role, text_only)}


def chat_content(content: Any, role: str, text_only: bool) -> str | list[dict]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if text_only:
        return "".join(chat_part(part)["text"] for part in content if part.get("type") not in UNSEEN_PARTS)
    parts = [chat_part(part) for part in content]
    # Text alone goes as a plain string: every upstream and chat template takes that.
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    if role != "user":
        raise cannot_send(f"Only user messages can carry images or files for this model, not {role} messages.")
    return parts


def chat_part(part: dict) -> dict:
    kind = part.get("type")
    if kind in TEXT_PARTS:
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "text", "text": part.get("refusal") or ""}
    if kind == "input_image":
        if not part.get("image_url"):
            raise cannot_send("This model takes images as image_url (a URL or a data URL), not as file_id.")
        return {"type": "image_url", "image_url": {"url": part["image_url"], "detail": part.get("detail") or "auto"}}
    if kind == "input_file":
        if not part.get("file_data"):
            raise cannot_send("This model takes files as file_data, not as file_id or file_url.")
        file = {"file_data": part["file_data"]}
        if part.get("filename"):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise cannot_send(f"Content parts of type '{kind}' cannot be sent to this model.")


def tool_output_text(output: Any, text_only: bool) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    # Chat's tool messages carry text only.
    texts = []
    for part in output:
        if text_only and part.get("type") in UNSEEN_PARTS:
            continue
        if part.get("type") not in TEXT_PARTS:
            raise cannot_send(f"Function call outputs with '{part.get('type')}' parts cannot be sent to this model.")
        texts.append(part.get("text") or "")
    return ("" if text_only else "\n").join(texts)


# --- Custom tools as functions -------------------------------------------------------------

CUSTOM_INPUT_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
    "additionalProperties": False,
}
SYNTAX_NAMES = {"lark": "Lark grammar", "regex": "regular expression"}


def custom_function(tool: dict) -> dict:
    """A custom tool as the function a chat model is offered: {type, name, description, parameters}.

    The function's description says what the input must be; a grammar's definition goes in
    whole, as the model has nothing else to follow it by."""
    description = tool.get("description") or ""
    form = tool.get("format") or {}
    if form.get("type") == "grammar":
        syntax = SYNTAX_NAMES.get(form.get("syntax"), f"{form.get('syntax')} grammar")
        rule = f"The input must match this {syntax}:\n{form.get('definition') or ''}"
    else:
        rule = "The input is free-form text."
    parameters = {**CUSTOM_INPUT_SCHEMA, "properties": {"input": {"type": "string", "description": rule}}}
    return {
        "type": "function",
        "name": tool["name"],
        "description": f"{description}\n\n{rule}" if description else rule,
        "parameters": parameters,
    }


def custom_arguments(raw_input: str) -> str:
    """The arguments of a call to a custom tool's function, for its raw input."""
    return json.dumps({"input": raw_input}, ensure_ascii=False)


def custom_input(arguments: str) -> str:
    """The raw input a call to a custom tool's function carries: `input` of its JSON
    arguments, or the arguments as they are when they are not such JSON."""
    try:
        decoded = json.loads(arguments)
    except ValueError:
        return arguments
    if isinstance(decoded, dict) and isinstance(decoded.get("input"), str):
        return decoded["input"]
    return arguments


def custom_tool_names(tools: list[dict]) -> set[str]:
    return {tool["name"] for tool in tools if tool.get("type") == "custom"}
