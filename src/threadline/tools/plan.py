"""A response's tools, as decided from its request: what the model is offered, and what each
name it may call stands for.

Client-side tools (function and custom, namespaced or not) end the response when called;
server-side ones (an MCP server's tools, web search, file search) are run by the server
between turns.
The model sees every tool as a plain function or custom tool under a name of its own: the
tool's name, unless another tool took it first.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import TypeAdapter, ValidationError

from threadline.errors import APIError, invalid
from threadline.retrieval.filters import parse_filters
from threadline.retrieval.search import parse_ranking_options
from threadline.spec.request import CreateResponseBody, CustomTool, FileSearchTool, FunctionTool, McpTool, NamespaceTool, Tool, WebSearchTool

LISTED_TOOLS = TypeAdapter(list[Tool])

Kind = Literal["function", "custom", "mcp", "web_search", "file_search"]

WEB_SEARCH_NAME = "web_search"
WEB_SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to search the web for."}},
    "required": ["query"],
    "additionalProperties": False,
}
WEB_SEARCH_DESCRIPTION = (
    "Search the web. Returns numbered results with their URLs; cite the ones you use with "
    "their number in square brackets, like [1]."
)

# One query a call: small models write a flat string far more reliably than an array, and a
# model that wants several searches calls the tool several times (at once, if it may).
FILE_SEARCH_NAME = "file_search"
FILE_SEARCH_PARAMETERS = {
    "type": "object",
    "properties": {"query": {"type": "string", "description": "What to look for in the files, in words likely to appear in them."}},
    "required": ["query"],
    "additionalProperties": False,
}
FILE_SEARCH_DESCRIPTION = (
    "Search the files the user has provided. Returns numbered passages with their file names; "
    "cite the ones you use with their number in square brackets, like [1]."
)


@dataclass(frozen=True)
class Served:
    """The hosted tools this server runs: a web search provider is configured, a vector
    search is at hand."""

    web_search: bool = False
    file_search: bool = False


@dataclass
class Target:
    """What a name the model calls stands for."""

    kind: Kind
    name: str  # the tool's own name, as its call item carries it
    namespace: str | None = None
    server_label: str | None = None
    needs_approval: bool = False


@dataclass
class McpServerPlan:
    """One `mcp` tool of the request. `headers` and `authorization` are secrets: kept only
    while the response runs, sealed when stored (tools/secrets.py)."""

    label: str
    url: str
    description: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    authorization: str | None = None
    allowed_tools: list[str] | None = None  # None: all
    allowed_read_only: bool | None = None  # the filter's read_only: only tools annotated so (or not)
    require_approval: str | dict = "always"  # "always" | "never" | {"always"|"never": {"tool_names": [...]}}

    @property
    def has_secrets(self) -> bool:
        return bool(self.headers or self.authorization)

    def allows(self, tool: dict) -> bool:
        return matches(tool, {"tool_names": self.allowed_tools, "read_only": self.allowed_read_only})

    def needs_approval(self, tool: dict) -> bool:
        """Whether a call of this tool waits for the client's approval. OpenAI's default is
        "always"; a filter under "never" frees the tools it matches, and one under "always"
        alone holds only those it matches."""
        rule = self.require_approval
        if isinstance(rule, str):
            return rule != "never"
        never, always = rule.get("never"), rule.get("always")
        if never and matches(tool, never):
            return False
        if always:
            return matches(tool, always) or bool(never)
        return True


def matches(tool: dict, filter_: dict) -> bool:
    """Whether a listed MCP tool matches a tool filter ({"tool_names", "read_only"}; a part left
    out matches every tool)."""
    names, read_only = filter_.get("tool_names"), filter_.get("read_only")
    if names is not None and tool["name"] not in names:
        return False
    return read_only is None or bool((tool.get("annotations") or {}).get("readOnlyHint")) == read_only


@dataclass
class ApprovedCall:
    """An MCP call the client approved in this request's input: run before the model's first turn."""

    approval_request_id: str
    server_label: str
    name: str
    arguments: str


@dataclass
class ToolPlan:
    model_tools: list[dict] = field(default_factory=list)  # as the model sees them
    targets: dict[str, Target] = field(default_factory=dict)  # by the name the model sees
    mcp_servers: list[McpServerPlan] = field(default_factory=list)
    web_search: dict | None = None  # the web_search tool's options, when it is served
    file_search: dict | None = None  # the file_search tool's options (vector_store_ids, filters, ...)
    approved: list[ApprovedCall] = field(default_factory=list)
    max_tool_calls: int | None = None  # server-side calls one response may make
    # Approval requests sent back in the input get ids of their own: the id each was sent
    # with, by its new one, so that the answers naming it still find it.
    sent_ids: dict[str, str] = field(default_factory=dict)

    @property
    def runs_tools(self) -> bool:
        """Whether anything is to be done before the model's first turn can start."""
        return bool(self.mcp_servers or self.approved)

    def model_name(self, target: Target) -> str:
        """The name the model knows a tool by (the tool's own, or the one given when taken)."""
        for name, known in self.targets.items():
            if (known.kind, known.name, known.namespace, known.server_label) == (target.kind, target.name, target.namespace, target.server_label):
                return name
        return target.name

    def add(self, target: Target, definition: dict) -> dict:
        """Offer a tool under its own name, or a free one if that is taken; the definition as offered."""
        name = free_name(target.name, target.namespace or target.server_label, self.targets)
        self.targets[name] = target
        return {**definition, "name": name}

    def server(self, label: str) -> McpServerPlan | None:
        return next((server for server in self.mcp_servers if server.label == label), None)

    def dump(self) -> dict:
        return asdict(self)

    @classmethod
    def load(cls, data: dict) -> ToolPlan:
        return cls(
            model_tools=data["model_tools"],
            targets={name: Target(**target) for name, target in data["targets"].items()},
            mcp_servers=[McpServerPlan(**server) for server in data["mcp_servers"]],
            web_search=data["web_search"],
            file_search=data.get("file_search"),
            approved=[ApprovedCall(**call) for call in data["approved"]],
            max_tool_calls=data["max_tool_calls"],
            sent_ids=data.get("sent_ids", {}),
        )


