"""The Files API's work: uploads, listings, bytes and deletes, for the caller's project.

A file expires as its `expires_after` says (batch files after 30 days unless told otherwise,
as on OpenAI); from then on it is not found, and the worker's heartbeat soon removes it with
its bytes and its chunks (jobs/worker.py), as does a later upload; an upload also removes
those of an upload whose process ended before it did.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Literal

from threadline.errors import invalid, not_found
from threadline.ids import new_id
from threadline.store.files import FileStore
from threadline.store.pagination import Page

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MIN_EXPIRY_S = 3600
MAX_EXPIRY_S = 30 * 24 * 3600
BATCH_EXPIRY_S = MAX_EXPIRY_S
# How often an upload also removes the files that expired since, and uploads left unfinished.
SWEEP_EVERY_S = 60
# An upload still unfinished this long after it began was cut off by its process's end.
ABANDONED_AFTER_S = 24 * 3600


class FilesService:
    def __init__(self, files: FileStore, *, max_file_bytes: int) -> None:
        self.files = files
        self.max_file_bytes = max_file_bytes  # larger uploads are refused (413) as they stream in
        self._swept_at = 0.0

    async def create(self, project: str, *, filename: str, fields: Mapping[str, str], parts: AsyncIterator[bytes]) -> dict:
        """Store an upload's file; `fields` are the form's text fields, read as they arrive:
        those sent before the file are checked before any byte is stored, and all of them
        once the file is in (the rest come after it)."""
        created_at = time.time()  # to the microsecond: lists keep the order of uploads
        early_purpose = fields.get("purpose")
        if early_purpose is not None:
            check_purpose(early_purpose)
        if any(name.startswith("expires_after") for name in fields):
            expires_at(fields, early_purpose or "", created_at)

        def settle() -> dict:
            purpose = fields.get("purpose")
            if purpose is None:
                raise invalid("Missing required parameter: 'purpose'.", param="purpose")
            check_purpose(purpose)
            return {"purpose": purpose, "expires_at": expires_at(fields, purpose, created_at)}

        await self._sweep(created_at)
        return await self.files.create(
            # OpenAI spells file ids `file-...`, unlike its `resp_` and `conv_`.
            project, new_id("file", "-"), filename=filename, purpose=early_purpose or "", created_at=created_at,
            expires_at=None, parts=parts, settle=settle,
        )

    async def list(self, project: str, *, purpose: str | None, after: str | None, limit: int, order: Literal["asc", "desc"]) -> Page:
        if purpose is not None and purpose not in PURPOSES:
            return Page([], has_more=False)  # no file has it (and PostgreSQL refuses a NUL in a query)
        return await self.files.list(project, purpose=purpose, after=after, limit=limit, order=order)

    async def retrieve(self, project: str, file_id: str) -> dict:
        file = await self.files.get(project, file_id)
        if file is None:
            raise not_found("File", file_id, param="file_id")
        return file

    async def content(self, project: str, file_id: str) -> tuple[dict, AsyncIterator[bytes]]:
        """The file's object and its bytes, part by part."""
        file = await self.retrieve(project, file_id)
        return file, self.files.parts(file_id)

    async def delete(self, project: str, file_id: str) -> dict:
        # An expired file is already gone to the caller, whether or not its row is.
        if await self.files.get(project, file_id) is None or not await self.files.delete(project, file_id):
            raise not_found("File", file_id, param="file_id")
        return {"id": file_id, "object": "file", "deleted": True}

    async def _sweep(self, now: float) -> None:
        if now - self._swept_at >= SWEEP_EVERY_S:
            self._swept_at = now
            await self.files.remove_expired(int(now))
            await self.files.remove_incomplete(int(now) - ABANDONED_AFTER_S)


def check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        supported = ", ".join(f"'{value}'" for value in PURPOSES)
        raise invalid(f"Invalid value for 'purpose': '{purpose}'. Supported values are: {supported}.", param="purpose", code="invalid_value")


def expires_at(fields: Mapping[str, str], purpose: str, created_at: int) -> int | None:
    """When the file expires, from the form's `expires_after[anchor]` and `expires_after[seconds]`
    (the SDKs' spelling of the object); None for never."""
    anchor, seconds = fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return int(created_at) + BATCH_EXPIRY_S if purpose == "batch" else None
    if anchor is None:
        raise invalid("Missing required parameter: 'expires_after.anchor'.", param="expires_after.anchor")
    if seconds is None:
        raise invalid("Missing required parameter: 'expires_after.seconds'.", param="expires_after.seconds")
    if anchor != "created_at":
        raise invalid(f"Invalid value for 'expires_after.anchor': '{anchor}'. Supported values are: 'created_at'.", param="expires_after.anchor", code="invalid_value")
    if not seconds.strip().isdigit() or not MIN_EXPIRY_S <= int(seconds) <= MAX_EXPIRY_S:
        raise invalid(
            f"Invalid 'expires_after.seconds': expected an integer between {MIN_EXPIRY_S} and {MAX_EXPIRY_S}, but got '{seconds}'.",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return int(created_at) + int(seconds)
