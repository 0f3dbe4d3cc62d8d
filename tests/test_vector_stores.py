"""The Vector Stores API through the official SDK: vector stores, their files and batches,
ingestion ending completed or failed with the right counts, content, search, bad input
refused with nothing stored, and other projects' objects unseen."""

from __future__ import annotations

import io

import openai
import pytest

from tests.documents import corrupt_pdf, docx, pdf
from tests.helpers import database_rows

VECTOR_STORE_TABLES = ("vector_stores", "vector_store_files", "vector_store_file_batches")

PARIS = "Paris is the capital of France. The Eiffel Tower stands on the Champ de Mars. " * 3
PENGUINS = "Emperor penguins live in Antarctica and breed during the polar winter."


def upload(client: openai.OpenAI, filename: str, data: bytes | str) -> str:
    data = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(filename, io.BytesIO(data)), purpose="assistants").id


def status_of(error: pytest.ExceptionInfo) -> tuple[int, str | None]:
    return error.value.status_code, error.value.body.get("param") if isinstance(error.value.body, dict) else None


def test_create_retrieve_modify_list_and_delete(client):
    created = client.vector_stores.create(
        name="handbook", description="The staff handbook", metadata={"team": "docs"}, expires_after={"anchor": "last_active_at", "days": 7}
    )
    assert created.id.startswith("vs_") and created.object == "vector_store"
    assert (created.name, created.metadata, created.status, created.usage_bytes) == ("handbook", {"team": "docs"}, "completed", 0)
    assert created.file_counts.total == 0
    assert created.expires_after.days == 7 and created.expires_at == created.last_active_at + 7 * 86400
    assert client.vector_stores.retrieve(created.id) == created

    modified = client.vector_stores.update(created.id, name="manual", metadata={"team": "ops"}, expires_after=None)
    assert (modified.name, modified.metadata, modified.expires_after, modified.expires_at) == ("manual", {"team": "ops"}, None, None)
    renamed_only = client.vector_stores.update(created.id, name="manual 2")
    assert renamed_only.metadata == {"team": "ops"}

    others = [client.vector_stores.create(name=f"other {n}") for n in range(2)]
    ours = {created.id, *(store.id for store in others)}
    # Newest first, stores made within one second too.
    newest_first = [store.id for store in client.vector_stores.list(limit=100) if store.id in ours]
    assert newest_first == [store.id for store in reversed(others)] + [created.id]
    oldest_first = [store.id for store in client.vector_stores.list(limit=100, order="asc") if store.id in ours]
    assert oldest_first == newest_first[::-1]
    middle = newest_first[1]
    page = client.vector_stores.list(limit=1, after=newest_first[0])
    assert [store.id for store in page.data] == [middle] and page.has_more
    page = client.vector_stores.list(limit=1, before=newest_first[2])
    assert [store.id for store in page.data] == [middle]
    page = client.vector_stores.list(limit=2, before=newest_first[2])
    assert [store.id for store in page.data] == newest_first[:2]

    file_id = upload(client, "kept.txt", PARIS)
    client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=created.id)
    deleted = client.vector_stores.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "vector_store.deleted")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(created.id)
    assert client.files.retrieve(file_id).id == file_id  # the File remains


