"""A response's file searches: each call searches the request's vector stores, its item and
events as OpenAI shows them, and what the model reads is the passages found, numbered so that
its answer can cite them (tools/citations.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import select

from threadline.errors import APIError, invalid
from threadline.retrieval.embedders import EmbeddingError
from threadline.retrieval.search import Searcher
from threadline.spec.request import CreateResponseBody
from threadline.spec.stream import ResponseEvents
from threadline.store.database import Database
from threadline.store.tables import vector_stores
from threadline.store.vector_stores import VectorStoreStore, expired
from threadline.tools.citations import FileSource, Source, file_results_for_model
from threadline.tools.plan import ToolPlan
from threadline.ops import tracing

log = logging.getLogger("threadline")

# OpenAI leaves the default unsaid; a small model's context holds ten passages comfortably.
DEFAULT_MAX_NUM_RESULTS = 10
FAILED = "The file search failed; answer without it, and say so."


class FileSearches:
    def __init__(
        self,
        options: dict,
        searcher: Searcher,
        vector_stores: VectorStoreStore | None,
        project: str,
        events: ResponseEvents,
        publish: Callable[[list[dict]], None],
        outputs: dict[str, str],
        sources: list[Source],
    ) -> None:
        self.options = options  # the request's file_search tool
        self.searcher = searcher
        self.vector_stores = vector_stores
        self.project = project
        self.events = events
        self._publish = publish
        self._outputs = outputs  # what the model reads of each call, by item id
        self._sources = sources  # of every search of the response so far, as the model numbers them

    @tracing.tool_span
    async def run(self, item: dict) -> None:
        """Run a file_search_call: its results, and the numbered passages the model reads."""
        queries = item["queries"]
        self._publish([self.events.item_event(item, "response.file_search_call.in_progress"), self.events.item_event(item, "response.file_search_call.searching")])
        try:
            results = await self.searcher.search(
                self.project,
                self.options["vector_store_ids"],
                queries,
                filters=self.options.get("filters"),
                max_num_results=self.options.get("max_num_results", DEFAULT_MAX_NUM_RESULTS),
                ranking_options=self.options.get("ranking_options"),
            )
            if self.vector_stores is not None:
                for vector_store_id in self.options["vector_store_ids"]:  # searched: active now, expiring later
                    await self.vector_stores.touch(self.project, vector_store_id)
        except (EmbeddingError, APIError) as error:
            # The model reads that the search failed, and answers without it.
            log.warning("a file search failed: %s", error)
            item["status"] = "failed"
            self._outputs[item["id"]] = FAILED
            self._publish(self.events.call_done(item))
            return
        item["results"] = [
            {"file_id": result.file_id, "filename": result.filename, "score": float(result.score), "text": result_text(result.content), "attributes": result.attributes}
            for result in results
        ]
        item["status"] = "completed"
        passages = [FileSource(result["file_id"], result["filename"], result["text"]) for result in item["results"]]
        # The model cites passages by their number across every search of this response.
        self._outputs[item["id"]] = file_results_for_model(queries, passages, first_number=len(self._sources) + 1)
        self._sources += passages
        self._publish(self.events.call_done(item, "response.file_search_call.completed"))


def result_text(content: list[dict]) -> str:
    return "\n".join(part["text"] for part in content if part.get("type") == "text")


async def check_vector_stores(database: Database, project: str, plan: ToolPlan, body: CreateResponseBody) -> None:
    """The file_search tool's vector stores are the project's and not expired; else a 400
    naming those that are not (nothing is stored before this is checked)."""
    if plan.file_search is None:
        return
    wanted = plan.file_search["vector_store_ids"]
    async with database.read() as connection:
        rows = (await connection.execute(select(vector_stores.c.id, vector_stores.c.expires_at).where(vector_stores.c.project == project, vector_stores.c.id.in_(wanted)))).all()
    index = next((index for index, tool in enumerate(body.tools or []) if tool.type == "file_search"), None)
    param = f"tools[{index}].vector_store_ids" if index is not None else "input"  # else listed in an additional_tools item
    found = {row.id: row.expires_at for row in rows}
    missing = [vector_store_id for vector_store_id in wanted if vector_store_id not in found]
    if missing:
        raise invalid(f"{vector_stores_named(missing)} not found.", param=param)
    now = time.time()
    gone = [vector_store_id for vector_store_id, expires_at in found.items() if expired(expires_at, now)]
    if gone:
        raise invalid(f"{vector_stores_named(gone)} expired. Create a new vector store and try again.", param=param)


def vector_stores_named(ids: list[str]) -> str:
    """"Vector store 'vs_a'", or "Vector stores 'vs_a', 'vs_b'": the subject of a refusal."""
    return ("Vector store " if len(ids) == 1 else "Vector stores ") + ", ".join(f"'{vector_store_id}'" for vector_store_id in ids)
