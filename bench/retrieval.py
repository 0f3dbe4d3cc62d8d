"""File search quality and speed on the Python documentation's known items (bench/python_docs.py).

    .venv/bin/python bench/retrieval.py [--quick] [--database sqlite,pgvector,postgresql]
        [--latency-chunks 100000] [--latency-queries 200] [--output FILE] [--profile]

No public retrieval data set with its data ships in a package registry this machine can install
from, so the set is built from a real corpus Debian ships: the reStructuredText sources of the
Python 3.11 documentation (`apt-get install python3.11-doc`), cut at their headings into
sections; a section whose heading is specific is a known item, its heading the query, its body
(without the heading) the document. See bench/python_docs.py.

For each database (`sqlite`; `pgvector`: PostgreSQL with pgvector, the one tests/pgvector/
installs, started here unless THREADLINE_TEST_POSTGRES_URL has it; `postgresql`: the machine's
PostgreSQL at 127.0.0.1:5432, which has no pgvector, so Threadline compares the vectors itself):

1. Ingestion. A real `threadline serve` (embedded WordLlama embedder, scripted model) on a new,
   empty database. Every section is uploaded as its own file (POST /v1/files, 4 at a time),
   then attached with file batches of up to 2,000 files each (auto chunking, 800 tokens with
   400 overlap) and polled until every batch is done. Timed: uploads (first upload sent to the
   last answered), ingestion (first batch sent to the last batch seen completed, polled every
   0.2 s) and both end to end; per second: documentation pages, sections (files), chunks.
2. Quality. Every known item's heading searched in the three modes, all over HTTP
   (POST /v1/vector_stores/{id}/search, max_num_results 50): hybrid as a user asks;
   keywords only and vectors only with ranking_options.hybrid_search weighting the other list
   0, which is exactly what Searcher(mode="keyword"|"vector") does (the searcher skips a list
   whose weight is 0). Results are chunks: they are reduced to distinct files in order, and
   the item's rank is its file's place among them. recall@10 = share of items ranked within
   10; nDCG@10 = mean 1/log2(1 + rank) (one relevant file a query). Figures are given on all
   items and on each half of a fixed split (`tune`/`test`, alternate items): the fusion's
   settings were chosen on the `tune` half only (see bench/README.md).
3. Fusion analysis (in-process, same database): each query's keyword and vector candidate
   lists, 200 deep, taken with the searcher's own methods, and reciprocal rank fusion
   replayed over them for a grid of k, weights and candidate depths; best on `tune`, shown on
   `test`. This is how the shipped settings were chosen; it is reported, not applied.
4. Latency. A new database with one vector store of `--latency-chunks` chunks: the corpus cut
   with static chunking (100 tokens, no overlap), embedded once, and repeated under new file
   ids until the count is reached, inserted in-process in bulk through ChunkIndex.replace
   (files, vector store files and chunks as ingestion writes them, without the files'
   bytes), then a `threadline serve` on it. Timed: POST /v1/vector_stores/{id}/search over
   HTTP (one keep-alive connection, after warm-up; queries are known items' headings), hybrid
   and each mode; and Searcher.search in-process per mode. The server's RSS after start,
   after warm-up and at the end. With --profile, py-spy then watches the server through a few
   seconds of hybrid searches: search_flamegraph_<database>.svg and its collapsed stacks,
   beside the results.

Results: bench/results/retrieval.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import REPO, RESULTS, ThreadlineServer, machine, py_spy, summarize  # noqa: E402
from python_docs import Section, corpus, known_items  # noqa: E402

# This checkout's Threadline, here and in the servers started (the venv's may be another checkout's).
sys.path.insert(0, str(REPO / "src"))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))

from sqlalchemy import func, insert, select, update  # noqa: E402

from tests.pgvector.server import has_pgvector, run_statement  # noqa: E402
from tests.servers import write_config  # noqa: E402
from threadline.ids import new_id  # noqa: E402
from threadline.retrieval import search as search_module  # noqa: E402
from threadline.retrieval.chunking import chunk, static_strategy  # noqa: E402
from threadline.retrieval.embedders import WordLlamaEmbedder  # noqa: E402
from threadline.retrieval.index import ChunkIndex  # noqa: E402
from threadline.retrieval.search import Searcher  # noqa: E402
from threadline.store.database import Database  # noqa: E402
from threadline.store.migrate import migrate  # noqa: E402
from threadline.store.tables import chunks, files, vector_store_files, vector_stores  # noqa: E402

PROJECT = "default"  # a server without API keys puts everything in this project
MACHINE_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
MODES = ("hybrid", "keyword", "vector")
# What each mode sends as ranking_options: one list weighted 0 is left out by the searcher.
MODE_OPTIONS = {
    "hybrid": None,
    "keyword": {"hybrid_search": {"embedding_weight": 0, "text_weight": 1}},
    "vector": {"hybrid_search": {"embedding_weight": 1, "text_weight": 0}},
}
UPLOADS_AT_ONCE = 4
BATCH_FILES = 2000  # the most file_ids one file batch takes
POLL_S = 0.2
DEPTH = 200  # candidate lists taken for the fusion analysis
HTTP_CHECKS = 200  # known items also searched over HTTP, to check the replay gives what a user gets

FULL = {"every_nth_page": 1, "latency_chunks": 100_000, "latency_queries": 100, "mode_queries": 50, "warmup": 10, "databases": "sqlite,pgvector"}
PROFILE_SECONDS = 12
QUICK = {"every_nth_page": 15, "latency_chunks": 5_000, "latency_queries": 40, "mode_queries": 20, "warmup": 5, "databases": "sqlite"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- databases -------------------------------------------------------------------------------


class Databases:
    """New, empty databases of one kind, each dropped (or deleted) when its block ends."""

    def __init__(self, kind: str, stack: contextlib.ExitStack) -> None:
        self.kind = kind
        self.admin: str | None = None
        if kind == "pgvector":
            configured = os.environ.get("THREADLINE_TEST_POSTGRES_URL")
            if configured and asyncio.run(has_pgvector(configured)):
                self.admin = configured
            else:
                from tests.pgvector.server import pgvector_server

                self.admin = stack.enter_context(pgvector_server())
        elif kind == "postgresql":
            self.admin = MACHINE_POSTGRES
            if asyncio.run(has_pgvector(self.admin)):
                raise SystemExit("the machine's PostgreSQL has pgvector: the `postgresql` run is meant to show Threadline comparing vectors itself")
        elif kind != "sqlite":
            raise SystemExit(f"unknown database {kind!r}: sqlite, pgvector or postgresql")

    @contextlib.contextmanager
    def new(self) -> Iterator[str]:
        if self.kind == "sqlite":
            with tempfile.TemporaryDirectory(prefix="threadline-bench-") as folder:
                yield f"sqlite:///{folder}/threadline.db"
            return
        name = f"threadline_bench_{uuid.uuid4().hex[:12]}"
        asyncio.run(run_statement(self.admin, f'CREATE DATABASE "{name}"'))
        try:
            yield self.admin.rsplit("/", 1)[0] + "/" + name
        finally:
            asyncio.run(run_statement(self.admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def server_config(folder: Path) -> Path:
    """The scripted model (no model is asked anything here) and the embedded embedder."""
    return write_config(folder / "threadline.toml", {"models": [{"id": "scripted", "provider": "scripted"}]})


def rss_mib(server: ThreadlineServer) -> float:
    process = psutil.Process(server.process.pid)
    return round(sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 2**20, 1)


def cpu_s(server: ThreadlineServer) -> float:
    times = psutil.Process(server.process.pid).cpu_times()
    return times.user + times.system


# --- ranks and measures ----------------------------------------------------------------------


def file_rank(file_ids: list[str], target: str) -> int | None:
    """The target's place among the distinct files of results in order (1-based), if there."""
    seen: list[str] = []
    for file_id in file_ids:
        if file_id not in seen:
            seen.append(file_id)
            if file_id == target:
                return len(seen)
    return None


