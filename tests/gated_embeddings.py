"""A real /v1/embeddings server for ingestion tests, served from the test's own process.

Its vectors are a hashed bag of words (so texts sharing words are near), and a gate holds
every request while it is closed: a test closes it to catch an ingestion in the middle (at
once, or after a number of requests with `close_after`), and sees how many requests are
waiting there. `failures` answers that many requests with a 503 first.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.servers import ThreadServer

DIMENSIONS = 64


def vector(text: str) -> list[float]:
    counts = np.zeros(DIMENSIONS, dtype=np.float32)
    for word in re.findall(r"\w+", text.lower()):
        counts[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little") % DIMENSIONS] += 1
    counts[0] += 0.01  # no text without a direction
    return (counts / np.linalg.norm(counts)).tolist()


class GatedEmbeddingsServer:
    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self.waiting = 0  # requests held at the closed gate now
        self.requests = 0  # requests answered
        self.let_through = 0  # requests still to answer while the gate is closed
        self.failures = 0  # requests still to answer with a 503
        self._thread_server = ThreadServer(Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])]), "the gated embeddings server")

    async def _embeddings(self, request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self.lock:
            failing = self.failures > 0
            self.failures -= failing
        if failing:
            error = {"message": "The upstream is overloaded.", "type": "server_error", "param": None, "code": None}
            return JSONResponse({"error": error}, status_code=503)
        with self.lock:
            passing = self.let_through > 0
            self.let_through -= passing
            self.waiting += not passing
        if passing:
            return self._answer(body, texts)
        try:
            while not self.gate.is_set():
                await asyncio.sleep(0.01)
        finally:
            with self.lock:
                self.waiting -= 1
        return self._answer(body, texts)

    def close_after(self, requests: int) -> None:
        """Close the gate once `requests` more requests have been answered."""
        with self.lock:
            self.let_through = requests
            self.gate.clear()

    def _answer(self, body: dict, texts: list[str]) -> JSONResponse:
        with self.lock:
            self.requests += 1
        data = [{"object": "embedding", "index": index, "embedding": vector(text)} for index, text in enumerate(texts)]
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}})

    def __enter__(self) -> GatedEmbeddingsServer:
        port = self._thread_server.start()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc_info) -> None:
        self.gate.set()
        self._thread_server.stop()

    def config(self) -> dict:
        """The [embeddings] table of a Threadline config that embeds here."""
        return {"provider": "openai", "base_url": self.base_url, "model": "bag-of-words", "timeout_s": 120}
