"""Every item a client may send as conversation or response input, as OpenAI documents it.

The contract is `InputItem` in OpenAI's OpenAPI document and the SDK reference pages: field
names, required fields and enums follow them. Two deliberate tolerances:

- Unknown fields are kept, not refused: real clients send extras (ids we never issued,
  provider options), and the documented fields are still checked.
- Optional fields also accept null, which many clients send for "not set".

Types are checked strictly (no "1" for 1, no 1 for true), as OpenAI checks them.
"""

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag
from pydantic_core import PydanticCustomError
from typing_extensions import TypeAliasType

# --- building blocks ---------------------------------------------------------------------


class APIModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


def one_of(expected: str, *kinds: type) -> BeforeValidator:
    """Refuse a value of the wrong JSON kind with one error naming every accepted kind.

    Without it, a union such as `str | list[...]` reports one error per member."""

    def check(value: Any) -> Any:
        if isinstance(value, kinds) or isinstance(value, BaseModel):
            return value
        raise PydanticCustomError("invalid_type", "Input should be {expected}", {"expected": expected})

    return BeforeValidator(check)


CallId = Annotated[str, Field(min_length=1, max_length=64)]
LongText = Annotated[str, Field(max_length=10_485_760)]  # OpenAI's 10 MiB limit on text fields
Status = Literal["in_progress", "completed", "incomplete"]


class PromptCacheBreakpoint(APIModel):
    mode: Literal["explicit"]


# --- content parts -----------------------------------------------------------------------


class InputText(APIModel):
    type: Literal["input_text"]
    text: LongText
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class InputImage(APIModel):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    # Required by the reference, yet every client omits it; OpenAI defaults it to "auto".
    detail: Literal["low", "high", "auto", "original"] | None = None
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


class InputFile(APIModel):
    type: Literal["input_file"]
    file_id: str | None = None
    filename: str | None = None
    file_data: Annotated[str, Field(max_length=73_400_320)] | None = None
    file_url: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    prompt_cache_breakpoint: PromptCacheBreakpoint | None = None


InputContent = Annotated[Union[InputText, InputImage, InputFile], Discriminator("type")]
InputContentList = list[InputContent]


class FileCitation(APIModel):
    type: Literal["file_citation"]
    file_id: str
    index: int
    filename: str


class URLCitation(APIModel):
    type: Literal["url_citation"]
    url: str
    start_index: int
    end_index: int
    title: str


class ContainerFileCitation(APIModel):
    type: Literal["container_file_citation"]
    container_id: str
    file_id: str
    start_index: int
    end_index: int
    filename: str


class FilePath(APIModel):
    type: Literal["file_path"]
    file_id: str
    index: int


Annotation = Annotated[
    Union[FileCitation, URLCitation, ContainerFileCitation, FilePath], Discriminator("type")
]


class TopLogprob(APIModel):
    token: str
    logprob: float
    bytes: list[int]


class Logprob(APIModel):
    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class OutputText(APIModel):
    type: Literal["output_text"]
    text: LongText
    # Required in output; clients replaying history (the Vercel AI SDK among them) leave it out.
    annotations: list[Annotation] | None = None
    logprobs: list[Logprob] | None = None


class Refusal(APIModel):
    type: Literal["refusal"]
    refusal: str


# An assistant message given in the easy form may hold input_text; OpenAI accepts it.
OutputContent = Annotated[Union[OutputText, Refusal, InputText], Discriminator("type")]

# --- messages ----------------------------------------------------------------------------

MessagePhase = Literal["commentary", "final_answer"]


class InputMessage(APIModel):
    """A user, system or developer message: `EasyInputMessage` and `InputMessage` in one."""

    type: Literal["message"] | None = None
    status: Status | None = None
    role: Literal["user", "system", "developer"]
    content: Annotated[LongText | InputContentList, one_of("a string or an array of content parts", str, list)]
    phase: MessagePhase | None = None


