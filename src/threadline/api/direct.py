"""A lighter way into a busy route: a well-formed request skips FastAPI's dependency solving.

FastAPI resolves a route's parameters anew for each request (dependencies, headers, body) and
wraps each step for its own telemetry; on `POST /v1/responses` that is a sizeable share of
a stored response's CPU. A `DirectRoute` validates the JSON body with the route's own body
field, the same pydantic validation, and asks the route's `arguments` for the rest. Whatever
it is not sure of (another content type, a body that does not parse or validate, a refused
key, FastAPI's telemetry being on) goes FastAPI's way instead, with the body already read, so
that every error, and the order in which errors are found, stays FastAPI's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from fastapi.telemetry import get_telemetry_data
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from threadline.api.json import JSONRequest, JSONRoute


class DirectRoute(JSONRoute):
    """A JSON-bodied route whose endpoint is called directly with `arguments` when they can be built."""

    async def arguments(self, request: Request, body: Any) -> dict[str, Any] | None:
        """The endpoint's arguments for a request with this validated body, exactly as FastAPI
        would solve them; None when FastAPI must answer (an error, a case not covered here)."""
        raise NotImplementedError

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        through_fastapi = APIRoute.get_route_handler(self)
        endpoint = self.dependant.call
        overrides = self.dependency_overrides_provider

        async def handle(request: Request) -> Response:
            request = JSONRequest(request.scope, request.receive)
            # FastAPI's telemetry records each step it takes, and overridden dependencies are its to call.
            direct = get_telemetry_data() is None and not getattr(overrides, "dependency_overrides", None)
            arguments = await self._direct_arguments(request) if direct else None
            if arguments is None:
                return await through_fastapi(request)
            return await endpoint(**arguments)

        return handle

    async def _direct_arguments(self, request: JSONRequest) -> dict[str, Any] | None:
        # FastAPI reads a body as JSON for any application/json or +json type; the plain one is all clients send.
        if request.headers.get("content-type") != "application/json":
            return None
        try:
            data = await request.json()
        except HTTPException:  # the body limits' 413 and 408, which FastAPI lets through too
            raise
        except Exception:
            return None
        body, errors = self.body_field.validate(data, {}, loc=("body",))
        return None if errors else await self.arguments(request, body)
