"""JSON in and out with orjson: request bodies are parsed strictly, and answers are plain dicts.

Request bodies are parsed by orjson rather than the standard library, which accepts what
Threadline cannot store or send back: NaN and Infinity, numbers that overflow to infinity,
lone UTF-16 surrogates ("\\ud800"), and nesting deep enough to exhaust the stack. Such a body
is refused as invalid JSON (400); so is one nested deeper than MAX_DEPTH levels, which is
far beyond any real request and keeps every stored object within what orjson can encode.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

MAX_DEPTH = 128
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def loads(body: bytes) -> Any:
    """A request body's JSON; raises json.JSONDecodeError (orjson's is one) when it is not usable."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):  # orjson's own limit, 1024 levels
            raise json.JSONDecodeError(TOO_DEEP, error.doc, error.pos) from None
        raise
    # A body with few brackets cannot be deep: skip the walk for nearly every request.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise json.JSONDecodeError(TOO_DEEP, body.decode("utf-8", "replace"), 0)
    return data


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


# Set in the request's scope when its body is JSON `null`, which FastAPI takes for no body.
BODY_IS_NULL = "threadline.body_is_null"


def body_is_null(request: Request) -> bool:
    return bool(request.scope.get(BODY_IS_NULL))


class JSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
            if self._json is None:
                self.scope[BODY_IS_NULL] = True
        return self._json


class JSONRoute(APIRoute):
    """A route whose JSON body FastAPI reads through `loads`."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def handle(request: Request) -> Response:
            return await handler(JSONRequest(request.scope, request.receive))

        return handle
