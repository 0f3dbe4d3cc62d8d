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
  "tool" message of text.
- Reasoning items are left out: chat templates strip earlier thinking.
- Any other item, role or part cannot be said in chat: a 400 that names it, before any call.
"""

from __future__ import annotations

from typing import Any

from threadline.backends.base import BackendError, ModelRequest

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
    for item in request.input:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            messages.append(chat_message(item, text_only))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"},
            }
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant":
                previous.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": tool_output_text(item.get("output"), text_only)})
        elif kind != "reasoning":
            raise cannot_send(f"Input items of type '{kind}' cannot be sent to this model.")
    return messages


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
