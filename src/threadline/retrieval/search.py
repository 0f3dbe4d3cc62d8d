"""Searching vector stores: by keywords and by meaning, the two fused by reciprocal rank.

For each query the chunks are ranked twice, by the database's full-text search over an OR
of the query's words (SQLite FTS5's bm25, PostgreSQL's ts_rank) and by the cosine of their
embeddings to the query's (inside PostgreSQL where it has pgvector; else in numpy here, exactly,
over each store's embeddings kept in memory (retrieval/embedding_cache.py), or, for a store too
large to keep, by sqlite-vec inside SQLite or numpy as the rows stream by). A chunk's fused score
sums weight / (RRF_K + rank) over every list it is in, and is divided by what a chunk first in
every list would get, so it falls in 0..1. Weights come from ranking_options.hybrid_search
(embedding_weight, text_weight); without them they depend on the embedder (EMBEDDED_WEIGHTS, UPSTREAM_WEIGHTS).
Every ranker ("auto", "default-2024-11-15", "none") ranks this way: there is no
re-ranking model to turn off.

Only completed files of the caller's project in the given vector stores are searched. With
`filters`, the files whose attributes match are found first, and only their chunks are
ranked, so a filter that few files pass still finds their best chunks.
"""

from __future__ import annotations

import asyncio
import heapq
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from sqlalchemy import Select, and_, bindparam, cast, func, literal, literal_column, select, table, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from threadline.errors import invalid
from threadline.retrieval.embedders import Embedder
from threadline.retrieval.embedding_cache import EmbeddingCache, StoreEmbeddings
from threadline.retrieval.filters import ComparisonFilter, CompoundFilter, Filter, parse_filters
from threadline.retrieval.index import PGVECTOR, SQLITE_VEC, ChunkIndex, Vector, vector_literal
from threadline.store.database import Database
from threadline.store.tables import chunks, files, vector_store_files

Mode = Literal["hybrid", "keyword", "vector"]

# k and the default weights were chosen on half of the Python documentation's known items
# (bench/retrieval.py) and checked on the other half; results hardly move for k from 10 to 60.
RRF_K = 30
# (text, embedding) weights when a search gives none. The embedded WordLlama model finds fewer
# of those items than keywords do (recall@10 0.47 against 0.66), so its list counts a third as
# much as theirs; with equal weights hybrid ranked below keywords alone. An upstream model's list
# counts as much as the keywords' (not measured here: no such model on this machine).
EMBEDDED_WEIGHTS = (0.75, 0.25)
UPSTREAM_WEIGHTS = (0.5, 0.5)
# How deep each ranked list goes: enough for 50 results to come from either list alone.
CANDIDATES = 100
MAX_NUM_RESULTS = 50
RANKERS = ("none", "auto", "default-2024-11-15")
# A query's words beyond these are left out of its keyword search.
MAX_TERMS = 64
# SQLite's keyword matches ranked over the whole index, of which the scope's are kept.
TOP_MATCHES = 400
# A file's statuses other than "completed" (read through an index on the store and status).
NOT_SEARCHABLE = ("in_progress", "failed", "cancelled")
# (vector store, file) pairs bound in one statement, well within SQLite's 32766 variables.
PAIRS_PER_STATEMENT = 1000
# Embeddings read at a time when they are compared here.
ROWS_PER_READ = 4096
WORD = re.compile(r"\w+")
# English words too common to tell chunks apart (PostgreSQL's 'english' config drops them too).
STOP_WORDS = frozenset(
    "a about above after again against all am an and any are as at be because been before being below between both but by "
    "can could did do does doing down during each few for from further had has have having he her here hers herself him "
    "himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other "
    "our ours ourselves out over own same she should so some such than that the their theirs them themselves then there "
    "these they this those through to too under until up very was we were what when where which while who whom why will "
    "with would you your yours yourself yourselves".split()
)


