"""The chunk index and the searcher, driven directly on real databases: SQLite (with sqlite-vec,
and told not to use it), PostgreSQL with pgvector (tests/pgvector/), and the machine's
PostgreSQL at 127.0.0.1:5432, which has no pgvector, so embeddings are compared in Threadline there.

The vector store API's own search tests (over HTTP) live with the vector stores' tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import time
import uuid

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import delete, func, insert, select, text

from tests.conftest import DATABASES
from tests.pgvector.server import has_pgvector, pgvector_server, run_statement
from threadline.errors import APIError
from threadline.retrieval import search as search_module
from threadline.retrieval import sqlite_vectors
from threadline.retrieval import embedding_cache
from threadline.retrieval.embedding_cache import EmbeddingCache
from threadline.retrieval.embedders import WordLlamaEmbedder
from threadline.retrieval.filters import parse_filters
from threadline.retrieval.index import IN_PROCESS, PGVECTOR, SQLITE_VEC, ChunkIndex
from threadline.retrieval.search import Searcher
from threadline.store.database import Database
from threadline.store.migrate import migrate
from threadline.store.vector_stores import FILE_STATUSES
from threadline.store.tables import chunks, files, vector_store_files, vector_stores

MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
KINDS = (["sqlite", "sqlite_without_sqlite_vec"] if "sqlite" in DATABASES else []) + (
    ["pgvector", "postgresql_without_pgvector"] if "postgresql" in DATABASES else []
)
SQLITE_KINDS = ("sqlite", "sqlite_without_sqlite_vec")
# Where Python's SQLite library cannot take sqlite-vec (tested apart below), numpy ranks.
EXPECTED_MODE = {
    "sqlite": SQLITE_VEC if sqlite_vectors.register() is None else IN_PROCESS,
    "sqlite_without_sqlite_vec": IN_PROCESS,
    "pgvector": PGVECTOR,
    "postgresql_without_pgvector": IN_PROCESS,
}

CORPUS = {
    "cats.txt": (
        ["The domestic cat is a small carnivorous mammal.", "Cats purr when content and hunt mice at night."],
        {"category": "animals", "year": 2021, "public": True, "rating": 4.5},
    ),
    "finance.txt": (
        ["Quarterly revenue grew by ten percent.", "Operating profit margins improved across every region."],
        {"category": "finance", "year": 2023, "public": False},
    ),
    "ocean.txt": (
        ["Whales and dolphins swim in the deep ocean.", "Sea water is salty and covers most of the planet."],
        {"category": "animals", "year": 2019, "public": True, "region": "pacific"},
    ),
    "manual.txt": (
        ["Model QX7 routers reset when the pinhole button is held down.", "The warranty covers parts and labour for two years."],
        {"category": "support", "year": 2023},
    ),
}

EMBEDDER = WordLlamaEmbedder()

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="session")
def pgvector_url():
    """make test's PostgreSQL when it has pgvector; else one started here from tests/pgvector/."""
    configured = os.environ.get("THREADLINE_TEST_POSTGRES_URL")
    if configured and asyncio.run(has_pgvector(configured)):
        yield configured
        return
    with pgvector_server() as url:
        yield url


