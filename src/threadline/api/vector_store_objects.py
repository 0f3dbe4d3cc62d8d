"""What the Vector Stores API returns, as pydantic models for the OpenAPI description only
(handlers return plain dicts; see api/openapi.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Attributes = dict[str, str | float | bool]


class FileCounts(BaseModel):
    in_progress: int
    completed: int
    failed: int
    cancelled: int
    total: int


class ExpiresAfter(BaseModel):
    anchor: Literal["last_active_at"]
    days: int


class VectorStore(BaseModel):
    id: str
    object: Literal["vector_store"]
    created_at: int
    name: str
    usage_bytes: int = Field(description="The bytes of its files' chunks.")
    file_counts: FileCounts
    status: Literal["expired", "in_progress", "completed"]
    expires_after: ExpiresAfter | None
    expires_at: int | None
    last_active_at: int | None
    metadata: dict[str, str]


class VectorStoreList(BaseModel):
    object: Literal["list"]
    data: list[VectorStore]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VectorStoreDeleted(BaseModel):
    id: str
    object: Literal["vector_store.deleted"]
    deleted: bool


class LastError(BaseModel):
    code: Literal["server_error", "unsupported_file", "invalid_file"]
    message: str


class StaticSizes(BaseModel):
    max_chunk_size_tokens: int
    chunk_overlap_tokens: int


class StaticChunkingStrategy(BaseModel):
    type: Literal["static"]
    static: StaticSizes


class VectorStoreFile(BaseModel):
    id: str = Field(description="The File's id.")
    object: Literal["vector_store.file"]
    usage_bytes: int
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    last_error: LastError | None
    chunking_strategy: StaticChunkingStrategy = Field(description="An `auto` strategy shows what it means: 800 tokens, 400 of overlap.")
    attributes: Attributes


class VectorStoreFileList(BaseModel):
    object: Literal["list"]
    data: list[VectorStoreFile]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VectorStoreFileDeleted(BaseModel):
    id: str
    object: Literal["vector_store.file.deleted"]
    deleted: bool


class ContentText(BaseModel):
    type: Literal["text"]
    text: str


class VectorStoreFileContent(BaseModel):
    object: Literal["vector_store.file_content.page"]
    data: list[ContentText] = Field(description="The file's text, in the chunks it was indexed in.")
    has_more: bool
    next_page: str | None


class VectorStoreFileBatch(BaseModel):
    id: str
    object: Literal["vector_store.files_batch"]
    created_at: int
    vector_store_id: str
    status: Literal["in_progress", "completed", "cancelled", "failed"]
    file_counts: FileCounts


class SearchResult(BaseModel):
    file_id: str
    filename: str
    score: float = Field(ge=0, le=1)
    attributes: Attributes
    content: list[ContentText]


class SearchResultsPage(BaseModel):
    object: Literal["vector_store.search_results.page"]
    search_query: list[str]
    data: list[SearchResult]
    has_more: bool
    next_page: str | None