def distinct_files(file_ids: list[str]) -> int:
    return len(dict.fromkeys(file_ids))


def measures(ranks: list[int | None]) -> dict:
    n = len(ranks)
    if not n:
        return {"queries": 0}
    return {
        "queries": n,
        "recall@10": round(sum(1 for r in ranks if r is not None and r <= 10) / n, 4),
        "ndcg@10": round(sum(1 / math.log2(r + 1) for r in ranks if r is not None and r <= 10) / n, 4),
        "mrr@10": round(sum(1 / r for r in ranks if r is not None and r <= 10) / n, 4),
    }


def halves(items: list[int]) -> dict[str, list[int]]:
    """A fixed split of the known items: alternate items, in corpus order."""
    return {"tune": items[0::2], "test": items[1::2]}


def split_measures(ranks: dict[int, int | None], items: list[int]) -> dict:
    parts = halves(items)
    return {"all": measures([ranks[i] for i in items]), **{name: measures([ranks[i] for i in part]) for name, part in parts.items()}}


# --- 1 and 2: ingestion and quality over HTTP -------------------------------------------------


async def upload_all(http: httpx.AsyncClient, sections: list[Section]) -> list[str]:
    gate = asyncio.Semaphore(UPLOADS_AT_ONCE)
    counts: dict[str, int] = defaultdict(int)
    names = []
    for section in sections:
        counts[section.page] += 1
        names.append(f"{section.page.replace('/', '.')}.{counts[section.page]}.txt")

    async def one(name: str, section: Section) -> str:
        async with gate:
            answer = await http.post("/v1/files", files={"file": (name, section.body.encode(), "text/plain")}, data={"purpose": "assistants"})
            answer.raise_for_status()
            return answer.json()["id"]

    return list(await asyncio.gather(*(one(name, section) for name, section in zip(names, sections))))


