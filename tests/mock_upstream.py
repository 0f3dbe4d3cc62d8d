"""A mock OpenAI-compatible upstream (Chat Completions and Responses), served for real over HTTP from a thread.

    with MockUpstream(max_model_len=8192) as mock:
        mock.script(reply(text("Hel"), text("lo"), finish("stop"), usage(12, 2)))
        ...  # point a backend at mock.base_url
        assert mock.requests[0]["messages"] == [...]

Each POST /v1/chat/completions or /v1/responses takes the next scripted reply and answers the
way the request asks: server-sent events when "stream" is true (chat's end in `data: [DONE]`;
the Responses API's carry `event:` lines and end with its terminal event), one JSON
chat.completion or Response otherwise. A reply is a list of steps, read by either endpoint:

    text("Hi", logprobs=[...])          a content delta (logprobs in chat's shape)
    reasoning("...", field=...)         reasoning_content (or field="reasoning"); reasoning_text in Responses
    summary("...", part=0)              a reasoning summary delta (Responses only)
    refusal("...")
    tool_call(0, id=, name=, arguments=)  a piece of a tool call (a function_call item in Responses)
    custom_call(0, id=, name=, input=)  a call to a custom tool, its raw input: in Responses a
                                        custom_tool_call item (steps on the same index add
                                        input); in chat the call of the function that stands
                                        for it, arguments {"input": ...} sent in two chunks
    finish("length")                    finish_reason; in Responses the terminal event, sent here
                                        ("length"/"content_filter" make it response.incomplete)
    usage(10, 5, cached=3, reasoning=2) chat: sent last, only when stream_options.include_usage;
                                        Responses: the usage of the final Response
    fail("...", code=, event=)          streams: chat sends an error chunk; Responses sends
                                        response.failed (or, with event="error", an error event
                                        nested as OpenAI's API sends it; event="flat error", one
                                        shaped as OpenAI's description has it);
                                        a non-streaming Response comes back failed
    sleep(0.2)                          a pause between chunks (streams)
    cut()                               drop the connection here (streams; a non-streaming
                                        answer is dropped halfway through its JSON body)
    reset()                             the same, with a TCP reset (RST) instead of a close
    raw("data: {oops\\n\\n")            bytes sent as they are (streams)

`reply(..., delay=0.5)` waits before the first byte, `done=False` ends the stream without
[DONE] (chat) or without a terminal event unless finish() sent one (Responses),
`forever=True` keeps the stream open (empty chunks, or keep-alive comments; a non-streaming
answer sends whitespace and never its JSON) until the client goes away, and
`repeat=text("w ")` sends that step over and over after the others until then (streams): an
upstream that ignores max_tokens. `error(503)` and friends answer with an HTTP error,
`malformed(...)` with a broken JSON body.

With nothing scripted, `responder(body)` (when set) makes the reply for a request; otherwise
the answer is a 418. `request_times` holds when each generation request arrived (monotonic).

For an upstream that is not there at all: `BlackHole()` is an address whose connections
never complete (connecting times out), `Refused()` one that refuses them.

GET /v1/models lists the model with `max_model_len`; POST /tokenize answers {"count": ...}
(or 404 with tokenize=False), POST /v1/responses/input_tokens {"input_tokens": ...} (or 404
with input_tokens=False). Every generation request body lands in `requests` (its headers in
`headers`), the others in `models_requests`, `tokenize_requests` and `input_tokens_requests`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import ThreadServer

# --- Scripting ----------------------------------------------------------------------------


@dataclass
class Reply:
    steps: list[dict] = field(default_factory=list)
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: bytes | None = None  # a fixed body instead of a completion (errors, malformed JSON)
    delay: float = 0.0
    done: bool = True
    forever: bool = False
    repeat: dict | None = None  # a step sent over and over after the others (streams)


def reply(*steps: dict, delay: float = 0.0, done: bool = True, forever: bool = False, repeat: dict | None = None) -> Reply:
    return Reply(list(steps), delay=delay, done=done, forever=forever, repeat=repeat)


def error(status: int, message: str = "upstream error", *, retry_after: str | None = None, type: str = "server_error", code: Any = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    return Reply(status=status, headers=headers, body=json.dumps(body).encode())


def malformed(body: str = '{"choices": [') -> Reply:
    return Reply(body=body.encode())


def text(content: str, logprobs: list[dict] | None = None) -> dict:
    return {"delta": {"content": content}, "logprobs": {"content": logprobs} if logprobs is not None else None}


def reasoning(content: str, field: str = "reasoning_content") -> dict:
    return {"delta": {field: content}}


def summary(content: str, part: int = 0) -> dict:
    return {"delta": {"reasoning_summary": content}, "summary_index": part}


def refusal(content: str) -> dict:
    return {"delta": {"refusal": content}}


def tool_call(index: int, *, id: str | None = None, name: str | None = None, arguments: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "function": {}}
    if id is not None:
        call.update(id=id, type="function")
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return {"delta": {"tool_calls": [call]}}


def custom_call(index: int, *, id: str | None = None, name: str | None = None, input: str | None = None) -> dict:
    return {"custom_call": {"index": index, "id": id, "name": name, "input": input}}


def chat_steps(steps: list[dict]) -> list[dict]:
    """The steps as chat sends them: a custom tool call as the call of its function."""
    sent = []
    for step in steps:
        if "custom_call" not in step:
            sent.append(step)
            continue
        call = step["custom_call"]
        arguments = json.dumps({"input": call["input"] or ""})
        middle = len(arguments) // 2
        sent.append(tool_call(call["index"], id=call["id"], name=call["name"], arguments=arguments[:middle]))
        sent.append(tool_call(call["index"], arguments=arguments[middle:]))
    return sent


def finish(reason: str = "stop") -> dict:
    return {"finish_reason": reason}


def usage(prompt: int, completion: int, *, cached: int | None = None, reasoning: int | None = None) -> dict:
    counts: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if cached is not None:
        counts["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        counts["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return {"usage": counts}


def fail(message: str, code: str = "server_error", event: str = "response.failed") -> dict:
    return {"fail": {"message": message, "code": code, "event": event}}


def sleep(seconds: float) -> dict:
    return {"sleep": seconds}


def cut() -> dict:
    return {"cut": True}


def reset() -> dict:
    return {"reset": True}


def raw(data: str) -> dict:
    return {"raw": data}


class Cut(Exception):
    """Raised inside a started response: uvicorn then drops the connection mid-body."""


# --- The protocol -------------------------------------------------------------------------


def chunk(model: str, *, delta: dict | None = None, logprobs: dict | None = None, finish_reason: str | None = None) -> dict:
    choice = {"index": 0, "delta": delta or {}, "logprobs": logprobs, "finish_reason": finish_reason}
    return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [choice]}


def event(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def completion(model: str, steps: list[dict]) -> dict:
    """The steps of a reply gathered into one non-streaming chat.completion."""
    steps = chat_steps(steps)
    message: dict[str, Any] = {"role": "assistant", "content": None}
    calls: dict[int, dict] = {}
    logprobs = None
    finish_reason = "stop"
    counts = None
    for step in steps:
        for key, value in (step.get("delta") or {}).items():
            if key == "tool_calls":
                for piece in value:
                    call = calls.setdefault(piece["index"], {"id": None, "type": "function", "function": {"name": None, "arguments": ""}})
                    call["id"] = piece.get("id") or call["id"]
                    call["function"]["name"] = piece["function"].get("name") or call["function"]["name"]
                    call["function"]["arguments"] += piece["function"].get("arguments") or ""
            else:
                message[key] = (message.get(key) or "") + value
        if step.get("logprobs"):
            logprobs = logprobs or {"content": []}
            logprobs["content"] += step["logprobs"]["content"]
        finish_reason = step.get("finish_reason", finish_reason)
        counts = step.get("usage", counts)
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}
    answer = {"id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}
    if counts:
        answer["usage"] = counts
    return answer


# --- The Responses protocol ---------------------------------------------------------------


def response_usage(counts: dict) -> dict:
    """Chat's usage counts as a Response's usage."""
    return {
        "input_tokens": counts["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": (counts.get("prompt_tokens_details") or {}).get("cached_tokens", 0), "cache_write_tokens": 0},
        "output_tokens": counts["completion_tokens"],
        "output_tokens_details": {"reasoning_tokens": (counts.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)},
        "total_tokens": counts["total_tokens"],
    }


def logprob(token: dict, with_bytes: bool = False, top: bool = True) -> dict:
    """Chat's logprob of a token in the Responses API's shape."""
    entry = {"token": token["token"], "logprob": token["logprob"]}
    if with_bytes:
        entry["bytes"] = token.get("bytes") or list(token["token"].encode())
    if top:
        entry["top_logprobs"] = [logprob(other, with_bytes, top=False) for other in token.get("top_logprobs") or []]
    return entry


class ResponsesAnswer:
    """A reply's steps as the Responses API answers them: the events, and the final Response."""

    def __init__(self, request: dict, steps: list[dict]) -> None:
        counts = next((step["usage"] for step in reversed(steps) if "usage" in step), None)
        self.usage = response_usage(counts) if counts else None  # the final Response's
        # Every field OpenAI sends, the request's settings echoed with OpenAI's defaults.
        self.response: dict[str, Any] = {
            "id": "resp_mock", "object": "response", "created_at": 0, "completed_at": None, "status": "in_progress",
            "background": request.get("background", False), "model": request.get("model", "mock-model"),
            "output": [], "error": None, "incomplete_details": None, "usage": None, "user": request.get("user"),
            "instructions": request.get("instructions"), "previous_response_id": request.get("previous_response_id"),
            "tools": [tool_echo(tool) for tool in request.get("tools", [])], "tool_choice": request.get("tool_choice", "auto"),
            "parallel_tool_calls": request.get("parallel_tool_calls", True), "max_tool_calls": request.get("max_tool_calls"),
            "max_output_tokens": request.get("max_output_tokens"), "temperature": request.get("temperature", 1.0),
            "top_p": request.get("top_p", 1.0), "presence_penalty": request.get("presence_penalty", 0.0),
            "frequency_penalty": request.get("frequency_penalty", 0.0), "top_logprobs": request.get("top_logprobs", 0),
            "reasoning": request.get("reasoning", {"effort": None, "summary": None}), "text": {"format": {"type": "text"}, "verbosity": "medium", **request.get("text", {})},
            "truncation": request.get("truncation", "disabled"), "service_tier": "default", "store": request.get("store", True),
            "metadata": request.get("metadata", {}), "safety_identifier": request.get("safety_identifier"),
            "prompt_cache_key": request.get("prompt_cache_key"),
        }  # fmt: skip
        self.sequence_number = 0
        self.ended = False
        self._item: dict | None = None  # the message or reasoning item being written
        self._calls: dict[int, dict] = {}  # chat's tool call index -> function_call item

    def start(self) -> list[dict]:
        return [self._event("response.created", response=self._snapshot()), self._event("response.in_progress", response=self._snapshot())]

    def step(self, step: dict) -> list[dict]:
        delta = step.get("delta") or {}
        if "content" in delta:
            return self._text("output_text", delta["content"], (step.get("logprobs") or {}).get("content") or [])
        if "refusal" in delta:
            return self._text("refusal", delta["refusal"], [])
        if "reasoning_content" in delta or "reasoning" in delta:
            return self._reasoning("content", 0, delta.get("reasoning_content") or delta.get("reasoning"))
        if "reasoning_summary" in delta:
            return self._reasoning("summary", step["summary_index"], delta["reasoning_summary"])
        if "tool_calls" in delta:
            return [event for call in delta["tool_calls"] for event in self._tool_call(call)]
        if "custom_call" in step:
            return self._custom_call(step["custom_call"])
        if "finish_reason" in step:
            return self.end(step["finish_reason"])
        if "fail" in step:
            return self._fail(step["fail"])
        return []

    def end(self, reason: str = "stop") -> list[dict]:
        events = self._close_all()
        if reason in ("length", "content_filter"):
            self.response["status"] = "incomplete"
            self.response["incomplete_details"] = {"reason": "max_output_tokens" if reason == "length" else "content_filter"}
        else:
            self.response.update(status="completed", completed_at=1)
        self.ended = True
        return events + [self._event(f"response.{self.response['status']}", response=self._snapshot())]

    def _fail(self, failure: dict) -> list[dict]:
        self.ended = True
        error = {"code": failure["code"], "message": failure["message"], "param": None}
        if failure["event"] == "error":
            return [self._event("error", error={"type": failure["code"], **error})]
        if failure["event"] == "flat error":
            return [self._event("error", **error)]
        events = self._close_all()
        self.response.update(status="failed", error={"code": failure["code"], "message": failure["message"]})
        return events + [self._event("response.failed", response=self._snapshot())]

    def _text(self, part_type: str, delta: str, logprobs: list[dict]) -> list[dict]:
        events = [] if self._item and self._item["type"] == "message" else self._open({"type": "message", "role": "assistant", "status": "in_progress", "content": []})
        parts = self._item["content"]
        if not parts or parts[-1]["type"] != part_type:
            events += self._close_part()
            parts.append({"type": "output_text", "text": "", "annotations": [], "logprobs": []} if part_type == "output_text" else {"type": "refusal", "refusal": ""})
            events.append(self._event("response.content_part.added", **self._where(), part=copied(parts[-1])))
        if part_type == "output_text":
            parts[-1]["text"] += delta
            # A finished part's logprobs carry bytes; a delta event's do not.
            parts[-1]["logprobs"] += [logprob(token, with_bytes=True) for token in logprobs]
            return events + [self._event("response.output_text.delta", **self._where(), delta=delta, logprobs=[logprob(token) for token in logprobs])]
        parts[-1]["refusal"] += delta
        return events + [self._event("response.refusal.delta", **self._where(), delta=delta)]

    def _reasoning(self, kind: str, index: int, delta: str) -> list[dict]:
        events = [] if self._item and self._item["type"] == "reasoning" else self._open({"type": "reasoning", "summary": [], "content": []})
        where = {"item_id": self._item["id"], "output_index": self.response["output"].index(self._item)}
        if kind == "summary":
            if len(self._item["summary"]) <= index:
                self._item["summary"].append({"type": "summary_text", "text": ""})
                events.append(self._event("response.reasoning_summary_part.added", **where, summary_index=index, part={"type": "summary_text", "text": ""}))
            self._item["summary"][index]["text"] += delta
            return events + [self._event("response.reasoning_summary_text.delta", **where, summary_index=index, delta=delta)]
        if not self._item["content"]:
            self._item["content"].append({"type": "reasoning_text", "text": ""})
        self._item["content"][0]["text"] += delta
        return events + [self._event("response.reasoning_text.delta", **where, content_index=0, delta=delta)]

    def _tool_call(self, piece: dict) -> list[dict]:
        function = piece.get("function") or {}
        return self._call(piece, "function_call", function.get("name"), "arguments", function.get("arguments"))

    def _custom_call(self, piece: dict) -> list[dict]:
        return self._call(piece, "custom_tool_call", piece.get("name"), "input", piece.get("input"))

    def _call(self, piece: dict, item_type: str, name: str | None, field: str, delta: str | None) -> list[dict]:
        """A piece of a function or custom tool call: its item added first, then its `field` streamed."""
        call = self._calls.get(piece["index"])
        events: list[dict] = []
        if call is None:
            events += self._close_item()
            prefix = "fc" if item_type == "function_call" else "ctc"
            call = self._calls[piece["index"]] = {
                "id": f"{prefix}_mock_{len(self.response['output'])}", "type": item_type, "status": "in_progress",
                "call_id": piece.get("id") or f"call_mock_{piece['index']}", "name": name or "", field: "",
            }  # fmt: skip
            self.response["output"].append(call)
            events.append(self._event("response.output_item.added", output_index=len(self.response["output"]) - 1, item=copied(call)))
        if delta:
            call[field] += delta
            where = {"item_id": call["id"], "output_index": self.response["output"].index(call)}
            event = "response.function_call_arguments.delta" if item_type == "function_call" else "response.custom_tool_call_input.delta"
            events.append(self._event(event, **where, delta=delta))
        return events

    def _open(self, item: dict) -> list[dict]:
        events = self._close_item()
        self._item = {"id": f"{'msg' if item['type'] == 'message' else 'rs'}_mock_{len(self.response['output'])}", **item}
        self.response["output"].append(self._item)
        return events + [self._event("response.output_item.added", output_index=len(self.response["output"]) - 1, item=copied(self._item))]

    def _close_part(self) -> list[dict]:
        part = self._item["content"][-1] if self._item["content"] else None
        if part is None:
            return []
        if part["type"] == "output_text":
            done = self._event("response.output_text.done", **self._where(), text=part["text"], logprobs=part["logprobs"])
        else:
            done = self._event("response.refusal.done", **self._where(), refusal=part["refusal"])
        return [done, self._event("response.content_part.done", **self._where(), part=copied(part))]

    def _close_item(self) -> list[dict]:
        item, events = self._item, []
        if item is None:
            return []
        if item["type"] == "message":
            events = self._close_part()
            item["status"] = "completed"
        self._item = None
        return events + [self._event("response.output_item.done", output_index=self.response["output"].index(item), item=copied(item))]

    def _close_all(self) -> list[dict]:
        events = self._close_item()
        for call in self._calls.values():
            where = {"item_id": call["id"], "output_index": self.response["output"].index(call)}
            call["status"] = "completed"
            if call["type"] == "custom_tool_call":
                events.append(self._event("response.custom_tool_call_input.done", **where, input=call["input"]))
            else:
                events.append(self._event("response.function_call_arguments.done", **where, name=call["name"], arguments=call["arguments"]))
            events.append(self._event("response.output_item.done", output_index=where["output_index"], item=copied(call)))
        self._calls.clear()
        return events

    def _where(self) -> dict:
        return {"item_id": self._item["id"], "output_index": self.response["output"].index(self._item), "content_index": len(self._item["content"]) - 1}

    def final(self) -> dict:
        """The finished Response, as a non-streaming answer returns it."""
        if not self.ended:
            self.end()
        return self._snapshot()

    def _snapshot(self) -> dict:
        usage = self.usage if self.ended else None  # only a finished Response has it
        return copied({**self.response, "usage": usage})

    def _event(self, type: str, **fields: Any) -> dict:
        self.sequence_number += 1
        return {"type": type, "sequence_number": self.sequence_number - 1, **fields}


