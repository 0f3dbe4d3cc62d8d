"""Every error leaves as OpenAI's envelope: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from threadline.api.json import JSON, TOO_DEEP, body_is_null
from threadline.errors import APIError
from threadline.items import describe_errors
from threadline.ops import request_ids

log = logging.getLogger("threadline")

# Errors about a number: their query input is reported as the number it spells.
NUMERIC_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "int_parsing", "int_from_float"}

HTTP_ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error"}


async def _api_error(_request: Request, error: APIError) -> JSON:
    return JSON(error.envelope(), status_code=error.status)


async def _validation_error(request: Request, error: RequestValidationError) -> JSON:
    # FastAPI reads the body before it resolves dependencies; a caller without a valid key
    # hears 401 first, as from OpenAI, whatever its body holds.
    if request.url.path.startswith("/v1/"):
        try:
            request.app.state.authenticator.project_for(request.headers.get("authorization"))
        except APIError as denied:
            return JSON(denied.envelope(), status_code=denied.status)
    errors = list(error.errors())
    source = errors[0]["loc"][0] if errors and errors[0]["loc"] else "body"
    data = error.body if source == "body" else None
    for detail in errors:
        detail["loc"] = tuple(detail["loc"][1:]) if detail["loc"] and detail["loc"][0] == source else detail["loc"]
        if source == "query" and detail["type"] in NUMERIC_ERRORS and isinstance(detail.get("input"), str):
            detail["input"] = _number_or_text(detail["input"])
    if source == "body" and any(detail["type"] == "json_invalid" for detail in errors):
        param, message = None, "We could not parse the JSON body of your request. Expected a JSON object."
        if any((detail.get("ctx") or {}).get("error") == TOO_DEEP for detail in errors):
            message = f"We could not parse the JSON body of your request: it is {TOO_DEEP}."
    elif source == "body" and isinstance(data, (bytes, bytearray)):
        # FastAPI reads a body as JSON only when its Content-Type says it is JSON.
        content_type = request.headers.get("content-type")
        sent = f"Content-Type '{content_type}'" if content_type else "no Content-Type"
        param, message = None, f"The request body was sent with {sent}. Send it as JSON, with Content-Type: application/json."
    elif source == "body" and data is None and body_is_null(request):
        param, message = None, "Invalid type for request body: expected an object, but got null instead."
    elif source == "body" and data is None and (empty := _errors_for_empty_body(request)) is None:
        param, message = None, "The request body is empty. Expected a JSON object."
    else:
        if source == "body" and data is None:
            # No body at all: say which fields are required, as for an empty object.
            errors, data = empty, {}
        param, message = describe_errors(errors, data)
    return JSON(APIError(400, message, param=param).envelope(), status_code=400)


def _number_or_text(value: str) -> int | float | str:
    """A query value as the number it spells, if it spells one: `limit=0` was given 0, not "0"."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _errors_for_empty_body(request: Request) -> list[dict] | None:
    """The route's body validated as `{}`, with locs relative to the body; None if unknown."""
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if body_field is None:
        return None
    _value, errors = body_field.validate({}, {}, loc=("body",))
    if not errors:
        return None
    errors = list(errors)
    for detail in errors:
        detail["loc"] = tuple(detail["loc"][1:]) if detail["loc"] and detail["loc"][0] == "body" else detail["loc"]
    return errors


async def _http_error(request: Request, error: HTTPException) -> JSON:
    if error.status_code == 404:
        message = f"Invalid URL ({request.method} {request.url.path})"
    elif error.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}"
    else:
        message = str(error.detail)
    code = "request_too_large" if error.status_code == 413 else None
    envelope = APIError(error.status_code, message, type=HTTP_ERROR_TYPES.get(error.status_code, "invalid_request_error"), code=code).envelope()
    return JSON(envelope, status_code=error.status_code, headers=getattr(error, "headers", None))


async def _unexpected_error(_request: Request, error: Exception) -> JSON:
    log.exception("unexpected error", exc_info=error)
    envelope = APIError(500, "The server had an error while processing your request.", type="server_error").envelope()
    return JSON(envelope, status_code=500, headers=request_ids.headers())  # answered outside the middleware


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