async def ingest(base: str, sections: list[Section], server: ThreadlineServer) -> tuple[str, list[str], dict]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        answer = await http.post("/v1/vector_stores", json={"name": "python-docs"})
        answer.raise_for_status()
        vector_store_id = answer.json()["id"]
        cpu_start = cpu_s(server)
        started = time.perf_counter()
        file_ids = await upload_all(http, sections)
        uploaded = time.perf_counter()
        cpu_uploaded = cpu_s(server)
        batches = []
        for start in range(0, len(file_ids), BATCH_FILES):
            answer = await http.post(f"/v1/vector_stores/{vector_store_id}/file_batches", json={"file_ids": file_ids[start : start + BATCH_FILES]})
            answer.raise_for_status()
            batches.append(answer.json()["id"])
        attached = time.perf_counter()
        final = {}
        while len(final) < len(batches):
            for batch_id in batches:
                if batch_id in final:
                    continue
                batch = (await http.get(f"/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}")).json()
                if batch["status"] != "in_progress":
                    final[batch_id] = batch
            if len(final) < len(batches):
                await asyncio.sleep(POLL_S)
        done = time.perf_counter()
        cpu_done = cpu_s(server)
        store = (await http.get(f"/v1/vector_stores/{vector_store_id}")).json()
    counts = store["file_counts"]
    if counts["completed"] != len(sections):
        raise RuntimeError(f"ingestion did not complete every file: {counts}")
    return vector_store_id, file_ids, {
        "seconds": {"uploads": round(uploaded - started, 2), "ingestion": round(done - uploaded, 2), "end_to_end": round(done - started, 2),
                    "attaching": round(attached - uploaded, 3)},
        "server_cpu_s": {"uploads": round(cpu_uploaded - cpu_start, 2), "ingestion": round(cpu_done - cpu_uploaded, 2)},
        "file_counts": counts,
        "usage_bytes": store["usage_bytes"],
        "batches": len(batches),
    }


async def count_chunks(database_url: str, vector_store_id: str) -> int:
    database = Database(database_url)
    try:
        async with database.read() as connection:
            statement = select(func.count()).select_from(chunks).where(chunks.c.vector_store_id == vector_store_id)
            return (await connection.execute(statement)).scalar()
    finally:
        await database.dispose()


async def searched_over_http(base: str, vector_store_id: str, queries: dict[int, str]) -> dict:
    """Each query in each mode over HTTP (max_num_results 50): the results' file ids in order, and latencies."""
    found: dict[str, dict[int, list[str]]] = {mode: {} for mode in MODES}
    latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
    async with httpx.AsyncClient(base_url=base, timeout=120) as http:
        for item, query in queries.items():
            for mode in MODES:
                body = {"query": query, "max_num_results": 50}
                if MODE_OPTIONS[mode] is not None:
                    body["ranking_options"] = MODE_OPTIONS[mode]
                sent = time.perf_counter()
                answer = await http.post(f"/v1/vector_stores/{vector_store_id}/search", json=body)
                latencies[mode].append((time.perf_counter() - sent) * 1000)
                answer.raise_for_status()
                found[mode][item] = [result["file_id"] for result in answer.json()["data"]]
    return {"files": found, "latency_ms": {mode: summarize(values) for mode, values in latencies.items()}}


# --- 3: the fusion replayed --------------------------------------------------------------------


