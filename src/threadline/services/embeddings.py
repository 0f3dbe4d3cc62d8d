"""Embeddings for /v1/embeddings: the server's embedder, answered in OpenAI's shape.

The model named must be the embedder's: its model ("wordllama-l2-256", or the upstream's
model) or its full name ("embedded/wordllama-l2-256"). Another model's name is refused rather
than answered with vectors the caller did not ask for.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

from threadline.backends.estimate import CHARACTERS_PER_TOKEN
from threadline.errors import APIError, invalid
from threadline.retrieval.embedders import Embedder, EmbeddingError

MAX_INPUTS = 2048


def upstream_failed(error: EmbeddingError) -> APIError:
    """The 502 an API answers when the embedder failed."""
    return APIError(502, str(error), type="server_error")


class EmbeddingsService:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    async def create(self, input: Any, *, model: str, encoding_format: str = "float", dimensions: int | None = None) -> dict:
        """A CreateEmbeddingResponse: one embedding per input, in order."""
        texts = _texts(input)
        if model not in (self.embedder.model, self.embedder.name):
            raise invalid(f"The model '{model}' does not exist: this server's embeddings model is '{self.embedder.model}'.", param="model", code="model_not_found")
        if dimensions is not None and not self.embedder.supports_dimensions(dimensions):
            raise invalid(f"This model does not support {dimensions} dimensions: ask for 1 to {self.embedder.dimensions}.", param="dimensions")
        try:
            vectors = await self.embedder.embed(texts, dimensions)
        except EmbeddingError as error:
            raise upstream_failed(error) from None
        tokens = sum(math.ceil(len(text) / CHARACTERS_PER_TOKEN) for text in texts)
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": index, "embedding": _encoded(vector, encoding_format)} for index, vector in enumerate(vectors)],
            "model": self.embedder.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _texts(input: Any) -> list[str]:
    texts = [input] if isinstance(input, str) else input
    if not isinstance(texts, list) or not texts:
        raise invalid("'input' must be a non-empty string or a non-empty array of strings.", param="input")
    if not all(isinstance(text, str) for text in texts):
        raise invalid("'input' as tokens is not supported: send the text as a string or an array of strings.", param="input")
    if len(texts) > MAX_INPUTS:
        raise invalid(f"'input' holds {len(texts)} strings: at most {MAX_INPUTS} are allowed.", param="input")
    if any(not text for text in texts):
        raise invalid("'input' cannot contain an empty string.", param="input")
    return texts


def _encoded(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as the SDKs decode it
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
