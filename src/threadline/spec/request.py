"""The body of POST /v1/responses (and /v1/responses/input_tokens), validated as OpenAI does,
and the request pieces other bodies share (metadata, `include` values)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, Tag, field_validator
from pydantic_core import PydanticCustomError

from threadline.items import InputItem
from threadline.items.models import ItemReference

METADATA_PAIRS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 16, 64, 512


def _check_metadata(value: Any) -> Any:
    """Refuse too many pairs or a long key with one error on `metadata` itself.

    Left to pydantic, 17 pairs read as "array too long" and a long key is reported at its
    value's path with the value's length."""
    if not isinstance(value, dict):
        return value
    if len(value) > METADATA_PAIRS:
        raise PydanticCustomError(
            "metadata_too_many_pairs",
            "too many key-value pairs. Expected an object with at most {limit} pairs, but got {count} pairs instead",
            {"limit": METADATA_PAIRS, "count": len(value)},
        )
    for key in value:
        if isinstance(key, str) and len(key) > METADATA_KEY_LENGTH:
            raise PydanticCustomError(
                "metadata_key_too_long",
                "key too long. Expected keys of at most {limit} characters, but got a key with length {length} instead",
                {"limit": METADATA_KEY_LENGTH, "length": len(key)},
            )
    return value


MetadataKey = Annotated[str, StringConstraints(max_length=METADATA_KEY_LENGTH)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_LENGTH)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=METADATA_PAIRS,
        description="Up to 16 key-value pairs; keys at most 64 characters, values at most 512.",
    ),
    BeforeValidator(_check_metadata),
]

# Every value OpenAI documents; what each one adds is decided in `spec.response.present`.
Includable = Literal[
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
]
INCLUDABLE: tuple[str, ...] = Includable.__args__


def unknown_include(value: str) -> str:
    """The message for an `include` value that is not one of INCLUDABLE, as OpenAI words it."""
    supported = ", ".join(f"'{option}'" for option in INCLUDABLE[:-1]) + f" and '{INCLUDABLE[-1]}'"
    return f"Invalid value: '{value}'. Supported values are: {supported}."


FunctionName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
# Counts are stored and echoed as JSON numbers that orjson (and most clients) hold as 64-bit.
INT64_MAX = 2**63 - 1
# Scalars are checked strictly, as OpenAI checks them: "1" is not a number, nor "true" a boolean.
Bool = Annotated[bool, Field(strict=True)]
# An id names an object: an empty one names none, and is refused rather than taken for no id.
ObjectId = Annotated[str, Field(min_length=1)]


class Tolerant(BaseModel):
    # Unknown fields are tolerated, as OpenAI tolerates them: SDKs add fields over time.
    model_config = ConfigDict(extra="allow")


class FunctionTool(Tolerant):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTextFormat(Tolerant):
    type: Literal["text"]


class CustomGrammarFormat(Tolerant):
    type: Literal["grammar"]
    syntax: Literal["lark", "regex"]
    definition: str


class CustomTool(Tolerant):
    """A tool whose input is free text, or text in a grammar: its call carries the raw input."""

    type: Literal["custom"]
    name: FunctionName
    description: str | None = None
    format: Annotated[CustomTextFormat | CustomGrammarFormat, Field(discriminator="type")] | None = None


class NamespaceTool(Tolerant):
    """A group of function and custom tools under one name (Codex sends these by default)."""

    type: Literal["namespace"]
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    tools: Annotated[list[Annotated[FunctionTool | CustomTool, Field(discriminator="type")]], Field(min_length=1)]


# What an HTTP header may hold: a header that could not be sent is refused here, with a message
# that does not repeat it (it may be a secret).
HeaderName = Annotated[str, StringConstraints(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HeaderValue = Annotated[str, StringConstraints(pattern=r"^[\x20-\x7e\t]*$")]


class McpToolFilter(Tolerant):
    tool_names: list[str] | None = None
    read_only: bool | None = None


class McpApprovalFilter(Tolerant):
    always: McpToolFilter | None = None
    never: McpToolFilter | None = None


class McpTool(Tolerant):
    """A remote MCP server whose tools the server calls for the model."""

    type: Literal["mcp"]
    server_label: Annotated[str, Field(min_length=1)]
    server_url: str | None = None
    connector_id: str | None = None
    server_description: str | None = None
    headers: dict[HeaderName, HeaderValue] | None = None
    authorization: HeaderValue | None = None
    allowed_tools: list[str] | McpToolFilter | None = None
    require_approval: Literal["always", "never"] | McpApprovalFilter | None = None


class UserLocation(Tolerant):
    type: Literal["approximate"] = "approximate"
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


class WebSearchFilters(Tolerant):
    allowed_domains: list[str] | None = None


WEB_SEARCH_TYPES = ("web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11")


class WebSearchTool(Tolerant):
    type: Literal["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"]
    filters: WebSearchFilters | None = None
    user_location: UserLocation | None = None
    search_context_size: Literal["low", "medium", "high"] | None = None
    external_web_access: Bool | None = None


class HybridSearch(Tolerant):
    embedding_weight: Annotated[float, Field(ge=0, strict=True)]
    text_weight: Annotated[float, Field(ge=0, strict=True)]


class RankingOptions(Tolerant):
    ranker: Literal["auto", "default-2024-11-15"] | None = None
    score_threshold: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    hybrid_search: HybridSearch | None = None


class FileSearchTool(Tolerant):
    """Search the project's vector stores; `filters` are checked against the stores' file
    attributes' grammar when the request is prepared (retrieval/filters.py)."""

    type: Literal["file_search"]
    vector_store_ids: Annotated[list[ObjectId], Field(min_length=1)]
    max_num_results: Annotated[int, Field(ge=1, le=50, strict=True)] | None = None
    ranking_options: RankingOptions | None = None
    filters: dict[str, Any] | None = None