@dataclass(frozen=True)
class SearchResult:
    """One chunk found, as OpenAI's vector store search answers it (`to_api`)."""

    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    content: list[dict[str, str]]
    vector_store_id: str

    def to_api(self) -> dict[str, Any]:
        """A VectorStoreSearchResultItem."""
        return {"file_id": self.file_id, "filename": self.filename, "score": self.score, "attributes": self.attributes, "content": self.content}


@dataclass(frozen=True)
class Ranking:
    embedding_weight: float | None = None  # None: the searcher's default for its embedder
    text_weight: float | None = None
    score_threshold: float = 0.0


def parse_ranking_options(options: Any, param: str = "ranking_options") -> Ranking:
    """The ranking a request's `ranking_options` asks for; a 400 naming `param` when it is malformed."""
    if options is None:
        return Ranking()
    if not isinstance(options, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param=param)
    ranker = options.get("ranker")
    if ranker is not None and ranker not in RANKERS:
        raise invalid(f"Invalid value for '{param}.ranker': expected one of {', '.join(map(repr, RANKERS))}.", param=f"{param}.ranker")
    threshold = options.get("score_threshold", 0.0)
    if threshold is None:
        threshold = 0.0
    if not _is_number(threshold) or not 0 <= threshold <= 1:
        raise invalid(f"Invalid '{param}.score_threshold': expected a number between 0 and 1.", param=f"{param}.score_threshold")
    hybrid = options.get("hybrid_search")
    if hybrid is None:
        return Ranking(score_threshold=float(threshold))
    where = f"{param}.hybrid_search"
    if not isinstance(hybrid, dict):
        raise invalid(f"Invalid type for '{where}': expected an object.", param=where)
    weights = []
    for name in ("embedding_weight", "text_weight"):
        weight = hybrid.get(name)
        if not _is_number(weight) or weight < 0:
            raise invalid(f"Invalid '{where}.{name}': expected a number of at least 0.", param=f"{where}.{name}")
        weights.append(float(weight))
    if not any(weights):
        raise invalid(f"Invalid '{where}': embedding_weight and text_weight cannot both be 0.", param=where)
    return Ranking(weights[0], weights[1], float(threshold))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def keyword_terms(query: str) -> list[str]:
    """The query's distinct words that are worth matching, in order, at most MAX_TERMS."""
    terms = dict.fromkeys(word for word in WORD.findall(query.lower()) if word not in STOP_WORDS)
    return list(terms)[:MAX_TERMS]


