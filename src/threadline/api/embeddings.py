"""The Embeddings API over HTTP: /v1/embeddings."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import ErrorResponse, answers
from threadline.services.embeddings import EmbeddingsService
from threadline.spec.request import Tolerant

router = APIRouter(prefix="/v1/embeddings", tags=["Embeddings"], route_class=JSONRoute)


class CreateEmbeddingBody(Tolerant):
    # Token arrays are described, as OpenAI does, and refused: the model's tokens are not OpenAI's.
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="The vector, or its little-endian float32 bytes in base64.")


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


UPSTREAM_FAILED = {502: {"model": ErrorResponse, "description": "The embeddings upstream failed or could not be reached."}}


def service(request: Request) -> EmbeddingsService:
    return request.app.state.embeddings


Embeddings = Annotated[EmbeddingsService, Depends(service)]
Project = Annotated[str, Depends(project)]


@router.post("", summary="Create embeddings", responses={**answers(CreateEmbeddingResponse, 400, 413), **UPSTREAM_FAILED})
async def create_embeddings(body: CreateEmbeddingBody, project: Project, embeddings: Embeddings) -> JSON:
    return JSON(
        await embeddings.create(body.input, model=body.model, encoding_format=body.encoding_format or "float", dimensions=body.dimensions)
    )
