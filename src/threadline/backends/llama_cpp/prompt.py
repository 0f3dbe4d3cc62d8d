"""A Responses request as the text-only chat messages a model's chat template takes."""

from __future__ import annotations

import json

from threadline.backends.base import ModelRequest
from threadline.backends.chat_messages import chat_messages, custom_function
from threadline.backends.llama_cpp.output_plan import OutputPlan

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def tool_call_text(name: str, arguments: object) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass  # kept as the string the model once wrote
    return f"{TOOL_CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{TOOL_CALL_CLOSE}"


def tools_guidance(plan: OutputPlan) -> str | None:
    if not plan.offered_tools:
        return None
    if plan.forced_custom is not None:
        tool = custom_function(plan.forced_custom)
        return f"Reply with only the input for the tool {tool['name']}, nothing else. {tool['description']}"
    functions = [custom_function(tool) if tool.get("type") == "custom" else tool for tool in plan.offered_tools]
    described = "\n".join(
        json.dumps({key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}, ensure_ascii=False)
        for tool in functions
    )
    if plan.forced_tools:
        how = 'Reply with one function call as JSON: {"name": <function name>, "arguments": <arguments object>}.'
    else:
        how = (
            "To call a function, reply with\n"
            f'{TOOL_CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}{TOOL_CALL_CLOSE}\n'
            "Otherwise reply normally."
        )
    return f"You can call these functions:\n<tools>\n{described}\n</tools>\n{how}"


def format_guidance(plan: OutputPlan) -> str | None:
    # The grammar guarantees the shape; saying it helps the model choose sensible values.
    if plan.forced_tools:
        return None
    if plan.schema is not None:
        return f"Reply only with JSON that matches this JSON schema:\n{json.dumps(plan.schema, ensure_ascii=False)}"
    if plan.json_object:
        return "Reply only with a JSON object."
    return None


def prompt_messages(request: ModelRequest, plan: OutputPlan, tool_role: str) -> list[dict]:
    """The request as the messages a chat template takes: {role, content} with text content.

    The messages are `chat_messages`' for a text-only model (one policy for every chat model;
    images and files are left out), said in text: the system messages before the conversation
    starts and the tool and format guidance become one system message; function calls,
    assistant text `<tool_call>{...}</tool_call>`; their outputs, a `tool_role` message
    ("user" ones wrapped in <tool_response>).
    """
    system_parts: list[str] = []
    messages: list[dict] = []
    for message in chat_messages(request, text_only=True):
        role, text = message["role"], message["content"] or ""
        if role == "system" and not messages:
            system_parts.append(text)
        elif role == "tool" and tool_role != "tool":
            messages.append({"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"})
        elif role == "tool":
            messages.append({"role": "tool", "content": text, "tool_call_id": message["tool_call_id"]})
        else:
            calls = [tool_call_text(call["function"]["name"], call["function"]["arguments"]) for call in message.get("tool_calls", ())]
            messages.append({"role": role, "content": "\n".join([text, *calls] if text else calls)})
    system_parts += [part for part in (tools_guidance(plan), format_guidance(plan)) if part]
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return messages
