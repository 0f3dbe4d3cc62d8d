"""A response's web searches, and the citations of its answer: each search run on the
configured provider, its item and events as OpenAI shows them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from threadline.config import WebSearchSettings
from threadline.spec.stream import ResponseEvents
from threadline.tools.citations import Source, results_for_model
from threadline.tools.search_providers import SearchFailed, SearchOptions, SearchProvider
from threadline.ops import tracing

log = logging.getLogger("threadline")


class WebSearches:
    def __init__(
        self,
        options: dict,
        provider: SearchProvider,
        settings: WebSearchSettings,
        events: ResponseEvents,
        publish: Callable[[list[dict]], None],
        outputs: dict[str, str],
        sources: list[Source],
    ) -> None:
        self.options = options  # the request's web_search tool
        self.provider = provider
        self.settings = settings
        self.events = events
        self._publish = publish
        self._outputs = outputs  # what the model reads of each call, by item id
        self._sources = sources  # of every search of the response so far, as the model numbers them

    @tracing.tool_span
    async def run(self, item: dict) -> None:
        """Run a web_search_call: its sources, and the numbered results the model reads."""
        query = item["action"]["query"]
        self._publish([self.events.item_event(item, "response.web_search_call.in_progress"), self.events.item_event(item, "response.web_search_call.searching")])
        try:
            results = await asyncio.wait_for(self.provider.search(query, search_options(self.options, self.settings.max_results)), self.settings.timeout_s)
        except (SearchFailed, asyncio.TimeoutError) as error:
            log.warning("a web search failed: %s", error if isinstance(error, SearchFailed) else "it timed out")
            item["status"] = "failed"
            self._outputs[item["id"]] = "The web search failed; answer without it, and say so."
            self._publish(self.events.call_done(item))
            return
        item["action"]["sources"] = [{"type": "url", "url": result.url} for result in results]
        item["status"] = "completed"
        # The model cites results by their number across every search of this response.
        self._outputs[item["id"]] = results_for_model(query, results, first_number=len(self._sources) + 1)
        self._sources += results
        self._publish(self.events.call_done(item, "response.web_search_call.completed"))


def search_options(options: dict, max_results: int) -> SearchOptions:
    return SearchOptions(
        max_results=max_results,
        allowed_domains=(options.get("filters") or {}).get("allowed_domains") or None,
        user_location=options.get("user_location"),
        search_context_size=options.get("search_context_size"),
        live=options.get("external_web_access", True) is not False,
    )
