"""Files named by id in the input (`input_file` and `input_image` with a `file_id`), as the model gets them.

Items are stored as the client sent them, file ids and all; the file is read on the way to
the model, since no model's server can see Threadline's file ids:

- an image becomes its bytes as a data URL `image_url`, for every model;
- a file becomes, for a Responses API upstream, the file itself (`file_data`, a data URL,
  with its `filename`); for a chat model (an upstream or the embedded one), the text
  extracted from it, which every chat model reads; a file whose kind has no text
  extraction goes as `file_data`, for the chat upstream to take or refuse.

A file id the project does not have is a 400 naming the part, checked before anything is
stored; one in earlier items (a conversation's, a previous response's) whose file has since
been deleted or expired becomes a note saying so, so the conversation can go on.

What the files add to one request is held to what the request could have carried inline
(`limits.max_body_bytes`), each file counted every time it is named, though read only once.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import Iterator

from threadline.backends.base import Backend
from threadline.errors import invalid
from threadline.items.ended import derived
from threadline.store.files import FileStore

FILE_PARTS = ("input_file", "input_image")
# The keys of an item that hold content parts: a message's, a tool call output's.
PART_LISTS = ("content", "output")
# Image kinds known by their first bytes, for files named without a telling extension.
IMAGE_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif", b"GIF89a": "image/gif"}


def file_parts(items: list[dict]) -> Iterator[tuple[int, str, int, dict]]:
    """(item index, list key, part index, part) of every part that names a file by id and
    carries it in no other form."""
    for index, item in enumerate(items):
        for key, position, part in derived(item, file_parts, parts_by_id):
            yield index, key, position, part


def parts_by_id(item: dict) -> tuple[tuple[str, int, dict], ...]:
    """(list key, part index, part) of the item's parts that name a file by id only."""
    found = []
    for key in PART_LISTS:
        parts = item.get(key)
        if not isinstance(parts, list):
            continue
        for position, part in enumerate(parts):
            if isinstance(part, dict) and part.get("type") in FILE_PARTS and by_id_only(part):
                found.append((key, position, part))
    return tuple(found)


def by_id_only(part: dict) -> bool:
    if not part.get("file_id"):
        return False
    if part["type"] == "input_image":
        return not part.get("image_url")
    return not part.get("file_data") and not part.get("file_url")


def unknown_file(file_id: str, param: str) -> Exception:
    return invalid(f"The file '{file_id}' does not exist, or is not this project's.", param=param, code="invalid_value")


