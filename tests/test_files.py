"""The Files API through the official SDK: uploads, listings, bytes, deletes, expiry, limits."""

from __future__ import annotations

import hashlib
import io
import os
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest
from openai.types import FileObject

from tests.conftest import KEYS
from tests.helpers import database_rows
from tests.spec_check import checked_client

# A project of its own for listings, so other tests' files never show in them.
LISTER_KEY = "sk-lister-test-key"
SMALL_FILE_BYTES = 4096


def keys(**more: str) -> dict:
    return {"auth": {"api_keys": [{"key": key, "project": project} for project, key in {**KEYS, **more}.items()]}}


@pytest.fixture(scope="module")
def server(start_server):
    return start_server(keys(lister=LISTER_KEY))


@pytest.fixture(scope="module")
def small_server(start_server):
    """A server whose uploads are at most SMALL_FILE_BYTES."""
    return start_server({**keys(), "files": {"max_file_bytes": SMALL_FILE_BYTES}})


@pytest.fixture
def lister(server, spec_check) -> openai.OpenAI:
    return checked_client(spec_check, server.url + "/v1", LISTER_KEY)


def stored(database_url: str) -> set[tuple]:
    """Every file row and file part row in the database. A refused upload adds none; other
    files may go meanwhile (the server sweeps expired ones every heartbeat), so tests compare
    with `<=`."""
    return {
        *database_rows(database_url, "SELECT 'file', id, 0 FROM files"),
        *database_rows(database_url, "SELECT 'part', file_id, part FROM file_parts"),
    }


def test_upload_retrieve_and_read_back(client):
    data = "Paris is the capital of France.\n".encode() * 3
    created = client.files.create(file=("notes.txt", data), purpose="user_data")
    assert created.id.startswith("file-")  # OpenAI's form, unlike its resp_ and conv_
    assert (created.object, created.bytes, created.filename, created.purpose, created.status) == ("file", len(data), "notes.txt", "user_data", "processed")
    assert created.expires_at is None and abs(created.created_at - time.time()) < 60
    assert client.files.retrieve(created.id) == created
    content = client.files.content(created.id)
    assert content.content == data
    assert content.response.headers["content-type"].startswith("text/plain")


def test_read_back_a_binary_file_part_by_part(client):
    # Over two parts (store/files.py's PART_BYTES is 1 MiB), bytes of every value.
    data = bytes(range(256)) * (9 * 1024)
    created = client.files.create(file=("blob", io.BytesIO(data)), purpose="assistants")
    assert created.bytes == len(data)
    content = client.files.content(created.id)
    assert content.content == data
    assert content.response.headers["content-type"] == "application/octet-stream"


def test_fields_after_the_file_and_a_unicode_filename(server):
    """The Node SDK sends the form fields in the caller's order, the file first."""
    form = [("file", ("résumé.md", b"# Hi\n", "text/markdown")), ("purpose", (None, b"assistants"))]
    answer = httpx.post(server.url + "/v1/files", files=form, headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["filename"], answer.json()["purpose"], answer.json()["bytes"]) == ("résumé.md", "assistants", 5)


def test_delete(client, server):
    created = client.files.create(file=("gone.txt", b"bye"), purpose="user_data")
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(created.id)
    assert database_rows(server.database_url, "SELECT count(*) FROM file_parts WHERE file_id = {}", created.id)[0][0] == 0


def test_list_pages_filters_and_orders(lister):
    made = [lister.files.create(file=(f"f{n}.txt", f"{n}".encode()), purpose="assistants" if n == 3 else "user_data") for n in range(4)]
    newest_first = lister.files.list()
    assert [file.id for file in newest_first.data] == [file.id for file in reversed(made)]  # within one second too
    assert newest_first.has_more is False
    oldest_first = lister.files.list(order="asc")
    assert [file.id for file in oldest_first.data] == [file.id for file in reversed(newest_first.data)]
    # One at a time, following `after`: the same files in the same order.
    page = lister.files.list(limit=1, order="asc")
    assert len(page.data) == 1 and page.has_more is True
    assert [file.id for file in page] == [file.id for file in oldest_first.data]  # the SDK pages on
    user_data = lister.files.list(purpose="user_data")
    assert sorted(file.id for file in user_data.data) == sorted(file.id for file in made[:3])
    assert lister.files.list(purpose="batch").data == []
    assert lister.files.list(purpose="\x00assistants").data == []  # a purpose no file can have, NUL and all