def test_files_ingested_counted_and_searched(client):
    store = client.vector_stores.create(name="facts")
    paris = upload(client, "paris.txt", PARIS)
    attached = client.vector_stores.files.create_and_poll(file_id=paris, vector_store_id=store.id, attributes={"topic": "geography", "year": 2024, "public": True})
    assert (attached.id, attached.status, attached.last_error, attached.vector_store_id) == (paris, "completed", None, store.id)
    assert attached.attributes == {"topic": "geography", "year": 2024, "public": True}
    assert attached.chunking_strategy.type == "static"
    assert (attached.chunking_strategy.static.max_chunk_size_tokens, attached.chunking_strategy.static.chunk_overlap_tokens) == (800, 400)
    assert attached.usage_bytes == len(PARIS.strip().encode())

    uploaded = client.vector_stores.files.upload_and_poll(vector_store_id=store.id, file=("penguins.md", io.BytesIO(PENGUINS.encode())))
    assert uploaded.status == "completed"

    after = client.vector_stores.retrieve(store.id)
    assert after.status == "completed"
    assert after.file_counts.model_dump() == {"in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2}
    assert after.usage_bytes == attached.usage_bytes + uploaded.usage_bytes
    assert after.last_active_at >= store.last_active_at

    results = client.vector_stores.search(store.id, query="Where do emperor penguins live?", max_num_results=1)
    assert [result.filename for result in results.data] == ["penguins.md"]
    (best,) = results.data
    assert best.file_id == uploaded.id and best.content[0].text == PENGUINS and 0 <= best.score <= 1
    both = client.vector_stores.search(store.id, query=["Eiffel Tower", "penguins"])
    assert {result.file_id for result in both.data} == {paris, uploaded.id}

    raw = client.vector_stores.with_raw_response.search(store.id, query="penguins").http_response.json()
    assert (raw["object"], raw["search_query"], raw["has_more"], raw["next_page"]) == ("vector_store.search_results.page", ["penguins"], False, None)


def test_batch_of_every_kind_and_failures(client):
    store = client.vector_stores.create(name="library")
    batch = client.vector_stores.file_batches.upload_and_poll(
        vector_store_id=store.id,
        files=[
            ("notes.txt", io.BytesIO(PARIS.encode())),
            ("paper.pdf", io.BytesIO(pdf(["Quantum tunnelling explained", "Second page on barriers"]))),
            ("memo.docx", io.BytesIO(docx(["Quarterly memo", "Budget is approved."]))),
            ("page.html", io.BytesIO(b"<html><body><script>nope()</script><p>Hello from HTML</p></body></html>")),
            ("tool.exe", io.BytesIO(b"MZ\x90\x00binary")),
            ("broken.pdf", io.BytesIO(corrupt_pdf())),
        ],
    )
    assert batch.object == "vector_store.files_batch" and batch.status == "completed"
    assert batch.file_counts.model_dump() == {"in_progress": 0, "completed": 4, "failed": 2, "cancelled": 0, "total": 6}
    assert client.vector_stores.retrieve(store.id).file_counts.total == 6

    failed = {file.id: file for file in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id, filter="failed")}
    assert sorted(file.last_error.code for file in failed.values()) == ["invalid_file", "unsupported_file"]
    assert all(file.status == "failed" and file.usage_bytes == 0 and file.last_error.message for file in failed.values())
    completed = list(client.vector_stores.files.list(store.id, filter="completed"))
    assert len(completed) == 4 and not failed.keys() & {file.id for file in completed}
    assert list(client.vector_stores.files.list(store.id, filter="in_progress")) == []

    texts = {}
    for file in completed:
        content = client.vector_stores.files.content(file_id=file.id, vector_store_id=store.id)
        texts[client.files.retrieve(file.id).filename] = "\n".join(part.text for part in content)
    assert texts["paper.pdf"] == "Quantum tunnelling explained\n\nSecond page on barriers"
    assert texts["memo.docx"] == "Quarterly memo\nBudget is approved."
    assert texts["page.html"] == "Hello from HTML"


def test_batch_with_per_file_settings_and_listing(client):
    store = client.vector_stores.create()
    first, second = upload(client, "a.txt", PARIS), upload(client, "b.txt", PENGUINS)
    batch = client.vector_stores.file_batches.create_and_poll(
        vector_store_id=store.id,
        files=[
            {"file_id": first, "attributes": {"kind": "city"}, "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}},
            {"file_id": second},
        ],
    )
    assert batch.file_counts.completed == 2
    files = {file.id: file for file in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)}
    assert files[first].attributes == {"kind": "city"} and files[first].chunking_strategy.static.max_chunk_size_tokens == 100
    assert files[second].attributes == {} and files[second].chunking_strategy.static.max_chunk_size_tokens == 800
    assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id) == batch

    shared = client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[second], attributes={"kind": "animal"})
    assert shared.file_counts.total == 1
    assert client.vector_stores.files.retrieve(second, vector_store_id=store.id).attributes == {"kind": "animal"}
    # Attached again, a file is still one file of the store.
    assert client.vector_stores.retrieve(store.id).file_counts.total == 2
    assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).file_counts.total == 1

    # Attached again on its own, a file stays in its batch.
    again = client.vector_stores.files.create_and_poll(file_id=first, vector_store_id=store.id, attributes={"kind": "capital"})
    assert again.attributes == {"kind": "capital"}
    kept = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
    assert kept.file_counts.model_dump() == {"in_progress": 0, "completed": 1, "failed": 0, "cancelled": 0, "total": 1}
    assert [file.id for file in client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)] == [first]


