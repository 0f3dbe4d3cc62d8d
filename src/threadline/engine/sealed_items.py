"""The `encrypted_content` of items Threadline writes for clients to send back: reasoning
kept across `store: false` turns, and compaction summaries.

The content is sealed under the server's keys (tools/secrets.py), with the kind of item it
belongs to inside, so one kind's content cannot pass for another's. A client sees an opaque
string; only a server holding one of the keys reads it back.
"""

from __future__ import annotations

from threadline.errors import invalid
from threadline.tools.secrets import PREFIX, SecretBox, SecretsUnavailable


def seal_content(box: SecretBox, kind: str, payload: dict) -> str:
    """`payload` sealed as the encrypted_content of an item of type `kind`."""
    return box.seal({"kind": kind, **payload})


def sealed_by_threadline(encrypted_content: str) -> bool:
    """Whether the content is in Threadline's format (else another server, such as OpenAI, wrote it)."""
    return encrypted_content.startswith(PREFIX)


def open_content(box: SecretBox, item: dict, param: str) -> dict:
    """The payload sealed in the item's encrypted_content, less its kind. Content in
    Threadline's format that no key opens, or that belongs to another kind of item, was
    altered or sealed by a key this server no longer has: a 400 naming the item."""
    kind = item.get("type")
    try:
        payload = box.open(item["encrypted_content"])
    except SecretsUnavailable:
        payload = None
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        name = f"item '{item['id']}'" if item.get("id") else param
        raise invalid(
            f"The encrypted content for {name} could not be verified: it was changed, or sealed by a key this server does not hold.",
            param=f"{param}.encrypted_content",
            code="invalid_encrypted_content",
        )
    return {key: value for key, value in payload.items() if key != "kind"}
