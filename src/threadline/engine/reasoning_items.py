"""Reasoning that survives `store: false`: sealed into the reasoning items a client is given,
opened from the ones it sends back.

With `include: ["reasoning.encrypted_content"]`, each reasoning item of the output carries
its text and summary sealed under the server's key (engine/sealed_items.py), unless the
model's provider gave the item its own encrypted content. A client that keeps no state sends
the item back with its next request, and the model reads that reasoning again; nothing is
kept server-side.

A reasoning item in the input whose encrypted_content is
- Threadline's: is opened, and the model sees the text and summary that were sealed. One no
  key opens (changed, or sealed under a key this server no longer holds) is a 400 naming it.
- another server's (OpenAI's, say): is passed on to a Responses upstream, whose own it may
  be; any other model could not read it, so it is left out of what that model sees, with a
  logged note, as OpenAI leaves out reasoning it cannot use. It is stored as sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from pydantic import BaseModel

from threadline.engine.sealed_items import open_content, seal_content, sealed_by_threadline
from threadline.items.models import item_type
from threadline.tools.secrets import SecretBox

log = logging.getLogger("threadline")

# Backends that speak to a provider able to read its own encrypted reasoning.
TAKES_PROVIDER_REASONING = frozenset({"openai-responses"})


def reasoning_sealer(box: SecretBox) -> Callable[[dict], str] | None:
    """What seals a finished reasoning item's text and summary into its encrypted_content;
    None when the server holds no key."""
    if not box.configured:
        return None
    return lambda item: seal_content(box, "reasoning", {"content": item.get("content") or [], "summary": item.get("summary") or []})


def open_reasoning(box: SecretBox, sent: Sequence[dict | BaseModel], items: list[dict], *, param: str = "input") -> list[dict]:
    """`items` (the normalized form of `sent`, item by item) with each reasoning item that
    Threadline sealed given back the content and summary sealed in it. A 400 names the first
    item that does not open, by the id the client sent. A stored item named by reference
    keeps its stored text, so it needs no key (the one it was sealed under may be gone)."""
    opened = []
    for index, item in enumerate(items):
        if sealed_reasoning(item) and item_type(sent[index]) != "item_reference":
            sent_id = field(sent[index], "id")
            payload = open_content(box, {**item, "id": sent_id}, f"{param}[{index}]")
            item = {**item, "summary": payload.get("summary") or [], "content": payload.get("content") or []}
        opened.append(item)
    return opened


def readable_by(provider: str, sent: Sequence[dict | BaseModel], items: list[dict]) -> list[dict]:
    """The new input (`items`, as normalized from `sent`) as a model of `provider` is given it:
    reasoning another server encrypted is left out unless the provider may be the one that did."""
    if provider in TAKES_PROVIDER_REASONING:
        return items
    readable = []
    for index, item in enumerate(items):
        if foreign_reasoning(item):
            log.info("input[%d], reasoning item %s, was encrypted by another server: left out of what the model sees.", index, field(sent[index], "id"))
            continue
        readable.append(item)
    return readable


def sealed_reasoning(item: dict) -> bool:
    content = item.get("encrypted_content")
    return item.get("type") == "reasoning" and isinstance(content, str) and sealed_by_threadline(content)


def foreign_reasoning(item: dict) -> bool:
    content = item.get("encrypted_content")
    return item.get("type") == "reasoning" and isinstance(content, str) and not sealed_by_threadline(content)


def field(item: dict | BaseModel, name: str) -> object:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)
