"""Ingestion caught in the middle (its embeddings upstream held at a gate): a cancel or a delete
made meanwhile wins, and what was embedded is never written; a vector store keeps to one embedder."""

from __future__ import annotations

import io
import time

import openai
import pytest

from tests.conftest import FAST_WORKERS
from tests.gated_embeddings import GatedEmbeddingsServer
from tests.helpers import database_rows
from tests.servers import ThreadlineServer, write_config
from threadline.jobs.ingestion import EMBED_BATCH, MAX_ATTEMPTS
from threadline.retrieval.chunking import chunk
from threadline.store.chunks import ROWS_PER_WRITE

TEXT = "Lighthouses guide ships along rocky coasts at night. " * 20


@pytest.fixture(scope="module")
def embeddings():
    with GatedEmbeddingsServer() as running:
        yield running


@pytest.fixture(scope="module")
def server(start_server, embeddings):
    return start_server({"workers": FAST_WORKERS | {"ingest_retry_s": 0.05}, "embeddings": embeddings.config()})


@pytest.fixture
def gate(embeddings):
    """The embeddings gate, open again when the test ends."""
    yield embeddings
    embeddings.let_through = embeddings.failures = 0
    embeddings.gate.set()


def upload(client: openai.OpenAI, filename: str, text: str = TEXT) -> str:
    return client.files.create(file=(filename, io.BytesIO(text.encode())), purpose="assistants").id


def until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def settle(client: openai.OpenAI, vector_store_id: str) -> None:
    """Wait until the ingestion under way has ended: a file attached after it is ingested
    after it (each process ingests one file at a time, oldest first)."""
    marker = upload(client, "marker.txt", "The marker file.")
    assert client.vector_stores.files.create_and_poll(file_id=marker, vector_store_id=vector_store_id).status == "completed"


def stored_chunks(server, vector_store_id: str, file_id: str | None = None) -> int:
    """How many chunk rows the database holds for the store (and file)."""
    if file_id is None:
        return database_rows(server.database_url, "SELECT count(*) FROM chunks WHERE vector_store_id = {}", vector_store_id)[0][0]
    query = "SELECT count(*) FROM chunks WHERE vector_store_id = {} AND file_id = {}"
    return database_rows(server.database_url, query, vector_store_id, file_id)[0][0]


SMALL_CHUNKS = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
LONG_TEXT = " ".join(f"Beacon {n} flashes twice over the harbour wall." for n in range(3000))


def test_a_long_file_is_written_a_batch_at_a_time_and_searched_once_complete(client, gate, server):
    expected = chunk(LONG_TEXT, 100, 0)
    assert len(expected) > 2 * ROWS_PER_WRITE
    store = client.vector_stores.create()
    file_id = upload(client, "beacons.txt", LONG_TEXT)
    gate.close_after(ROWS_PER_WRITE // EMBED_BATCH)  # the embeddings of the first batch of chunks
    client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id, chunking_strategy=SMALL_CHUNKS)
    until(lambda: gate.waiting >= 1)

    # The first batch is stored, in a transaction of its own, while the rest wait for embeddings;
    # until the file is completed search sees none of it.
    assert stored_chunks(server, store.id, file_id) == ROWS_PER_WRITE
    assert client.vector_stores.files.retrieve(file_id, vector_store_id=store.id).status == "in_progress"
    gate.close_after(1)  # the search's own embedding
    assert client.vector_stores.search(store.id, query="beacon harbour wall").data == []

    gate.gate.set()
    done = client.vector_stores.files.poll(file_id, vector_store_id=store.id, poll_interval_ms=50)
    assert done.status == "completed" and done.usage_bytes == sum(len(text.encode()) for text in expected)
    assert [part.text for part in client.vector_stores.files.content(file_id=file_id, vector_store_id=store.id)] == expected
    assert client.vector_stores.search(store.id, query="beacon harbour wall").data

    # Attached again, it is written afresh: its old chunks go first, none twice.
    client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=store.id, chunking_strategy=SMALL_CHUNKS)
    assert stored_chunks(server, store.id, file_id) == len(expected)
    client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    assert stored_chunks(server, store.id) == 0


