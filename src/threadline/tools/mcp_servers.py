"""A response's MCP servers: their tools made known to the model, and each call run, its
item and events as OpenAI shows them."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from threadline.config import McpSettings
from threadline.spec.stream import ResponseEvents
from threadline.tools.mcp_client import McpConnections, McpServer, McpUnavailable
from threadline.tools.plan import ApprovedCall, McpServerPlan, Target, ToolPlan
from threadline.ops import tracing


class McpServers:
    def __init__(
        self, plan: ToolPlan, settings: McpSettings, events: ResponseEvents, publish: Callable[[list[dict]], None], outputs: dict[str, str]
    ) -> None:
        self.plan = plan
        self.events = events
        self._publish = publish
        self._outputs = outputs  # what the model reads of each call, by item id
        self._connections = McpConnections(settings.allowed_hosts, settings.call_timeout_s)

    async def open(self, earlier_items: list[dict]) -> None:
        """Make each server's tools known to the model: as an earlier turn of the conversation
        or chain listed them, else listed now (a server that cannot be reached gets a failed
        listing, and the response goes on without its tools)."""
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
        request), to be run with `run` once the response is stored with it."""
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

    @tracing.tool_span
    async def run(self, item: dict) -> None:
        """Run an mcp_call: its output or error, and what the model reads of it."""
        server = self.plan.server(item["server_label"])
        try:
            arguments = orjson.loads(item["arguments"] or "{}")
            if not isinstance(arguments, dict):
                raise ValueError
        except ValueError:
            output, error = None, {"type": "mcp_protocol_error", "code": -32602, "message": "The arguments are not a JSON object."}
        else:
            result = await self._connections.call_tool(mcp_server(server), item["name"], arguments)
            output, error = result.output, result.error
        item.update(output=output, error=error, status="failed" if error else "completed")
        self._publish(self.events.call_done(item, "response.mcp_call.failed" if error else "response.mcp_call.completed"))

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
