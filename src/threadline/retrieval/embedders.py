"""Text to vectors: the embedded WordLlama model, or any OpenAI-style /v1/embeddings upstream.

Every embedder answers float32 rows of unit length, so a dot product is a cosine similarity,
whichever model made them.

The embedded model is WordLlama's l2_supercat: a table of token vectors averaged over a text,
its 256-dimensional weights and its tokenizer shipped inside the `wordllama` wheel. They are
read straight from the package: WordLlama's own loader looks for the tokenizer in a folder
the wheel does not have and would download it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import ssl
import threading
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import certifi
import numpy as np
import orjson

from threadline.backends.upstream import KEEPALIVE_S, described, proxy_for, redact
from threadline.config import EmbeddingsSettings
from threadline.ops import tracing

# The embedded models: WordLlama's matryoshka-trained vectors keep their meaning when cut short.
EMBEDDED_MODELS = {"wordllama-l2-256": 256, "wordllama-l2-128": 128, "wordllama-l2-64": 64}
DEFAULT_EMBEDDED_MODEL = "wordllama-l2-256"
# A text's tokens are looked up this many at a time, so one long text never needs a huge array.
TOKENS_PER_LOOKUP = 8192
# Texts per request to an upstream, well within OpenAI's 2048 inputs a request.
UPSTREAM_BATCH = 256


class EmbeddingError(Exception):
    """The embedder could not embed: an upstream that failed or answered what is not embeddings.

    `transient` when asking again later may well work: the upstream timed out, could not be
    reached, was rate-limited or failed with a 5xx."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Embedder(Protocol):
    name: str  # provider and model, e.g. "embedded/wordllama-l2-256"; what a vector store records
    model: str  # the model alone, as /v1/embeddings answers it

    @property
    def dimensions(self) -> int:
        """The length of its vectors (an upstream's is known after its first answer: 0 until then)."""
        ...

    def supports_dimensions(self, dimensions: int) -> bool:
        """Whether `embed(..., dimensions=n)` gives shorter vectors of this length."""
        ...

    async def embed(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """One unit-length float32 row per text, shape (len(texts), dimensions)."""
        ...

    async def aclose(self) -> None: ...


def build_embedder(settings: EmbeddingsSettings) -> Embedder:
    """The embedder the settings name; raises ValueError for an embedded model that does not exist."""
    if settings.provider == "openai":
        return OpenAIEmbedder(settings)
    model = settings.model or DEFAULT_EMBEDDED_MODEL
    if model not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded embeddings model {model!r}: choose one of {', '.join(EMBEDDED_MODELS)}")
    return WordLlamaEmbedder(model)


def normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row (a text with no tokens) stays zero."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class WordLlamaEmbedder:
    """WordLlama, loaded on first use (once, whichever thread asks first), run in a worker thread."""

    def __init__(self, model: str = DEFAULT_EMBEDDED_MODEL) -> None:
        self.model = model
        self.name = f"embedded/{model}"
        self.dimensions = EMBEDDED_MODELS[model]
        self._lock = threading.Lock()
        self._weights: np.ndarray | None = None
        self._tokenizer: Any = None

    def supports_dimensions(self, dimensions: int) -> bool:
        return 1 <= dimensions <= self.dimensions

    async def embed(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        return await asyncio.to_thread(self.embed_now, texts, dimensions)

    async def aclose(self) -> None:
        return None

    def embed_now(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        """`embed`, in the calling thread."""
        weights, tokenizer = self._loaded()
        vectors = np.zeros((len(texts), weights.shape[1]), dtype=np.float32)
        for row, encoding in enumerate(tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = encoding.ids
            for start in range(0, len(ids), TOKENS_PER_LOOKUP):
                vectors[row] += weights[ids[start : start + TOKENS_PER_LOOKUP]].sum(axis=0)
            if ids:
                vectors[row] /= len(ids)
        return normalized(vectors[:, : dimensions or self.dimensions])

    def _loaded(self) -> tuple[np.ndarray, Any]:
        with self._lock:
            if self._weights is None:
                from safetensors import safe_open
                from tokenizers import Tokenizer

                # Found without importing wordllama, whose import configures the root logger.
                package = Path(importlib.util.find_spec("wordllama").submodule_search_locations[0])
                with safe_open(str(package / "weights" / "l2_supercat_256.safetensors"), framework="np") as weights:
                    table = weights.get_tensor("embedding.weight")
                tokenizer = Tokenizer.from_file(str(package / "tokenizers" / "l2_supercat_tokenizer_config.json"))
                tokenizer.no_padding()
                tokenizer.no_truncation()
                self._tokenizer = tokenizer
                self._weights = np.ascontiguousarray(table[:, : self.dimensions], dtype=np.float32)
            return self._weights, self._tokenizer


class OpenAIEmbedder:
    """POST {base_url}/embeddings, UPSTREAM_BATCH texts a request, one request after another."""

    def __init__(self, settings: EmbeddingsSettings) -> None:
        self.settings = settings
        self.model = settings.model or ""
        self.name = f"openai/{self.model}"
        self.dimensions = 0
        self.url = (settings.base_url or "").rstrip("/") + "/embeddings"
        self._http: aiohttp.ClientSession | None = None

    def supports_dimensions(self, dimensions: int) -> bool:
        return dimensions >= 1  # the upstream says whether its model does

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp ties it to the running loop."""
        if self._http is None:
            trusted = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_S, ssl=trusted)
            self._http = aiohttp.ClientSession(connector=connector, proxy=proxy_for(self.url))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def embed(self, texts: list[str], dimensions: int | None = None) -> np.ndarray:
        batches = [await self._embed_batch(texts[start : start + UPSTREAM_BATCH], dimensions) for start in range(0, len(texts), UPSTREAM_BATCH)]
        if not batches:
            return np.zeros((0, dimensions or self.dimensions), dtype=np.float32)
        if len({batch.shape[1] for batch in batches}) > 1:
            raise EmbeddingError("The embeddings upstream answered vectors of different lengths.")
        vectors = normalized(np.concatenate(batches))
        if dimensions is None:
            self.dimensions = vectors.shape[1]
        return vectors

    async def _embed_batch(self, texts: list[str], dimensions: int | None) -> np.ndarray:
        body: dict[str, Any] = {"model": self.model, "input": texts, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {})
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with self.http.post(self.url, data=orjson.dumps(body), headers=tracing.propagate_to(headers), timeout=timeout) as response:
                answer = await response.read()
                if response.status >= 400:
                    raise EmbeddingError(
                        f"The embeddings upstream failed (HTTP {response.status}): {self._safe(_message(answer))}",
                        transient=response.status == 429 or response.status >= 500,
                    )
        except TimeoutError:
            raise EmbeddingError(f"The embeddings upstream did not answer within {self.settings.timeout_s:g} s.", transient=True) from None
        except aiohttp.ClientError as error:
            raise EmbeddingError(f"Could not reach the embeddings upstream: {self._safe(described(error))}", transient=True) from None
        return _vectors(answer, len(texts))

    def _safe(self, text: str) -> str:
        key = self.settings.api_key
        return redact(text.replace(key, "[redacted]") if key else text)


def _vectors(answer: bytes, count: int) -> np.ndarray:
    """The embeddings in an upstream's answer, in the order of its inputs."""
    try:
        data = orjson.loads(answer)["data"]
        rows = sorted(data, key=lambda entry: entry["index"])
        vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise EmbeddingError("The embeddings upstream answered what is not a list of embeddings.") from None
    if len(vectors) != count:
        raise EmbeddingError(f"The embeddings upstream answered {len(vectors)} embeddings for {count} inputs.")
    if vectors.ndim != 2 or vectors.shape[1] == 0 or not np.isfinite(vectors).all():
        raise EmbeddingError("The embeddings upstream answered embeddings that are not lists of numbers.")
    return vectors


def _message(body: bytes) -> str:
    """The upstream's own words about an error: OpenAI's error.message, or the text."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:300]
        if isinstance(error, str):
            return error[:300]
    text = body.decode(errors="replace").strip()
    return text[:300] if text and not text.startswith("<") else "no details"
