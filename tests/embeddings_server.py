"""An OpenAI-style embeddings server for tests, served for real over HTTP from a thread.

    POST /v1/embeddings {"model", "input": [...], "dimensions"?}

Each input's vector is made from its words (a word's slot is a hash of it), so equal texts
get equal vectors and texts that share words point the same way; vectors are answered
unnormalised, longer than one, to show that Threadline normalises them. `dimensions` cuts
them short (default DIMENSIONS).

    with EmbeddingsServer(api_key="sk-upstream") as upstream:
        settings = {"embeddings": {"provider": "openai", "base_url": upstream.base_url, ...}}
        upstream.fail(500)      the next request is answered with this status (OpenAI's error body)
        upstream.malformed()    the next request is answered 200 with what is not embeddings
        upstream.requests       every request's JSON body and headers

A request without `Authorization: Bearer <api_key>` (when one is set) is refused with a 401.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import ThreadServer

DIMENSIONS = 32


def word_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in text.lower().split():
        vector[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dimensions] += 3.0
    vector[0] += 0.5  # no text is the zero vector
    return vector


@dataclass
class EmbeddingsRequest:
    body: Any
    headers: dict[str, str]


class EmbeddingsServer:
    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[EmbeddingsRequest] = []
        self._faults: deque[Response] = deque()
        app = Starlette(routes=[Route("/v1/embeddings", self._embeddings, methods=["POST"])])
        self._server = ThreadServer(app, "the embeddings server")

    def __enter__(self) -> EmbeddingsServer:
        self.base_url = f"http://127.0.0.1:{self._server.start()}/v1"
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop()

    def reset(self) -> None:
        self.requests.clear()
        self._faults.clear()

    def fail(self, status: int, message: str = "The upstream is having a bad day.") -> None:
        self._faults.append(JSONResponse({"error": {"message": message, "type": "server_error", "param": None, "code": None}}, status_code=status))

    def malformed(self) -> None:
        self._faults.append(JSONResponse({"object": "list", "data": [{"index": 0, "embedding": "not numbers"}]}))

    async def _embeddings(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(EmbeddingsRequest(body, {name.lower(): value for name, value in request.headers.items()}))
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}, status_code=401)
        if self._faults:
            return self._faults.popleft()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dimensions = body.get("dimensions") or DIMENSIONS
        data = [{"object": "embedding", "index": index, "embedding": word_vector(text, dimensions)} for index, text in enumerate(inputs)]
        data.reverse()  # OpenAI's answers carry an index; nothing promises their order
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 1, "total_tokens": 1}})
