"""Ingestion across processes on one database: a file attached through one server is searched
alike through another, and a server SIGKILLed in the middle of an ingestion leaves no file
stuck: another takes it up, and it ends completed, counted once, its chunks stored once."""

from __future__ import annotations

import io
import time

import openai
import pytest

from tests.conftest import FAST_WORKERS
from tests.gated_embeddings import GatedEmbeddingsServer
from tests.servers import ThreadlineServer, write_config
from threadline.retrieval.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS, chunk

pytestmark = pytest.mark.slow

TEXT = " ".join(f"Chapter {n}: the keeper of lighthouse {n} logs the passing ships and the weather." for n in range(200))


def sdk(server: ThreadlineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def test_ingested_through_one_searched_alike_through_another(fresh_database_url, tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"workers": FAST_WORKERS})
    with ThreadlineServer(fresh_database_url, config) as first, ThreadlineServer(fresh_database_url, config) as second:
        a, b = sdk(first), sdk(second)
        store = a.vector_stores.create(name="shared")
        batch = a.vector_stores.file_batches.upload_and_poll(
            vector_store_id=store.id,
            files=[("lighthouses.txt", io.BytesIO(TEXT.encode())), ("penguins.txt", io.BytesIO(b"Emperor penguins live in Antarctica."))],
        )
        assert batch.file_counts.completed == 2
        assert b.vector_stores.retrieve(store.id) == a.vector_stores.retrieve(store.id)
        for query in ("Where do penguins live?", "lighthouse keeper weather"):
            through_a = a.vector_stores.search(store.id, query=query).model_dump()
            through_b = b.vector_stores.search(store.id, query=query).model_dump()
            assert through_a == through_b and through_a["data"]


def test_a_process_killed_mid_ingestion_leaves_its_file_to_another(fresh_database_url, tmp_path):
    with GatedEmbeddingsServer() as embeddings:
        config = write_config(tmp_path / "threadline.toml", {"workers": FAST_WORKERS, "embeddings": embeddings.config()})
        doomed = ThreadlineServer(fresh_database_url, config).start()
        try:
            a = sdk(doomed)
            store = a.vector_stores.create()
            file_id = a.files.create(file=("log.txt", io.BytesIO(TEXT.encode())), purpose="assistants").id
            embeddings.gate.clear()
            a.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
            until(lambda: embeddings.waiting >= 1)  # the file is half done, in the doomed process
        finally:
            doomed.kill()
        with ThreadlineServer(fresh_database_url, config) as survivor:
            b = sdk(survivor)
            assert b.vector_stores.files.retrieve(file_id, vector_store_id=store.id).status == "in_progress"
            embeddings.gate.set()
            done = b.vector_stores.files.poll(file_id, vector_store_id=store.id, poll_interval_ms=50)
            assert done.status == "completed" and done.last_error is None
            counts = b.vector_stores.retrieve(store.id).file_counts
            assert counts.model_dump() == {"in_progress": 0, "completed": 1, "failed": 0, "cancelled": 0, "total": 1}
            content = [part.text for part in b.vector_stores.files.content(file_id=file_id, vector_store_id=store.id)]
            assert content == chunk(TEXT, AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS)
            assert done.usage_bytes == sum(len(text.encode()) for text in content)
