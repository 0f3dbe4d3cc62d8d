"""Files named by id in the input (`input_file`, `input_image`), as each upstream receives them:
the SDK -> `threadline serve` -> the mock upstream, on both databases.

A chat upstream reads a file as its extracted text, a Responses upstream gets the file itself
(`file_data`); an image is a data URL for both. What is stored keeps the file id as sent.
"""

from __future__ import annotations

import base64
import time

import openai
import pytest

from tests.conftest import KEYS
from tests.helpers import database_rows, upstream_models, wait_for
from tests.mock_upstream import finish, reply, text

LIMIT = 1024 * 1024
# The smallest PNG: one transparent pixel.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")


def pdf_with_text(line: str) -> bytes:
    """A one-page PDF whose page shows `line`, with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({line}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    document = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(document))
        document += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(document)
    document += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    document += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    document += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(document)


@pytest.fixture(scope="module")
def server(start_server, upstream):
    keys = {"auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]}}
    # A small body limit, which is also the most the files named may add to one request.
    limits = {"limits": {"max_body_bytes": LIMIT}}
    return start_server({**keys, **limits, "models": upstream_models(upstream.base_url, {"": {"timeout_s": 5}})})


def ask(file_part: dict, question: str = "What does it say?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_text", "text": question}, file_part]}]


def upstream_user_content(mock, model: str):
    """The content of the last user message the upstream received."""
    body = mock.requests[-1]
    if model == "chat":
        return [message for message in body["messages"] if message["role"] == "user"][-1]["content"]
    return [item for item in body["input"] if item.get("role") == "user"][-1]["content"]


def test_a_text_file_by_id(client, mock, model):
    data = b"The launch code is 4471.\n"
    file = client.files.create(file=("notes.txt", data), purpose="user_data")
    mock.script(reply(text("4471"), finish()))
    response = client.responses.create(model=model, input=ask({"type": "input_file", "file_id": file.id}))
    assert response.output_text == "4471"
    content = upstream_user_content(mock, model)
    if model == "chat":
        # The file's text, which every chat model reads, beside the question.
        assert isinstance(content, str) and "What does it say?" in content
        assert '<file name="notes.txt">\nThe launch code is 4471.' in content
    else:
        assert content[1] == {"type": "input_file", "filename": "notes.txt", "file_data": "data:text/plain;base64," + base64.b64encode(data).decode()}
        assert "file_id" not in str(mock.requests[-1])
    # Stored as sent: the file id, not its bytes.
    stored = client.responses.input_items.list(response.id).data[0]
    assert stored.content[1].type == "input_file" and stored.content[1].file_id == file.id
    assert getattr(stored.content[1], "file_data", None) is None


def test_a_pdf_by_id(client, mock, model):
    data = pdf_with_text("Quarterly revenue rose nine percent")
    file = client.files.create(file=("report.pdf", data), purpose="user_data")
    mock.script(reply(text("Nine percent."), finish()))
    client.responses.create(model=model, input=ask({"type": "input_file", "file_id": file.id}))
    content = upstream_user_content(mock, model)
    if model == "chat":
        assert "Quarterly revenue rose nine percent" in content
    else:
        part = content[1]
        assert part["filename"] == "report.pdf" and base64.b64decode(part["file_data"].removeprefix("data:application/pdf;base64,")) == data


def test_an_image_by_id(client, mock, model):
    file = client.files.create(file=("dot.png", PNG), purpose="vision")
    mock.script(reply(text("A dot."), finish()))
    client.responses.create(model=model, input=ask({"type": "input_image", "file_id": file.id, "detail": "low"}))
    content = upstream_user_content(mock, model)
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    if model == "chat":
        assert content[1] == {"type": "image_url", "image_url": {"url": url, "detail": "low"}}
    else:
        assert content[1] == {"type": "input_image", "image_url": url, "detail": "low"}


def test_a_file_that_is_no_image_as_an_image_is_refused(client, mock, row_counts):
    file = client.files.create(file=("notes.txt", b"not an image"), purpose="user_data")
    before = row_counts()
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="chat", input=ask({"type": "input_image", "file_id": file.id}))
    assert caught.value.body["param"] == "input[0].content[1].file_id"
    assert row_counts() == before and mock.requests == []


@pytest.mark.parametrize("kind", ["input_file", "input_image"])
def test_unknown_or_foreign_file_ids_are_refused(client, beta_client, mock, model, row_counts, kind):
    foreign = beta_client.files.create(file=("beta.txt", b"beta's own"), purpose="user_data")
    before = row_counts()
    for file_id in ("file-unknown", foreign.id):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=model, input=ask({"type": kind, "file_id": file_id}))
        assert caught.value.body["param"] == "input[0].content[1].file_id"
        assert file_id in caught.value.body["message"]
    assert row_counts() == before and mock.requests == []


def test_a_file_in_a_conversation(client, mock, model):
    file = client.files.create(file=("menu.md", b"# Menu\nSoup of the day: leek.\n"), purpose="user_data")
    # Items are stored as sent, as the Conversations API stores any item; a file is read when a
    # model reads the item.
    unknown = client.conversations.create(items=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-nope"}]}])
    assert client.conversations.items.list(unknown.id).data[0].content[0].file_id == "file-nope"
    conversation = client.conversations.create(items=ask({"type": "input_file", "file_id": file.id}, "Read this."))
    stored = client.conversations.items.list(conversation.id).data[0]
    assert stored.content[1].file_id == file.id
    mock.script(reply(text("Leek."), finish()))
    client.responses.create(model=model, conversation=conversation.id, input="What is the soup?")
    body = mock.requests[-1]
    if model == "chat":
        assert "Soup of the day: leek." in body["messages"][0]["content"]
    else:
        assert body["input"][0]["content"][1]["filename"] == "menu.md"


def test_an_earlier_file_since_deleted_becomes_a_note(client, mock, model):
    file = client.files.create(file=("old.txt", b"Old news."), purpose="user_data")
    mock.script(reply(text("Read."), finish()), reply(text("Gone."), finish()))
    first = client.responses.create(model=model, input=ask({"type": "input_file", "file_id": file.id}))
    client.files.delete(file.id)
    client.responses.create(model=model, previous_response_id=first.id, input="And now?")
    earlier = mock.requests[-1]["messages"][0]["content"] if model == "chat" else mock.requests[-1]["input"][0]["content"]
    assert f"The file '{file.id}' is no longer available." in str(earlier)


def test_a_background_response_reads_the_file(client, mock, model, server):
    file = client.files.create(file=("bg.txt", b"Background facts."), purpose="user_data")
    mock.script(reply(text("Done."), finish()))
    response = client.responses.create(model=model, input=ask({"type": "input_file", "file_id": file.id}), background=True)
    assert wait_for(client, response.id).status == "completed"
    assert ("Background facts." if model == "chat" else "QmFja2dyb3VuZCBmYWN0cy4=") in str(upstream_user_content(mock, model))
    # The stored input keeps the id as sent.
    rows = database_rows(server.database_url, "SELECT data FROM response_items WHERE response_id = {} AND is_output = {}", response.id, False)
    assert file.id in rows[0][0] and "QmFja2dyb3VuZCBmYWN0cy4=" not in rows[0][0]


def test_a_file_named_many_times_is_held_to_what_a_request_may_carry(client, mock, model, row_counts):
    # A body of a few hundred bytes naming a 300 KB file again and again: the file counts each
    # time, up to what the request could have carried inline.
    data = b"line of notes\n" * (300_000 // 14)
    file = client.files.create(file=("big.txt", data), purpose="user_data")
    part = {"type": "input_file", "file_id": file.id}
    before = row_counts()
    for times in (4, 1000):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=model, input=[{"role": "user", "content": [{"type": "input_text", "text": "Read."}] + [part] * times}])
        assert caught.value.body["param"] == "input[0].content[4].file_id"
        assert file.id in caught.value.body["message"] and str(LIMIT) in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=model, input=[ask(part)[0]] * 3 + [ask(part)[0]])
    assert caught.value.body["param"] == "input[3].content[1].file_id"
    assert row_counts() == before and mock.requests == []
    # Three times is within it: each reaches the model.
    mock.script(reply(text("Read."), finish()))
    client.responses.create(model=model, input=[{"role": "user", "content": [part] * 3}])
    content = upstream_user_content(mock, model)
    assert str(content).count("line of notes") >= 3 if model == "chat" else len(content) == 3


def test_earlier_files_past_the_limit_become_notes(client, mock, model):
    data = b"earlier notes\n" * (300_000 // 14)
    file = client.files.create(file=("earlier.txt", data), purpose="user_data")
    part = {"type": "input_file", "file_id": file.id}
    conversation = client.conversations.create(items=[{"role": "user", "content": [part]}] * 3)
    mock.script(reply(text("Read."), finish()))
    # The new input's file comes first, then the newest earlier ones: the oldest is left out.
    client.responses.create(model=model, conversation=conversation.id, input=[{"role": "user", "content": [part]}])
    sent = str(mock.requests[-1])
    assert sent.count(f"The file '{file.id}' is left out") == 1
    assert sent.count("earlier notes") >= 3 if model == "chat" else sent.count("data:text/plain;base64,") == 3


def test_a_queued_response_keeps_the_file_by_id_until_it_runs(client, mock, model, server):
    data = b"Queued facts."
    encoded = base64.b64encode(data).decode()
    file = client.files.create(file=("queued.txt", data), purpose="user_data")
    mock.script(reply(text("Reading"), forever=True))
    response = client.responses.create(model=model, input=ask({"type": "input_file", "file_id": file.id}), background=True)
    deadline = time.monotonic() + 10
    while not mock.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    # The model has the file; the job stored for the response names it only.
    assert ("Queued facts." if model == "chat" else encoded) in str(upstream_user_content(mock, model))
    [(job,)] = database_rows(server.database_url, "SELECT job FROM responses WHERE id = {}", response.id)
    assert file.id in job and encoded not in job and "Queued facts." not in job
    client.responses.cancel(response.id)
    assert wait_for(client, response.id).status == "cancelled"
