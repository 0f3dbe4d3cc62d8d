"""Request bodies and query values shared by the API's routes, as pydantic types."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from threadline.errors import invalid

MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]
Metadata = Annotated[
    dict[MetadataKey, MetadataValue],
    Field(
        max_length=16,
        description="Up to 16 key-value pairs; keys at most 64 characters, values at most 512.",
    ),
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


def include_values(request: Request) -> list[str]:
    """`include` from the query string, in either SDK spelling: include=a or include[]=a."""
    values = request.query_params.getlist("include") + request.query_params.getlist("include[]")
    for value in values:
        if value not in INCLUDABLE:
            supported = ", ".join(f"'{option}'" for option in INCLUDABLE)
            raise invalid(f"Invalid value: '{value}'. Supported values are: {supported}.", param="include")
    return values
