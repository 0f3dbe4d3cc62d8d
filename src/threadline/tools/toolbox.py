"""A response's server-side tools while it runs: its MCP servers' tools made known to the
model, and each call run, its item and events kept as OpenAI shows them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from threadline.config import ToolsSettings
from threadline.spec.stream import Call, ResponseEvents
from threadline.tools.citations import citations, results_for_model
from threadline.tools.mcp_client import McpConnections, McpServer, McpUnavailable
from threadline.tools.plan import ApprovedCall, McpServerPlan, Target, ToolPlan
from threadline.tools.search_providers import SearchFailed, SearchOptions, SearchResult, search_provider
from threadline.tools.secrets import SecretBox

log = logging.getLogger("threadline")


class ToolServices:
    """What running server-side tools takes, shared by the process's responses."""

    def __init__(self, settings: ToolsSettings, secrets: SecretBox) -> None:
        self.settings = settings
        self.secrets = secrets
        self.search = search_provider(settings.web_search)
        self._told_no_search = False

    @classmethod
    def unconfigured(cls) -> ToolServices:
        """No search provider, no encryption keys: the defaults of an empty config."""
        return cls(ToolsSettings(), SecretBox([]))

    def web_search_served(self) -> bool:
        """Whether a web_search tool is run; the first time one is not, the log says so."""
        if self.search is None and not self._told_no_search:
            self._told_no_search = True
            log.warning("web_search tools are left out of what models see: no [tools.web_search] provider is configured")
        return self.search is not None

    async def aclose(self) -> None:
        if self.search is not None:
            await self.search.aclose()