class OutputMessage(APIModel):
    """An assistant message: `OutputMessage`, or `EasyInputMessage` with the assistant role."""

    id: str | None = None
    type: Literal["message"] | None = None
    status: Status | None = None
    role: Literal["assistant"]
    content: Annotated[LongText | list[OutputContent], one_of("a string or an array of content parts", str, list)]
    phase: MessagePhase | None = None


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


MESSAGE_ROLES = ["user", "assistant", "system", "developer"]


def _message_form(value: Any) -> str:
    role = _field(value, "role")
    if role == "assistant":
        return "output_message"
    if role is None or role in MESSAGE_ROLES:
        # A missing role, or a value that is not an object, is reported by the input form.
        return "input_message"
    return ""


# A named alias: it gives the schema a `Message` entry, and keeps the unhashable error
# context out of the hashing that typing's Union does on its members.
Message = TypeAliasType(
    "Message",
    Annotated[
        Union[Annotated[InputMessage, Tag("input_message")], Annotated[OutputMessage, Tag("output_message")]],
        Discriminator(
            _message_form,
            custom_error_type="invalid_value",
            custom_error_message="Input should be a supported {field}",
            custom_error_context={"field": "role", "expected": MESSAGE_ROLES},
        ),
    ],
)

# --- function and custom tool calls ------------------------------------------------------


class DirectCaller(APIModel):
    type: Literal["direct"]


class ProgramCaller(APIModel):
    type: Literal["program"]
    caller_id: CallId


Caller = Annotated[Union[DirectCaller, ProgramCaller], Discriminator("type")]
ToolOutput = Annotated[
    Annotated[str, Field(max_length=10_485_760)] | InputContentList,
    one_of("a string or an array of content parts", str, list),
]


class FunctionCall(APIModel):
    type: Literal["function_call"]
    id: str | None = None
    status: Status | None = None
    call_id: str
    namespace: str | None = None
    name: str
    arguments: str
    caller: Caller | None = None


class FunctionCallOutput(APIModel):
    type: Literal["function_call_output"]
    id: str | None = None
    status: Status | None = None
    # Nullable in the OpenAPI document, required by the SDK references and by OpenAI itself.
    call_id: CallId
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    namespace: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    output: ToolOutput
    caller: Caller | None = None


class CustomToolCall(APIModel):
    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str
    namespace: str | None = None
    name: str
    input: str
    caller: Caller | None = None


class CustomToolCallOutput(APIModel):
    type: Literal["custom_tool_call_output"]
    id: str | None = None
    call_id: str
    output: ToolOutput
    caller: Caller | None = None


# --- reasoning and compaction ------------------------------------------------------------


class SummaryText(APIModel):
    type: Literal["summary_text"]
    text: str


class ReasoningText(APIModel):
    type: Literal["reasoning_text"]
    text: str


class Reasoning(APIModel):
    type: Literal["reasoning"]
    id: str | None = None  # Codex and opencode send reasoning back without it, as OpenAI accepts
    status: Status | None = None
    summary: list[SummaryText]
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None


class Compaction(APIModel):
    type: Literal["compaction"]
    id: str | None = None
    encrypted_content: Annotated[str, Field(max_length=20_971_520)]


class CompactionTrigger(APIModel):
    """Asks for the context to be compacted; must be the last input item."""

    type: Literal["compaction_trigger"]


# --- computer use ------------------------------------------------------------------------

Keys = list[str] | None


class ClickAction(APIModel):
    type: Literal["click"]
    button: Literal["left", "right", "wheel", "back", "forward"]
    x: int
    y: int
    keys: Keys = None


class DoubleClickAction(APIModel):
    type: Literal["double_click"]
    x: int
    y: int
    keys: Keys = None


class Coordinate(APIModel):
    x: int
    y: int


class DragAction(APIModel):
    type: Literal["drag"]
    path: list[Coordinate]
    keys: Keys = None


class KeypressAction(APIModel):
    type: Literal["keypress"]
    keys: list[str]


class MoveAction(APIModel):
    type: Literal["move"]
    x: int
    y: int
    keys: Keys = None