@contextlib.contextmanager
def _postgres_database(admin_url: str):
    name = f"threadline_retrieval_{uuid.uuid4().hex[:12]}"
    asyncio.run(run_statement(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(run_statement(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module", params=KINDS)
def database_kind(request, tmp_path_factory):
    """(kind, URL) of a migrated database of each kind, for this module."""
    kind = request.param
    with contextlib.ExitStack() as stack:
        if kind in SQLITE_KINDS:
            url = f"sqlite:///{tmp_path_factory.mktemp('retrieval')}/threadline.db"
        elif kind == "pgvector":
            url = stack.enter_context(_postgres_database(request.getfixturevalue("pgvector_url")))
        else:
            assert not asyncio.run(has_pgvector(MACHINE_POSTGRES)), "the machine's PostgreSQL was to be the one without pgvector"
            url = stack.enter_context(_postgres_database(MACHINE_POSTGRES))

        async def migrated() -> None:
            database = Database(url)
            await migrate(database)
            await database.dispose()

        asyncio.run(migrated())
        yield kind, url


@pytest_asyncio.fixture
async def database(database_kind):
    opened = Database(database_kind[1])
    yield opened
    await opened.dispose()


@pytest.fixture
def index(database, database_kind) -> ChunkIndex:
    return ChunkIndex(database, sqlite_vec=database_kind[0] != "sqlite_without_sqlite_vec")


@pytest_asyncio.fixture
async def sqlite_database(tmp_path):
    """A migrated SQLite database of the test's own, for SQLite's two ways of comparing vectors."""
    opened = Database(f"sqlite:///{tmp_path}/threadline.db")
    await migrate(opened)
    yield opened
    await opened.dispose()


@pytest.fixture
def searcher(database, index) -> Searcher:
    return Searcher(database, EMBEDDER, index)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


async def add_file(
    database: Database,
    index: ChunkIndex,
    vector_store_id: str,
    filename: str,
    texts: list[str],
    attributes: dict | None = None,
    *,
    project: str = "alpha",
    status: str = "completed",
) -> str:
    """A File in a vector store (made if new), its chunks indexed; the file's id."""
    file_id = new_id("file")
    embeddings = await EMBEDDER.embed(texts)
    now = int(time.time())
    async with database.write() as connection:
        known = await connection.execute(select(vector_stores.c.id).where(vector_stores.c.id == vector_store_id))
        if known.first() is None:
            await connection.execute(
                insert(vector_stores).values(id=vector_store_id, project=project, created_at=now, last_active_at=now, data="{}")
            )
        await connection.execute(
            insert(files).values(id=file_id, project=project, created_at=now, filename=filename, purpose="assistants", bytes=1, complete=True)
        )
        await connection.execute(
            insert(vector_store_files).values(
                vector_store_id=vector_store_id,
                file_id=file_id,
                project=project,
                created_at=now,
                status=status,
                attributes=json.dumps(attributes or {}),
                chunking_strategy="{}",
            )
        )
        await index.replace(connection, vector_store_id, file_id, texts, embeddings)
    return file_id


async def add_corpus(database: Database, index: ChunkIndex, project: str = "alpha") -> str:
    vector_store_id = new_id("vs")
    for filename, (texts, attributes) in CORPUS.items():
        await add_file(database, index, vector_store_id, filename, texts, attributes, project=project)
    return vector_store_id


def filenames(results) -> set[str]:
    return {result.filename for result in results}


# --- the index -------------------------------------------------------------------------------


async def test_each_database_compares_vectors_where_it_can(index, database_kind):
    assert await index.mode() == EXPECTED_MODE[database_kind[0]]


@pytest.mark.skipif(sys.platform != "linux", reason="Python's own SQLite takes sqlite-vec on Linux; elsewhere it may not")
async def test_pythons_own_sqlite_takes_sqlite_vec():
    """Even where the sqlite3 module cannot load extensions (this machine's pyenv Python), its
    library does: every connection opened now has sqlite-vec's functions, aiosqlite's too."""
    assert sqlite_vectors.register() is None
    assert EXPECTED_MODE["sqlite"] == SQLITE_VEC
    connection = sqlite3.connect(":memory:")
    try:
        assert connection.execute("SELECT vec_version()").fetchone()[0].startswith("v")
    finally:
        connection.close()


async def test_replacing_a_files_chunks_leaves_only_the_new_ones(database, index, searcher):
    vector_store_id = new_id("vs")
    file_id = await add_file(database, index, vector_store_id, "notes.txt", ["old words about gardening", "more old words"])
    async with database.write() as connection:
        new_texts = ["fresh text about astronomy"]
        await index.replace(connection, vector_store_id, file_id, new_texts, await EMBEDDER.embed(new_texts))
    assert await index.chunks(vector_store_id, file_id) == ["fresh text about astronomy"]
    assert await searcher.search("alpha", [vector_store_id], ["gardening"], mode="keyword") == []
    found = await searcher.search("alpha", [vector_store_id], ["astronomy"], mode="keyword")
    assert [result.content for result in found] == [[{"type": "text", "text": "fresh text about astronomy"}]]


async def _chunk_count(database: Database, vector_store_id: str) -> int:
    async with database.read() as connection:
        return (await connection.execute(select(func.count()).select_from(chunks).where(chunks.c.vector_store_id == vector_store_id))).scalar()


async def _keyword_index_count(database: Database, word: str) -> int:
    """Chunks the keyword index itself finds for a word, whoever they belong to."""
    async with database.read() as connection:
        if database.is_sqlite:
            statement = text("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH :word")
        else:
            statement = text("SELECT count(*) FROM chunks WHERE text_search @@ plainto_tsquery('english', :word)")
        return (await connection.execute(statement, {"word": word})).scalar()


@pytest.mark.parametrize("deleted", ["vector_store", "vector_store_file", "file"])
async def test_deleting_a_store_its_file_or_the_file_removes_the_chunks(database, index, searcher, deleted):
    word = f"zq{uuid.uuid4().hex[:8]}"  # in these chunks alone
    vector_store_id = new_id("vs")
    file_id = await add_file(database, index, vector_store_id, "doomed.txt", [f"the {word} chunk", f"another {word} chunk"])
    assert await _chunk_count(database, vector_store_id) == 2
    assert await _keyword_index_count(database, word) == 2
    async with database.write() as connection:
        if deleted == "vector_store":
            await connection.execute(delete(vector_stores).where(vector_stores.c.id == vector_store_id))
        elif deleted == "vector_store_file":
            await connection.execute(delete(vector_store_files).where(vector_store_files.c.file_id == file_id))
        else:
            await connection.execute(delete(files).where(files.c.id == file_id))
    assert await _chunk_count(database, vector_store_id) == 0
    assert await _keyword_index_count(database, word) == 0
    assert await index.chunks(vector_store_id, file_id) == []
    assert await searcher.search("alpha", [vector_store_id], [word]) == []


async def test_remove_takes_one_files_chunks_from_one_store(database, index):
    vector_store_id = new_id("vs")
    kept = await add_file(database, index, vector_store_id, "kept.txt", ["stays here"])
    removed = await add_file(database, index, vector_store_id, "removed.txt", ["goes away"])
    async with database.write() as connection:
        await index.remove(connection, vector_store_id, removed)
    assert await index.chunks(vector_store_id, removed) == []
    assert await index.chunks(vector_store_id, kept) == ["stays here"]


# --- ranking ---------------------------------------------------------------------------------


async def test_keywords_find_a_rare_word(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    for mode in ("keyword", "hybrid"):
        found = await searcher.search("alpha", [vector_store_id], ["QX7"], mode=mode)
        assert found[0].filename == "manual.txt", mode
        assert found[0].content == [{"type": "text", "text": CORPUS["manual.txt"][0][0]}]
    only_keywords = await searcher.search("alpha", [vector_store_id], ["QX7"], mode="keyword")
    assert len(only_keywords) == 1


@pytest.mark.parametrize(("query", "expected"), [("kitten", "cats.txt"), ("marine animals", "ocean.txt"), ("money earnings", "finance.txt")])
async def test_meaning_finds_chunks_that_share_no_word(database, index, searcher, query, expected):
    vector_store_id = await add_corpus(database, index)
    assert await searcher.search("alpha", [vector_store_id], [query], mode="keyword") == []
    for mode in ("vector", "hybrid"):
        found = await searcher.search("alpha", [vector_store_id], [query], mode=mode)
        assert found[0].filename == expected, mode


async def test_vector_ranking_is_exact(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    texts = [chunk for chunk_texts, _ in CORPUS.values() for chunk in chunk_texts]
    query = "guarantee repair for a broken device"
    similarities = (await EMBEDDER.embed(texts)) @ (await EMBEDDER.embed([query]))[0]
    expected = [texts[position] for position in np.argsort(-similarities, kind="stable")]
    found = await searcher.search("alpha", [vector_store_id], [query], mode="vector", max_num_results=50)
    assert [result.content[0]["text"] for result in found] == expected


async def test_results_carry_the_file_and_scores_fall_from_one(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    found = await searcher.search("alpha", [vector_store_id], ["How do I reset a QX7 router?"], max_num_results=50)
    assert len(found) == 8
    assert found[0].filename == "manual.txt"
    assert found[0].attributes == {"category": "support", "year": 2023}
    assert found[0].file_id.startswith("file_") and found[0].vector_store_id == vector_store_id
    scores = [result.score for result in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0 < score <= 1 for score in scores)
    assert found[0].to_api() == {
        "file_id": found[0].file_id,
        "filename": "manual.txt",
        "score": found[0].score,
        "attributes": {"category": "support", "year": 2023},
        "content": [{"type": "text", "text": CORPUS["manual.txt"][0][0]}],
    }


async def test_several_queries_are_searched_together(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    found = await searcher.search("alpha", [vector_store_id], ["QX7", "kitten"], max_num_results=2)
    assert filenames(found) == {"manual.txt", "cats.txt"}


async def test_score_threshold_drops_weaker_results(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    everything = await searcher.search("alpha", [vector_store_id], ["QX7"], max_num_results=50)
    assert len(everything) == 8
    # Only the chunk that both lists rank well passes: the others are in one list alone.
    strong = await searcher.search("alpha", [vector_store_id], ["QX7"], max_num_results=50, ranking_options={"score_threshold": 0.6})
    assert [result.content[0]["text"] for result in strong] == [CORPUS["manual.txt"][0][0]]
    assert all(result.score >= 0.6 for result in strong)


async def test_max_num_results_bounds_the_results(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    assert len(await searcher.search("alpha", [vector_store_id], ["anything at all"], max_num_results=3)) == 3
    assert len(await searcher.search("alpha", [vector_store_id], ["anything at all"], max_num_results=1)) == 1


async def test_hybrid_weights_steer_the_fusion(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    query = ["profit of the cats"]
    by_meaning = await searcher.search("alpha", [vector_store_id], query, mode="vector", max_num_results=50)
    weighted = await searcher.search(
        "alpha", [vector_store_id], query, max_num_results=50, ranking_options={"hybrid_search": {"embedding_weight": 1, "text_weight": 0}}
    )
    assert [result.content for result in weighted] == [result.content for result in by_meaning]
    by_words = await searcher.search("alpha", [vector_store_id], query, mode="keyword", max_num_results=50)
    weighted = await searcher.search(
        "alpha", [vector_store_id], query, max_num_results=50, ranking_options={"hybrid_search": {"embedding_weight": 0, "text_weight": 2}}
    )
    assert [result.content for result in weighted] == [result.content for result in by_words]
    for ranker in ("none", "auto", "default-2024-11-15"):
        assert await searcher.search("alpha", [vector_store_id], query, ranking_options={"ranker": ranker})


SUBJECTS = ["The harbour crane", "A tired nurse", "Our tax adviser", "The jazz drummer", "A mountain goat", "The old compiler"]
VERBS = ["carefully moves", "quietly studies", "loudly praises", "slowly repairs", "happily eats"]
OBJECTS = ["rusty containers", "the night shift rota", "quarterly invoices", "a brass cymbal", "alpine grass"]


async def test_sqlite_ranks_inside_sqlite_as_numpy_does(sqlite_database):
    """sqlite-vec's ranking is numpy's: the same chunks, in the same order, with the same scores,
    with and without filters, for one query and several, alone and fused with keywords."""
    database, index = sqlite_database, ChunkIndex(sqlite_database)
    vector_store_id = new_id("vs")
    texts = [f"{subject} {verb} {thing}." for subject in SUBJECTS for verb in VERBS for thing in OBJECTS]
    for part in range(10):
        await add_file(database, index, vector_store_id, f"part-{part}.txt", texts[part::10], {"even": part % 2 == 0})
    in_sqlite = Searcher(database, EMBEDDER, ChunkIndex(database))
    in_numpy = Searcher(database, EMBEDDER, ChunkIndex(database, sqlite_vec=False))
    assert await in_sqlite.index.mode() == EXPECTED_MODE["sqlite"]
    assert await in_numpy.index.mode() == IN_PROCESS
    for queries in (["someone fixing broken machinery"], ["animals grazing on a hillside", "paying the accountant"]):
        for filters in (None, {"type": "eq", "key": "even", "value": True}):
            for mode in ("vector", "hybrid"):
                expected = await in_numpy.search("alpha", [vector_store_id], queries, filters=filters, max_num_results=50, mode=mode)
                found = await in_sqlite.search("alpha", [vector_store_id], queries, filters=filters, max_num_results=50, mode=mode)
                assert len(expected) == 50
                assert [(r.file_id, r.content, r.score) for r in found] == [(r.file_id, r.content, r.score) for r in expected], (queries, filters, mode)


async def test_sqlite_ranks_opposite_zero_and_foreign_vectors_as_numpy_does(sqlite_database):
    """Similarity 1 before 0 (a zero vector) before -1, and a chunk of another embedder's
    dimensions is left out, not an error."""
    database, index = sqlite_database, ChunkIndex(sqlite_database)
    vector_store_id = new_id("vs")
    query = "lighthouse keepers"
    vector = (await EMBEDDER.embed([query]))[0]
    file_id = await add_file(database, index, vector_store_id, "signs.txt", ["placeholder"])
    async with database.write() as connection:
        embeddings = np.stack([-vector, np.zeros_like(vector), vector])
        await index.replace(connection, vector_store_id, file_id, ["opposite", "zero", "same"], embeddings)
    await add_file(database, index, vector_store_id, "foreign.txt", ["other"])
    async with database.write() as connection:
        foreign = (await connection.execute(select(files.c.id).where(files.c.filename == "foreign.txt"))).scalar_one()
        await index.replace(connection, vector_store_id, foreign, ["of another embedder"], np.ones((1, 128), dtype=np.float32) / np.sqrt(128))
    found = await Searcher(database, EMBEDDER, index).search("alpha", [vector_store_id], [query], mode="vector", max_num_results=50)
    assert [result.content[0]["text"] for result in found] == ["same", "zero", "opposite"]


@pytest.mark.parametrize(
    ("options", "max_num_results", "param"),
    [
        ({"ranker": "best"}, 10, "ranking_options.ranker"),
        ({"score_threshold": 1.5}, 10, "ranking_options.score_threshold"),
        ({"score_threshold": "high"}, 10, "ranking_options.score_threshold"),
        ({"hybrid_search": {"embedding_weight": 0, "text_weight": 0}}, 10, "ranking_options.hybrid_search"),
        ({"hybrid_search": {"embedding_weight": -1, "text_weight": 1}}, 10, "ranking_options.hybrid_search.embedding_weight"),
        ({"hybrid_search": {"text_weight": 1}}, 10, "ranking_options.hybrid_search.embedding_weight"),
        (None, 0, "max_num_results"),
        (None, 51, "max_num_results"),
        (None, True, "max_num_results"),
        (None, 2.0, "max_num_results"),
    ],
)
async def test_bad_ranking_options_are_refused(searcher, options, max_num_results, param):
    with pytest.raises(APIError) as refused:
        await searcher.search("alpha", ["vs_any"], ["query"], ranking_options=options, max_num_results=max_num_results)
    assert refused.value.status == 400 and refused.value.param == param


# --- what is searched ----------------------------------------------------------------------------


async def test_only_completed_files_of_the_projects_stores_are_searched(database, index, searcher):
    vector_store_id = new_id("vs")
    await add_file(database, index, vector_store_id, "done.txt", ["penguins waddle on ice"])
    await add_file(database, index, vector_store_id, "busy.txt", ["penguins swim fast"], status="in_progress")
    await add_file(database, index, vector_store_id, "broken.txt", ["penguins eat fish"], status="failed")
    other_store = new_id("vs")
    await add_file(database, index, other_store, "elsewhere.txt", ["penguins in another store"])
    found = await searcher.search("alpha", [vector_store_id], ["penguins"], max_num_results=50)
    assert filenames(found) == {"done.txt"}
    assert await searcher.search("beta", [vector_store_id], ["penguins"]) == []
    both = await searcher.search("alpha", [vector_store_id, other_store], ["penguins"], max_num_results=50)
    assert filenames(both) == {"done.txt", "elsewhere.txt"}
    assert await searcher.search("alpha", [], ["penguins"]) == []
    assert await searcher.search("alpha", [vector_store_id], ["   "]) == []


FILTER_CASES = [
    ({"type": "eq", "key": "category", "value": "animals"}, {"cats.txt", "ocean.txt"}),
    ({"type": "ne", "key": "category", "value": "animals"}, {"finance.txt", "manual.txt"}),
    ({"type": "gt", "key": "year", "value": 2021}, {"finance.txt", "manual.txt"}),
    ({"type": "gte", "key": "year", "value": 2021}, {"cats.txt", "finance.txt", "manual.txt"}),
    ({"type": "lt", "key": "year", "value": 2021}, {"ocean.txt"}),
    ({"type": "lte", "key": "year", "value": 2021}, {"cats.txt", "ocean.txt"}),
    ({"type": "gt", "key": "rating", "value": 4.25}, {"cats.txt"}),
    ({"type": "lt", "key": "category", "value": "b"}, {"cats.txt", "ocean.txt"}),
    ({"type": "in", "key": "category", "value": ["finance", "support"]}, {"finance.txt", "manual.txt"}),
    ({"type": "nin", "key": "category", "value": ["finance", "support"]}, {"cats.txt", "ocean.txt"}),
    ({"type": "in", "key": "year", "value": [2019, 2023]}, {"ocean.txt", "finance.txt", "manual.txt"}),
    ({"type": "eq", "key": "public", "value": True}, {"cats.txt", "ocean.txt"}),
    ({"type": "eq", "key": "public", "value": False}, {"finance.txt"}),
    # A file without the attribute is "not equal" and "not in", and nothing else.
    ({"type": "ne", "key": "region", "value": "pacific"}, {"cats.txt", "finance.txt", "manual.txt"}),
    ({"type": "nin", "key": "region", "value": ["pacific"]}, {"cats.txt", "finance.txt", "manual.txt"}),
    ({"type": "eq", "key": "missing", "value": "x"}, set()),
    # Like with like: the string "2021" is not the number 2021, nor true the number 1.
    ({"type": "eq", "key": "year", "value": "2021"}, set()),
    ({"type": "in", "key": "public", "value": [1]}, set()),
    ({"type": "and", "filters": [{"type": "eq", "key": "category", "value": "animals"}, {"type": "gt", "key": "year", "value": 2020}]}, {"cats.txt"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "category", "value": "finance"}, {"type": "lt", "key": "year", "value": 2020}]}, {"finance.txt", "ocean.txt"}),
    (
        {
            "type": "or",
            "filters": [
                {
                    "type": "and",
                    "filters": [
                        {"type": "eq", "key": "category", "value": "animals"},
                        {"type": "eq", "key": "public", "value": True},
                        {"type": "lt", "key": "year", "value": 2020},
                    ],
                },
                {"type": "eq", "key": "category", "value": "support"},
            ],
        },
        {"ocean.txt", "manual.txt"},
    ),
]


async def test_filters_choose_files_by_their_attributes(database, index, searcher):
    vector_store_id = await add_corpus(database, index)
    for condition, expected in FILTER_CASES:
        found = await searcher.search("alpha", [vector_store_id], ["what is in these files"], filters=condition, max_num_results=50)
        assert filenames(found) == expected, condition
        assert len(found) == 2 * len(expected), condition  # every chunk of every file that passes


async def test_a_selective_filter_finds_its_file_however_many_others_rank_higher(database, index, searcher):
    vector_store_id = new_id("vs")
    texts = [f"Cats purr and cats nap, note {number}." for number in range(160)]
    embeddings = await EMBEDDER.embed(texts)
    now = int(time.time())
    async with database.write() as connection:
        await connection.execute(insert(vector_stores).values(id=vector_store_id, project="alpha", created_at=now, last_active_at=now, data="{}"))
        for number, (chunk_text, embedding) in enumerate(zip(texts, embeddings)):
            file_id = f"file_{vector_store_id}_{number}"
            await connection.execute(
                insert(files).values(id=file_id, project="alpha", created_at=now, filename=f"cats-{number}.txt", purpose="assistants", bytes=1, complete=True)
            )
            await connection.execute(
                insert(vector_store_files).values(
                    vector_store_id=vector_store_id, file_id=file_id, project="alpha", created_at=now, status="completed", attributes="{}", chunking_strategy="{}"
                )
            )
            await index.replace(connection, vector_store_id, file_id, [chunk_text], embedding[None, :])
    await add_file(database, index, vector_store_id, "taxes.txt", ["Quarterly tax forms are due in April."], {"target": True})
    unfiltered = await searcher.search("alpha", [vector_store_id], ["cats purring"], max_num_results=50)
    assert "taxes.txt" not in filenames(unfiltered)
    found = await searcher.search("alpha", [vector_store_id], ["cats purring"], filters={"type": "eq", "key": "target", "value": True})
    assert filenames(found) == {"taxes.txt"}


@pytest.mark.parametrize(
    "condition",
    [
        {"type": "eq", "key": "a"},
        {"type": "like", "key": "a", "value": "b"},
        {"key": "a", "value": "b"},
        {"type": "eq", "key": 1, "value": "b"},
        {"type": "eq", "key": "a", "value": None},
        {"type": "eq", "key": "a", "value": {"nested": 1}},
        {"type": "gt", "key": "a", "value": True},
        {"type": "lt", "key": "a", "value": [1]},
        {"type": "in", "key": "a", "value": "b"},
        {"type": "in", "key": "a", "value": [True]},
        {"type": "eq", "key": "a", "value": "b", "extra": 1},
        {"type": "and", "filters": []},
        {"type": "or", "filters": {"type": "eq", "key": "a", "value": "b"}},
        {"type": "and", "filters": [{"type": "eq", "key": "a", "value": "b"}, {"type": "nope"}]},
        {"type": "and", "filters": [{"type": "or", "filters": ["not a filter"]}]},
        "eq",
        ["a"],
    ],
)
async def test_malformed_filters_are_refused(searcher, condition):
    with pytest.raises(APIError) as refused:
        parse_filters(condition)
    assert refused.value.status == 400 and refused.value.param == "filters"
    assert refused.value.envelope()["error"]["type"] == "invalid_request_error"
    with pytest.raises(APIError) as refused:
        await searcher.search("alpha", ["vs_any"], ["query"], filters=condition)
    assert refused.value.param == "filters"


async def test_a_search_sees_the_chunks_another_process_changed(database, database_kind, searcher):
    """A process keeps a store's embeddings between searches: chunks another process adds or
    removes (here another engine, with connections of its own) are in the next search's ranking."""
    vector_store_id = await add_corpus(database, searcher.index)
    query = ["whales singing in the sea"]
    before = await searcher.search("alpha", [vector_store_id], query, max_num_results=50, mode="vector")
    other = Database(database_kind[1])
    other_index = ChunkIndex(other)
    try:
        added = await add_file(other, other_index, vector_store_id, "songs.txt", ["Humpback whales sing long songs to each other in the sea."])
        after_adding = await searcher.search("alpha", [vector_store_id], query, max_num_results=50, mode="vector")
        assert after_adding[0].filename == "songs.txt"
        assert after_adding == await Searcher(database, EMBEDDER, searcher.index).search("alpha", [vector_store_id], query, max_num_results=50, mode="vector")
        async with other.write() as connection:
            await other_index.remove(connection, vector_store_id, added)
        assert await searcher.search("alpha", [vector_store_id], query, max_num_results=50, mode="vector") == before
    finally:
        await other.dispose()


async def test_a_store_too_large_to_keep_is_ranked_as_it_streams_by(database, searcher):
    vector_store_id = await add_corpus(database, searcher.index)
    unkept = Searcher(database, EMBEDDER, searcher.index)
    unkept.embeddings = EmbeddingCache(budget_bytes=1)
    for filters in (None, {"type": "eq", "key": "category", "value": "animals"}):
        kept = await searcher.search("alpha", [vector_store_id], ["sea creatures"], filters=filters, max_num_results=50)
        assert kept == await unkept.search("alpha", [vector_store_id], ["sea creatures"], filters=filters, max_num_results=50)


async def test_sqlite_keywords_beyond_the_whole_index_best_are_found(database, searcher, monkeypatch):
    """When the scope has fewer of the whole index's best matches than a ranking needs, its own are ranked."""
    vector_store_id = await add_corpus(database, searcher.index)
    other_store = await add_corpus(database, searcher.index)
    found = await searcher.search("alpha", [vector_store_id], ["cats ocean revenue"], max_num_results=50, mode="keyword")
    monkeypatch.setattr(search_module, "TOP_MATCHES", 1)
    assert await searcher.search("alpha", [vector_store_id], ["cats ocean revenue"], max_num_results=50, mode="keyword") == found
    assert {result.vector_store_id for result in found} == {vector_store_id} != {other_store}


async def test_every_status_but_completed_keeps_a_files_chunks_out_of_search():
    assert set(search_module.NOT_SEARCHABLE) == set(FILE_STATUSES) - {"completed"}


async def test_a_copy_of_embeddings_takes_chunks_added_or_removed_while_it_was_read():
    rows = [(chunk_id, f"file_{chunk_id % 2}", "alpha", np.array([chunk_id, -chunk_id], dtype=np.float32).tobytes()) for chunk_id in range(1, 4)]
    for counted in (1, 3, 5):
        copy = embedding_cache._Copy(counted, 2)
        copy.add(rows[:2])
        copy.add(rows[2:])
        entry = copy.done(version=7)
        assert entry.ids.tolist() == [1, 2, 3] and entry.file_ids == ["file_1", "file_0"] and entry.file_of_row.tolist() == [0, 1, 0]
        assert entry.matrix.tolist() == [[1, -1], [2, -2], [3, -3]] and entry.version == 7
