"""A response's server-side tools while it runs: each call goes to its kind (MCP servers, web
searches, file searches), and what the model reads of it is kept for its next turn."""

from __future__ import annotations

import logging
from collections.abc import Callable

from threadline.config import ToolsSettings
from threadline.ops.metrics import tool_call_ended
from threadline.retrieval.search import Searcher
from threadline.spec.stream import Call, ResponseEvents
from threadline.store.vector_stores import VectorStoreStore
from threadline.tools.citations import Source, citations
from threadline.tools.file_searches import FileSearches
from threadline.tools.mcp_servers import McpServers
from threadline.tools.plan import Served, ToolPlan
from threadline.tools.search_providers import search_provider
from threadline.tools.secrets import SecretBox
from threadline.tools.web_searches import WebSearches

log = logging.getLogger("threadline")


class ToolServices:
    """What running server-side tools takes, shared by the process's responses."""

    def __init__(
        self, settings: ToolsSettings, secrets: SecretBox, searcher: Searcher | None = None, vector_stores: VectorStoreStore | None = None
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.search = search_provider(settings.web_search)
        self.searcher = searcher  # the vector stores' search, for file_search tools
        self.vector_stores = vector_stores  # a search makes them active, as the Vector Stores API's does
        self._told_no_search = False

    @classmethod
    def unconfigured(cls) -> ToolServices:
        """No search provider, no vector search, no encryption keys."""
        return cls(ToolsSettings(), SecretBox([]))

    def served(self) -> Served:
        return Served(web_search=self.web_search_served(), file_search=self.searcher is not None)

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
    def __init__(
        self, plan: ToolPlan, services: ToolServices, events: ResponseEvents, publish: Callable[[list[dict]], None], project: str | None = None
    ) -> None:
        self.plan = plan
        self.events = events
        self._publish = publish
        self.outputs: dict[str, str] = {}  # what the model read of each call run here, by item id
        self.call_ids: dict[str, str] = {}  # the id the model gave each call it made here, by item id
        # What the response's searches gave the model, numbered across them all, for its answer to cite.
        self.sources: list[Source] = []
        self.mcp = McpServers(plan, services.settings.mcp, events, publish, self.outputs)
        self.web_searches = (
            WebSearches(plan.web_search, services.search, services.settings.web_search, events, publish, self.outputs, self.sources)
            if plan.web_search is not None and services.search is not None
            else None
        )
        self.file_searches = (
            FileSearches(plan.file_search, services.searcher, services.vector_stores, project, events, publish, self.outputs, self.sources)
            if plan.file_search is not None and services.searcher is not None and project is not None
            else None
        )
        events.route = plan.targets.get
        if plan.web_search is not None or plan.file_search is not None:
            events.cite = lambda text: citations(text, self.sources)

    async def run(self, call: Call) -> None:
        self.call_ids[call.item["id"]] = call.call_id
        if call.kind == "mcp":
            await self.mcp.run(call.item)
        elif call.kind == "file_search":
            if self.file_searches is not None:
                await self.file_searches.run(call.item)
            else:  # resumed by a process with no vector search
                self.refuse(call, "This call was not made: file search is not configured on this server.")
        elif self.web_searches is not None:
            await self.web_searches.run(call.item)
        else:  # resumed by a process with no search provider
            self.refuse(call, "This call was not made: no web search provider is configured on this server.")
        tool_call_ended(call.item)

    def refuse(self, call: Call, reason: str) -> None:
        """A call that is not run (past max_tool_calls, or of a tool not offered): it ends
        failed, and the model reads why."""
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

    async def aclose(self) -> None:
        await self.mcp.aclose()