class Searcher:
    def __init__(self, database: Database, embedder: Embedder, index: ChunkIndex) -> None:
        self.database = database
        self.embedder = embedder
        self.index = index
        self.embeddings = EmbeddingCache()
        self.default_weights = EMBEDDED_WEIGHTS if embedder.name.startswith("embedded/") else UPSTREAM_WEIGHTS

    async def search(
        self,
        project: str,
        vector_store_ids: list[str],
        queries: list[str],
        *,
        filters: dict | Filter | None = None,
        max_num_results: int = 10,
        ranking_options: dict | Ranking | None = None,
        mode: Mode = "hybrid",
    ) -> list[SearchResult]:
        """The best chunks for the queries, best first, at most max_num_results (1..50).

        `filters` and `ranking_options` as the API takes them (a 400 when malformed), or parsed
        already. `mode` "keyword" or "vector" ranks by one list alone (for measuring each).
        Raises EmbeddingError when the embedder fails."""
        condition = filters if filters is None or isinstance(filters, (ComparisonFilter, CompoundFilter)) else parse_filters(filters)
        ranking = ranking_options if isinstance(ranking_options, Ranking) else parse_ranking_options(ranking_options)
        if not isinstance(max_num_results, int) or isinstance(max_num_results, bool) or not 1 <= max_num_results <= MAX_NUM_RESULTS:
            raise invalid(f"Invalid 'max_num_results': expected an integer between 1 and {MAX_NUM_RESULTS}.", param="max_num_results")
        queries = [query for query in queries if query.strip()]
        if not queries or not vector_store_ids:
            return []
        text_weight, embedding_weight = (ranking.text_weight, ranking.embedding_weight) if ranking.text_weight is not None else self.default_weights
        weights = {"text": text_weight if mode != "vector" else 0.0, "embedding": embedding_weight if mode != "keyword" else 0.0}
        query_vectors = await self.embedder.embed(queries) if weights["embedding"] else None
        async with self.database.read() as connection:
            scope = await _scope(connection, project, vector_store_ids, condition)
            if scope.is_empty:
                return []
            # Compared in a thread while the database ranks by keywords: both let go of the GIL.
            in_memory = await self._start_in_memory(connection, scope, query_vectors) if query_vectors is not None else None
            lists: list[tuple[float, list[int]]] = []
            try:
                if weights["text"]:
                    for query in queries:
                        lists.append((weights["text"], await self._keywords(connection, scope, query)))
            except BaseException:
                if in_memory is not None:
                    in_memory.cancel()
                raise
            if query_vectors is not None:
                for ranked in await in_memory if in_memory is not None else await self._vectors(connection, scope, query_vectors):
                    lists.append((weights["embedding"], ranked))
            scores = _fused(lists)
            best = sorted(((score, chunk_id) for chunk_id, score in scores.items() if score >= ranking.score_threshold), key=lambda pair: (-pair[0], pair[1]))
            return await _results(connection, best[:max_num_results])

    async def _keywords(self, connection: AsyncConnection, scope: Scope, query: str) -> list[int]:
        """Chunk ids best first by keyword rank, at most CANDIDATES."""
        terms = keyword_terms(query)
        if not terms:
            return []
        if self.database.is_sqlite:
            match = " OR ".join(f'"{term}"' for term in terms)
            ranked = await _sqlite_best_matches(connection, scope, match)
            if ranked is not None:
                return ranked
        found: list[tuple[float, int]] = []  # (rank, id), lower is better
        for where in scope.conditions():
            if self.database.is_sqlite:
                fts = table("chunks_fts")
                rank = literal_column("bm25(chunks_fts)")
                statement = (
                    select(rank, chunks.c.id)
                    .select_from(fts.join(chunks, chunks.c.id == literal_column("chunks_fts.rowid")))
                    .where(text("chunks_fts MATCH :match").bindparams(match=match))
                )
            else:
                tsquery = func.websearch_to_tsquery(literal_column("'english'::regconfig"), " or ".join(terms))
                rank = -func.ts_rank(literal_column("chunks.text_search"), tsquery)
                statement = select(rank, chunks.c.id).where(literal_column("chunks.text_search").op("@@")(tsquery))
            statement = scope.restrict(statement, where).order_by(rank, chunks.c.id).limit(CANDIDATES)
            found.extend((row[0], row[1]) for row in await connection.execute(statement))
        return [chunk_id for _, chunk_id in heapq.nsmallest(CANDIDATES, found)]

    async def _start_in_memory(self, connection: AsyncConnection, scope: Scope, query_vectors: np.ndarray) -> asyncio.Future[list[list[int]]] | None:
        """For each query, chunk ids best first by cosine similarity, at most CANDIDATES, compared
        in a thread started here over the stores' embeddings kept in memory; None when they are
        compared inside the database (pgvector) or do not fit in memory (see `_vectors`)."""
        if await self.index.mode(connection) == PGVECTOR:
            return None
        stores = await self.embeddings.get(connection, scope.vector_store_ids, query_vectors.shape[1])
        if stores is None:
            return None
        rows = {vector_store_id: await _searchable_rows(connection, scope, vector_store_id, entry) for vector_store_id, entry in stores.items()}
        return asyncio.ensure_future(asyncio.to_thread(_best_in_stores, query_vectors, [(stores[key], chosen) for key, chosen in rows.items()]))

    async def _vectors(self, connection: AsyncConnection, scope: Scope, query_vectors: np.ndarray) -> list[list[int]]:
        """For each query, chunk ids best first by cosine similarity, at most CANDIDATES, inside
        the database or as its rows stream by."""
        dimensions = query_vectors.shape[1]
        mode = await self.index.mode(connection)
        if mode in (PGVECTOR, SQLITE_VEC):
            return [await _nearest(connection, scope, *_distance(mode, vector)) for vector in query_vectors]
        # Compared here, a block of rows at a time, keeping each query's best so far.
        best: list[list[tuple[float, int]]] = [[] for _ in query_vectors]
        for where in scope.conditions():
            statement = scope.restrict(select(chunks.c.id, chunks.c.embedding), where).where(
                func.length(chunks.c.embedding) == 4 * dimensions  # chunks of another embedder cannot be compared
            )
            result = await connection.stream(statement)
            async for block in result.partitions(ROWS_PER_READ):
                best = await asyncio.to_thread(_best_in_block, query_vectors, block, best)
        return [[chunk_id for _, chunk_id in ranked] for ranked in best]