class FileInputs:
    """Reads the files the input names by id, for one model: as text (`as_text`) or as files.

    One instance serves one request: each file is read once however often it is named, and
    what the files add to the input is held to `max_bytes` (the most a request could carry
    inline), so a small body naming a large file many times cannot fill the server's memory.
    """

    def __init__(self, files: FileStore, project: str, *, as_text: bool, max_bytes: int) -> None:
        self.files = files
        self.project = project
        self.as_text = as_text
        self.max_bytes = max_bytes
        self.bytes_read = 0  # of the distinct files read
        self.bytes_added = 0  # what the parts resolved put into the input: files' bytes, or their text
        self._found: dict[str, dict | None] = {}  # file objects by id, None for one the project lacks
        self._data: dict[str, bytes] = {}
        self._forms: dict[tuple, tuple[dict, int]] = {}  # a part's resolved form (and its size) by file, type, filename

    @classmethod
    def for_backend(cls, files: FileStore, project: str, backend: Backend, *, max_bytes: int) -> FileInputs:
        """Files in the form the backend's model takes: the files themselves for a Responses
        upstream, their text for the others."""
        return cls(files, project, as_text=backend.settings.provider != "openai-responses", max_bytes=max_bytes)

    async def resolve(self, items: list[dict], *, param: str | None) -> list[dict]:
        """The items with each file named by id in the form the model takes (copies; the
        items given are left as they are). `param` names the new input, whose unknown files
        are a 400, as is passing `max_bytes`; None for earlier items, whose missing files
        become a note, as do those past `max_bytes` (the newest are kept)."""
        found = list(file_parts(items))
        if not found:
            return items
        if param is None:
            found.reverse()
        resolved = list(items)
        for index, key, position, part in found:
            if resolved[index] is items[index]:
                resolved[index] = {**items[index], **{name: list(items[index][name]) for name in PART_LISTS if isinstance(items[index].get(name), list)}}
            where = f"{param}[{index}].{key}[{position}]" if param is not None else None
            resolved[index][key][position] = await self._part(part, where)
        return resolved

    async def _part(self, part: dict, where: str | None) -> dict:
        file_id = part["file_id"]
        file = await self._file(file_id)
        if file is None:
            if where is not None:
                raise unknown_file(file_id, f"{where}.file_id")
            return {"type": "input_text", "text": f"[The file '{file_id}' is no longer available.]"}
        param = f"{where}.file_id" if where else "input"
        filename = part.get("filename") or file["filename"]
        kind = "image" if part["type"] == "input_image" else "text" if self.as_text else "file"
        key = (file_id, kind, filename)
        if key not in self._forms:
            if file_id not in self._data and self.bytes_read + file["bytes"] > self.max_bytes:
                return self._too_much(file_id, where)
            self._forms[key] = await self._form(file, kind, filename, param)
        form, size = self._forms[key]
        if self.bytes_added + size > self.max_bytes:
            return self._too_much(file_id, where)
        self.bytes_added += size
        rest = {name: value for name, value in part.items() if name not in ("file_id", "type")}
        if form["type"] == "input_text":
            return dict(form)
        return {"type": form["type"], **rest, **form}

    async def _file(self, file_id: str) -> dict | None:
        if file_id not in self._found:
            self._found[file_id] = await self.files.get(self.project, file_id)
        return self._found[file_id]

    async def _data_of(self, file: dict) -> bytes:
        if file["id"] not in self._data:
            self._data[file["id"]] = await self.files.content(file["id"])
            self.bytes_read += file["bytes"]
        return self._data[file["id"]]

    async def _form(self, file: dict, kind: str, filename: str, param: str) -> tuple[dict, int]:
        """The part's resolved form, without the keys it keeps from the part, and its size."""
        data = await self._data_of(file)
        if kind == "image":
            media_type = image_type(file["filename"], data)
            if media_type is None:
                raise invalid(f"The file '{file['id']}' ({file['filename']}) is not an image.", param=param)
            return {"type": "input_image", "image_url": data_url(media_type, data)}, len(data)
        if kind == "text":
            text = await file_text(filename, data, param=param)
            if text is not None:
                text = f'\n<file name="{filename}">\n{text.rstrip()}\n</file>\n'
                return {"type": "input_text", "text": text}, len(text.encode())
        media_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return {"type": "input_file", "filename": filename, "file_data": data_url(media_type, data)}, len(data)

    def _too_much(self, file_id: str, where: str | None) -> dict:
        """A 400 naming the new input's part past the limit; an earlier item's part becomes a note."""
        if where is not None:
            raise invalid(
                f"The files named in the input come to more than a request may carry ({self.max_bytes} bytes), "
                f"counting each time a file is named; '{file_id}' passes that.",
                param=f"{where}.file_id",
            )
        return {"type": "input_text", "text": f"[The file '{file_id}' is left out: the input's files are more than the model may be sent at once.]"}


async def file_text(filename: str, data: bytes, *, param: str) -> str | None:
    """The file's text; None for a kind of file text is not extracted from. A file that
    cannot be read as its kind is a 400."""
    # Imported here: text extraction pulls in the PDF and Word readers, which most requests never need.
    from threadline.retrieval.parsing import InvalidFile, UnsupportedFile, extract_text

    try:
        return await asyncio.to_thread(extract_text, filename, data)
    except UnsupportedFile:
        return None
    except InvalidFile as error:
        raise invalid(f"The file '{filename}' cannot be read: {error}", param=param, code="invalid_file") from None


def image_type(filename: str, data: bytes) -> str | None:
    """The image's media type, by its name or else its first bytes; None when it is no image."""
    guessed = mimetypes.guess_type(filename)[0]
    if guessed and guessed.startswith("image/"):
        return guessed
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for signature, kind in IMAGE_SIGNATURES.items() if data.startswith(signature)), None)


def data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
