"""A Responses request as the chat messages a model's chat template takes."""

from __future__ import annotations

import json

from threadline.backends.base import ModelRequest
from threadline.backends.llama_cpp.output_plan import OutputPlan

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"


def content_text(content: object) -> str:
    """The text of a message's content; images and files are left out (a text-only model)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    return "".join(
        part.get("text") or part.get("refusal") or "" if isinstance(part, dict) else str(part) for part in content
    )


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
    described = "\n".join(
        json.dumps({key: tool[key] for key in ("name", "description", "parameters") if tool.get(key) is not None}, ensure_ascii=False)
        for tool in plan.offered_tools
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


def chat_messages(request: ModelRequest, plan: OutputPlan, tool_role: str) -> list[dict]:
    """The request as chat messages a chat template takes: {role, content} with text content.

    Instructions and the system/developer messages before the conversation starts become one
    system message, followed by tool and format guidance. Function calls become assistant text
    `<tool_call>{...}</tool_call>`; their outputs a `tool_role` message ("user" ones wrapped
    in <tool_response>). Reasoning items are not shown to the model.
    """
    system_parts = [request.instructions] if request.instructions else []
    messages: list[dict] = []
    for item in request.input:
        kind = item.get("type", "message")
        if kind == "message":
            role, text = item.get("role", "user"), content_text(item.get("content"))
            if role in ("system", "developer"):
                if not messages:
                    system_parts.append(text)
                    continue
                role = "system"
            messages.append({"role": role, "content": text})
        elif kind == "function_call":
            call = tool_call_text(item.get("name", ""), item.get("arguments", "{}"))
            if messages and messages[-1]["role"] == "assistant":
                previous = messages[-1]["content"]
                messages[-1]["content"] = f"{previous}\n{call}" if previous else call
            else:
                messages.append({"role": "assistant", "content": call})
        elif kind == "function_call_output":
            output = item.get("output")
            output = output if isinstance(output, str) else content_text(output)
            if tool_role == "tool":
                messages.append({"role": "tool", "content": output, "tool_call_id": item.get("call_id")})
            else:
                messages.append({"role": "user", "content": f"<tool_response>\n{output}\n</tool_response>"})
    system_parts += [part for part in (tools_guidance(plan), format_guidance(plan)) if part]
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return messages