async def candidate_lists(database_url: str, vector_store_id: str, queries: dict[int, str]) -> tuple[dict, dict, dict[int, str]]:
    """Each query's keyword and vector candidates (chunk ids, best first, DEPTH deep) as the
    searcher ranks them, and every chunk's file."""
    database = Database(database_url)
    index = ChunkIndex(database)
    embedder = WordLlamaEmbedder()
    searcher = Searcher(database, embedder, index)
    saved = search_module.CANDIDATES
    search_module.CANDIDATES = DEPTH
    try:
        keyword, vector = {}, {}
        items = list(queries)
        vectors = await embedder.embed([queries[item] for item in items])
        async with database.read() as connection:
            scope = await search_module._scope(connection, PROJECT, [vector_store_id], None)
            for item in items:
                keyword[item] = await searcher._keywords(connection, scope, queries[item])
            for start in range(0, len(items), 64):
                ranked = await searcher._vectors(connection, scope, vectors[start : start + 64])
                for item, chunk_ids in zip(items[start : start + 64], ranked):
                    vector[item] = chunk_ids
            rows = await connection.execute(select(chunks.c.id, chunks.c.file_id).where(chunks.c.vector_store_id == vector_store_id))
            chunk_files = {row.id: row.file_id for row in rows}
    finally:
        search_module.CANDIDATES = saved
        await database.dispose()
    return keyword, vector, chunk_files


def fused_files(keyword: list[int], vector: list[int], chunk_files: dict[int, str], k: float, text_weight: float, embedding_weight: float, depth: int) -> list[str]:
    """The files of the best 50 chunks as the searcher's fusion ranks them with these settings."""
    scores: dict[int, float] = defaultdict(float)
    for weight, ranked in ((text_weight, keyword[:depth]), (embedding_weight, vector[:depth])):
        if weight:
            for rank, chunk_id in enumerate(ranked, start=1):
                scores[chunk_id] += weight / (k + rank)
    best = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:50]
    return [chunk_files[chunk_id] for chunk_id, _ in best]


def replay(keyword: dict, vector: dict, chunk_files: dict, targets: dict[int, str], items: list[int], k, tw, ew, depth) -> dict[int, int | None]:
    return {item: file_rank(fused_files(keyword[item], vector[item], chunk_files, k, tw, ew, depth), targets[item]) for item in items}


def shipped_settings() -> dict:
    """The fusion as search.py has it."""
    text_weight, embedding_weight = search_module.EMBEDDED_WEIGHTS  # the embedder measured here is the embedded one
    return {"k": search_module.RRF_K, "text_weight": text_weight, "embedding_weight": embedding_weight, "depth": search_module.CANDIDATES}


def fusion_analysis(keyword: dict, vector: dict, chunk_files: dict, targets: dict[int, str], items: list[int]) -> dict:
    """Single lists, the shipped settings and a grid, judged on the tune half; the best shown on test."""
    parts = halves(items)
    shipped = shipped_settings()

    def judged(k, tw, ew, depth) -> dict:
        ranks = replay(keyword, vector, chunk_files, targets, items, k, tw, ew, depth)
        return split_measures(ranks, items)

    grid = []
    for k in (1, 5, 10, 20, 30, 60, 100):
        for text_share in (0.5, 0.6, 0.67, 0.75, 0.8):
            for depth in (20, 50, 100, 200):
                tw, ew = text_share, 1 - text_share
                tuned = measures([r for r in replay(keyword, vector, chunk_files, targets, parts["tune"], k, tw, ew, depth).values()])
                grid.append({"k": k, "text_weight": round(tw, 3), "embedding_weight": round(ew, 3), "depth": depth, "tune": tuned})
    best = max(grid, key=lambda row: (row["tune"]["ndcg@10"], row["tune"]["recall@10"]))
    return {
        "depth_taken": DEPTH,
        "keyword_only": judged(60, 1, 0, 100),
        "vector_only": judged(60, 0, 1, 100),
        "shipped": {**shipped, **judged(shipped["k"], shipped["text_weight"], shipped["embedding_weight"], shipped["depth"])},
        "equal_weights_k60_depth100": judged(60, 1, 1, 100),
        "best_on_tune": {key: best[key] for key in ("k", "text_weight", "embedding_weight", "depth")}
        | judged(best["k"], best["text_weight"], best["embedding_weight"], best["depth"]),
        "grid_on_tune": grid,
    }


# --- 4: latency at many chunks -------------------------------------------------------------------