def free_name(name: str, prefix: str | None, taken: dict) -> str:
    """`name` as a function name a model accepts, or prefixed (then numbered) when taken."""
    name = function_name(name)
    if name not in taken:
        return name
    candidate = function_name(f"{prefix}__{name}") if prefix else name
    number = 2
    while candidate in taken:
        candidate = function_name(f"{prefix or 'tool'}__{name}")[:60] + f"_{number}"
        number += 1
    return candidate


def function_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64] or "tool"


def tool_plan(body: CreateResponseBody, served: Served) -> ToolPlan:
    """The request's tools as a plan; a tool this server cannot serve is a 400 naming it."""
    plan = ToolPlan(max_tool_calls=body.max_tool_calls)
    add_tools(plan, body.tools or [], served, "tools")
    return plan


def add_listed_tools(plan: ToolPlan, input_items: list[dict], served: Served) -> None:
    """Offer the tools that `additional_tools` input items list (Codex sends its tools so), as
    the request's own are."""
    for index, item in enumerate(input_items):
        if item.get("type") == "additional_tools":
            try:
                tools = LISTED_TOOLS.validate_python(item["tools"])
            except ValidationError as error:
                raise invalid(f"Invalid tool in 'additional_tools': {error.errors()[0]['msg']}.", param=f"input[{index}].tools") from None
            add_tools(plan, tools, served, f"input[{index}].tools")


def add_tools(plan: ToolPlan, tools: list[Tool], served: Served, param: str) -> None:
    for index, tool in enumerate(tools):
        if isinstance(tool, FunctionTool | CustomTool):
            plan.model_tools.append(client_tool(plan, tool, None))
        elif isinstance(tool, NamespaceTool):
            plan.model_tools.extend(client_tool(plan, inner, tool.name) for inner in tool.tools)
        elif isinstance(tool, McpTool):
            plan.mcp_servers.append(mcp_server(tool, f"{param}[{index}]", plan))
        elif tool.type == "tool_search":
            continue  # no tools are deferred to be searched for: nothing to offer the model
        elif isinstance(tool, WebSearchTool):
            # With no provider configured the tool is left out of what the model sees.
            if served.web_search and plan.web_search is None:
                plan.web_search = tool.model_dump(exclude_none=True)
                plan.model_tools.append(
                    plan.add(
                        Target("web_search", WEB_SEARCH_NAME),
                        {"type": "function", "description": WEB_SEARCH_DESCRIPTION, "parameters": WEB_SEARCH_PARAMETERS, "strict": True},
                    )
                )
        elif isinstance(tool, FileSearchTool):
            plan.file_search = file_search(tool, f"{param}[{index}]", plan, served)
            plan.model_tools.append(
                plan.add(
                    Target("file_search", FILE_SEARCH_NAME),
                    {"type": "function", "description": FILE_SEARCH_DESCRIPTION, "parameters": FILE_SEARCH_PARAMETERS, "strict": True},
                )
            )
        else:
            raise invalid(
                f"Tool type '{tool.type}' is not supported by this server.",
                param=f"{param}[{index}].type",
                code="unsupported_tool",
            )


