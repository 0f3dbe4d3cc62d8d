"""A token count for when no tokenizer can be asked: about four characters a token.

Read straight from the items, so guessing costs no conversion to a provider's format.
"""

from __future__ import annotations

import math

import orjson

from threadline.backends.base import ModelRequest
from threadline.items.ended import derived

CHARACTERS_PER_TOKEN = 4
# A token's worth of characters per item, for its role and separators.
CHARACTERS_PER_ITEM = 4
# A flat guess for an image or file, whose size its text can't tell.
TOKENS_PER_ATTACHMENT = 768

TEXT_FIELDS = ("content", "arguments", "output", "input", "encrypted_content")


def estimate_item_tokens(item: dict) -> int:
    return derived(item, estimate_item_tokens, item_tokens)


def item_tokens(item: dict) -> int:
    characters = CHARACTERS_PER_ITEM + len(item.get("name") or "")
    attachments = 0
    for key in TEXT_FIELDS:
        value = item.get(key)
        if isinstance(value, str):
            characters += len(value)
        elif isinstance(value, list):
            for part in value:
                if not isinstance(part, dict):
                    continue
                if "text" in part or "refusal" in part:
                    characters += len(part.get("text") or part.get("refusal") or "")
                else:
                    attachments += 1
    return math.ceil(characters / CHARACTERS_PER_TOKEN) + TOKENS_PER_ATTACHMENT * attachments


def estimate_request_tokens(request: ModelRequest) -> int:
    """The instructions, the tools' definitions and every input item."""
    characters = len(request.instructions or "") + (len(orjson.dumps(request.tools)) if request.tools else 0)
    return math.ceil(characters / CHARACTERS_PER_TOKEN) + sum(estimate_item_tokens(item) for item in request.input)