async def fill(database_url: str, sections: list[Section], target_chunks: int) -> tuple[str, dict]:
    """One vector store of `target_chunks` chunks (static 100/0), the corpus repeated under new
    file ids, inserted through ChunkIndex.replace in transactions of 200 files."""
    texts_per_section = [chunk(section.body, 100, 0) for section in sections]
    texts_per_section = [texts for texts in texts_per_section if texts]
    embedder = WordLlamaEmbedder()
    started = time.perf_counter()
    flat = [text for texts in texts_per_section for text in texts]
    vectors = np.concatenate([embedder.embed_now(flat[start : start + 512]) for start in range(0, len(flat), 512)])
    embed_s = time.perf_counter() - started
    offsets = np.cumsum([0] + [len(texts) for texts in texts_per_section])

    database = Database(database_url)
    await migrate(database)
    index = ChunkIndex(database)
    vector_store_id = new_id("vs")
    now = int(time.time())
    strategy = json.dumps(static_strategy(100, 0))
    started = time.perf_counter()
    total, copies, files_made = 0, 0, 0
    try:
        async with database.write() as connection:
            await connection.execute(
                insert(vector_stores).values(id=vector_store_id, project=PROJECT, created_at=now, last_active_at=now,
                                             data=json.dumps({"name": "python-docs-100k"}), embedder=embedder.name)
            )
        while total < target_chunks:
            copies += 1
            for start in range(0, len(texts_per_section), 200):
                if total >= target_chunks:
                    break
                async with database.write() as connection:
                    for position in range(start, min(start + 200, len(texts_per_section))):
                        if total >= target_chunks:
                            break
                        texts = texts_per_section[position][: target_chunks - total]
                        embeddings = vectors[offsets[position] : offsets[position] + len(texts)]
                        file_id = new_id("file")
                        size = sum(len(text.encode()) for text in texts)
                        await connection.execute(insert(files).values(
                            id=file_id, project=PROJECT, created_at=now, filename=f"copy{copies}.{position}.txt", purpose="assistants", bytes=size, complete=True))
                        await connection.execute(insert(vector_store_files).values(
                            vector_store_id=vector_store_id, file_id=file_id, project=PROJECT, created_at=now, status="completed",
                            usage_bytes=size, attributes="{}", chunking_strategy=strategy))
                        await index.replace(connection, vector_store_id, file_id, texts, embeddings)
                        total += len(texts)
                        files_made += 1
        async with database.write() as connection:
            await connection.execute(update(vector_stores).where(vector_stores.c.id == vector_store_id).values(last_active_at=now))
        if not database.is_sqlite:
            async with database.write() as connection:
                await connection.exec_driver_sql("ANALYZE")
    finally:
        await database.dispose()
    return vector_store_id, {
        "chunks": total, "files": files_made, "copies_of_the_corpus": copies, "distinct_chunks": len(flat),
        "embed_s": round(embed_s, 1), "insert_s": round(time.perf_counter() - started, 1),
    }


async def http_latency(base: str, vector_store_id: str, queries: list[str], warmup: int, per_mode: int) -> dict:
    """Hybrid for every query, and each single mode for the first `per_mode`, on one keep-alive
    connection after `warmup` searches; the modes interleaved query by query."""
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=httpx.Limits(max_connections=1)) as http:

        async def one(query: str, mode: str) -> float:
            body = {"query": query, "max_num_results": 10}
            if MODE_OPTIONS[mode] is not None:
                body["ranking_options"] = MODE_OPTIONS[mode]
            sent = time.perf_counter()
            answer = await http.post(f"/v1/vector_stores/{vector_store_id}/search", json=body)
            elapsed = (time.perf_counter() - sent) * 1000
            answer.raise_for_status()
            if not answer.json()["data"]:
                raise RuntimeError(f"no results for {query!r} ({mode})")
            return elapsed

        for query in queries[:warmup]:
            for mode in MODES:
                await one(query, mode)
        for number, query in enumerate(queries[warmup:]):
            for mode in MODES if number < per_mode else ("hybrid",):
                samples[mode].append(await one(query, mode))
    return {mode: summarize(values) for mode, values in samples.items()}