# The matched chunks (:ids, a JSON array) of files in the scope, for _sqlite_best_matches. The
# unary plus keeps SQLite from reading the stores' every chunk by its index on the store, when
# these few are found by their ids. Built once: building them took a millisecond a search.
_MATCHED = chunks.c.id.in_(select(func.json_each(bindparam("ids")).table_valued("value").c.value))
_MATCHES_OF_FILES = select(chunks.c.id).join_from(
    chunks,
    vector_store_files,
    and_(vector_store_files.c.vector_store_id == literal_column("+chunks.vector_store_id"), vector_store_files.c.file_id == chunks.c.file_id),
)
_MATCHES_IN_STORES = _MATCHES_OF_FILES.where(
    vector_store_files.c.project == bindparam("project"),
    vector_store_files.c.vector_store_id.in_(bindparam("stores", expanding=True)),
    vector_store_files.c.status == "completed",
    _MATCHED,
)


async def _sqlite_best_matches(connection: AsyncConnection, scope: Scope, match: str) -> list[int] | None:
    """The scope's CANDIDATES best keyword matches, taken from the whole index's TOP_MATCHES best
    (joining every match to its file first took most of the time); None when fewer than
    CANDIDATES of those are in the scope while more matched, so the scope's own may lie deeper."""
    rows = await connection.execute(
        text("SELECT bm25(chunks_fts), rowid FROM chunks_fts WHERE chunks_fts MATCH :match ORDER BY 1, 2 LIMIT :limit"),
        {"match": match, "limit": TOP_MATCHES},
    )
    ranks = {chunk_id: rank for rank, chunk_id in rows}
    if not ranks:
        return []
    in_scope: list[int] = []
    # The ids as one JSON parameter: SQLAlchemy took milliseconds to bind 400 of them one by one.
    ids = orjson.dumps(list(ranks)).decode()
    if scope.pairs is None:
        statements = [(_MATCHES_IN_STORES, {"project": scope.project, "stores": list(scope.vector_store_ids), "ids": ids})]
    else:
        statements = [(_MATCHES_OF_FILES.where(where, _MATCHED), {"ids": ids}) for where in scope.conditions()]
    for statement, parameters in statements:
        in_scope.extend((await connection.execute(statement, parameters)).scalars())
    if len(in_scope) < CANDIDATES and len(ranks) == TOP_MATCHES:
        return None
    return sorted(in_scope, key=lambda chunk_id: (ranks[chunk_id], chunk_id))[:CANDIDATES]


# A store's files not completed; built once, as building it cost about as much as running it.
_NOT_COMPLETED = select(vector_store_files.c.file_id).where(
    vector_store_files.c.vector_store_id == bindparam("vector_store_id"), vector_store_files.c.status.in_(NOT_SEARCHABLE)
)


