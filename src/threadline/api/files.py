"""The Files API over HTTP: /v1/files, their bytes, and deletes."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute
from threadline.api.openapi import File, FileDeleted, FileList, answers
from threadline.api.schemas import Order
from threadline.api.uploads import Upload
from threadline.errors import invalid
from threadline.services.files import PURPOSES, FilesService
from threadline.store.files import PART_BYTES

router = APIRouter(prefix="/v1/files", tags=["Files"], route_class=JSONRoute)


def service(request: Request) -> FilesService:
    return request.app.state.files


Files = Annotated[FilesService, Depends(service)]
Project = Annotated[str, Depends(project)]

# The upload's form, described for the OpenAPI document: the route reads the body itself, as it streams.
UPLOAD_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "purpose": {"type": "string", "enum": list(PURPOSES)},
                        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
                    },
                }
            }
        },
    }
}
FILE_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


@router.post(
    "",
    summary="Upload a file",
    description="The file streams into the database as it arrives; files larger than `files.max_file_bytes` get 413.",
    responses=answers(File, 400, 413),
    openapi_extra=UPLOAD_FORM,
)
async def create_file(request: Request, project: Project, files: Files) -> JSON:
    upload = Upload(
        request.stream(), request.headers.get("content-type"), part_bytes=PART_BYTES, max_file_bytes=files.max_file_bytes
    )
    if not await upload.start():
        if "purpose" not in upload.fields:
            raise invalid("Missing required parameter: 'purpose'.", param="purpose")
        raise invalid("Missing required parameter: 'file'.", param="file")
    return JSON(await files.create(project, filename=upload.filename, fields=upload.fields, parts=upload.file_parts()))


@router.get("", summary="List files", responses=answers(FileList, 400, 404))
async def list_files(
    project: Project,
    files: Files,
    purpose: str | None = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
    order: Order = "desc",
) -> JSON:
    return JSON((await files.list(project, purpose=purpose, after=after, limit=limit, order=order)).list_object())


@router.get("/{file_id}", summary="Retrieve a file", responses=answers(File, 404))
async def retrieve_file(file_id: str, project: Project, files: Files) -> JSON:
    return JSON(await files.retrieve(project, file_id))


@router.get(
    "/{file_id}/content",
    summary="Retrieve a file's bytes",
    description="Its media type goes by its filename.",
    response_class=StreamingResponse,
    responses={**answers(File, 404), 200: {"description": "The file's bytes", "content": FILE_BYTES}},
)
async def retrieve_file_content(file_id: str, project: Project, files: Files) -> StreamingResponse:
    file, parts = await files.content(project, file_id)
    media_type = mimetypes.guess_type(file["filename"])[0] or "application/octet-stream"
    return StreamingResponse(parts, media_type=media_type, headers={"content-length": str(file["bytes"])})


@router.delete("/{file_id}", summary="Delete a file", responses=answers(FileDeleted, 404))
async def delete_file(file_id: str, project: Project, files: Files) -> JSON:
    return JSON(await files.delete(project, file_id))
