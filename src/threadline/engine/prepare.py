"""Everything decided before the first byte: model, tools, context and the Response as created.

Any problem with the request is raised here as a 4xx, so a stream never fails on input
that could have been refused up front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from threadline.backends.base import Backend, ModelRequest
from threadline.backends.registry import Models
from threadline.config import LimitsSettings
from threadline.engine import compaction
from threadline.engine.connection_cache import ConnectionCache
from threadline.engine.context import History, fit_to_window
from threadline.engine.file_inputs import FileInputs
from threadline.engine.new_items import new_items
from threadline.engine.prompts import PromptTemplates, template_messages_first
from threadline.engine.reasoning_items import open_reasoning, readable_by
from threadline.errors import invalid
from threadline.spec.request import WEB_SEARCH_TYPES, CreateResponseBody
from threadline.spec.response import ENCRYPTED_CONTENT, response_object
from threadline.store.conversations import ConversationStore
from threadline.store.database import Database
from threadline.store.files import FileStore
from threadline.store.responses import ResponseStore
from threadline.tools.file_searches import check_vector_stores
from threadline.tools.model_view import model_view
from threadline.tools.network import check_host
from threadline.tools.plan import FILE_SEARCH_NAME, WEB_SEARCH_NAME, Target, ToolPlan, add_listed_tools, approved_calls, sent_ids, tool_plan
from threadline.tools.toolbox import ToolServices


@dataclass
class PreparedResponse:
    project: str
    backend: Backend
    model_request: ModelRequest
    response: dict  # the Response object, status in_progress, output empty
    input_items: list[dict]  # the new input, normalized, as stored with the response
    store: bool
    tools: ToolPlan


def request_input(body: CreateResponseBody) -> list:
    """The request's new input as a list of items (a string is one user message)."""
    if body.input is None:
        return []
    if isinstance(body.input, str):
        return [{"type": "message", "role": "user", "content": body.input}]
    return body.input


def tool_choice(body: CreateResponseBody, plan: ToolPlan) -> str | dict:
    choice = body.tool_choice
    if choice is None:
        return "auto"
    if isinstance(choice, str):
        if choice == "required" and not body.tools:
            raise invalid("tool_choice 'required' needs at least one tool in 'tools'.", param="tool_choice")
        return choice
    names = set(plan.targets)
    if choice.type in ("function", "custom"):
        if choice.name not in names:
            raise invalid(f"Tool choice '{choice.name}' is not one of the tools given in 'tools'.", param="tool_choice.name")
        return {"type": choice.type, "name": choice.name}
    if choice.type == "allowed_tools":
        for index, tool in enumerate(choice.tools):
            # Hosted tools are named by type (and an MCP server by its label), not by name.
            if tool.get("type") in ("function", "custom") and tool.get("name") not in names:
                raise invalid(f"Allowed tool '{tool.get('name')}' is not one of the tools given in 'tools'.", param=f"tool_choice.tools[{index}]")
        return choice.model_dump()
    if choice.type in WEB_SEARCH_TYPES:
        # Echoed as asked; the model is made to search only where a provider serves it.
        return choice.model_dump()
    if choice.type == "file_search":
        if plan.file_search is None:
            raise invalid("Tool choice 'file_search' needs a file_search tool in 'tools'.", param="tool_choice.type")
        return choice.model_dump()
    if choice.type == "mcp":
        if plan.server(getattr(choice, "server_label", None) or "") is None:
            raise invalid("Tool choice 'mcp' names a server_label that is not one of the mcp tools in 'tools'.", param="tool_choice.server_label")
        return choice.model_dump()
    raise invalid(f"Tool choice type '{choice.type}' is not supported by this server.", param="tool_choice.type")