def test_chunks_attributes_and_removal(client):
    store = client.vector_stores.create()
    text = " ".join(f"Sentence {n} of the long file." for n in range(300))
    file_id = upload(client, "long.txt", text)
    attached = client.vector_stores.files.create_and_poll(
        file_id=file_id, vector_store_id=store.id, chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 50}}
    )
    chunks = [part.text for part in client.vector_stores.files.content(file_id=file_id, vector_store_id=store.id)]
    assert len(chunks) > 10 and all(len(chunk) <= 400 for chunk in chunks)
    assert chunks[0].startswith("Sentence 0 ") and chunks[-1].endswith("Sentence 299 of the long file.")
    assert attached.usage_bytes == sum(len(chunk.encode()) for chunk in chunks)

    updated = client.vector_stores.files.update(file_id, vector_store_id=store.id, attributes={"author": "Ann", "pages": 3.5})
    assert updated.attributes == {"author": "Ann", "pages": 3.5} and updated.status == "completed"

    removed = client.vector_stores.files.delete(file_id, vector_store_id=store.id)
    assert (removed.id, removed.deleted, removed.object) == (file_id, True, "vector_store.file.deleted")
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
    after = client.vector_stores.retrieve(store.id)
    assert (after.file_counts.total, after.usage_bytes) == (0, 0)
    assert client.vector_stores.search(store.id, query="Sentence").data == []
    assert client.files.retrieve(file_id).id == file_id


BAD_STRATEGIES = [
    ({"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}}, "chunking_strategy.static.max_chunk_size_tokens"),
    ({"type": "static", "static": {"max_chunk_size_tokens": 4097, "chunk_overlap_tokens": 0}}, "chunking_strategy.static.max_chunk_size_tokens"),
    ({"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}}, "chunking_strategy.static.chunk_overlap_tokens"),
    ({"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": -1}}, "chunking_strategy.static.chunk_overlap_tokens"),
    ({"type": "static"}, "chunking_strategy.static"),
    ({"type": "semantic"}, "chunking_strategy.type"),
]
BAD_ATTRIBUTES = [
    {f"key{n}": "v" for n in range(17)},
    {"k" * 65: "v"},
    {"note": "x" * 513},
    {"nested": {"a": 1}},
    {"list": [1]},
]


@pytest.mark.parametrize(("strategy", "param"), BAD_STRATEGIES)
def test_bad_chunking_strategies_store_nothing(client, row_counts, strategy, param):
    store = client.vector_stores.create()
    file_id = upload(client, "a.txt", PARIS)
    before = row_counts(VECTOR_STORE_TABLES)
    for attempt in (
        lambda: client.vector_stores.create(file_ids=[file_id], chunking_strategy=strategy),
        lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id, chunking_strategy=strategy),
        lambda: client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[file_id], chunking_strategy=strategy),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            attempt()
        assert status_of(refused) == (400, param)
    assert row_counts(VECTOR_STORE_TABLES) == before


@pytest.mark.parametrize("attributes", BAD_ATTRIBUTES)
def test_bad_attributes_store_nothing(client, row_counts, attributes):
    store = client.vector_stores.create()
    file_id = upload(client, "a.txt", PARIS)
    client.vector_stores.files.create_and_poll(vector_store_id=store.id, file_id=file_id, attributes={"kept": "yes"})
    before = row_counts(VECTOR_STORE_TABLES)
    for attempt in (
        lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id=file_id, attributes=attributes),
        lambda: client.vector_stores.files.update(file_id, vector_store_id=store.id, attributes=attributes),
        lambda: client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[file_id], attributes=attributes),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            attempt()
        assert status_of(refused)[0] == 400 and status_of(refused)[1].startswith("attributes")
    assert row_counts(VECTOR_STORE_TABLES) == before
    assert client.vector_stores.files.retrieve(file_id, vector_store_id=store.id).attributes == {"kept": "yes"}


def test_other_bad_input_stores_nothing(client, http, row_counts):
    store = client.vector_stores.create()
    file_id = upload(client, "a.txt", PARIS)
    before = row_counts(VECTOR_STORE_TABLES)
    refusals = [
        ("POST", "/v1/vector_stores", {"expires_after": {"anchor": "last_active_at", "days": 0}}, 400, "expires_after.days"),
        ("POST", "/v1/vector_stores", {"expires_after": {"anchor": "created_at", "days": 3}}, 400, "expires_after.anchor"),
        ("POST", "/v1/vector_stores", {"metadata": {"k": 1}}, 400, "metadata.k"),
        ("POST", "/v1/vector_stores", {"file_ids": [file_id, "file-unknown"]}, 404, "file_ids[1]"),
        ("POST", f"/v1/vector_stores/{store.id}", {"expires_after": {"anchor": "last_active_at", "days": 366}}, 400, "expires_after.days"),
        ("POST", f"/v1/vector_stores/{store.id}/files", {"file_id": "file-unknown"}, 404, "file_id"),
        ("POST", f"/v1/vector_stores/{store.id}/files", {}, 400, "file_id"),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {"file_ids": [file_id, "file-unknown"]}, 404, "file_ids[1]"),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {"files": [{"file_id": "file-unknown"}]}, 404, "files[0].file_id"),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {"file_ids": []}, 400, "file_ids"),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {}, 400, None),
        ("POST", f"/v1/vector_stores/{store.id}/file_batches", {"file_ids": [file_id], "files": [{"file_id": file_id}]}, 400, "file_ids"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": "x", "max_num_results": 0}, 400, "max_num_results"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": "x", "max_num_results": 51}, 400, "max_num_results"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": []}, 400, "query"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": "x", "filters": {"type": "eq", "key": "a"}}, 400, "filters"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": "x", "ranking_options": {"score_threshold": 2}}, 400, "ranking_options.score_threshold"),
        ("GET", f"/v1/vector_stores/{store.id}/files?filter=done", None, 400, "filter"),
        ("GET", "/v1/vector_stores?limit=0", None, 400, "limit"),
        ("GET", "/v1/vector_stores?after=vs_unknown", None, 404, "after"),
        ("GET", "/v1/vector_stores?before=vs_unknown", None, 404, "before"),
        ("GET", f"/v1/vector_stores?after={store.id}&before={store.id}", None, 400, "before"),
        ("GET", f"/v1/vector_stores/{store.id}/files?before=file-unknown", None, 404, "before"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": ["x"] * 11}, 400, "query"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": ["x", ""]}, 400, "query[1]"),
        ("POST", f"/v1/vector_stores/{store.id}/search", {"query": ""}, 400, "query"),
    ]
    for method, path, body, status, param in refusals:
        answer = http.request(method, path, json=body)
        assert (answer.status_code, answer.json()["error"]["param"]) == (status, param), (path, body, answer.json())
    assert row_counts(VECTOR_STORE_TABLES) == before
    assert client.vector_stores.retrieve(store.id).last_active_at == store.last_active_at