def client_tool(plan: ToolPlan, tool: FunctionTool | CustomTool, namespace: str | None) -> dict:
    definition = tool.model_dump(exclude_none=True)
    return plan.add(Target(tool.type, tool.name, namespace=namespace), definition)


def mcp_server(tool: McpTool, param: str, plan: ToolPlan) -> McpServerPlan:
    if tool.connector_id is not None:
        raise invalid("Connectors are not offered by this server: give the MCP server's 'server_url'.", param=f"{param}.connector_id")
    if not tool.server_url:
        raise invalid("An mcp tool needs 'server_url'.", param=f"{param}.server_url")
    if plan.server(tool.server_label) is not None:
        raise invalid(f"Duplicate MCP server_label '{tool.server_label}'.", param=f"{param}.server_label")
    allowed = tool.allowed_tools
    approval = tool.require_approval
    return McpServerPlan(
        label=tool.server_label,
        url=tool.server_url,
        description=tool.server_description,
        headers=dict(tool.headers or {}),
        authorization=tool.authorization,
        allowed_tools=allowed if isinstance(allowed, list) else (allowed.tool_names if allowed is not None else None),
        allowed_read_only=allowed.read_only if allowed is not None and not isinstance(allowed, list) else None,
        require_approval=approval if isinstance(approval, str) else approval.model_dump(exclude_none=True) if approval else "always",
    )


def file_search(tool: FileSearchTool, param: str, plan: ToolPlan, served: Served) -> dict:
    """A file_search tool's options, its filters checked; the vector stores are checked
    against the project's when the request is prepared (tools/file_searches.py)."""
    if not served.file_search:
        raise invalid("file_search is not offered by this server: it has no vector search configured.", param=f"{param}.type", code="unsupported_tool")
    if plan.file_search is not None:
        raise invalid("Only one file_search tool may be given: list every vector store in its 'vector_store_ids'.", param=param)
    options = tool.model_dump(exclude_none=True)
    if tool.filters is not None:
        try:
            parse_filters(tool.filters)
        except APIError as error:
            error.param = f"{param}.filters"  # the filter's own path is in the message
            raise
    # What the search would refuse (both hybrid weights 0, ...) is refused before anything runs.
    parse_ranking_options(options.get("ranking_options"), param=f"{param}.ranking_options")
    options["vector_store_ids"] = list(dict.fromkeys(tool.vector_store_ids))
    return options


def sent_ids(sent: list, input_items: list[dict]) -> dict[str, str]:
    """The ids approval requests sent back in the input (by a client that stores nothing)
    were sent with, by the ids they were given."""
    return {
        item["id"]: original.id
        for original, item in zip(sent, input_items)
        if item.get("type") == "mcp_approval_request" and getattr(original, "id", None)
    }


def approved_calls(items: list[dict], new_input: list[dict], plan: ToolPlan) -> list[ApprovedCall]:
    """The calls this request's `mcp_approval_response` items approve, to run before the
    model's first turn (`items`: everything the model reads, history and new input). An
    answer to no request, or to one of a server not among the tools, is a 400; a call
    already run is not run again."""
    if not any(item.get("type") == "mcp_approval_response" for item in new_input):
        return []  # the usual case: nothing to look up in the history
    requests = {plan.sent_ids.get(item["id"], item["id"]): item for item in items if item.get("type") == "mcp_approval_request"}
    ran = {item.get("approval_request_id") for item in items if item.get("type") == "mcp_call"}
    approved = []
    for index, item in enumerate(new_input):
        if item.get("type") != "mcp_approval_response":
            continue
        request_id = item["approval_request_id"]
        request = requests.get(request_id)
        if request is None:
            raise invalid(f"No MCP approval request with id '{request_id}' was found.", param=f"input[{index}].approval_request_id")
        if plan.server(request["server_label"]) is None:
            raise invalid(
                f"The approval request '{request_id}' is for MCP server '{request['server_label']}', which is not among the "
                "tools: include its mcp tool in 'tools' to run the approved call.",
                param="tools",
            )
        if item["approve"] and request_id not in ran and all(call.approval_request_id != request_id for call in approved):
            approved.append(ApprovedCall(request_id, request["server_label"], request["name"], request["arguments"]))
    return approved
