"""Project isolation through every reference, secrets kept out of logs, and no URL fetching."""

from __future__ import annotations

import http.server
import threading
import uuid

import httpx
import openai
import pytest

from tests.conftest import KEYS
from tests.helpers import script


def test_no_response_or_item_is_reachable_from_another_project(client, beta_client, server):
    conversation = client.conversations.create(items=[{"role": "user", "content": "alpha's secret"}])
    response = client.responses.create(model="scripted", input="alpha's question", conversation=conversation.id)
    background = client.responses.create(model="scripted", input=script({"delay": 5}), background=True)
    item_id = response.output[0].id
    conversation_item_id = client.conversations.items.list(conversation.id).data[-1].id

    for attempt in (
        lambda: beta_client.responses.retrieve(response.id),
        lambda: beta_client.responses.input_items.list(response.id),
        lambda: beta_client.responses.delete(response.id),
        lambda: beta_client.responses.cancel(background.id),
        lambda: beta_client.conversations.retrieve(conversation.id),
        lambda: beta_client.conversations.items.list(conversation.id),
        lambda: beta_client.responses.create(model="scripted", input="x", conversation=conversation.id),
    ):
        with pytest.raises(openai.NotFoundError):
            attempt()
    with pytest.raises(openai.BadRequestError) as raised:
        beta_client.responses.create(model="scripted", input="x", previous_response_id=response.id)
    assert raised.value.body["code"] == "previous_response_not_found"
    for referenced in (item_id, conversation_item_id):
        with pytest.raises(openai.NotFoundError):
            beta_client.responses.create(model="scripted", input=[{"type": "item_reference", "id": referenced}])
        beta_conversation = beta_client.conversations.create()
        with pytest.raises(openai.NotFoundError):
            beta_client.conversations.items.create(beta_conversation.id, items=[{"type": "item_reference", "id": referenced}])
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['beta']}"}) as beta_http:
        assert beta_http.get(f"/v1/responses/{background.id}?stream=true").status_code == 404
    # Alpha still has everything.
    assert client.responses.retrieve(response.id).output_text == "Reply to: alpha's question"
    assert client.responses.cancel(background.id).status == "cancelled"


def test_logs_carry_no_keys_and_no_message_content(server, client, http):
    secret = f"secret-{uuid.uuid4()}"
    client.responses.create(model="scripted", input=f"please keep {secret} private")
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="scripted", input=script({"text": secret}, {"fail": {"message": "failed"}}))
    client.conversations.create(items=[{"role": "user", "content": secret}], metadata={"note": secret})
    http.post("/v1/responses", json={"model": "scripted", "input": [{"role": "robot", "content": secret}]})
    httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer wrong-{secret}"})
    log = open(server.log.name).read()
    assert "Reply to" not in log and secret not in log
    for key in KEYS.values():
        assert key not in log


class RecordingHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - the standard library's name
        RecordingHandler.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(b"\x89PNG\r\n\x1a\n")

    def log_message(self, *args):
        pass


def test_threadline_never_fetches_urls_from_a_request(client):
    listener = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingHandler)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{listener.server_address[1]}"
    try:
        client.responses.create(
            model="scripted",
            input=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "look"},
                        {"type": "input_image", "image_url": f"{url}/image.png", "detail": "auto"},
                        {"type": "input_file", "file_url": f"{url}/file.pdf"},
                    ],
                }
            ],
        )
        conversation = client.conversations.create(
            items=[{"role": "user", "content": [{"type": "input_image", "image_url": f"{url}/other.png", "detail": "low"}]}]
        )
        client.conversations.items.list(conversation.id)
    finally:
        listener.shutdown()
    assert RecordingHandler.hits == []
