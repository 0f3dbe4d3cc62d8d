"""Secrets kept at rest only while they are needed (an MCP tool's headers while its background
response waits or runs), encrypted under the server's keys (keys.py).

AES-256-GCM under a key derived from each configured one; the first key seals, every key
opens, so a key can be rotated by putting the new one first.
"""

from __future__ import annotations

import base64
import hashlib
import os

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "tl1:"  # the format's version, so a later one can be told apart


class SecretsUnavailable(Exception):
    """No key is configured to seal with, or none opens what was sealed."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [AESGCM(hashlib.sha256(key.encode()).digest()) for key in keys]

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def seal(self, value: object) -> str:
        if not self._keys:
            raise SecretsUnavailable("This server holds no encryption key.")
        nonce = os.urandom(12)
        sealed = self._keys[0].encrypt(nonce, orjson.dumps(value), None)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str) -> object:
        if not sealed.startswith(PREFIX):
            raise SecretsUnavailable("The sealed value is not in a known format.")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(PREFIX) :])
        except ValueError:
            raise SecretsUnavailable("The sealed value is damaged.") from None
        for key in self._keys:
            try:
                return orjson.loads(key.decrypt(raw[:12], raw[12:], None))
            except InvalidTag:
                continue
        raise SecretsUnavailable("None of the configured encryption keys opens the sealed secrets.")