class Toolbox:
    def __init__(self, plan: ToolPlan, services: ToolServices, events: ResponseEvents, publish: Callable[[list[dict]], None]) -> None:
        self.plan = plan
        self.services = services
        self.events = events
        self._publish = publish
        self._connections = McpConnections(services.settings.mcp.allowed_hosts, services.settings.mcp.call_timeout_s)
        self.outputs: dict[str, str] = {}  # what the model read of each call run here, by item id
        self.call_ids: dict[str, str] = {}  # the id the model gave each call it made here, by item id
        self._sources: list[SearchResult] = []
        events.route = plan.targets.get

    async def open(self, earlier_items: list[dict]) -> None:
        """Make each MCP server's tools known to the model: as an earlier turn of the
        conversation or chain listed them, else listed now (a server that cannot be reached
        gets a failed listing, and the response goes on without its tools)."""
        for server in self.plan.mcp_servers:
            tools = earlier_listing(earlier_items, server.label)
            if tools is None:
                tools = await self._list(server)
            for tool in tools:
                if server.allows(tool):
                    target = Target("mcp", tool["name"], server_label=server.label, needs_approval=server.needs_approval(tool))
                    definition = {"type": "function", "description": tool.get("description") or "", "parameters": tool.get("input_schema") or {"type": "object"}}
                    self.plan.model_tools.append(self.plan.add(target, definition))

    async def _list(self, server: McpServerPlan) -> list[dict]:
        item = {"type": "mcp_list_tools", "server_label": server.label, "tools": [], "error": None}
        self._publish(self.events.add_item(item) + [self.events.item_event(item, "response.mcp_list_tools.in_progress")])
        self.events.call_running(item)
        try:
            tools = await self._connections.list_tools(mcp_server(server))
        except McpUnavailable as error:
            item["error"] = str(error)
            self._publish(self.events.call_done(item, "response.mcp_list_tools.failed"))
            return []
        item["tools"] = [tool for tool in tools if server.allows(tool)]
        self._publish(self.events.call_done(item, "response.mcp_list_tools.completed"))
        return item["tools"]

    def add_approved(self, approved: ApprovedCall) -> dict:
        """Add the call the client approved to the output (an mcp_call that names its approval
        request), to be run with `run_approved` once the response is stored with it."""
        item = {
            "type": "mcp_call",
            "server_label": approved.server_label,
            "name": approved.name,
            "arguments": approved.arguments,
            "status": "in_progress",
            "output": None,
            "error": None,
            "approval_request_id": approved.approval_request_id,
        }
        events = self.events.add_item(item) + [self.events.item_event(item, "response.mcp_call.in_progress")]
        events.append(self.events.item_event(item, "response.mcp_call_arguments.done", arguments=item["arguments"]))
        self._publish(events)
        self.events.call_running(item)
        return item

    async def run_approved(self, item: dict) -> None:
        """Run an approved call added with `add_approved`."""
        await self._mcp(item)

    async def run(self, call: Call) -> None:
        self.call_ids[call.item["id"]] = call.call_id
        if call.kind == "mcp":
            await self._mcp(call.item)
        else:
            await self._search(call.item)

    def refuse(self, call: Call, reason: str) -> None:
        """A call that is not run (the response reached max_tool_calls): it ends failed, and the model reads why."""
        item = call.item
        self.call_ids[item["id"]] = call.call_id
        if item["type"] == "mcp_call":
            item["error"] = {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": reason}]}
            event = "response.mcp_call.failed"
        else:
            event = None
        item["status"] = "failed"
        self.outputs[item["id"]] = reason
        self._publish(self.events.call_done(item, event))

    async def _mcp(self, item: dict) -> None:
        server = self.plan.server(item["server_label"])
        try:
            arguments = orjson.loads(item["arguments"] or "{}")
            if not isinstance(arguments, dict):
                raise ValueError
        except ValueError:
            result_output, error = None, {"type": "mcp_protocol_error", "code": -32602, "message": "The arguments are not a JSON object."}
        else:
            result = await self._connections.call_tool(mcp_server(server), item["name"], arguments)
            result_output, error = result.output, result.error
        item.update(output=result_output, error=error, status="failed" if error else "completed")
        self._publish(self.events.call_done(item, "response.mcp_call.failed" if error else "response.mcp_call.completed"))

    async def _search(self, item: dict) -> None:
        options = self.plan.web_search or {}
        query = item["action"]["query"]
        self._publish([self.events.item_event(item, "response.web_search_call.in_progress"), self.events.item_event(item, "response.web_search_call.searching")])
        try:
            results = await asyncio.wait_for(
                self.services.search.search(query, search_options(options, self.services.settings.web_search.max_results)),
                self.services.settings.web_search.timeout_s,
            )
        except (SearchFailed, asyncio.TimeoutError) as error:
            log.warning("a web search failed: %s", error if isinstance(error, SearchFailed) else "it timed out")
            item["status"] = "failed"
            self.outputs[item["id"]] = "The web search failed; answer without it, and say so."
            self._publish(self.events.call_done(item))
            return
        item["action"]["sources"] = [{"type": "url", "url": result.url} for result in results]
        item["status"] = "completed"
        # The model cites results by their number across every search of this response.
        self.outputs[item["id"]] = results_for_model(query, results, first_number=len(self._sources) + 1)
        self._sources += results
        self.events.cite = lambda text: citations(text, self._sources)
        self._publish(self.events.call_done(item, "response.web_search_call.completed"))

    async def aclose(self) -> None:
        await self._connections.aclose()


def mcp_server(server: McpServerPlan) -> McpServer:
    return McpServer(label=server.label, url=server.url, headers=server.headers, authorization=server.authorization)


def earlier_listing(items: list[dict], label: str) -> list[dict] | None:
    """The tools an earlier turn listed for a server, if one did (and could)."""
    for item in reversed(items):
        if item.get("type") == "mcp_list_tools" and item.get("server_label") == label and not item.get("error"):
            return item.get("tools") or []
    return None


def search_options(options: dict, max_results: int) -> SearchOptions:
    return SearchOptions(
        max_results=max_results,
        allowed_domains=(options.get("filters") or {}).get("allowed_domains") or None,
        user_location=options.get("user_location"),
        search_context_size=options.get("search_context_size"),
        live=options.get("external_web_access", True) is not False,
    )