def tool_echo(tool: dict) -> dict:
    """A tool as OpenAI lists it in a Response: a function tool with every field filled in."""
    if tool.get("type") != "function":
        return tool
    return {"description": None, "parameters": None, **tool, "strict": tool.get("strict", True)}


def copied(value: Any) -> Any:
    """A deep copy: an event shows its item as it was then, not as it grows later."""
    return json.loads(json.dumps(value))


def named_event(data: dict) -> bytes:
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


class MockUpstream:
    def __init__(self, **config: Any) -> None:
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/responses", self._responses, methods=["POST"]),
                Route("/v1/responses/input_tokens", self._input_tokens, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/tokenize", self._tokenize, methods=["POST"]),
            ]
        )
        self.reset(**config)

    def reset(
        self,
        *,
        model: str = "mock-model",
        max_model_len: int | None = None,
        model_info: dict | None = None,
        tokenize: bool = True,
        input_tokens: bool = True,
        token_count: int = 42,
    ) -> None:
        """Forget the script and the recorded requests, and take this configuration."""
        self.model = model
        self.max_model_len = max_model_len
        self.model_info = model_info or {}
        self.tokenize = tokenize
        self.input_tokens = input_tokens
        self.token_count = token_count
        self.replies: deque[Reply] = deque()
        self.responder: Callable[[dict], Reply] | None = None
        self.requests: list[dict] = []
        self.request_times: list[float] = []
        self.headers: list[dict] = []
        self.models_requests = 0
        self.tokenize_requests: list[dict] = []
        self.input_tokens_requests: list[dict] = []

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    # The endpoints.

    async def _next_reply(self, request: Request) -> tuple[dict, Reply, Response | None]:
        """The request's body, the reply scripted for it, and the fixed answer when it has one."""
        body = await request.json()
        self.requests.append(body)
        self.request_times.append(time.monotonic())
        self.headers.append(dict(request.headers))
        if self.replies:
            scripted = self.replies.popleft()
        elif self.responder is not None:
            scripted = self.responder(body)
        else:
            scripted = error(418, "mock upstream: no reply scripted")
        await asyncio.sleep(scripted.delay)
        if scripted.body is not None:
            return body, scripted, Response(scripted.body, status_code=scripted.status, headers=scripted.headers, media_type="application/json")
        return body, scripted, None

    async def _chat_completions(self, request: Request) -> Response:
        body, scripted, fixed = await self._next_reply(request)
        if fixed is not None:
            return fixed
        if not body.get("stream"):
            await asyncio.sleep(sum(step.get("sleep", 0) for step in scripted.steps))
            return self._whole(completion(body.get("model", self.model), scripted.steps), scripted, request)
        include_usage = (body.get("stream_options") or {}).get("include_usage", False)
        return StreamingResponse(self._stream(body.get("model", self.model), scripted, include_usage, request), media_type="text/event-stream")

    def _whole(self, answer: dict, scripted: Reply, request: Request) -> Response:
        """A non-streaming answer, which cut()/reset() break halfway and forever=True never sends."""
        trouble = next((step for step in scripted.steps if "cut" in step or "reset" in step), None)
        if trouble is None and not scripted.forever:
            return JSONResponse(answer)
        content = json.dumps(answer).encode()

        async def broken():
            while scripted.forever:  # whitespace may lead a JSON text, so this is a body that never ends
                yield b" "
                await asyncio.sleep(0.05)
            yield content[: len(content) // 2]
            await self._break(trouble, request)

        headers = {} if scripted.forever else {"content-length": str(len(content))}
        return StreamingResponse(broken(), media_type="application/json", headers=headers)

    async def _break(self, step: dict, request: Request) -> None:
        """End the answer here: a plain close for cut(), a TCP reset (RST) for reset()."""
        if "reset" in step:
            await asyncio.sleep(0.05)  # what was written reaches the client before the reset does
            for connection in list(self._served.server.server_state.connections):
                if tuple(getattr(connection, "client", None) or ()) == tuple(request.scope.get("client") or ()):
                    # Lingering for 0 s makes closing the socket send RST, dropping anything unsent.
                    connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    connection.transport.abort()
        raise Cut()

    async def _stream(self, model: str, scripted: Reply, include_usage: bool, request: Request):
        yield event(chunk(model, delta={"role": "assistant", "content": ""}))
        counts = None
        for step in chat_steps(scripted.steps):
            if "sleep" in step:
                await asyncio.sleep(step["sleep"])
            elif "cut" in step or "reset" in step:
                await self._break(step, request)
            elif "raw" in step:
                yield step["raw"].encode()
            elif "usage" in step:
                counts = step["usage"]
            elif "fail" in step:
                yield event({"error": {"message": step["fail"]["message"], "type": "server_error", "code": step["fail"]["code"]}})
            else:
                yield event(chunk(model, delta=step.get("delta"), logprobs=step.get("logprobs"), finish_reason=step.get("finish_reason")))
        while scripted.repeat is not None:
            yield event(chunk(model, delta=scripted.repeat.get("delta")))
            await asyncio.sleep(0.001)
        while scripted.forever:
            await asyncio.sleep(0.05)
            yield event(chunk(model, delta={"content": ""}))
        if counts and include_usage:
            yield event({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": [], "usage": counts})
        if scripted.done:
            yield event("[DONE]")

    async def _responses(self, request: Request) -> Response:
        body, scripted, fixed = await self._next_reply(request)
        if fixed is not None:
            return fixed
        answer = ResponsesAnswer(body, scripted.steps)
        if body.get("stream"):
            return StreamingResponse(self._response_events(answer, scripted, request), media_type="text/event-stream")
        await asyncio.sleep(sum(step.get("sleep", 0) for step in scripted.steps))
        for step in scripted.steps:
            if not answer.ended:
                answer.step(step)
        return self._whole(answer.final(), scripted, request)

    async def _response_events(self, answer: ResponsesAnswer, scripted: Reply, request: Request):
        for started in answer.start():
            yield named_event(started)
        for step in scripted.steps:
            if "sleep" in step:
                await asyncio.sleep(step["sleep"])
            elif "cut" in step or "reset" in step:
                await self._break(step, request)
            elif "raw" in step:
                yield step["raw"].encode()
            else:
                for stepped in answer.step(step):
                    yield named_event(stepped)
        while scripted.repeat is not None:
            for repeated in answer.step(scripted.repeat):
                yield named_event(repeated)
            await asyncio.sleep(0.001)
        while scripted.forever:
            await asyncio.sleep(0.05)
            yield b": keep-alive\n\n"
        if scripted.done and not answer.ended:
            for ended in answer.end():
                yield named_event(ended)

    async def _input_tokens(self, request: Request) -> Response:
        self.input_tokens_requests.append(await request.json())
        if not self.input_tokens:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse({"object": "response.input_tokens", "input_tokens": self.token_count})

    async def _models(self, _request: Request) -> Response:
        self.models_requests += 1
        entry = {"id": self.model, "object": "model", "created": 0, "owned_by": "mock", **self.model_info}
        if self.max_model_len is not None:
            entry["max_model_len"] = self.max_model_len
        return JSONResponse({"object": "list", "data": [entry]})

    async def _tokenize(self, request: Request) -> Response:
        self.tokenize_requests.append(await request.json())
        if not self.tokenize:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return JSONResponse({"count": self.token_count, "max_model_len": self.max_model_len, "tokens": list(range(self.token_count))})

    # Running it.

    def __enter__(self) -> MockUpstream:
        self._served = ThreadServer(self.app, "the mock upstream")
        port = self._served.start()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._served.stop()


class BlackHole:
    """An address on 127.0.0.1 that never completes a connection, so connecting times out.

    A listening socket that never accepts, its queue of one pending connection filled: the
    kernel then drops every new connection attempt, as a firewall or a dead host would.
    """

    def __enter__(self) -> BlackHole:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        address = self._listener.getsockname()
        self.base_url = f"http://127.0.0.1:{address[1]}/v1"
        self._fillers = []
        for _ in range(8):  # until one of them does not get through
            filler = socket.socket()
            filler.settimeout(0.2)
            self._fillers.append(filler)
            try:
                filler.connect(address)
            except TimeoutError:
                return self
        raise RuntimeError("connections to a listening socket that never accepts did not stall")

    def __exit__(self, *_exc: object) -> None:
        for sock in [*self._fillers, self._listener]:
            sock.close()


class Refused:
    """An address on 127.0.0.1 that refuses connections: a bound port nobody listens on."""

    def __enter__(self) -> Refused:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))  # held, so no other process takes the port meanwhile
        self.base_url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/v1"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._socket.close()
