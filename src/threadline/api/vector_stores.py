"""The Vector Stores API over HTTP: /v1/vector_stores, their files, file batches and search."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BeforeValidator, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute, body_is_null
from threadline.api.openapi import answers
from threadline.api.schemas import Order
from threadline.api.vector_store_objects import (
    SearchResultsPage,
    VectorStore,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileBatch,
    VectorStoreFileContent,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreList,
)
from threadline.errors import invalid
from threadline.retrieval.chunking import MAX_CHUNK_TOKENS, MIN_CHUNK_TOKENS
from threadline.services.vector_stores import VectorStoresService
from threadline.spec.request import METADATA_PAIRS, Bool, Metadata, MetadataKey, ObjectId, Tolerant, _check_metadata
from threadline.store.vector_stores import Listing

router = APIRouter(prefix="/v1/vector_stores", tags=["Vector stores"], route_class=JSONRoute)

# -- request bodies ---------------------------------------------------------------------------

Int = Annotated[int, Field(strict=True)]


class ExpiresAfter(Tolerant):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(strict=True, ge=1, le=365)]


class AutoChunking(Tolerant):
    type: Literal["auto"]


class StaticSizes(Tolerant):
    max_chunk_size_tokens: Annotated[int, Field(strict=True, ge=MIN_CHUNK_TOKENS, le=MAX_CHUNK_TOKENS)]
    chunk_overlap_tokens: Annotated[int, Field(strict=True, ge=0, description="At most half of max_chunk_size_tokens.")]

    @field_validator("chunk_overlap_tokens")
    @classmethod
    def _at_most_half(cls, overlap: int, info: ValidationInfo) -> int:
        max_tokens = info.data.get("max_chunk_size_tokens")
        if max_tokens is not None and overlap > max_tokens // 2:
            raise PydanticCustomError(
                "overlap_too_large",
                "chunk_overlap_tokens must not exceed half of max_chunk_size_tokens ({half}), but got {overlap}",
                {"half": max_tokens // 2, "overlap": overlap},
            )
        return overlap


class StaticChunking(Tolerant):
    type: Literal["static"]
    static: StaticSizes


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]

AttributeValue = Annotated[str, StringConstraints(max_length=512)] | Bool | Int | Annotated[float, Field(strict=True)]
Attributes = Annotated[
    dict[MetadataKey, AttributeValue],
    Field(max_length=METADATA_PAIRS, description="Up to 16 pairs; keys at most 64 characters, values strings (at most 512), numbers or booleans."),
    BeforeValidator(_check_metadata),
]


class CreateVectorStoreBody(Tolerant):
    name: str | None = None
    description: str | None = None
    file_ids: Annotated[list[ObjectId], Field(max_length=500)] | None = None
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class ModifyVectorStoreBody(Tolerant):
    name: str | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Metadata | None = None


class AttachFileBody(Tolerant):
    file_id: ObjectId
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


class UpdateFileBody(Tolerant):
    attributes: Attributes | None


class CreateBatchBody(Tolerant):
    file_ids: Annotated[list[ObjectId], Field(min_length=1, max_length=2000)] | None = None
    files: Annotated[list[AttachFileBody], Field(min_length=1, max_length=2000)] | None = None
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None


# Each query is embedded and ranked on its own: a search takes a few.
MAX_QUERIES = 10
SearchQuery = Annotated[str, StringConstraints(min_length=1)]


class SearchBody(Tolerant):
    query: SearchQuery | Annotated[list[SearchQuery], Field(min_length=1, max_length=MAX_QUERIES, description=f"At most {MAX_QUERIES} non-empty strings.")]
    rewrite_query: Bool = False
    max_num_results: Annotated[int, Field(strict=True, ge=1, le=50)] = 10
    # Checked by the searcher, as OpenAI's ComparisonFilter / CompoundFilter and ranking options.
    filters: dict[str, Any] | None = None
    ranking_options: dict[str, Any] | None = None


# -- dependencies --------------------------------------------------------------------------------


def service(request: Request) -> VectorStoresService:
    return request.app.state.vector_stores


VectorStores = Annotated[VectorStoresService, Depends(service)]
Project = Annotated[str, Depends(project)]
FileStatus = Literal["in_progress", "completed", "failed", "cancelled"]


def listing(
    after: str | None = None,
    before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
) -> Listing:
    return Listing(after=after, before=before, limit=limit, order=order)


Listed = Annotated[Listing, Depends(listing)]


def _strategy(body_strategy: AutoChunking | StaticChunking | None) -> dict | None:
    return body_strategy.model_dump() if body_strategy is not None else None


# -- vector stores -------------------------------------------------------------------------------


@router.post("", summary="Create a vector store", responses=answers(VectorStore, 400, 404, 413))
async def create_vector_store(
    request: Request, project: Project, vector_stores: VectorStores, body: CreateVectorStoreBody | None = None
) -> JSON:
    if body is None and body_is_null(request):
        raise invalid("Invalid type for request body: expected an object, but got null instead.")
    body = body or CreateVectorStoreBody()
    created = await vector_stores.create(
        project,
        name=body.name,
        description=body.description,
        file_ids=body.file_ids or [],
        chunking_strategy=_strategy(body.chunking_strategy),
        expires_after=body.expires_after.model_dump(include={"anchor", "days"}) if body.expires_after else None,
        metadata=body.metadata,
    )
    return JSON(created)


@router.get("", summary="List vector stores", responses=answers(VectorStoreList, 400, 404))
async def list_vector_stores(project: Project, vector_stores: VectorStores, listed: Listed) -> JSON:
    return JSON((await vector_stores.list(project, listed)).list_object())


@router.get("/{vector_store_id}", summary="Retrieve a vector store", responses=answers(VectorStore, 404))
async def retrieve_vector_store(vector_store_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.retrieve(project, vector_store_id))


@router.post("/{vector_store_id}", summary="Modify a vector store", responses=answers(VectorStore, 400, 404, 413))
async def modify_vector_store(vector_store_id: str, body: ModifyVectorStoreBody, project: Project, vector_stores: VectorStores) -> JSON:
    changes: dict[str, Any] = {}
    if "name" in body.model_fields_set:
        changes["name"] = body.name
    if "expires_after" in body.model_fields_set:
        changes["expires_after"] = body.expires_after.model_dump(include={"anchor", "days"}) if body.expires_after else None
    if "metadata" in body.model_fields_set:
        changes["metadata"] = body.metadata
    return JSON(await vector_stores.modify(project, vector_store_id, changes))


@router.delete(
    "/{vector_store_id}",
    summary="Delete a vector store",
    description="Its files' chunks go with it; the Files themselves remain.",
    responses=answers(VectorStoreDeleted, 404),
)
async def delete_vector_store(vector_store_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    await vector_stores.delete(project, vector_store_id)
    return JSON({"id": vector_store_id, "object": "vector_store.deleted", "deleted": True})


@router.post("/{vector_store_id}/search", summary="Search a vector store", responses=answers(SearchResultsPage, 400, 404, 413))
async def search_vector_store(vector_store_id: str, body: SearchBody, project: Project, vector_stores: VectorStores) -> JSON:
    queries = [body.query] if isinstance(body.query, str) else body.query
    page = await vector_stores.search(
        project, vector_store_id, queries, filters=body.filters, max_num_results=body.max_num_results, ranking_options=body.ranking_options
    )
    return JSON(page)


# -- files ------------------------------------------------------------------------------------------


@router.post(
    "/{vector_store_id}/files",
    summary="Attach a file to a vector store",
    description="The file is ingested (read, chunked, embedded) in the background; poll it until it is no longer `in_progress`.",
    responses=answers(VectorStoreFile, 400, 404, 413),
)
async def attach_file(vector_store_id: str, body: AttachFileBody, project: Project, vector_stores: VectorStores) -> JSON:
    attached = await vector_stores.attach_file(
        project, vector_store_id, body.file_id, attributes=body.attributes, chunking_strategy=_strategy(body.chunking_strategy)
    )
    return JSON(attached)


@router.get("/{vector_store_id}/files", summary="List a vector store's files", responses=answers(VectorStoreFileList, 400, 404))
async def list_files(
    vector_store_id: str, project: Project, vector_stores: VectorStores, listed: Listed, filter: FileStatus | None = None
) -> JSON:
    return JSON((await vector_stores.list_files(project, vector_store_id, listed, status=filter)).list_object())


@router.get("/{vector_store_id}/files/{file_id}", summary="Retrieve a vector store file", responses=answers(VectorStoreFile, 404))
async def retrieve_file(vector_store_id: str, file_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.retrieve_file(project, vector_store_id, file_id))


@router.post("/{vector_store_id}/files/{file_id}", summary="Update a vector store file's attributes", responses=answers(VectorStoreFile, 400, 404, 413))
async def update_file(vector_store_id: str, file_id: str, body: UpdateFileBody, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.update_file(project, vector_store_id, file_id, body.attributes))


@router.delete(
    "/{vector_store_id}/files/{file_id}",
    summary="Remove a file from a vector store",
    description="Its chunks go; the File itself remains.",
    responses=answers(VectorStoreFileDeleted, 404),
)
async def delete_file(vector_store_id: str, file_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    await vector_stores.delete_file(project, vector_store_id, file_id)
    return JSON({"id": file_id, "object": "vector_store.file.deleted", "deleted": True})


@router.get(
    "/{vector_store_id}/files/{file_id}/content",
    summary="Retrieve a vector store file's parsed content",
    responses=answers(VectorStoreFileContent, 404),
)
async def file_content(vector_store_id: str, file_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.file_content(project, vector_store_id, file_id))


# -- file batches ---------------------------------------------------------------------------------


@router.post("/{vector_store_id}/file_batches", summary="Attach files as a batch", responses=answers(VectorStoreFileBatch, 400, 404, 413))
async def create_batch(vector_store_id: str, body: CreateBatchBody, project: Project, vector_stores: VectorStores) -> JSON:
    files = None
    if body.files is not None:
        files = [
            {"file_id": file.file_id, "attributes": file.attributes, "chunking_strategy": _strategy(file.chunking_strategy)} for file in body.files
        ]
    batch = await vector_stores.create_batch(
        project, vector_store_id, file_ids=body.file_ids, files=files, attributes=body.attributes, chunking_strategy=_strategy(body.chunking_strategy)
    )
    return JSON(batch)


@router.get("/{vector_store_id}/file_batches/{batch_id}", summary="Retrieve a file batch", responses=answers(VectorStoreFileBatch, 404))
async def retrieve_batch(vector_store_id: str, batch_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.retrieve_batch(project, vector_store_id, batch_id))


@router.post(
    "/{vector_store_id}/file_batches/{batch_id}/cancel",
    summary="Cancel a file batch",
    description="Its files still in progress end `cancelled`; those done stay.",
    responses=answers(VectorStoreFileBatch, 404),
)
async def cancel_batch(vector_store_id: str, batch_id: str, project: Project, vector_stores: VectorStores) -> JSON:
    return JSON(await vector_stores.cancel_batch(project, vector_store_id, batch_id))


@router.get("/{vector_store_id}/file_batches/{batch_id}/files", summary="List a file batch's files", responses=answers(VectorStoreFileList, 400, 404))
async def list_batch_files(
    vector_store_id: str, batch_id: str, project: Project, vector_stores: VectorStores, listed: Listed, filter: FileStatus | None = None
) -> JSON:
    page = await vector_stores.list_batch_files(project, vector_store_id, batch_id, listed, status=filter)
    return JSON(page.list_object())