def test_deleting_a_store_or_a_file_removes_every_chunk(client, server):
    stores = [client.vector_stores.create() for _ in range(2)]
    file_id = upload(client, "beacons.txt", LONG_TEXT)
    for store in stores:
        client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=store.id, chunking_strategy=SMALL_CHUNKS)
    assert stored_chunks(server, stores[0].id) > 2 * ROWS_PER_WRITE
    client.vector_stores.delete(stores[0].id)
    assert stored_chunks(server, stores[0].id) == 0 and stored_chunks(server, stores[1].id) > 2 * ROWS_PER_WRITE
    client.files.delete(file_id)
    assert stored_chunks(server, stores[1].id) == 0
    assert client.vector_stores.retrieve(stores[1].id).file_counts.total == 0


def test_cancel_wins_over_an_ingestion_under_way(client, gate):
    store = client.vector_stores.create()
    file_ids = [upload(client, f"part{n}.txt") for n in range(3)]
    gate.gate.clear()
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=file_ids)
    assert batch.status == "in_progress" and batch.file_counts.in_progress == 3
    until(lambda: gate.waiting >= 1)  # one file is being embedded

    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"
    assert cancelled.file_counts.model_dump() == {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 3, "total": 3}
    gate.gate.set()
    settle(client, store.id)

    files = list(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id))
    assert sorted(file.id for file in files) == sorted(file_ids) and {file.status for file in files} == {"cancelled"}
    for file_id in file_ids:
        assert list(client.vector_stores.files.content(file_id=file_id, vector_store_id=store.id)) == []
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.cancelled, counts.completed, counts.total) == (3, 1, 4)
    assert list(client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="cancelled"))


def test_delete_wins_over_an_ingestion_under_way(client, gate):
    store = client.vector_stores.create()
    file_id = upload(client, "doomed.txt")
    gate.gate.clear()
    client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    until(lambda: gate.waiting >= 1)
    client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    gate.gate.set()
    settle(client, store.id)

    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    assert all(result.file_id != file_id for result in client.vector_stores.search(store.id, query="lighthouses").data)


def test_deleting_the_store_under_way(client, gate):
    store = client.vector_stores.create()
    file_id = upload(client, "gone.txt")
    gate.gate.clear()
    client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id)
    until(lambda: gate.waiting >= 1)
    client.vector_stores.delete(store.id)
    gate.gate.set()
    settle(client, client.vector_stores.create().id)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(store.id)
    assert client.files.retrieve(file_id).id == file_id


def test_a_vector_store_keeps_to_one_embedder(fresh_database_url, embeddings, tmp_path):
    embedded = write_config(tmp_path / "embedded.toml", {"workers": FAST_WORKERS})
    upstream = write_config(tmp_path / "upstream.toml", {"workers": FAST_WORKERS, "embeddings": embeddings.config()})
    with ThreadlineServer(fresh_database_url, embedded) as first:
        client = openai.OpenAI(base_url=first.url + "/v1", api_key="unused", max_retries=0)
        store = client.vector_stores.create()
        done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("first.txt", io.BytesIO(TEXT.encode())))
        assert done.status == "completed"
    with ThreadlineServer(fresh_database_url, upstream) as second:
        client = openai.OpenAI(base_url=second.url + "/v1", api_key="unused", max_retries=0)
        refused = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("second.txt", io.BytesIO(TEXT.encode())))
        assert refused.status == "failed" and refused.last_error.code == "server_error"
        assert "embedded/" in refused.last_error.message and "openai/bag-of-words" in refused.last_error.message
        assert list(client.vector_stores.files.content(file_id=refused.id, vector_store_id=store.id)) == []
        # A new store takes this server's embedder.
        other = client.vector_stores.create()
        assert client.vector_stores.files.create_and_poll(file_id=done.id, vector_store_id=other.id).status == "completed"


def expire(server, file_id: str) -> None:
    """Move the File's expiry into the past, as the clock would."""
    database_rows(server.database_url, "UPDATE files SET expires_at = 1 WHERE id = {} RETURNING id", file_id)


