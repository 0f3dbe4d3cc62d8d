"""Items as the model reads them: a server-side tool's items become the function call and
output the model made and read, under the names the model knows the tools by.

Backends then see only the items every model understands (messages, reasoning, function
and custom calls with their outputs); an MCP approval still waiting is not shown at all,
nor are `additional_tools` items, whose tools the model is offered as tools.
"""

from __future__ import annotations

import orjson

from threadline.tools.plan import FILE_SEARCH_NAME, WEB_SEARCH_NAME, Target, ToolPlan

DENIED = "The user denied this call of the tool, so it was not run."


def model_view(items: list[dict], plan: ToolPlan, outputs: dict[str, str] | None = None, call_ids: dict[str, str] | None = None) -> list[dict]:
    """`items` as the model reads them. For calls made in this response, `outputs` holds what
    the model read of each (a web search's results are not stored whole) and `call_ids` the
    id the model gave it, by item id; other calls go by their item's id."""
    outputs, call_ids = outputs or {}, call_ids or {}
    answers = {item["approval_request_id"]: item for item in items if item.get("type") == "mcp_approval_response"}
    ran = {item.get("approval_request_id") for item in items if item.get("type") == "mcp_call"}
    known_as = plan.sent_ids  # an approval request sent back in the input, by the id its answer names
    viewed: list[dict] = []
    for item in items:
        kind = item.get("type")
        if kind in ("mcp_list_tools", "mcp_approval_response", "additional_tools"):
            continue  # the model reads listed tools as tools, and an answer by its effect
        if kind == "mcp_call":
            name = plan.model_name(Target("mcp", item["name"], server_label=item["server_label"]))
            viewed += call_pair(call_ids.get(item["id"], item["id"]), name, item["arguments"], outputs.get(item["id"]) or mcp_output(item))
        elif kind == "mcp_approval_request":
            request_id = known_as.get(item["id"], item["id"])
            answer = answers.get(request_id)
            # Waiting for an answer, or approved (its mcp_call follows, or runs before the next turn).
            if answer is None or answer["approve"] or request_id in ran:
                continue
            name = plan.model_name(Target("mcp", item["name"], server_label=item["server_label"]))
            reason = f" Reason given: {answer['reason']}" if answer.get("reason") else ""
            viewed += call_pair(item["id"], name, item["arguments"], DENIED + reason)
        elif kind == "web_search_call":
            action = item.get("action") or {}
            arguments = orjson.dumps({"query": action.get("query", "")}).decode()
            name = plan.model_name(Target("web_search", WEB_SEARCH_NAME))
            viewed += call_pair(call_ids.get(item["id"], item["id"]), name, arguments, outputs.get(item["id"]) or search_output(item))
        elif kind == "file_search_call":
            arguments = orjson.dumps({"query": "; ".join(item.get("queries") or [])}).decode()
            name = plan.model_name(Target("file_search", FILE_SEARCH_NAME))
            viewed += call_pair(call_ids.get(item["id"], item["id"]), name, arguments, outputs.get(item["id"]) or file_search_output(item))
        elif kind in ("function_call", "custom_tool_call") and item.get("namespace"):
            target = Target("function" if kind == "function_call" else "custom", item["name"], namespace=item["namespace"])
            viewed.append({**item, "name": plan.model_name(target)})
        else:
            viewed.append(item)
    return viewed


def call_pair(call_id: str, name: str, arguments: str, output: str) -> list[dict]:
    return [
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments, "status": "completed"},
        {"type": "function_call_output", "call_id": call_id, "output": output, "status": "completed"},
    ]


def mcp_output(item: dict) -> str:
    """What the model reads of an MCP call: its output, or what went wrong."""
    if item.get("error"):
        error = item["error"]
        if isinstance(error, dict):
            error = error.get("message") or orjson.dumps(error.get("content")).decode()
        return f"The tool call failed: {error}"
    if item.get("status") not in (None, "completed"):
        return "The tool call did not finish."
    return item.get("output") or ""


def search_output(item: dict) -> str:
    sources = (item.get("action") or {}).get("sources") or []
    if item.get("status") == "failed":
        return "The web search failed."
    return "Sources found:\n" + "\n".join(source["url"] for source in sources) if sources else "The web search found nothing."


def file_search_output(item: dict) -> str:
    """What the model reads of an earlier file search: the passages it found, unnumbered (the
    numbers it cites are those of the searches of the response being written)."""
    if item.get("status") == "failed":
        return "The file search failed."
    if item.get("status") != "completed":
        return "The file search did not finish."
    results = item.get("results")
    if results is None:  # sent back by a client that did not ask for them
        return f"The file search for {'; '.join(item.get('queries') or [])} ran; its results are not at hand."
    if not results:
        return "The file search found nothing in the files."
    return "Passages found:\n\n" + "\n\n".join(f"From {result.get('filename')}:\n{result.get('text') or ''}" for result in results)
