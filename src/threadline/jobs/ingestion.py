"""Ingestion inside every `threadline serve`: files attached to vector stores are read,
chunked, embedded and indexed by whichever process claims them first.

A file is claimed from the queue in the database (store/ingestion.py) and worked on here:
its chunks are embedded and written a batch at a time, each batch in a short transaction
that only its owner can make, and it is finished (completed, counted, searchable) in one
more: so a file is counted once even when a process dies halfway and another takes it up
(starting by removing what the first wrote), and a cancel or delete made meanwhile wins.
Parsing, chunking and building rows are CPU-bound and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial

import numpy as np

from threadline.config import WorkerSettings
from threadline.retrieval.chunking import chunk
from threadline.retrieval.embedders import Embedder, EmbeddingError
from threadline.retrieval.index import ChunkIndex
from threadline.retrieval.parsing import InvalidFile, UnsupportedFile, extract_text
from threadline.store.chunks import ROWS_PER_WRITE
from threadline.store.files import FileStore
from threadline.store.ingestion import ClaimedFile, EmbedderMismatch, IngestionQueue

log = logging.getLogger("threadline")

# Chunks embedded in one call: bounds an upstream request, and how long a cancel waits.
EMBED_BATCH = 64
# Runs a file gets when its embedder keeps failing transiently (a timeout, a 5xx).
MAX_ATTEMPTS = 3


class FileFailed(Exception):
    """A file that cannot be ingested, with its `last_error` code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Ingestion:
    def __init__(
        self, queue: IngestionQueue, files: FileStore, embedder: Embedder, index: ChunkIndex, *, owner: str, settings: WorkerSettings
    ) -> None:
        self.queue = queue
        self.files = files
        self.embedder = embedder
        self.index = index
        self.owner = owner
        self.settings = settings
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._released_at = 0.0
        # Set when an ingestion ended in an error that may have left its file owned here.
        self._holding = False

    def wake(self) -> None:
        """Files were queued: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._claim_loop())

    async def stop(self) -> None:
        """Stop at once; a file half done is given back for another process to take up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.queue.release(self.owner)

    async def _claim_loop(self) -> None:
        while True:
            try:
                await self._release_abandoned()
                if self._holding:
                    await self.queue.release(self.owner)
                    self._holding = False
                claimed = await self.queue.claim(self.owner)
                if claimed is not None:
                    await self.ingest(claimed)
                    continue
            except Exception:
                log.exception("ingesting a file failed")
                self._holding = True
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)

    async def _release_abandoned(self) -> None:
        """Files left by processes that stopped heartbeating, given back, every heartbeat."""
        if time.monotonic() - self._released_at < self.settings.heartbeat_s:
            return
        self._released_at = time.monotonic()
        if released := await self.queue.release_abandoned():
            log.warning("%d file(s) left in ingestion by a stopped process are taken up again", released)

    async def ingest(self, claimed: ClaimedFile) -> None:
        """Read, chunk, embed and index one claimed file, and finish it completed or failed.

        Its old chunks go first, then its new ones are embedded and written a batch at a time,
        each batch in a short transaction of its own; the last transaction only marks it
        completed, which is when search starts to see its chunks."""
        label = self.embedder.name  # what a vector store records: provider and model
        try:
            if claimed.expired(time.time()):
                # Attached before it expired; the worker's sweep removes it soon, with its chunks.
                raise FileFailed("invalid_file", "The file has expired.")
            recorded = await self.queue.recorded_embedder(claimed.vector_store_id)
            if recorded is not None and recorded != label:
                raise _embedder_mismatch(recorded, label)
            chunks = await self._chunks(claimed)
            if not await self.queue.clear_chunks(claimed, self.owner):
                return  # cancelled, deleted or attached anew meanwhile
            usage_bytes = 0
            for start in range(0, len(chunks), ROWS_PER_WRITE):
                texts = chunks[start : start + ROWS_PER_WRITE]
                embeddings = await self._embed(claimed, texts, first=not start)
                if embeddings is None:
                    return
                rows = await self.index.rows(claimed.vector_store_id, claimed.file_id, texts, embeddings, start)
                if not await self.queue.write_chunks(claimed, self.owner, partial(self.index.insert, rows=rows)):
                    return
                usage_bytes += rows.usage_bytes
            await self.queue.complete(claimed, self.owner, usage_bytes=usage_bytes, embedder=label)
        except EmbedderMismatch as mismatch:
            await self.queue.fail(claimed, self.owner, "server_error", _embedder_mismatch(mismatch.recorded, label).message)
        except FileFailed as failure:
            await self.queue.fail(claimed, self.owner, failure.code, failure.message)
        except EmbeddingError as error:
            await self._embedding_failed(claimed, error)
        except Exception as error:
            log.exception("ingesting file %s into vector store %s failed", claimed.file_id, claimed.vector_store_id)
            await self.queue.fail(claimed, self.owner, "server_error", f"The file could not be processed: {error or type(error).__name__}")

    async def _embedding_failed(self, claimed: ClaimedFile, error: EmbeddingError) -> None:
        """A transient failure (a timeout, a 5xx) gives the file back to be tried again after a
        back-off that doubles each time; after MAX_ATTEMPTS, or any other failure, it fails."""
        attempt = claimed.attempts + 1
        if error.transient and attempt < MAX_ATTEMPTS:
            delay = self.settings.ingest_retry_s * 2 ** (attempt - 1)
            log.warning("embedding file %s failed (%s); it is tried again in %g s", claimed.file_id, error, delay)
            await self.queue.retry_later(claimed, self.owner, time.time() + delay)
            return
        await self.queue.fail(claimed, self.owner, "server_error", f"The file could not be embedded: {error}")

    async def _chunks(self, claimed: ClaimedFile) -> list[str]:
        data = await self.files.content(claimed.file_id)
        try:
            text = await asyncio.to_thread(extract_text, claimed.filename, data)
        except UnsupportedFile as error:
            raise FileFailed("unsupported_file", str(error)) from error
        except InvalidFile as error:
            raise FileFailed("invalid_file", str(error)) from error
        del data
        sizes = claimed.chunking_strategy["static"]
        chunks = await asyncio.to_thread(chunk, text, sizes["max_chunk_size_tokens"], sizes["chunk_overlap_tokens"])
        if not chunks:
            raise FileFailed("invalid_file", "The file has no text to index (a PDF of scanned pages, or an empty file).")
        return chunks

    async def _embed(self, claimed: ClaimedFile, chunks: list[str], *, first: bool) -> np.ndarray | None:
        """The chunks' embeddings, EMBED_BATCH at a time; None as soon as the file is no longer ours."""
        batches = []
        for start in range(0, len(chunks), EMBED_BATCH):
            if (start or not first) and not await self.queue.still_owned(claimed, self.owner):
                return None
            batches.append(await self.embedder.embed(chunks[start : start + EMBED_BATCH]))
        return np.concatenate(batches).astype(np.float32, copy=False)


def _embedder_mismatch(recorded: str, label: str) -> FileFailed:
    return FileFailed(
        "server_error",
        f"This vector store's chunks were embedded with {recorded}, but this server embeds with {label}; "
        "a vector store's files must all be embedded by one embedder. Create a new vector store for this embedder.",
    )
