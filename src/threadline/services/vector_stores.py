"""The Vector Stores API's work: vector stores, their files and file batches, and search,
for the caller's project. Attaching a file queues it; ingestion (jobs/ingestion.py) in
whichever process is free does the rest."""

from __future__ import annotations

from collections.abc import Sequence

from threadline.errors import invalid
from threadline.ids import new_id
from threadline.jobs.ingestion import Ingestion
from threadline.retrieval.chunking import static_strategy
from threadline.retrieval.embedders import EmbeddingError
from threadline.retrieval.index import ChunkIndex
from threadline.retrieval.search import Searcher
from threadline.services.embeddings import upstream_failed
from threadline.store.pagination import Page
from threadline.store.vector_stores import Attachment, Listing, VectorStoreStore


def file_strategy(chunking_strategy: dict | None) -> dict:
    """A request's chunking strategy as a file keeps it: `auto` (or none) is 800/400 tokens."""
    if chunking_strategy is None or chunking_strategy["type"] == "auto":
        return static_strategy()
    sizes = chunking_strategy["static"]
    return static_strategy(sizes["max_chunk_size_tokens"], sizes["chunk_overlap_tokens"])


class VectorStoresService:
    def __init__(self, *, store: VectorStoreStore, index: ChunkIndex, searcher: Searcher, ingestion: Ingestion) -> None:
        self.store = store
        self.index = index
        self.searcher = searcher
        self.ingestion = ingestion

    # -- vector stores -----------------------------------------------------------------

    async def create(
        self,
        project: str,
        *,
        name: str | None,
        description: str | None,
        file_ids: Sequence[str],
        chunking_strategy: dict | None,
        expires_after: dict | None,
        metadata: dict | None,
    ) -> dict:
        strategy = file_strategy(chunking_strategy)
        attachments = [Attachment(file_id, {}, strategy) for file_id in _unique(file_ids)]
        data = {"name": name, "description": description, "expires_after": expires_after, "metadata": metadata or {}}
        created = await self.store.create(project, new_id("vs"), data, attachments, file_param="file_ids[{index}]")
        if attachments:
            self.ingestion.wake()
        return created

    async def retrieve(self, project: str, vector_store_id: str) -> dict:
        return await self.store.get(project, vector_store_id)

    async def list(self, project: str, listing: Listing) -> Page:
        return await self.store.list(project, listing)

    async def modify(self, project: str, vector_store_id: str, changes: dict) -> dict:
        """Replace name, expires_after (null: never expires) and metadata (null: none), those given."""
        if "metadata" in changes:
            changes["metadata"] = changes["metadata"] or {}
        return await self.store.modify(project, vector_store_id, changes)

    async def delete(self, project: str, vector_store_id: str) -> None:
        """Delete the vector store: its files withdrawn, their chunks removed a batch at a time,
        then the store and its files; the Files themselves remain."""
        await self.store.withdraw(project, vector_store_id)
        await self.index.clear(vector_store_id)
        await self.store.delete(project, vector_store_id)

    # -- files ---------------------------------------------------------------------------

    async def attach_file(
        self, project: str, vector_store_id: str, file_id: str, *, attributes: dict | None, chunking_strategy: dict | None
    ) -> dict:
        (attached,) = await self.store.attach(
            project, vector_store_id, [Attachment(file_id, attributes or {}, file_strategy(chunking_strategy))]
        )
        self.ingestion.wake()
        return attached

    async def retrieve_file(self, project: str, vector_store_id: str, file_id: str) -> dict:
        return await self.store.get_file(project, vector_store_id, file_id)

    async def list_files(self, project: str, vector_store_id: str, listing: Listing, *, status: str | None) -> Page:
        return await self.store.list_files(project, vector_store_id, listing, status=status)

    async def update_file(self, project: str, vector_store_id: str, file_id: str, attributes: dict | None) -> dict:
        return await self.store.update_attributes(project, vector_store_id, file_id, attributes or {})

    async def delete_file(self, project: str, vector_store_id: str, file_id: str) -> None:
        """Take the file and its chunks out of the vector store (the chunks a batch at a time);
        the File itself remains."""
        await self.store.withdraw(project, vector_store_id, file_id)
        await self.index.clear(vector_store_id, file_id)
        await self.store.delete_file(project, vector_store_id, file_id)

    async def file_content(self, project: str, vector_store_id: str, file_id: str) -> dict:
        """The file's parsed text, as the chunks it was indexed in."""
        await self.store.get_file(project, vector_store_id, file_id)
        chunks = await self.index.chunks(vector_store_id, file_id)
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": text} for text in chunks],
            "has_more": False,
            "next_page": None,
        }

    # -- batches -------------------------------------------------------------------------

    async def create_batch(
        self,
        project: str,
        vector_store_id: str,
        *,
        file_ids: Sequence[str] | None,
        files: Sequence[dict] | None,
        attributes: dict | None,
        chunking_strategy: dict | None,
    ) -> dict:
        """Attach files as one batch: `file_ids` with the batch's attributes and strategy, or
        `files`, each with its own (the batch's are then ignored, as OpenAI does)."""
        if (file_ids is None) == (files is None):
            raise invalid("Exactly one of 'file_ids' or 'files' must be given.", param="file_ids" if file_ids is not None else None)
        if files is not None:
            attachments = [
                Attachment(file["file_id"], file.get("attributes") or {}, file_strategy(file.get("chunking_strategy"))) for file in files
            ]
            param = "files[{index}].file_id"
        else:
            strategy = file_strategy(chunking_strategy)
            attachments = [Attachment(file_id, attributes or {}, strategy) for file_id in file_ids or ()]
            param = "file_ids[{index}]"
        first_of_each: dict[str, Attachment] = {}
        for attachment in attachments:
            first_of_each.setdefault(attachment.file_id, attachment)
        attachments = list(first_of_each.values())
        batch_id = new_id("vsfb")
        await self.store.attach(project, vector_store_id, attachments, batch_id=batch_id, file_param=param)
        self.ingestion.wake()
        return await self.store.get_batch(project, vector_store_id, batch_id)

    async def retrieve_batch(self, project: str, vector_store_id: str, batch_id: str) -> dict:
        return await self.store.get_batch(project, vector_store_id, batch_id)

    async def cancel_batch(self, project: str, vector_store_id: str, batch_id: str) -> dict:
        return await self.store.cancel_batch(project, vector_store_id, batch_id)

    async def list_batch_files(
        self, project: str, vector_store_id: str, batch_id: str, listing: Listing, *, status: str | None
    ) -> Page:
        return await self.store.list_files(project, vector_store_id, listing, status=status, batch_id=batch_id)

    # -- search --------------------------------------------------------------------------

    async def search(
        self,
        project: str,
        vector_store_id: str,
        queries: list[str],
        *,
        filters: dict | None,
        max_num_results: int,
        ranking_options: dict | None,
    ) -> dict:
        """The chunks that best answer the queries, best first; the search makes the store active.
        The searcher checks `filters` and `ranking_options` (a 400 before anything is written);
        an embedder that fails makes it a 502, as /v1/embeddings answers."""
        await self.store.check_searchable(project, vector_store_id)
        try:
            results = await self.searcher.search(
                project, [vector_store_id], queries, filters=filters, max_num_results=max_num_results, ranking_options=ranking_options
            )
        except EmbeddingError as error:
            raise upstream_failed(error) from None
        await self.store.touch(project, vector_store_id)
        return {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": [result.to_api() for result in results],
            "has_more": False,
            "next_page": None,
        }


def _unique(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))
