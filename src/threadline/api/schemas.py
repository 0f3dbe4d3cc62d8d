"""Request bodies and query values shared by the API's routes, as pydantic types."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from threadline.errors import invalid

METADATA_PAIRS, METADATA_KEY_LENGTH, METADATA_VALUE_LENGTH = 16, 64, 512


def _check_metadata(value: Any) -> Any:
    """Refuse too many pairs or a long key with one error on `metadata` itself.

    Left to pydantic, 17 pairs read as "array too long" and a long key is reported at its
    value's path with the value's length."""
    if not isinstance(value, dict):
        return value
    if len(value) > METADATA_PAIRS:
        raise PydanticCustomError(
            "metadata_too_many_pairs",
            "too many key-value pairs. Expected an object with at most {limit} pairs, but got {count} pairs instead",
            {"limit": METADATA_PAIRS, "count": len(value)},
        )
    for key in value:
        if isinstance(key, str) and len(key) > METADATA_KEY_LENGTH:
            raise PydanticCustomError(
                "metadata_key_too_long",
                "key too long. Expected keys of at most {limit} characters, but got a key with length {length} instead",
                {"limit": METADATA_KEY_LENGTH, "length": len(key)},
            )
    return value


MetadataKey = Annotated[str, StringConstraints(max_length=METADATA_KEY_LENGTH)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_LENGTH)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=METADATA_PAIRS,
        description="Up to 16 key-value pairs; keys at most 64 characters, values at most 512.",
    ),
    BeforeValidator(_check_metadata),
]

Includable = Literal[
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "file_search_call.results",
    "message.input_image.image_url",
    "message.output_text.logprobs",
    "reasoning.encrypted_content",
    "web_search_call.action.sources",
    "web_search_call.results",
]
INCLUDABLE: tuple[str, ...] = Includable.__args__

Order = Literal["asc", "desc"]


class Body(BaseModel):
    # Unknown fields are tolerated, as OpenAI tolerates them: SDKs add fields over time.
    model_config = ConfigDict(extra="allow")


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
            supported = ", ".join(f"'{option}'" for option in INCLUDABLE[:-1]) + f" and '{INCLUDABLE[-1]}'"
            raise invalid(f"Invalid value: '{value}'. Supported values are: {supported}.", param="include")
    return values
