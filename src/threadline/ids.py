"""Unguessable object ids in OpenAI's style: a type prefix and 192 random bits."""

import secrets


def new_id(prefix: str, separator: str = "_") -> str:
    # 24 random bytes as 48 hex characters: far past the 128 bits that make ids unguessable.
    return f"{prefix}{separator}{secrets.token_hex(24)}"