def model_tool_choice(choice: str | dict, plan: ToolPlan) -> str | dict:
    """The tool choice as the model gets it: a hosted tool named becomes the function it is
    offered as, and a call required of no tool offered (a web search nobody serves) is none."""
    if choice == "required" and not plan.model_tools and not plan.mcp_servers:
        return "auto"
    if isinstance(choice, dict) and choice["type"] in WEB_SEARCH_TYPES:
        web_search = Target("web_search", WEB_SEARCH_NAME)
        return {"type": "function", "name": plan.model_name(web_search)} if plan.web_search is not None else "auto"
    if isinstance(choice, dict) and choice["type"] == "file_search":
        return {"type": "function", "name": plan.model_name(Target("file_search", FILE_SEARCH_NAME))}
    if isinstance(choice, dict) and choice["type"] == "mcp":
        return "required"  # made the named tool's once the server's tools are listed (engine/turns.py)
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        return {**choice, "tools": [tool for tool in choice["tools"] if tool.get("type") in ("function", "custom")]}
    return choice


def text_format(body: CreateResponseBody) -> dict | None:
    format_ = body.text.format if body.text else None
    if format_ is None or format_.type == "text":
        return None
    return format_.model_dump(by_alias=True, exclude_none=True)


class Preparer:
    def __init__(
        self,
        database: Database,
        models: Models,
        responses: ResponseStore,
        conversations: ConversationStore,
        limits: LimitsSettings,
        tools: ToolServices | None = None,
        files: FileStore | None = None,
        prompts: PromptTemplates | None = None,
    ) -> None:
        self.database = database
        self.files = files or FileStore(database)
        self.models = models
        self.responses = responses
        self.conversations = conversations
        self.limits = limits
        self.tools = tools or ToolServices.unconfigured()
        self.prompts = prompts or PromptTemplates([])

    async def prepare(self, body: CreateResponseBody, project: str, connection: ConnectionCache | None = None) -> PreparedResponse:
        """The response `body` asks for; `connection` is the memory of the WebSocket it came on, if it did."""
        # A template named in `prompt` fills in the model, instructions and settings the request leaves out.
        body, prompt_messages = self.prompts.apply(body)
        if body.conversation is not None and body.previous_response_id is not None:
            raise invalid("'conversation' and 'previous_response_id' cannot be used together.", param="previous_response_id")
        if body.input is None and body.previous_response_id is None and body.conversation is None and body.prompt is None:
            raise invalid("Missing required parameter: 'input'.", param="input")
        if body.background and body.store is False:
            raise invalid("Background responses must be stored: 'background' requires 'store' to be true.", param="background")
        if isinstance(body.input, list) and len(body.input) > self.limits.max_input_items:
            raise invalid(
                f"Invalid 'input': array too long. Expected an array with maximum length {self.limits.max_input_items}, "
                f"but got an array with length {len(body.input)} instead.",
                param="input",
            )
        backend = self.models.get(body.model)
        model_id = body.model or self.models.default_id
        plan = tool_plan(body, self.tools.served())
        for index, tool in enumerate(body.tools or []):
            if tool.type == "mcp" and tool.server_url:
                await check_host(tool.server_url, self.tools.settings.mcp.allowed_hosts, param=f"tools[{index}].server_url")
        choice = tool_choice(body, plan)
        earlier = compaction.stop_at_compaction(self.earlier_items(body, project, connection), self.tools.secrets)
        history = History(earlier)
        await history.read()  # an unknown conversation or previous response is refused first
        sent = request_input(body)
        input_items = await new_items(self.database, project, sent, param="input", max_bytes=self.limits.max_body_bytes)
        input_items = open_reasoning(self.tools.secrets, sent, input_items)
        compacting = compaction.compaction_request(body.context_management, input_items)
        # What the model reads of the input: from its newest compaction item on, which stands for all before it.
        model_input, starts_afresh = compaction.model_input(self.tools.secrets, readable_by(backend.settings.provider, sent, input_items))
        if starts_afresh:
            await earlier.aclose()
            history = History()
        listed_from = len(plan.mcp_servers)
        add_listed_tools(plan, input_items, self.tools.served())
        await check_vector_stores(self.database, project, plan, body)
        for server in plan.mcp_servers[listed_from:]:
            await check_host(server.url, self.tools.settings.mcp.allowed_hosts, param="input")
        include = set(body.include or [])
        # Files named by id reach the model as it takes them: the new input's before the
        # window is counted (so their size counts), the earlier items' once they are chosen.
        file_inputs = FileInputs.for_backend(self.files, project, backend, max_bytes=self.limits.max_body_bytes)
        template_messages = await file_inputs.resolve(prompt_messages, param="prompt")
        model_request = ModelRequest(
            model=model_id,
            input=template_messages + await file_inputs.resolve(model_input, param="input"),
            instructions=body.instructions,
            tools=plan.model_tools if choice != "none" else [],
            tool_choice=model_tool_choice(choice, plan),
            parallel_tool_calls=True if body.parallel_tool_calls is None else body.parallel_tool_calls,
            text_format=text_format(body),
            # The request's own bound, else the model's default (see engine/output_bound.py).
            max_output_tokens=body.max_output_tokens if body.max_output_tokens is not None else backend.settings.max_output_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            top_logprobs=body.top_logprobs,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            logprobs="message.output_text.logprobs" in include,
            encrypted_reasoning=ENCRYPTED_CONTENT in include,
            reasoning=body.reasoning.model_dump(exclude_none=True) if body.reasoning else None,
            user=body.user,
            stream=bool(body.stream),
        )
        # Counted as the model reads it: hosted tools' items as the calls and outputs they were.
        view = lambda items: model_view(items, plan)  # noqa: E731
        # The template's messages go first, as instructions do: with their files as read above (a
        # file read twice would count twice), or by id for a background response's stored job.
        template_first = prompt_messages if body.background else template_messages
        compaction_plan = None
        if compacting:
            # They stay in front of a compacted context too, never summarised.
            bare = dataclasses.replace(model_request, input=model_request.input[len(template_messages) :])
            compaction_plan = await compaction.plan_compaction(backend, bare, history, model_input, compacting, view)
            if compaction_plan is not None:
                model_request.input = template_first + bare.input
        if compaction_plan is None:
            model_request = await fit_to_window(backend, model_request, history, body.truncation or "disabled", view=view)
            model_request.input = template_messages_first(model_request.input, template_first, len(model_input))
        if body.background:
            # A queued response keeps the files by id, its new input's as sent: its stored job
            # holds no file's bytes, and they are read as it runs (engine/runner.py).
            model_request.input = model_request.input[: len(model_request.input) - len(model_input)] + model_input
        else:
            model_request.input = await file_inputs.resolve(model_request.input, param=None)
        if compaction_plan is not None:
            # Compacted as the response runs (engine/turns.py), from this marker.
            model_request.input = compaction_plan.marked(model_request.input, lead=len(template_first))
        plan.sent_ids = sent_ids(sent, input_items)
        plan.approved = approved_calls(model_request.input, input_items, plan)
        return PreparedResponse(
            project=project,
            backend=backend,
            model_request=model_request,
            response=response_object(body, model_id, choice),
            # A compaction_trigger asks for something; it is no item to keep (OpenAI lists none).
            input_items=[item for item in input_items if item.get("type") != compaction.MARKER],
            store=body.store is not False,
            tools=plan,
        )

    def earlier_items(
        self, body: CreateResponseBody, project: str, connection: ConnectionCache | None = None
    ) -> AsyncGenerator[list[dict], int | None] | None:
        """The history the response continues, newest first, a batch at a time; None if it has none."""
        if body.previous_response_id:
            remembered = connection.earlier_items(body.previous_response_id) if connection else None
            return remembered or self.responses.chain_items(project, body.previous_response_id)
        if body.conversation_id:
            return self.conversations.items_newest_first(project, body.conversation_id, param="conversation")
        return None