class ScreenshotAction(APIModel):
    type: Literal["screenshot"]


class ScrollAction(APIModel):
    type: Literal["scroll"]
    x: int
    y: int
    scroll_x: int
    scroll_y: int
    keys: Keys = None


class TypeAction(APIModel):
    type: Literal["type"]
    text: str


class WaitAction(APIModel):
    type: Literal["wait"]


ComputerAction = Annotated[
    Union[
        ClickAction,
        DoubleClickAction,
        DragAction,
        KeypressAction,
        MoveAction,
        ScreenshotAction,
        ScrollAction,
        TypeAction,
        WaitAction,
    ],
    Discriminator("type"),
]


class SafetyCheck(APIModel):
    id: str
    code: str | None = None
    message: str | None = None


class ComputerCall(APIModel):
    type: Literal["computer_call"]
    id: str
    status: Status
    call_id: str
    action: ComputerAction | None = None
    actions: list[ComputerAction] | None = None
    pending_safety_checks: list[SafetyCheck]


class ComputerScreenshot(APIModel):
    type: Literal["computer_screenshot"]
    image_url: str | None = None
    file_id: str | None = None


class ComputerCallOutput(APIModel):
    type: Literal["computer_call_output"]
    id: str | None = None
    status: Status | None = None
    call_id: CallId
    output: ComputerScreenshot
    acknowledged_safety_checks: list[SafetyCheck] | None = None


# --- hosted tools: file search, web search, image generation, code interpreter -------------


class FileSearchResult(APIModel):
    file_id: str | None = None
    text: str | None = None
    filename: str | None = None
    attributes: dict[str, Any] | None = None
    score: float | None = None


class FileSearchCall(APIModel):
    type: Literal["file_search_call"]
    id: str
    status: Literal["in_progress", "searching", "completed", "incomplete", "failed"]
    queries: list[str]
    results: list[FileSearchResult] | None = None


class WebSearchSource(APIModel):
    type: Literal["url"]
    url: str


class SearchAction(APIModel):
    type: Literal["search"]
    query: str | None = None  # deprecated in favour of `queries`
    queries: list[str] | None = None
    sources: list[WebSearchSource] | None = None


class OpenPageAction(APIModel):
    type: Literal["open_page"]
    url: str | None = None


class FindInPageAction(APIModel):
    type: Literal["find_in_page"]
    url: str
    pattern: str


WebSearchAction = Annotated[Union[SearchAction, OpenPageAction, FindInPageAction], Discriminator("type")]


class WebSearchCall(APIModel):
    type: Literal["web_search_call"]
    id: str
    status: Literal["in_progress", "searching", "completed", "failed"]
    action: WebSearchAction


class ImageGenerationCall(APIModel):
    type: Literal["image_generation_call"]
    id: str
    status: Literal["in_progress", "completed", "generating", "failed"]
    result: str | None  # base64 image; required, null while generating


class CodeInterpreterLogs(APIModel):
    type: Literal["logs"]
    logs: str


class CodeInterpreterImage(APIModel):
    type: Literal["image"]
    url: str


CodeInterpreterOutput = Annotated[Union[CodeInterpreterLogs, CodeInterpreterImage], Discriminator("type")]


class CodeInterpreterCall(APIModel):
    type: Literal["code_interpreter_call"]
    id: str
    status: Literal["in_progress", "completed", "incomplete", "interpreting", "failed"]
    container_id: str
    code: str | None
    outputs: list[CodeInterpreterOutput] | None


# --- shells and patches ------------------------------------------------------------------


class LocalShellExecAction(APIModel):
    type: Literal["exec"]
    command: list[str]
    env: dict[str, str]
    timeout_ms: int | None = None
    working_directory: str | None = None
    user: str | None = None


class LocalShellCall(APIModel):
    type: Literal["local_shell_call"]
    id: str
    status: Status
    call_id: str
    action: LocalShellExecAction


