"""The Response object: built here and nowhere else, and shown to each client as its `include` asks.

The object carries every field both OpenAI's description and the Open Responses
specification require, shaped as OpenAI's API sends it: `usage` and `user` are present as
null until they have a value, sampling settings are echoed with their defaults filled in.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import AsyncGenerator, AsyncIterator, Collection

from threadline.backends.base import Usage
from threadline.ids import new_id
from threadline.spec.request import CreateResponseBody, FunctionTool, JSONSchemaFormat, McpTool, NamespaceTool, Tool

ENCRYPTED_CONTENT = "reasoning.encrypted_content"
LOGPROBS = "message.output_text.logprobs"
SEARCH_SOURCES = "web_search_call.action.sources"
FILE_SEARCH_RESULTS = "file_search_call.results"


def response_object(body: CreateResponseBody, model_id: str, tool_choice: str | dict) -> dict:
    """The Response as created: every request field echoed, OpenAI's defaults filled in."""
    reasoning = body.reasoning.model_dump() if body.reasoning else {"effort": None, "summary": None}
    conversation_id = body.conversation_id
    return {
        "id": new_id("resp"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": bool(body.background),
        "completed_at": None,
        "conversation": {"id": conversation_id} if conversation_id else None,
        "error": None,
        "frequency_penalty": 0.0 if body.frequency_penalty is None else body.frequency_penalty,
        "incomplete_details": None,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "max_tool_calls": body.max_tool_calls,
        "metadata": body.metadata or {},
        "model": model_id,
        "output": [],
        "parallel_tool_calls": True if body.parallel_tool_calls is None else body.parallel_tool_calls,
        "presence_penalty": 0.0 if body.presence_penalty is None else body.presence_penalty,
        "previous_response_id": body.previous_response_id,
        "prompt": body.prompt.model_dump(exclude_none=True) if body.prompt else None,
        "prompt_cache_key": body.prompt_cache_key,
        "prompt_cache_retention": body.prompt_cache_retention,
        "reasoning": reasoning,
        "safety_identifier": body.safety_identifier,
        # The tier that served it: "auto" resolves to the default one.
        "service_tier": body.service_tier if body.service_tier not in (None, "auto") else "default",
        "store": body.store is not False,
        "temperature": 1.0 if body.temperature is None else body.temperature,
        "text": text_config(body),
        "tool_choice": tool_choice,
        "tools": [tool_echo(tool) for tool in body.tools or []],
        "top_logprobs": body.top_logprobs or 0,
        "top_p": 1.0 if body.top_p is None else body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": None,
        "user": body.user,
    }


def text_config(body: CreateResponseBody) -> dict:
    """`text` as echoed: a format (plain text by default) and a verbosity (medium)."""
    text = body.text.model_dump(by_alias=True, exclude_none=True) if body.text else {}
    format_ = body.text.format if body.text else None
    if isinstance(format_, JSONSchemaFormat):
        text["format"] = {
            **text["format"],
            "description": format_.description,
            "strict": bool(format_.strict),  # OpenAI's default for a text format: not strict
        }
    text.setdefault("format", {"type": "text"})
    text.setdefault("verbosity", "medium")
    return text


# What an MCP tool carries that is never shown again: the Response echoes the tool without them.
MCP_SECRETS = frozenset({"headers", "authorization"})


def tool_echo(tool: Tool) -> dict:
    """A tool as the Response lists it; function tools get every field OpenAI fills in, and
    an MCP tool is shown without its secrets."""
    if isinstance(tool, FunctionTool):
        return function_echo(tool)
    if isinstance(tool, McpTool):
        return tool.model_dump(by_alias=True, exclude_none=True, exclude=MCP_SECRETS)
    echoed = tool.model_dump(by_alias=True, exclude_none=True)
    if isinstance(tool, NamespaceTool):
        echoed["tools"] = [tool_echo(inner) for inner in tool.tools]
    return echoed


def function_echo(tool: FunctionTool) -> dict:
    """A function tool with `description` and `parameters` (null when not given) and `strict`
    (true unless the request turned it off: OpenAI's default for function tools)."""
    return {
        **tool.model_dump(by_alias=True, exclude_none=True),
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": True if tool.strict is None else tool.strict,
    }


def usage_object(usage: Usage) -> dict:
    """A Response's `usage`, from what the model reported."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }


def with_status(response: dict, status: str, error: dict | None = None) -> dict:
    """The Response moved to `status` by something other than its run (queued, claimed,
    cancelled, or failed by recovery), with the `error` a failed one carries."""
    moved = {**response, "status": status}
    if error is not None:
        moved["error"] = error
    return moved


def as_started(response: dict) -> dict:
    """The Response as it was when its run started: in progress, with no output, usage or end."""
    started = copy.deepcopy({**response, "output": []})
    started.update(status="in_progress", error=None, incomplete_details=None, completed_at=None, usage=None)
    return started


# --- what a client sees ---------------------------------------------------------------------
#
# Everything is stored; `include` decides what of it a client is shown, on every request that
# takes it (create, retrieve, input items, streams). Four values select stored data today:
#   reasoning.encrypted_content     a reasoning item's `encrypted_content`
#   message.output_text.logprobs    the logprobs of output text (also asked of the model)
#   web_search_call.action.sources  the sources a web search found
#   file_search_call.results        the passages a file search found (else `results` is null)
# The others name the output of hosted tools (web_search_call.results,
# code_interpreter_call.outputs, computer_call_output.output.image_url) and input image
# URLs, which Threadline returns as it stored them; each tool adds its own rule here.


def present(response: dict, include: Collection[str]) -> dict:
    """The Response as a client that asked for `include` sees it (the stored one is unchanged)."""
    output = [present_item(item, include) for item in response.get("output") or ()]
    if all(shown is item for shown, item in zip(output, response.get("output") or ())):
        return response
    return {**response, "output": output}


def present_item(item: dict, include: Collection[str]) -> dict:
    """An output or input item as a client that asked for `include` sees it."""
    if item.get("type") == "reasoning" and "encrypted_content" in item and ENCRYPTED_CONTENT not in include:
        return {key: value for key, value in item.items() if key != "encrypted_content"}
    if item.get("type") == "web_search_call" and "sources" in (item.get("action") or {}) and SEARCH_SOURCES not in include:
        return {**item, "action": {key: value for key, value in item["action"].items() if key != "sources"}}
    if item.get("type") == "file_search_call" and item.get("results") is not None and FILE_SEARCH_RESULTS not in include:
        return {**item, "results": None}
    if item.get("type") == "message" and LOGPROBS not in include and isinstance(item.get("content"), list):
        content = [present_part(part, include) for part in item["content"]]
        if any(shown is not part for shown, part in zip(content, item["content"])):
            return {**item, "content": content}
    return item


def present_part(part: dict, include: Collection[str]) -> dict:
    if part.get("logprobs") and LOGPROBS not in include:
        return {**part, "logprobs": []}
    return part


def present_event(event: dict, include: Collection[str]) -> dict:
    """A streamed event as a client that asked for `include` sees it."""
    if "response" in event:
        shown = present(event["response"], include)
        return event if shown is event["response"] else {**event, "response": shown}
    if "item" in event:
        shown = present_item(event["item"], include)
        return event if shown is event["item"] else {**event, "item": shown}
    if "part" in event:
        shown = present_part(event["part"], include)
        return event if shown is event["part"] else {**event, "part": shown}
    if event.get("logprobs") and LOGPROBS not in include:
        return {**event, "logprobs": []}
    return event


async def present_events(
    events: AsyncGenerator[dict | list[dict]], include: Collection[str]
) -> AsyncIterator[dict | list[dict]]:
    """A stream (of events, or of lists of events ready together) as `include` shows it.
    Closing it closes `events` at once, so that their producer learns nobody reads them."""
    async with contextlib.aclosing(events):
        async for event in events:
            yield [present_event(each, include) for each in event] if isinstance(event, list) else present_event(event, include)
            del event  # passed on: not kept while the next is awaited (a stream may wait minutes)