async def in_process_latency(database_url: str, vector_store_id: str, queries: list[str], warmup: int) -> dict:
    """Searcher.search in this process (no HTTP, no server), per mode, interleaved."""
    database = Database(database_url)
    index = ChunkIndex(database)
    searcher = Searcher(database, WordLlamaEmbedder(), index)
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for number, query in enumerate(queries):
            for mode in MODES:
                sent = time.perf_counter()
                await searcher.search(PROJECT, [vector_store_id], [query], max_num_results=10, mode=mode)
                if number >= warmup:
                    samples[mode].append((time.perf_counter() - sent) * 1000)
        # The store's embeddings kept in memory, unless too large to keep (then the index's own way).
        mode = "in memory (numpy)" if len(searcher.embeddings) else await index.mode()
    finally:
        await database.dispose()
    return {"vectors_compared": mode, **{m: summarize(v) for m, v in samples.items()}}


# --- the run ---------------------------------------------------------------------------------


def run_database(kind: str, databases: Databases, sections: list[Section], items: list[int], settings: dict, folder: Path) -> dict:
    config = server_config(folder)
    result: dict = {}
    if "quality" in settings["parts"]:
        with databases.new() as url:
            result.update(quality_part(kind, url, config, sections, items))
    if "latency" in settings["parts"]:
        with databases.new() as url:
            result["latency"] = latency_part(kind, url, config, sections, items, settings)
    return result