class LocalShellCallOutput(APIModel):
    type: Literal["local_shell_call_output"]
    id: str  # the id of the local_shell_call it answers
    status: Status | None = None
    output: str


class ShellAction(APIModel):
    commands: list[str]
    timeout_ms: int | None = None
    max_output_length: int | None = None


class LocalSkill(APIModel):
    name: str
    description: str
    path: str


class LocalEnvironment(APIModel):
    type: Literal["local"]
    skills: Annotated[list[LocalSkill], Field(max_length=200)] | None = None


class ContainerReference(APIModel):
    type: Literal["container_reference"]
    container_id: str


ShellEnvironment = Annotated[Union[LocalEnvironment, ContainerReference], Discriminator("type")]


class ShellCall(APIModel):
    type: Literal["shell_call"]
    id: str | None = None
    status: Status | None = None
    call_id: CallId
    action: ShellAction
    environment: ShellEnvironment | None = None
    caller: Caller | None = None


class TimeoutOutcome(APIModel):
    type: Literal["timeout"]


class ExitOutcome(APIModel):
    type: Literal["exit"]
    exit_code: int


class ShellOutput(APIModel):
    stdout: LongText
    stderr: LongText
    outcome: Annotated[Union[TimeoutOutcome, ExitOutcome], Discriminator("type")]


class ShellCallOutput(APIModel):
    type: Literal["shell_call_output"]
    id: str | None = None
    status: Status | None = None
    call_id: CallId
    output: list[ShellOutput]
    max_output_length: int | None = None
    caller: Caller | None = None


class CreateFileOperation(APIModel):
    type: Literal["create_file"]
    path: Annotated[str, Field(min_length=1)]
    diff: LongText


class DeleteFileOperation(APIModel):
    type: Literal["delete_file"]
    path: Annotated[str, Field(min_length=1)]


class UpdateFileOperation(APIModel):
    type: Literal["update_file"]
    path: Annotated[str, Field(min_length=1)]
    diff: LongText


PatchOperation = Annotated[
    Union[CreateFileOperation, DeleteFileOperation, UpdateFileOperation], Discriminator("type")
]


class ApplyPatchCall(APIModel):
    type: Literal["apply_patch_call"]
    id: str | None = None
    status: Literal["in_progress", "completed"]
    call_id: CallId
    operation: PatchOperation
    caller: Caller | None = None


class ApplyPatchCallOutput(APIModel):
    type: Literal["apply_patch_call_output"]
    id: str | None = None
    status: Literal["completed", "failed"]
    call_id: CallId
    output: LongText | None = None
    caller: Caller | None = None


# --- MCP ---------------------------------------------------------------------------------


class McpTool(APIModel):
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None = None


class McpListTools(APIModel):
    type: Literal["mcp_list_tools"]
    id: str
    server_label: str
    tools: list[McpTool]
    error: str | None = None


class McpApprovalRequest(APIModel):
    type: Literal["mcp_approval_request"]
    id: str
    server_label: str
    name: str
    arguments: str


class McpApprovalResponse(APIModel):
    type: Literal["mcp_approval_response"]
    id: str | None = None
    approval_request_id: str
    approve: bool
    reason: str | None = None


class McpProtocolError(APIModel):
    type: Literal["mcp_protocol_error"]
    code: int
    message: str


class McpToolExecutionError(APIModel):
    type: Literal["mcp_tool_execution_error"]
    content: Any


class McpHTTPError(APIModel):
    type: Literal["http_error"]
    code: int
    message: str


McpError = Annotated[
    Union[McpProtocolError, McpToolExecutionError, McpHTTPError], Discriminator("type")
]


class McpCall(APIModel):
    type: Literal["mcp_call"]
    id: str
    status: Literal["in_progress", "completed", "incomplete", "calling", "failed"] | None = None
    server_label: str
    name: str
    arguments: str
    output: str | None = None
    # A string in the SDK references, a typed object in the OpenAPI document: accept both.
    error: Annotated[str | McpError, one_of("a string or an object", str, dict)] | None = None
    approval_request_id: str | None = None


