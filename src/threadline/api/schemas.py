"""Query values shared by the API's routes (the body pieces they share are in `spec.request`)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request

from threadline.errors import invalid
from threadline.spec.request import INCLUDABLE, Includable, unknown_include

Order = Literal["asc", "desc"]


_INCLUDE_DOC = {
    "description": "Extra output data to include; repeat the parameter for several.",
    "json_schema_extra": {"items": {"type": "string", "enum": list(Includable.__args__)}},
}


def include_values(
    request: Request,
    # Declared for the OpenAPI description only: the values are checked below, so that an
    # unknown one is reported as OpenAI reports it, on `include` whichever spelling was used.
    include: Annotated[list[str], Query(**_INCLUDE_DOC)] = [],  # noqa: B006 - never mutated
    include_brackets: Annotated[list[str], Query(alias="include[]", **_INCLUDE_DOC)] = [],  # noqa: B006
) -> list[str]:
    """`include` from the query string, in either SDK spelling: include=a or include[]=a."""
    values = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    for value in values:
        if value not in INCLUDABLE:
            raise invalid(unknown_include(value), param="include")
    return values
