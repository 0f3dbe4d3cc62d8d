"""Each vector store's embeddings kept in this process as one float32 matrix, between searches.

Reading 100,000 embeddings from the database took most of a search's time; comparing them in
numpy takes a few milliseconds. A copy is used while the store's version (chunk_versions, moved
on by triggers whenever its chunks change, in any process) is the one it was read at, so a
chunk added or removed by another process is seen by the next search here. The version is read
before the chunks: a change committed in between makes the copy look older than it is, never newer.

Which of the copied chunks a search may return (completed files of the project, those a filter
lets through) is decided per search: a file's status changes without its chunks changing. Its
project does not change (a file attached anew to another project's store would be a new row,
its chunks new chunks), so it is copied with them.
Least recently used stores leave first when the copies would take more than BUDGET_BYTES; a
store larger than that alone is not kept (the searcher compares it as it streams by).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.store.tables import chunk_versions, chunks, vector_store_files

BUDGET_BYTES = 512 * 2**20
ROWS_PER_READ = 4096


@dataclass(frozen=True)
class StoreEmbeddings:
    """One vector store's chunks of one embedding length, in the order read."""

    version: int
    ids: np.ndarray  # int64 chunk ids
    file_ids: list[str]  # the distinct files
    file_projects: list[str]  # each file's project, as vector_store_files has it
    projects: frozenset[str]  # all of them, to see at once when every file is of the project searching
    file_of_row: np.ndarray  # each row's file, an index into file_ids
    matrix: np.ndarray  # float32, a row per chunk

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.file_of_row.nbytes + self.matrix.nbytes


# The stores' versions; built once, as building it cost about as much as running it.
_VERSIONS = select(chunk_versions.c.vector_store_id, chunk_versions.c.version).where(
    chunk_versions.c.vector_store_id.in_(bindparam("vector_store_ids", expanding=True))
)


class EmbeddingCache:
    def __init__(self, budget_bytes: int = BUDGET_BYTES) -> None:
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[tuple[str, int], StoreEmbeddings] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        """How many stores' embeddings are kept."""
        return len(self._entries)

    async def get(self, connection: AsyncConnection, vector_store_ids: tuple[str, ...], dimensions: int) -> dict[str, StoreEmbeddings] | None:
        """Each store's current embeddings of `dimensions` floats, read again where they changed;
        None when they would not fit in the budget."""
        rows = await connection.execute(_VERSIONS, {"vector_store_ids": list(vector_store_ids)})
        versions = {vector_store_id: version for vector_store_id, version in rows}
        found: dict[str, StoreEmbeddings] = {}
        for vector_store_id in vector_store_ids:
            key, version = (vector_store_id, dimensions), versions.get(vector_store_id, 0)
            entry = self._entries.get(key)
            if entry is None or entry.version != version:
                entry = await self._read(connection, vector_store_id, dimensions, version)
                if entry is None:
                    return None
                self._keep(key, entry)
            self._entries.move_to_end(key)
            found[vector_store_id] = entry
        return found

    async def _read(self, connection: AsyncConnection, vector_store_id: str, dimensions: int, version: int) -> StoreEmbeddings | None:
        comparable = (chunks.c.vector_store_id == vector_store_id, func.length(chunks.c.embedding) == 4 * dimensions)
        count = (await connection.execute(select(func.count()).select_from(chunks).where(*comparable))).scalar_one()
        if count * (4 * dimensions + 12) > self.budget_bytes:
            return None
        result = await connection.stream(
            select(chunks.c.id, chunks.c.file_id, vector_store_files.c.project, chunks.c.embedding)
            .join_from(
                chunks,
                vector_store_files,
                and_(vector_store_files.c.vector_store_id == chunks.c.vector_store_id, vector_store_files.c.file_id == chunks.c.file_id),
            )
            .where(*comparable)
        )
        copy = _Copy(count, dimensions)
        async for block in result.partitions(ROWS_PER_READ):
            copy.add(block)
        return copy.done(version)

    def _keep(self, key: tuple[str, int], entry: StoreEmbeddings) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= old.nbytes
        while self._entries and self._size + entry.nbytes > self.budget_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= evicted.nbytes
        self._entries[key] = entry
        self._size += entry.nbytes


class _Copy:
    """A store's embeddings filled in a block of rows at a time, into arrays of the size counted
    (grown if chunks came in meanwhile), so the rows read are not all held at once."""

    def __init__(self, count: int, dimensions: int) -> None:
        self.ids = np.empty(count, dtype=np.int64)
        self.file_of_row = np.empty(count, dtype=np.int32)
        self.matrix = np.empty((count, dimensions), dtype=np.float32)
        self.rows = 0
        self.files: dict[str, int] = {}
        self.projects: list[str] = []

    def add(self, block: list) -> None:
        end = self.rows + len(block)
        if end > len(self.ids):
            self.ids, self.file_of_row = np.resize(self.ids, end), np.resize(self.file_of_row, end)
            self.matrix = np.resize(self.matrix, (end, self.matrix.shape[1]))
        for number, (chunk_id, file_id, project, _) in enumerate(block, self.rows):
            if file_id not in self.files:
                self.files[file_id] = len(self.files)
                self.projects.append(project)
            self.ids[number] = chunk_id
            self.file_of_row[number] = self.files[file_id]
        self.matrix[self.rows : end] = np.frombuffer(b"".join(row[3] for row in block), dtype=np.float32).reshape(len(block), -1)
        self.rows = end

    def done(self, version: int) -> StoreEmbeddings:
        rows = self.rows  # fewer than counted when chunks went meanwhile
        return StoreEmbeddings(
            version=version,
            ids=self.ids[:rows].copy(),
            file_ids=list(self.files),
            file_projects=self.projects,
            projects=frozenset(self.projects),
            file_of_row=self.file_of_row[:rows].copy(),
            matrix=self.matrix[:rows] if rows == len(self.matrix) else self.matrix[:rows].copy(),
        )
