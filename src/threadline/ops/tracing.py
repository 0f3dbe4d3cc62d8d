"""OpenTelemetry traces, exported over OTLP when `[tracing] otlp_endpoint` or the standard
OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variable names a collector (the environment wins, as it
does over the config file for every setting; OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none switch tracing off).

The spans, by OpenTelemetry's HTTP and GenAI semantic conventions:
- `POST /v1/responses` (SERVER): one per request, continuing the client's `traceparent`,
  made by FastAPI itself (with its `fastapi.endpoint` spans) once a provider is set; it
  carries `threadline.request_id`;
- `invoke_agent {model}`: one per response run, a foreground one under its request's span;
- `chat {upstream model}` (CLIENT; INTERNAL for a model in this process): one per model turn
  (a compaction's summary call included), retries included, with the model, token counts
  and finish reason;
- `execute_tool {tool}`: one per hosted tool call (MCP, web search, file search); the MCP
  SDK's own `tools/call` span follows, under it.
Model, embeddings and tool calls carry `traceparent` to the upstream (an HTTP header) and to MCP servers
(the request's `_meta`, which the MCP SDK fills from the current span).

Message content (prompts, answers, tool arguments and results) is recorded only with
`capture_content = true` or OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from threadline import __version__
from threadline.backends.base import Finish, ModelEvent, ModelRequest, TextDelta, ToolCallDelta
from threadline.config import TracingSettings

log = logging.getLogger("threadline")

# Spans go to whatever provider the process set (none: they cost next to nothing), as the
# MCP SDK's spans do, so the two share one trace.
tracer = trace.get_tracer("threadline", __version__)

# gen_ai.provider.name by backend; OpenAI-compatible upstreams speak OpenAI's APIs.
PROVIDERS = {"openai-chat": "openai", "openai-responses": "openai", "llama-cpp": "llama_cpp", "scripted": "threadline.scripted"}
IN_PROCESS = {"llama-cpp", "scripted"}
UNTRACED_PATHS = {"/health", "/metrics"}
ENVIRONMENT_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _Capture:
    """Whether spans are exported, and with message content; decided once at start."""

    spans = False
    content = False


def start_tracing(settings: TracingSettings):
    """Export this process's spans over OTLP if configured; the TracerProvider (to stop at
    shutdown), or None when tracing is off."""
    _Capture.content = settings.capture_content or _true("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    from_environment = any(os.environ.get(name) for name in ENVIRONMENT_ENDPOINTS)
    if _true("OTEL_SDK_DISABLED") or os.environ.get("OTEL_TRACES_EXPORTER") == "none":
        return None
    if not (from_environment or settings.otlp_endpoint):
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The exporter reads OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout) itself.
    endpoint = None if from_environment else settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "threadline"), "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _Capture.spans = True
    log.info("Tracing: spans are exported over OTLP to %s.", endpoint or "the OTEL_EXPORTER_OTLP_* endpoint")
    return provider


def stop_tracing(provider) -> None:
    """Send the spans still held, then stop (blocking: called once, at shutdown)."""
    if provider is not None:
        provider.shutdown()


def _true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def propagate_to(headers: dict[str, str]) -> dict[str, str]:
    """`headers` with the current span's `traceparent` (and `tracestate`) added."""
    propagate.inject(headers)
    return headers


def untraced(scope) -> bool:
    """Requests FastAPI's own request spans leave out: probes and scrapes, made every few seconds."""
    return scope.get("path") in UNTRACED_PATHS


# -- responses, model calls and tool calls ---------------------------------------------


def response_span(run, running: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """Run a response (an engine.runner.ResponseRun) in its `invoke_agent` span; `running`
    itself when no tracer provider is set, as every span would be a no-op: a run held open
    for minutes (a stream waiting for its model) then keeps no span and no context."""
    return _traced_response(run, running) if _spans_recorded() else running


def _spans_recorded() -> bool:
    return not isinstance(trace.get_tracer_provider(), (trace.ProxyTracerProvider, trace.NoOpTracerProvider))


async def _traced_response(run, running: Coroutine[Any, Any, None]) -> None:
    response = run.response
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": PROVIDERS.get(run.prepared.backend.settings.provider, "threadline"),
        "gen_ai.request.model": response["model"],
        "gen_ai.response.id": response["id"],
        "threadline.response.background": run.background,
    }
    if response.get("conversation"):
        attributes["gen_ai.conversation.id"] = response["conversation"]["id"]
    with tracer.start_as_current_span(f"invoke_agent {response['model']}", attributes=attributes) as span:
        try:
            await running
        finally:
            ended = run.response
            span.set_attribute("threadline.response.status", ended["status"])
            usage = ended.get("usage") or {}
            for name, key in (("gen_ai.usage.input_tokens", "input_tokens"), ("gen_ai.usage.output_tokens", "output_tokens")):
                if key in usage:
                    span.set_attribute(name, usage[key])
            if ended["status"] == "failed":
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", (ended.get("error") or {}).get("code") or "failed")


def model_call(backend, request: ModelRequest, events: AsyncIterator[ModelEvent]) -> AsyncIterator[ModelEvent]:
    """`events`, one turn of `backend`, in a `chat` span (CLIENT) that is current while the
    backend works, so its upstream call carries the span's traceparent; untouched when no
    spans are exported (this is the path of every token)."""
    return _traced_model_call(backend, request, events) if _Capture.spans else events