def quality_part(kind: str, url: str, config: Path, sections: list[Section], items: list[int]) -> dict:
    """Steps 1-3 on a new database."""
    pages = len({section.page for section in sections})
    queries = {item: sections[item].title for item in items}
    result: dict = {}
    with ThreadlineServer(url, config) as server:
        result["rss_mib_at_start"] = rss_mib(server)
        log(f"{kind}: uploading {len(sections):,} sections of {pages:,} pages and ingesting them")
        vector_store_id, file_ids, ingestion = asyncio.run(ingest(server.url, sections, server))
        chunk_count = asyncio.run(count_chunks(url, vector_store_id))
        seconds = ingestion["seconds"]
        ingestion.update({
            "pages": pages, "sections": len(sections), "chunks": chunk_count,
            "bytes": sum(len(section.body.encode()) for section in sections),
            "rss_mib_after": rss_mib(server),
            "per_s": {span: {"pages": round(pages / seconds[span], 2), "sections": round(len(sections) / seconds[span], 1),
                             "chunks": round(chunk_count / seconds[span], 1)} for span in ("ingestion", "end_to_end")},
            "uploads_per_s": round(len(sections) / seconds["uploads"], 1),
        })
        result["ingestion"] = ingestion
        log(f"{kind}: {chunk_count:,} chunks; ingestion {seconds['ingestion']} s ({ingestion['per_s']['ingestion']}), uploads {seconds['uploads']} s")
        targets = {item: file_ids[item] for item in items}
        log(f"{kind}: each known item's candidate lists, {DEPTH} deep, in-process")
        keyword, vector, chunk_files = asyncio.run(candidate_lists(url, vector_store_id, queries))
        sample = items[:: max(1, len(items) // HTTP_CHECKS)]
        log(f"{kind}: {len(sample)} of them searched over HTTP in each mode")
        over_http = asyncio.run(searched_over_http(server.url, vector_store_id, {item: queries[item] for item in sample}))
        result["rss_mib_after_searches"] = rss_mib(server)
    settings = shipped_settings()
    quality: dict = {"how": "the searcher's own candidate lists fused as it fuses them (max_num_results 50), results reduced to distinct files"}
    for mode in MODES:
        tw, ew = {"hybrid": (settings["text_weight"], settings["embedding_weight"]), "keyword": (1, 0), "vector": (0, 1)}[mode]
        replayed = {item: fused_files(keyword[item], vector[item], chunk_files, settings["k"], tw, ew, settings["depth"]) for item in items}
        quality[mode] = split_measures({item: file_rank(replayed[item], targets[item]) for item in items}, items)
        http_files = over_http["files"][mode]
        quality[mode]["http_sample"] = {
            "queries": len(sample),
            "identical_results": sum(http_files[item] == replayed[item] for item in sample),
            "over_http": measures([file_rank(http_files[item], targets[item]) for item in sample]),
            "replayed": measures([file_rank(replayed[item], targets[item]) for item in sample]),
        }
        quality[mode]["fewer_than_10_files_in_50_results"] = sum(1 for item in items if len(replayed[item]) == 50 and distinct_files(replayed[item]) < 10)
        log(f"{kind}: {mode:7} {quality[mode]['all']}; HTTP identical {quality[mode]['http_sample']['identical_results']}/{len(sample)}")
    quality["search_latency_ms_at_this_size"] = over_http["latency_ms"]
    result["quality"] = quality
    result["fusion"] = fusion_analysis(keyword, vector, chunk_files, targets, items)
    best = result["fusion"]["best_on_tune"]
    log(f"{kind}: best on tune: k={best['k']} text={best['text_weight']} embedding={best['embedding_weight']} depth={best['depth']}: "
        f"test {best['test']}; shipped test {result['fusion']['shipped']['test']}")
    return result


def latency_part(kind: str, url: str, config: Path, sections: list[Section], items: list[int], settings: dict) -> dict:
    """Step 4 on a new database."""
    log(f"{kind}: filling a vector store with {settings['latency_chunks']:,} chunks in-process")
    vector_store_id, filled = asyncio.run(fill(url, sections, settings["latency_chunks"]))
    log(f"{kind}: {filled}")
    ordered = [sections[item].title for item in items]
    wanted = settings["warmup"] + settings["latency_queries"]
    queries = (ordered * (wanted // len(ordered) + 1))[:wanted]
    with ThreadlineServer(url, config) as server:
        rss_start = rss_mib(server)
        log(f"{kind}: timing {settings['latency_queries']} searches over HTTP")
        http = asyncio.run(http_latency(server.url, vector_store_id, queries, settings["warmup"], settings["mode_queries"]))
        rss_end = rss_mib(server)
        profiled = profile_searches(kind, server, vector_store_id, queries, settings["profile"]) if settings["profile"] else None
    log(f"{kind}: HTTP " + ", ".join(f"{mode} p50 {v['p50']:.1f} / p99 {v['p99']:.1f} ms" for mode, v in http.items()))
    in_process = asyncio.run(in_process_latency(url, vector_store_id, queries[: settings["warmup"] + settings["mode_queries"]], settings["warmup"]))
    log(f"{kind}: in-process " + ", ".join(f"{mode} p50 {v['p50']:.1f} / p99 {v['p99']:.1f} ms" for mode, v in in_process.items() if mode in MODES))
    return {**filled, "http_ms": http, "in_process_ms": in_process, "server_rss_mib": {"after_start": rss_start, "after_searches": rss_end},
            **({"profile": profiled} if profiled else {})}


def profile_searches(kind: str, server: ThreadlineServer, vector_store_id: str, queries: list[str], folder: Path) -> dict:
    """py-spy on the server during hybrid searches over HTTP, one after another for about
    PROFILE_SECONDS: search_flamegraph_<kind>.svg and the collapsed stacks beside it
    (search_profile_<kind>.raw), which run.py summarizes when the latency target is missed."""
    folder.mkdir(parents=True, exist_ok=True)
    svg, raw = folder / f"search_flamegraph_{kind}.svg", folder / f"search_profile_{kind}.raw"
    # Every thread's samples: SQLite works with the GIL released, and that time is what is looked for.
    recorders = py_spy(server.process.pid, PROFILE_SECONDS, svg, raw, gil=False)
    log(f"{kind}: profiling hybrid searches for {PROFILE_SECONDS} s")
    time.sleep(1.0)  # py-spy attaches
    cpu_before, began = cpu_s(server), time.monotonic()
    searches = asyncio.run(hybrid_searches(server.url, vector_store_id, queries, PROFILE_SECONDS - 2))
    seconds, cpu = time.monotonic() - began, cpu_s(server) - cpu_before
    for recorder in recorders:
        recorder.wait(timeout=60)
    return {"flamegraph": svg.name, "raw": raw.name, "searches": searches, "searches_per_s": round(searches / seconds, 2),
            "cpu_ms_per_search": round(cpu * 1000 / max(1, searches), 2)}


async def hybrid_searches(base: str, vector_store_id: str, queries: list[str], seconds: float) -> int:
    """Hybrid searches one after another for `seconds`; how many were made."""
    done, deadline = 0, time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=600) as http:
        while time.monotonic() < deadline:
            answer = await http.post(f"/v1/vector_stores/{vector_store_id}/search", json={"query": queries[done % len(queries)], "max_num_results": 10})
            answer.raise_for_status()
            done += 1
    return done


def subset(sections: list[Section], every_nth_page: int) -> list[Section]:
    pages = sorted({section.page for section in sections})
    kept = set(pages[::every_nth_page])
    return [section for section in sections if section.page in kept]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small subset, SQLite only: seconds, not minutes")
    parser.add_argument("--database", default=None, help="comma-separated: sqlite, pgvector, postgresql (default sqlite,pgvector; --quick: sqlite)")
    parser.add_argument("--latency-chunks", type=int, default=None)
    parser.add_argument("--latency-queries", type=int, default=None)
    parser.add_argument("--parts", default="quality,latency", help="quality (steps 1-3), latency (step 4), or both")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--profile", action="store_true", help="py-spy on the server during hybrid searches of the latency part (files beside --output)")
    args = parser.parse_args()
    path = args.output or RESULTS / ("retrieval_quick.json" if args.quick else "retrieval.json")
    settings = dict(QUICK if args.quick else FULL, parts=args.parts, profile=path.parent if args.profile else None)
    for name in ("database", "latency_chunks", "latency_queries"):
        if getattr(args, name) is not None:
            settings["databases" if name == "database" else name] = getattr(args, name)

    began = time.monotonic()
    everything = corpus()
    sections = subset(everything, settings["every_nth_page"])
    items = known_items(sections)
    results = {
        "machine": {**machine(), "load_average_start": list(os.getloadavg())},
        "suite": "quick" if args.quick else "full",
        "settings": settings,
        "corpus": {"source": "Debian python3.11-doc, /usr/share/doc/python3.11/html/_sources", "pages": len({s.page for s in sections}),
                   "sections": len(sections), "words": sum(s.words for s in sections), "known_items": len(items),
                   "split": {name: len(part) for name, part in halves(items).items()}},
        "embedder": WordLlamaEmbedder().name,
        "shipped_fusion": shipped_settings(),
        "databases": {},
    }
    log(f"{results['corpus']}")
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="threadline-bench-") as folder:
        for kind in settings["databases"].split(","):
            databases = Databases(kind.strip(), stack)
            begun = time.monotonic()
            results["databases"][kind] = run_database(kind, databases, sections, items, settings, Path(folder))
            results["databases"][kind]["seconds"] = round(time.monotonic() - begun, 1)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    results["seconds"] = round(time.monotonic() - began, 1)
    verdicts = {}
    for kind, result in results["databases"].items():
        if "quality" not in result:
            continue
        quality = result["quality"]
        verdicts[kind] = {part: all(quality["hybrid"][part][m] > quality[mode][part][m] for mode in ("keyword", "vector") for m in ("recall@10", "ndcg@10"))
                          for part in ("all", "test")}
    results["hybrid_beats_both"] = verdicts
    results["settings"]["profile"] = bool(args.profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    log(f"done in {results['seconds']:.0f} s; hybrid beats both single methods: {verdicts}; results in {path}")
    return 0


def table(results: dict) -> str:
    """The README's tables: quality and latency per database and mode, then ingestion."""
    chunks_timed = results["settings"]["latency_chunks"]
    lines = [f"| database | mode | recall@10 (all / test half) | nDCG@10 (all / test half) | search p50 / p99 at {chunks_timed:,} chunks, "
             "HTTP (ms) | in-process p50 / p99 (ms) |", "| --- | --- | --- | --- | --- | --- |"]
    dash = "—"
    for kind, result in results["databases"].items():
        for mode in MODES:
            q = result.get("quality", {}).get(mode)
            h = result.get("latency", {}).get("http_ms", {}).get(mode)
            p = result.get("latency", {}).get("in_process_ms", {}).get(mode)
            lines.append(
                f"| {kind} | {mode} | "
                + (f"{q['all']['recall@10']:.3f} / {q['test']['recall@10']:.3f} | {q['all']['ndcg@10']:.3f} / {q['test']['ndcg@10']:.3f}" if q else f"{dash} | {dash}")
                + (f" | {h['p50']:.1f} / {h['p99']:.1f}" if h else f" | {dash}")
                + (f" | {p['p50']:.1f} / {p['p99']:.1f} |" if p else f" | {dash} |")
            )
    lines += ["", "| database | pages/s | sections/s | chunks/s | end to end with uploads: pages/s | server RSS after the searches at "
              f"{chunks_timed:,} chunks (MiB) |", "| --- | --- | --- | --- | --- | --- |"]
    for kind, result in results["databases"].items():
        per_s = result.get("ingestion", {}).get("per_s")
        rss = result.get("latency", {}).get("server_rss_mib", {}).get("after_searches", dash)
        if per_s:
            lines.append(f"| {kind} | {per_s['ingestion']['pages']} | {per_s['ingestion']['sections']} | {per_s['ingestion']['chunks']} "
                         f"| {per_s['end_to_end']['pages']} | {rss} |")
        else:
            lines.append(f"| {kind} | {dash} | {dash} | {dash} | {dash} | {rss} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