def test_other_projects_objects_are_not_found(client, beta_client):
    store = client.vector_stores.create(name="alpha's")
    file_id = upload(client, "a.txt", PARIS)
    batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=store.id, file_ids=[file_id])
    beta_file = upload(beta_client, "b.txt", PENGUINS)
    beta_store = beta_client.vector_stores.create(name="beta's")

    assert store.id not in [listed.id for listed in beta_client.vector_stores.list()]
    for attempt in (
        lambda: beta_client.vector_stores.retrieve(store.id),
        lambda: beta_client.vector_stores.update(store.id, name="taken"),
        lambda: beta_client.vector_stores.delete(store.id),
        lambda: beta_client.vector_stores.search(store.id, query="Paris"),
        lambda: beta_client.vector_stores.files.list(store.id),
        lambda: beta_client.vector_stores.files.retrieve(file_id, vector_store_id=store.id),
        lambda: beta_client.vector_stores.files.content(file_id=file_id, vector_store_id=store.id),
        lambda: beta_client.vector_stores.files.delete(file_id, vector_store_id=store.id),
        lambda: beta_client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id),
        lambda: beta_client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id),
        lambda: beta_client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=beta_store.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    # A File of another project cannot be attached, even to one's own store.
    with pytest.raises(openai.NotFoundError) as refused:
        beta_client.vector_stores.files.create(vector_store_id=beta_store.id, file_id=file_id)
    assert refused.value.body["param"] == "file_id" and file_id in refused.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.create(vector_store_id=store.id, file_id=beta_file)
    assert client.vector_stores.retrieve(store.id).file_counts.total == 1
    assert beta_client.vector_stores.retrieve(beta_store.id).file_counts.total == 0


def test_an_expired_store_is_kept_but_not_searched(client, server):
    store = client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 1})
    file_id = upload(client, "a.txt", PARIS)
    client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=store.id)
    # A day on: its expiry is moved into the past, as the clock would.
    database_rows(server.database_url, "UPDATE vector_stores SET expires_at = 1 WHERE id = {} RETURNING id", store.id)
    expired = client.vector_stores.retrieve(store.id)
    assert expired.status == "expired" and expired.file_counts.completed == 1
    for attempt in (
        lambda: client.vector_stores.search(store.id, query="Paris"),
        lambda: client.vector_stores.files.create(vector_store_id=store.id, file_id=upload(client, "b.txt", PENGUINS)),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            attempt()
        assert refused.value.body["param"] == "vector_store_id" and "expired" in refused.value.body["message"]
    assert client.vector_stores.retrieve(store.id) == expired
    assert client.vector_stores.delete(store.id).deleted