class OtherTool(Tolerant):
    """Hosted tools this server does not run: accepted by the schema, then refused by name."""

    type: str


TOOL_KINDS = {"function", "namespace", "custom", "mcp", "file_search", *WEB_SEARCH_TYPES}


def _tool_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if not isinstance(kind, str):
        return "other"  # refused as the type it is not
    if kind in WEB_SEARCH_TYPES:
        return "web_search"
    return kind if kind in TOOL_KINDS else "other"


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[McpTool, Tag("mcp")]
    | Annotated[WebSearchTool, Tag("web_search")]
    | Annotated[FileSearchTool, Tag("file_search")]
    | Annotated[OtherTool, Tag("other")],
    Discriminator(_tool_kind),
]


class FunctionToolChoice(Tolerant):
    type: Literal["function"]
    name: str


class AllowedTools(Tolerant):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class HostedToolChoice(Tolerant):
    type: str


def _tool_choice_kind(value: Any) -> str:
    if isinstance(value, str):
        return "mode"
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("function", "allowed_tools") else "hosted"


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("mode")]
    | Annotated[FunctionToolChoice, Tag("function")]
    | Annotated[AllowedTools, Tag("allowed_tools")]
    | Annotated[HostedToolChoice, Tag("hosted")],
    Discriminator(_tool_choice_kind),
]


class JSONSchemaFormat(Tolerant):
    type: Literal["json_schema"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]
    description: str | None = None
    strict: bool | None = None


class TextFormat(Tolerant):
    type: Literal["text", "json_object"]


class TextConfig(Tolerant):
    format: Annotated[JSONSchemaFormat | TextFormat, Field(discriminator="type")] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(Tolerant):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class ConversationParam(Tolerant):
    id: ObjectId


class PromptParam(Tolerant):
    id: str
    version: str | None = None
    variables: dict[str, Any] | None = None


class CreateResponseBody(Tolerant):
    model: str | None = None
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: ObjectId | None = None
    conversation: ObjectId | ConversationParam | None = None
    store: Bool | None = True
    stream: Bool | None = False
    stream_options: dict[str, Any] | None = None
    background: Bool | None = False
    include: list[Includable] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: Bool | None = None
    max_tool_calls: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, strict=True)] | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    prompt: PromptParam | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    safety_identifier: Annotated[str, Field(max_length=64)] | None = None
    user: str | None = None
    context_management: list[dict[str, Any]] | None = None

    @field_validator("input", mode="after")
    @classmethod
    def _references_say_their_type(cls, value: Any) -> Any:
        """An item reference may leave out its type; from here on it says it, as every item does."""
        if isinstance(value, list):
            for item in value:
                if isinstance(item, ItemReference) and item.type is None:
                    item.type = "item_reference"
        return value

    @property
    def conversation_id(self) -> str | None:
        if isinstance(self.conversation, ConversationParam):
            return self.conversation.id
        return self.conversation
