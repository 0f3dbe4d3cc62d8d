"""What the API returns, as pydantic models, and the OpenAPI description built from them.

Request bodies are described by the models the server validates with. The models here
describe responses only: handlers build plain dicts and return them as `JSON`, so FastAPI
never validates or re-serializes an answer against these models. They must match what the
handlers, the engine and the store produce; the fuzz tests (tests/test_fuzz.py) check every
answer against them.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

# --- errors ------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, server_error, requests, ...")
    param: str | None = Field(description="The request parameter the error is about, if one is.")
    code: str | None = Field(description="A machine-readable code, such as model_not_found.")


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's envelope."""

    error: ErrorDetail


ERROR_DESCRIPTIONS = {
    400: "The request is invalid: a bad body, query value or reference.",
    401: "No API key, or an unknown one.",
    404: "No such object in the caller's project (or an unknown URL).",
    409: "A request with the same Idempotency-Key is still being processed.",
    413: "The request body is larger than `limits.max_body_bytes` (an upload's file: than `files.max_file_bytes`).",
    422: "The Idempotency-Key was already used with a different request body.",
    429: "The model's upstream server is rate limiting.",
    500: "The server, or the model behind it, failed.",
}

# --- shared pieces -----------------------------------------------------------------------

Metadata = dict[str, str]


def _no_default(schema: dict[str, Any]) -> None:
    """A field that is left out rather than null: drop pydantic's `default: null`."""
    schema.pop("default", None)


class Item(BaseModel):
    """A conversation or response item: a message, a tool call, its output, reasoning, ...

    Items keep the shape OpenAI documents for their `type` (`ConversationItem` and
    `ItemResource` in OpenAI's description); every one has an id and a type."""

    model_config = ConfigDict(extra="allow", title="Item")
    id: str
    type: str


class ItemList(BaseModel):
    object: Literal["list"]
    data: list[Item]
    first_id: str | None = Field(description="The first item's id; null for an empty page.")
    last_id: str | None = Field(description="The last item's id; null for an empty page.")
    has_more: bool


# --- conversations -----------------------------------------------------------------------


class Conversation(BaseModel):
    id: str
    object: Literal["conversation"]
    created_at: int
    metadata: Metadata


class ConversationDeleted(BaseModel):
    id: str
    object: Literal["conversation.deleted"]
    deleted: bool


# --- responses ---------------------------------------------------------------------------


class Open(BaseModel):
    """An object that may carry more fields than those listed."""

    model_config = ConfigDict(extra="allow")


class ResponseConversation(BaseModel):
    id: str


class ResponseErrorDetail(BaseModel):
    code: str
    message: str


class IncompleteDetails(BaseModel):
    reason: str


class InputTokensDetails(BaseModel):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseReasoning(Open):
    effort: str | None
    summary: str | None


class ResponseTextFormat(Open):
    type: str


class ResponseText(Open):
    format: ResponseTextFormat
    verbosity: str


class ResponsePrompt(Open):
    id: str


class ResponseTool(Open):
    type: str


class Response(BaseModel):
    """A model response, as created, retrieved, cancelled or carried by stream events."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
    background: bool
    completed_at: int | None
    conversation: ResponseConversation | None
    error: ResponseErrorDetail | None
    frequency_penalty: float
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    max_tool_calls: int | None
    metadata: Metadata
    model: str
    output: list[Item]
    parallel_tool_calls: bool
    presence_penalty: float
    previous_response_id: str | None
    prompt: ResponsePrompt | None
    prompt_cache_key: str | None
    prompt_cache_retention: Literal["in_memory", "24h"] | None
    reasoning: ResponseReasoning
    safety_identifier: str | None
    service_tier: str
    store: bool
    temperature: float
    text: ResponseText
    tool_choice: str | ResponseTool
    tools: list[ResponseTool]
    top_logprobs: int
    top_p: float
    truncation: Literal["auto", "disabled"]
    usage: ResponseUsage | None = Field(description="Null until the model reports its usage, when the response ends.")
    user: str | None


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: bool


class InputTokens(BaseModel):
    object: Literal["response.input_tokens"]
    input_tokens: int


class CompactedResponse(BaseModel):
    """A compacted context: its kept newest items, then one compaction item; stored nowhere."""

    id: str
    object: Literal["response.compaction"]
    created_at: int
    output: list[Item]
    usage: ResponseUsage


# --- models ------------------------------------------------------------------------------


class Model(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[Model]


# --- files -------------------------------------------------------------------------------


class File(BaseModel):
    id: str
    object: Literal["file"]
    bytes: int
    created_at: int
    expires_at: int | None = Field(description="When the file expires; null for never.")
    filename: str
    purpose: Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None


class FileList(BaseModel):
    object: Literal["list"]
    data: list[File]
    first_id: str | None = Field(description="The first file's id; null for an empty page.")
    last_id: str | None = Field(description="The last file's id; null for an empty page.")
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"]
    deleted: bool


# --- per-operation response declarations ---------------------------------------------------

class StreamEvent(BaseModel):
    """One server-sent event: `event: <type>`, then `data:` and this object as JSON.

    The events are OpenAI's (`ResponseStreamEvent` in its description); those about the
    whole response carry it, those about one output item carry the item."""

    model_config = ConfigDict(extra="allow")
    type: str
    sequence_number: int
    response: Response = Field(None, json_schema_extra=_no_default)
    item: Item = Field(None, json_schema_extra=_no_default)


# Before OpenAPI 3.2, the schema of an event stream describes each of its events: here an
# `event:` line naming the type, and a `data:` line holding the event as JSON.
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/StreamEvent"},
                },
            },
        }
    }
}


def answers(ok: type[BaseModel], *errors: int, stream: bool = False, description: str = "Success") -> dict:
    """The `responses=` of a route: its 200 (JSON, and SSE if it can stream) and its errors.

    Every /v1 operation may answer 401 (no or unknown API key) and 500."""
    success: dict[str, Any] = {"model": ok, "description": description}
    if stream:
        success["content"] = EVENT_STREAM
    documented: dict[int | str, dict[str, Any]] = {200: success}
    for status in sorted({401, 500, *errors}):
        documented[status] = {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]}
    return documented


# --- the document ------------------------------------------------------------------------

SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "description": "An API key from the `[auth]` section of the config."}


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI description, built once and kept.

    FastAPI documents a 422 with its own validation error shape for every route with
    parameters; Threadline answers those with 400 in OpenAI's envelope, so those go."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
        servers=app.servers,
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            validation = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if validation.get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    # Referred to by the event-stream answers, which FastAPI knows nothing of.
    stream_event = StreamEvent.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, schema in {**stream_event.pop("$defs", {}), "StreamEvent": stream_event}.items():
        schemas.setdefault(name, schema)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {"bearer": SECURITY_SCHEME}
    document["security"] = [{"bearer": []}]
    app.openapi_schema = document
    return document