async def _searchable_rows(connection: AsyncConnection, scope: Scope, vector_store_id: str, entry: StoreEmbeddings) -> np.ndarray | None:
    """The rows of a store's cached embeddings the scope lets a search return (None: all): a
    filter's files, else the project's files but those not completed."""
    if scope.pairs is not None:
        allowed = {file_id for store, file_id in scope.pairs if store == vector_store_id}
        files_allowed = [file_id in allowed for file_id in entry.file_ids]
    else:
        rows = await connection.execute(_NOT_COMPLETED, {"vector_store_id": vector_store_id})
        not_completed = set(rows.scalars())
        if not not_completed and entry.projects <= {scope.project}:
            return None
        files_allowed = [project == scope.project and file_id not in not_completed for file_id, project in zip(entry.file_ids, entry.file_projects)]
        if all(files_allowed):
            return None
    return np.flatnonzero(np.array(files_allowed, dtype=bool)[entry.file_of_row])


def _best_in_stores(query_vectors: np.ndarray, stores: list[tuple[StoreEmbeddings, np.ndarray | None]]) -> list[list[int]]:
    """Each query's CANDIDATES chunk ids by (-similarity, chunk id) over the stores' chosen rows."""
    similarities, ids = [], []
    for entry, chosen in stores:
        if chosen is None:
            similarities.append(query_vectors @ entry.matrix.T)
            ids.append(entry.ids)
        elif len(chosen):
            similarities.append(query_vectors @ entry.matrix[chosen].T)
            ids.append(entry.ids[chosen])
    if not ids:
        return [[] for _ in query_vectors]
    every_id = np.concatenate(ids)
    ranked = []
    for row in np.concatenate(similarities, axis=1):
        negated, candidates = -row, every_id
        if len(negated) > CANDIDATES:
            kept = np.flatnonzero(negated <= np.partition(negated, CANDIDATES - 1)[CANDIDATES - 1])  # ties at the edge included
            negated, candidates = negated[kept], candidates[kept]
        ranked.append(candidates[np.lexsort((candidates, negated))[:CANDIDATES]].tolist())
    return ranked


def _distance(mode: str, vector: np.ndarray) -> tuple[Any, Any]:
    """The database's cosine distance of a chunk's embedding to `vector`, and the condition for
    a chunk to be comparable at all (of the vector's dimensions: another embedder's is not)."""
    if mode == PGVECTOR:
        column = literal_column("chunks.embedding_vector")
        return column.op("<=>")(cast(literal(vector_literal(vector)), Vector())), func.vector_dims(column) == len(vector)
    query = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
    # A zero vector has no cosine (NULL, which sorts first): similarity 0, as numpy has it.
    distance = func.coalesce(func.vec_distance_cosine(chunks.c.embedding, query), 1.0)
    return distance, func.length(chunks.c.embedding) == len(query)


async def _nearest(connection: AsyncConnection, scope: Scope, distance: Any, comparable: Any) -> list[int]:
    """Chunk ids by `distance` inside the database, nearest first, at most CANDIDATES, of the
    chunks that are `comparable`."""
    found: list[tuple[float, int]] = []
    for where in scope.conditions():
        statement = scope.restrict(select(distance, chunks.c.id), where).where(comparable).order_by(distance, chunks.c.id).limit(CANDIDATES)
        found.extend((row[0], row[1]) for row in await connection.execute(statement))
    return [chunk_id for _, chunk_id in heapq.nsmallest(CANDIDATES, found)]


def _best_in_block(query_vectors: np.ndarray, block: list, best: list[list[tuple[float, int]]]) -> list[list[tuple[float, int]]]:
    """Each query's CANDIDATES best (-similarity, chunk id) among those so far and this block's (id, embedding) rows."""
    ids = [row[0] for row in block]
    matrix = np.frombuffer(b"".join(row[1] for row in block), dtype=np.float32).reshape(len(block), query_vectors.shape[1])
    similarities = query_vectors @ matrix.T
    kept = []
    for so_far, row in zip(best, similarities):
        top = np.argsort(-row, kind="stable")[:CANDIDATES]
        kept.append(heapq.nsmallest(CANDIDATES, so_far + [(-float(row[i]), ids[i]) for i in top]))
    return kept