# --- tool search -------------------------------------------------------------------------


class ToolDefinition(APIModel):
    """A tool as declared in a request's `tools`; only its `type` is checked here."""

    type: str


ToolSearchExecution = Literal["server", "client"]


class ToolSearchCall(APIModel):
    type: Literal["tool_search_call"]
    id: str | None = None
    status: Status | None = None
    call_id: CallId | None = None
    execution: ToolSearchExecution | None = None
    arguments: dict[str, Any]


class ToolSearchOutput(APIModel):
    type: Literal["tool_search_output"]
    id: str | None = None
    status: Status | None = None
    call_id: CallId | None = None
    execution: ToolSearchExecution | None = None
    tools: list[ToolDefinition]


class AdditionalTools(APIModel):
    type: Literal["additional_tools"]
    id: str | None = None
    role: Literal["developer"]
    tools: list[ToolDefinition]


# --- programs ----------------------------------------------------------------------------


class Program(APIModel):
    type: Literal["program"]
    id: str
    call_id: CallId
    code: LongText
    fingerprint: LongText


class ProgramOutput(APIModel):
    type: Literal["program_output"]
    id: str
    status: Literal["completed", "incomplete"]
    call_id: CallId
    result: LongText


# --- references --------------------------------------------------------------------------


class ItemReference(APIModel):
    """Another item, named by id; the store resolves it."""

    type: Literal["item_reference"] | None = None
    id: str


# --- the union ---------------------------------------------------------------------------

ITEM_TYPES: dict[str, Any] = {
    "message": Message,
    "function_call": FunctionCall,
    "function_call_output": FunctionCallOutput,
    "custom_tool_call": CustomToolCall,
    "custom_tool_call_output": CustomToolCallOutput,
    "reasoning": Reasoning,
    "compaction": Compaction,
    "compaction_trigger": CompactionTrigger,
    "computer_call": ComputerCall,
    "computer_call_output": ComputerCallOutput,
    "file_search_call": FileSearchCall,
    "web_search_call": WebSearchCall,
    "image_generation_call": ImageGenerationCall,
    "code_interpreter_call": CodeInterpreterCall,
    "local_shell_call": LocalShellCall,
    "local_shell_call_output": LocalShellCallOutput,
    "shell_call": ShellCall,
    "shell_call_output": ShellCallOutput,
    "apply_patch_call": ApplyPatchCall,
    "apply_patch_call_output": ApplyPatchCallOutput,
    "mcp_list_tools": McpListTools,
    "mcp_approval_request": McpApprovalRequest,
    "mcp_approval_response": McpApprovalResponse,
    "mcp_call": McpCall,
    "tool_search_call": ToolSearchCall,
    "tool_search_output": ToolSearchOutput,
    "additional_tools": AdditionalTools,
    "program": Program,
    "program_output": ProgramOutput,
    "item_reference": ItemReference,
}


def looks_like_reference(value: Any) -> bool:
    """An item reference may leave out `type`: an object with an id but no role or content."""
    if isinstance(value, ItemReference):
        return True
    return isinstance(value, dict) and "id" in value and "role" not in value and "content" not in value


def item_type(value: Any) -> str:
    """The union's tag: the item's `type`, and for an item without one, a message or a reference."""
    if not isinstance(value, (dict, BaseModel)):
        return "message"  # the message form reports that an item must be an object
    kind = _field(value, "type")
    if kind is None:
        return "item_reference" if looks_like_reference(value) else "message"
    return kind if isinstance(kind, str) else ""


InputItem = TypeAliasType(
    "InputItem",
    Annotated[
        Union[tuple(Annotated[model, Tag(kind)] for kind, model in ITEM_TYPES.items())],
        Discriminator(
            item_type,
            custom_error_type="invalid_value",
            custom_error_message="Input should be a supported {field}",
            custom_error_context={"field": "type", "expected": list(ITEM_TYPES)},
        ),
    ],
)