def test_list_refuses_bad_paging(lister):
    with pytest.raises(openai.BadRequestError) as caught:
        lister.files.list(limit=0)
    assert caught.value.body["param"] == "limit"
    with pytest.raises(openai.NotFoundError) as caught:
        lister.files.list(after="file-unknown")
    assert caught.value.body["param"] == "after"


def test_expires_after(client, server):
    created = client.files.create(file=("short.txt", b"soon"), purpose="user_data", expires_after={"anchor": "created_at", "seconds": 3600})
    assert created.expires_at == created.created_at + 3600
    batch = client.files.create(file=("batch.jsonl", b"{}\n"), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600  # OpenAI's default for batch files
    # Once expired, the file is not found and not listed.
    database_rows(server.database_url, "UPDATE files SET expires_at = {} WHERE id = {}", int(time.time()) - 1, created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    assert created.id not in {file.id for file in client.files.list()}


@pytest.mark.parametrize(
    ("expires_after", "param"),
    [
        ({"anchor": "created_at", "seconds": 60}, "expires_after.seconds"),
        ({"anchor": "created_at", "seconds": 2592001}, "expires_after.seconds"),
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor"),
        ({"anchor": "created_at"}, "expires_after.seconds"),
    ],
)
def test_bad_expires_after_stores_nothing(client, server, expires_after, param):
    before = stored(server.database_url)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.txt", b"x"), purpose="user_data", expires_after=expires_after)
    assert caught.value.body["param"] == param
    assert stored(server.database_url) <= before


@pytest.mark.parametrize("purpose", ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"])
def test_each_upload_purpose_makes_openais_file_object(client, server, purpose):
    data = b'{"custom_id": "1"}\n'
    answer = httpx.post(
        server.url + "/v1/files",
        files=[("purpose", (None, purpose.encode())), ("file", ("input.jsonl", data))],
        headers={"Authorization": f"Bearer {KEYS['alpha']}"},
    )
    assert answer.status_code == 200, answer.text
    raw = answer.json()
    # Every field of the SDK's FileObject, and nothing else.
    assert set(raw) == set(FileObject.model_fields)
    assert (raw["object"], raw["bytes"], raw["filename"], raw["purpose"], raw["status"], raw["status_details"]) == (
        "file", len(data), "input.jsonl", purpose, "processed", None,
    )
    assert raw["id"].startswith("file-") and isinstance(raw["created_at"], int)
    # Batch files expire after 30 days unless told otherwise; the others never do.
    assert raw["expires_at"] == (raw["created_at"] + 30 * 24 * 3600 if purpose == "batch" else None)
    # As the SDK reads it ("evals" is past its purpose Literal, which it lets through, as from OpenAI).
    assert client.files.retrieve(raw["id"]).model_dump() == raw
    assert [file.model_dump() for file in client.files.list(purpose=purpose) if file.id == raw["id"]] == [raw]


@pytest.mark.parametrize("purpose", ["assistants_output", "batch_output", "fine-tune-results", "fine-tuning", "USER_DATA", ""])
def test_output_and_unknown_purposes_are_refused(client, server, purpose):
    """A file object's purpose may be one OpenAI gives its own outputs; an upload's may not."""
    before = stored(server.database_url)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", b"{}\n"), purpose=purpose)
    assert caught.value.body["param"] == "purpose"
    assert stored(server.database_url) <= before


def test_bad_or_missing_purpose_stores_nothing(client, server):
    before = stored(server.database_url)
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.txt", b"x"), purpose="fine-tuning")
    assert caught.value.body["param"] == "purpose"
    assert "user_data" in caught.value.body["message"]
    # Sent after the file, the purpose is checked once the file is in: still nothing is kept.
    form = [("file", ("x.txt", b"x" * 3_000_000)), ("purpose", (None, b"nonsense"))]
    answer = httpx.post(server.url + "/v1/files", files=form, headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert (answer.status_code, answer.json()["error"]["param"]) == (400, "purpose")
    answer = httpx.post(server.url + "/v1/files", files=[("file", ("x.txt", b"x"))], headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert (answer.status_code, answer.json()["error"]["param"]) == (400, "purpose")
    answer = httpx.post(server.url + "/v1/files", files={"purpose": (None, b"user_data")}, headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert (answer.status_code, answer.json()["error"]["param"]) == (400, "file")
    answer = httpx.post(server.url + "/v1/files", json={"purpose": "user_data"}, headers={"Authorization": f"Bearer {KEYS['alpha']}"})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error"
    assert stored(server.database_url) <= before


def chunked_form(*parts: tuple[str, bytes], headers: bytes = b"") -> tuple[object, dict]:
    """A multipart body streamed without a Content-Length, of `parts` (name, value; "file" is
    the file), each part with `headers` besides its Content-Disposition; and its headers."""
    boundary = uuid.uuid4().hex

    def body():
        for name, value in parts:
            filename = '; filename="notes.txt"' if name == "file" else ""
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n'.encode() + headers + b"\r\n" + value + b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return body(), {"Authorization": f"Bearer {KEYS['alpha']}", "Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize(
    "parts",
    [
        # Fields each within their own limit, more than the form's allowance together, before the file or after it.
        [("purpose", b"user_data"), ("note", b"n" * 40_000), ("other", b"o" * 40_000), ("file", b"x")],
        [("file", b"x" * 3_000_000), ("purpose", b"user_data"), ("note", b"n" * 40_000), ("other", b"o" * 40_000)],
        # Many small fields, or one name sent again and again.
        [("purpose", b"user_data"), *[(f"f{number}", b"v") for number in range(200)], ("file", b"x")],
        [("purpose", b"user_data"), *[("same", b"v" * 1000)] * 100, ("file", b"x")],
    ],
    ids=["fields-before", "fields-after", "many-fields", "repeated-field"],
)
def test_the_form_beside_the_file_is_held_to_its_allowance(server, parts):
    before = stored(server.database_url)
    body, headers = chunked_form(*parts)
    answer = httpx.post(server.url + "/v1/files", content=body, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert stored(server.database_url) <= before


def test_part_headers_count_toward_the_forms_allowance(server):
    before = stored(server.database_url)
    # Each part's headers short enough for the parser (a few short lines), together past the allowance.
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (number, b"p" * 1000) for number in range(4))
    body, headers = chunked_form(("purpose", b"user_data"), *[(f"f{number}", b"v") for number in range(20)], ("file", b"x"), headers=padding)
    answer = httpx.post(server.url + "/v1/files", content=body, headers=headers)
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_request_error", answer.text
    assert stored(server.database_url) <= before
    # Within the allowance, the same form is taken.
    body, headers = chunked_form(("purpose", b"user_data"), ("note", b"n" * 30_000), ("file", b"x"), headers=b"X-Padding: short\r\n")
    assert httpx.post(server.url + "/v1/files", content=body, headers=headers).status_code == 200


def test_another_projects_file_is_not_found(client, beta_client):
    created = client.files.create(file=("mine.txt", b"alpha's"), purpose="user_data")
    for call in (beta_client.files.retrieve, beta_client.files.content, beta_client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(created.id)
    assert created.id not in {file.id for file in beta_client.files.list()}
    assert client.files.retrieve(created.id).id == created.id


def test_no_key_no_upload(server):
    answer = httpx.post(server.url + "/v1/files", files={"file": ("x.txt", b"x"), "purpose": (None, b"user_data")})
    assert answer.status_code == 401


# --- Limits -------------------------------------------------------------------------------


def small_client(small_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=small_server.url + "/v1", api_key=KEYS["alpha"], max_retries=0)


def test_a_file_at_the_limit_is_taken(small_server):
    client = small_client(small_server)
    assert client.files.create(file=("full.bin", b"\0" * SMALL_FILE_BYTES), purpose="user_data").bytes == SMALL_FILE_BYTES


def test_a_file_over_the_limit_gets_413_and_nothing_is_stored(small_server):
    client = small_client(small_server)
    before = stored(small_server.database_url)
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", b"\0" * (SMALL_FILE_BYTES + 1)), purpose="user_data")
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large" and caught.value.body["param"] == "file"
    # A body whose Content-Length is over the route's limit is refused before it is read.
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("bigger.bin", b"\0" * 200_000), purpose="user_data")
    assert caught.value.status_code == 413 and caught.value.body["code"] == "request_too_large"
    assert stored(small_server.database_url) <= before


def test_a_chunked_upload_over_the_limit_gets_413_and_nothing_is_stored(small_server):
    """No Content-Length: the limit holds as the body streams in."""
    boundary = uuid.uuid4().hex

    def body():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'.encode()
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'.encode()
        for _ in range(4):
            yield b"\1" * 2048
        yield f"\r\n--{boundary}--\r\n".encode()

    before = stored(small_server.database_url)
    headers = {"Authorization": f"Bearer {KEYS['alpha']}", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    answer = httpx.post(small_server.url + "/v1/files", content=body(), headers=headers)
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "file_too_large"
    assert stored(small_server.database_url) <= before


def test_other_routes_keep_their_own_limit(small_server):
    """The upload limit is the upload route's alone: a JSON body is held to max_body_bytes,
    which this server leaves at its default."""
    client = small_client(small_server)
    conversation = client.conversations.create(items=[{"role": "user", "content": "x" * (SMALL_FILE_BYTES * 4)}])
    assert conversation.object == "conversation"


def vm_hwm_bytes(pid: int) -> int:
    """The process's peak resident memory so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_a_large_upload_streams_through_flat_memory(client, server, tmp_path):
    size = 64 * 1024 * 1024
    path = tmp_path / "large.bin"
    digest = hashlib.sha256()
    with path.open("wb") as file:
        for _ in range(size // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            file.write(chunk)
    pid = server.process.pid
    peak_before = vm_hwm_bytes(pid)
    with path.open("rb") as file:
        created = client.files.create(file=file, purpose="user_data")
    assert (created.bytes, created.filename) == (size, "large.bin")
    read_back = hashlib.sha256()
    with client.files.with_streaming_response.content(created.id) as answer:
        for chunk in answer.iter_bytes():
            read_back.update(chunk)
    assert read_back.hexdigest() == digest.hexdigest()
    # Up and back down, the server held a few parts at a time, never the file.
    assert vm_hwm_bytes(pid) - peak_before < size // 2
    client.files.delete(created.id)


def test_expired_files_and_abandoned_uploads_are_removed(start_server, server):
    """Their rows and bytes go once a process sweeps, on an upload: a process starting afresh
    sweeps on its first."""
    long_ago = int(time.time()) - 2 * 24 * 3600
    insert = "INSERT INTO files (id, project, created_at, expires_at, filename, purpose, bytes, complete) VALUES ({}, {}, {}, {}, {}, {}, {}, {})"
    # Expiring once its bytes are in: a running server sweeps expired files every heartbeat.
    database_rows(server.database_url, insert, "file-expired", "alpha", long_ago, int(time.time()) + 3600, "old.txt", "user_data", 3, True)
    database_rows(server.database_url, insert, "file-abandoned", "alpha", long_ago, None, "cut.txt", "user_data", 0, False)
    for file_id in ("file-expired", "file-abandoned"):
        database_rows(server.database_url, "INSERT INTO file_parts (file_id, part, data) VALUES ({}, {}, {})", file_id, 0, b"old")
    database_rows(server.database_url, "UPDATE files SET expires_at = {} WHERE id = {}", long_ago + 3600, "file-expired")
    fresh = start_server(keys())
    openai.OpenAI(base_url=fresh.url + "/v1", api_key=KEYS["alpha"]).files.create(file=("new.txt", b"new"), purpose="user_data")
    left = database_rows(server.database_url, "SELECT count(*) FROM file_parts WHERE file_id IN ({}, {})", "file-expired", "file-abandoned")
    assert left[0][0] == 0
    assert database_rows(server.database_url, "SELECT count(*) FROM files WHERE id IN ({}, {})", "file-expired", "file-abandoned")[0][0] == 0