@dataclass(frozen=True)
class Scope:
    """The chunks a search may return: of completed files of the project in these vector stores,
    and, after a filter, only of the (vector store, file) pairs that passed it."""

    project: str
    vector_store_ids: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...] | None  # None: no filter

    @property
    def is_empty(self) -> bool:
        return self.pairs is not None and not self.pairs

    def conditions(self) -> Iterator[Any]:
        """One condition per statement to run: all files at once, or the filtered pairs in batches."""
        if self.pairs is None:
            yield and_(
                vector_store_files.c.project == self.project,
                vector_store_files.c.vector_store_id.in_(self.vector_store_ids),
                vector_store_files.c.status == "completed",
            )
            return
        for start in range(0, len(self.pairs), PAIRS_PER_STATEMENT):
            yield tuple_(vector_store_files.c.vector_store_id, vector_store_files.c.file_id).in_(self.pairs[start : start + PAIRS_PER_STATEMENT])

    def restrict(self, statement: Select, condition: Any) -> Select:
        return statement.join_from(
            chunks,
            vector_store_files,
            and_(vector_store_files.c.vector_store_id == chunks.c.vector_store_id, vector_store_files.c.file_id == chunks.c.file_id),
        ).where(condition)


async def _scope(connection: AsyncConnection, project: str, vector_store_ids: list[str], condition: Filter | None) -> Scope:
    stores = tuple(dict.fromkeys(vector_store_ids))
    if condition is None:
        return Scope(project, stores, None)
    rows = await connection.execute(
        select(vector_store_files.c.vector_store_id, vector_store_files.c.file_id, vector_store_files.c.attributes).where(
            vector_store_files.c.project == project,
            vector_store_files.c.vector_store_id.in_(stores),
            vector_store_files.c.status == "completed",
        )
    )
    pairs = tuple((row.vector_store_id, row.file_id) for row in rows if condition.matches(orjson.loads(row.attributes) or {}))
    return Scope(project, stores, pairs)


def _fused(lists: Iterable[tuple[float, list[int]]]) -> dict[int, float]:
    """Each chunk's reciprocal rank fusion score over the weighted lists, divided by the best a
    chunk can have (first in every list), so 1 is the most a score can be."""
    lists = list(lists)
    best = sum(weight / (RRF_K + 1) for weight, _ in lists)
    scores: dict[int, float] = defaultdict(float)
    for weight, ranked in lists:
        for rank, chunk_id in enumerate(ranked, start=1):
            scores[chunk_id] += weight / (RRF_K + rank)
    return {chunk_id: min(score / best, 1.0) for chunk_id, score in scores.items()} if best else {}


# What a search answers of the chunks :ids; built once, as building it took a good part of reading them.
_RESULTS = (
    select(chunks.c.id, chunks.c.text, chunks.c.vector_store_id, chunks.c.file_id, vector_store_files.c.attributes, files.c.filename)
    .join_from(
        chunks,
        vector_store_files,
        and_(vector_store_files.c.vector_store_id == chunks.c.vector_store_id, vector_store_files.c.file_id == chunks.c.file_id),
    )
    .join(files, files.c.id == chunks.c.file_id)
    .where(chunks.c.id.in_(bindparam("ids", expanding=True)))
)


async def _results(connection: AsyncConnection, best: list[tuple[float, int]]) -> list[SearchResult]:
    if not best:
        return []
    rows = await connection.execute(_RESULTS, {"ids": [chunk_id for _, chunk_id in best]})
    found = {row.id: row for row in rows}
    return [
        SearchResult(
            file_id=row.file_id,
            filename=row.filename,
            score=round(score, 6),
            attributes=orjson.loads(row.attributes) or {},
            content=[{"type": "text", "text": row.text}],
            vector_store_id=row.vector_store_id,
        )
        for score, chunk_id in best
        if (row := found.get(chunk_id)) is not None
    ]