def test_an_expired_file_is_swept_with_its_chunks(client, server):
    store = client.vector_stores.create()
    kept = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("kept.txt", io.BytesIO(b"Penguins huddle on the ice.")))
    expiring = client.files.create(
        file=("beacons.txt", io.BytesIO(LONG_TEXT.encode())), purpose="assistants", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    client.vector_stores.files.create_and_poll(file_id=expiring.id, vector_store_id=store.id, chunking_strategy=SMALL_CHUNKS)
    assert expiring.id in {result.file_id for result in client.vector_stores.search(store.id, query="beacon harbour").data}

    expire(server, expiring.id)
    # Within a heartbeat or so the worker removes it: its chunks, so search no longer finds it.
    until(lambda: stored_chunks(server, store.id, expiring.id) == 0)
    assert {result.file_id for result in client.vector_stores.search(store.id, query="beacon harbour").data} == {kept.id}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(expiring.id, vector_store_id=store.id)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    assert client.vector_stores.files.retrieve(kept.id, vector_store_id=store.id).status == "completed"


def test_a_file_that_expires_while_queued_fails(fresh_database_url, embeddings, gate, tmp_path):
    # A slow heartbeat: the file is still there, expired, when its turn comes.
    workers = FAST_WORKERS | {"heartbeat_s": 60, "lease_s": 300}
    config = write_config(tmp_path / "threadline.toml", {"workers": workers, "embeddings": embeddings.config()})
    with ThreadlineServer(fresh_database_url, config) as running:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0)
        store = client.vector_stores.create()
        first = upload(client, "first.txt")
        expiring = client.files.create(file=("soon.txt", io.BytesIO(TEXT.encode())), purpose="assistants", expires_after={"anchor": "created_at", "seconds": 3600})
        gate.gate.clear()
        client.vector_stores.files.create(vector_store_id=store.id, file_id=first)
        until(lambda: gate.waiting >= 1)  # the first file holds this process; the other waits its turn
        client.vector_stores.files.create(vector_store_id=store.id, file_id=expiring.id)
        expire(running, expiring.id)
        gate.gate.set()
        failed = client.vector_stores.files.poll(expiring.id, vector_store_id=store.id, poll_interval_ms=50)
        assert failed.status == "failed" and failed.last_error.code == "invalid_file" and "expired" in failed.last_error.message
        assert list(client.vector_stores.files.content(file_id=expiring.id, vector_store_id=store.id)) == []
        assert client.vector_stores.files.poll(first, vector_store_id=store.id, poll_interval_ms=50).status == "completed"


def test_an_embedder_failing_for_a_while_is_tried_again(client, gate):
    store = client.vector_stores.create()
    gate.failures = MAX_ATTEMPTS - 1
    done = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("retried.txt", io.BytesIO(TEXT.encode())), poll_interval_ms=50)
    assert done.status == "completed" and done.last_error is None
    assert list(client.vector_stores.files.content(file_id=done.id, vector_store_id=store.id))

    gate.failures = MAX_ATTEMPTS
    failed = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("given_up.txt", io.BytesIO(TEXT.encode())), poll_interval_ms=50)
    assert failed.status == "failed" and failed.last_error.code == "server_error" and "503" in failed.last_error.message
    assert gate.failures == 0
    counts = client.vector_stores.retrieve(store.id).file_counts
    assert (counts.completed, counts.failed, counts.total) == (1, 1, 2)
    # Attached again, it starts afresh.
    assert client.vector_stores.files.create_and_poll(file_id=failed.id, vector_store_id=store.id, poll_interval_ms=50).status == "completed"


def test_search_answers_502_when_the_embedder_fails(client, gate):
    store = client.vector_stores.create()
    client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("a.txt", io.BytesIO(TEXT.encode())))
    before = client.vector_stores.retrieve(store.id)
    gate.failures = 1
    with pytest.raises(openai.APIStatusError) as failed:
        client.with_options(max_retries=0).vector_stores.search(store.id, query="lighthouses")
    assert failed.value.status_code == 502 and failed.value.body["type"] == "server_error" and "503" in failed.value.body["message"]
    assert client.vector_stores.retrieve(store.id).last_active_at == before.last_active_at
    assert client.vector_stores.search(store.id, query="lighthouses").data