async def _traced_model_call(backend, request: ModelRequest, events: AsyncIterator[ModelEvent]) -> AsyncIterator[ModelEvent]:
    # The span is made current only around each step of the backend, never across a yield:
    # the turn's events are read from more than one task.
    model = getattr(backend, "upstream_model", None) or request.model  # the name the provider knows it by
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": PROVIDERS.get(backend.settings.provider, "threadline"),
        "gen_ai.request.model": model,
    }
    for name, value in (("gen_ai.request.max_tokens", request.max_output_tokens), ("gen_ai.request.temperature", request.temperature), ("gen_ai.request.top_p", request.top_p)):
        if value is not None:
            attributes[name] = value
    base_url = getattr(backend, "base_url", None)
    if base_url:
        parts = urlsplit(base_url)
        attributes["server.address"] = parts.hostname or ""
        attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    if _Capture.content:
        attributes["gen_ai.input.messages"] = _json(_messages(request.input))
        if request.instructions:
            attributes["gen_ai.system_instructions"] = _json([{"type": "text", "content": request.instructions}])
    # A model in this process (llama.cpp, scripted) is no client call: INTERNAL, as the conventions allow.
    kind = SpanKind.INTERNAL if backend.settings.provider in IN_PROCESS else SpanKind.CLIENT
    span = tracer.start_span(f"chat {model}", kind=kind, attributes=attributes)
    current = trace.set_span_in_context(span)
    output = _Output() if _Capture.content else None
    try:
        while True:
            token = context.attach(current)
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return
            finally:
                context.detach(token)
            if isinstance(event, Finish):
                _finished(span, event, output)
            elif output is not None:
                output.add(event)
            yield event
    except GeneratorExit:  # the turn was left early (its output bound, a stop): not the model's failure
        raise
    except BaseException as error:
        span.set_status(Status(StatusCode.ERROR, getattr(error, "message", None) or type(error).__name__))
        span.set_attribute("error.type", getattr(error, "code", None) or type(error).__qualname__)
        raise
    finally:
        span.end()
        await events.aclose()


def _finished(span: trace.Span, finish: Finish, output: _Output | None) -> None:
    span.set_attribute("gen_ai.response.finish_reasons", [finish.reason])
    if finish.usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", finish.usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", finish.usage.output_tokens)
        if finish.usage.cached_tokens:
            span.set_attribute("gen_ai.usage.cache_read.input_tokens", finish.usage.cached_tokens)
    if output is not None:
        span.set_attribute("gen_ai.output.messages", _json([{"role": "assistant", "parts": output.parts(), "finish_reason": finish.reason}]))


# What kind of tool each hosted call is, in the conventions' words.
TOOL_TYPES = {"mcp_call": "extension", "web_search_call": "extension", "file_search_call": "datastore"}


def tool_span(run: Callable[[Any, dict], Awaitable[None]]) -> Callable[[Any, dict], Awaitable[None]]:
    """Decorates a hosted tool's `run(self, item)`: the call runs in an `execute_tool` span."""

    @functools.wraps(run)
    async def traced(self, item: dict) -> None:
        name = item["name"] if item["type"] == "mcp_call" else item["type"].removesuffix("_call")
        attributes = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": item["id"],
            "gen_ai.tool.type": TOOL_TYPES.get(item["type"], "extension"),
        }
        if item["type"] == "mcp_call":
            attributes["threadline.mcp.server_label"] = item["server_label"]
        if _Capture.content:
            attributes["gen_ai.tool.call.arguments"] = item.get("arguments") or _json(item.get("action") or item.get("queries") or {})
        with tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes) as span:
            await run(self, item)
            if item.get("status") == "failed":
                span.set_status(Status(StatusCode.ERROR))
                span.set_attribute("error.type", (item.get("error") or {}).get("type") or "tool_error")
            if _Capture.content:
                span.set_attribute("gen_ai.tool.call.result", _json(item.get("output") or item.get("results") or item.get("error")))

    return traced


class _Output:
    """What the model wrote in one turn, for `gen_ai.output.messages` (captured content only)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict] = {}

    def add(self, event: ModelEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = self.calls.setdefault(event.index, {"type": "tool_call", "id": None, "name": None, "arguments": ""})
            call["id"] = event.call_id or call["id"]
            call["name"] = event.name or call["name"]
            call["arguments"] += event.arguments

    def parts(self) -> list[dict]:
        text = [{"type": "text", "content": "".join(self.text)}] if self.text else []
        return text + list(self.calls.values())


def _messages(items: list[dict]) -> list[dict]:
    """Input items as the conventions' messages: a role and its parts."""
    messages = []
    for item in items:
        if item.get("type", "message") == "message":
            content = item.get("content")
            texts = [content] if isinstance(content, str) else [part.get("text", "") for part in content or [] if isinstance(part, dict)]
            messages.append({"role": item.get("role", "user"), "parts": [{"type": "text", "content": text} for text in texts]})
        else:
            messages.append({"role": "tool" if item["type"].endswith("_output") else "assistant", "parts": [{"type": item["type"], **{k: v for k, v in item.items() if k != "type"}}]})
    return messages


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()
