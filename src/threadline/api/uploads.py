"""A file upload, multipart/form-data, read as it arrives: its text fields whole, its file part by part.

The body is parsed straight off the connection, so a large file never sits in memory or on
disk here: its bytes go on, a part at a time, to whoever stores them. Fields may come before
the file or after it (the Python SDK sends them first, the Node SDK in the caller's order),
so `fields` fills in as the body is read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from threadline.errors import APIError, invalid

# The most a text field may hold: form fields here are short words and numbers.
MAX_FIELD_BYTES = 64 * 1024
# What an upload's body may carry beyond its file: boundaries, part headers, text fields.
FORM_ALLOWANCE_BYTES = 64 * 1024


def file_too_large(max_file_bytes: int) -> APIError:
    return APIError(413, f"The file is larger than this server accepts ({max_file_bytes} bytes).", param="file", code="file_too_large")


class Upload:
    """One multipart/form-data body, whose file is the part named `file_field`."""

    def __init__(self, body: AsyncIterator[bytes], content_type: str | None, *, part_bytes: int, max_file_bytes: int, file_field: str = "file") -> None:
        kind, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise invalid("The request body must be multipart/form-data, with a boundary in its Content-Type.")
        self.fields: dict[str, str] = {}
        self.filename: str | None = None  # once the file's part has begun
        self._body = body
        self._part_bytes = part_bytes
        self._max_file_bytes = max_file_bytes
        self._file_field = file_field
        self._file = bytearray()  # file bytes parsed and not yet handed on
        self._file_size = 0
        self._file_done = False
        self._ended = False  # the closing boundary was read
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._target: str | None = None  # "file", "field", or "skip" (a second file)
        self._field_name = ""
        self._field = bytearray()
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_part,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    async def start(self) -> bool:
        """Read up to the start of the file, gathering the fields before it; False when the
        body holds no file."""
        while self.filename is None:
            if not await self._read():
                return False
        return True

    async def file_parts(self) -> AsyncIterator[bytes]:
        """The file's bytes in parts of `part_bytes` (the last may be shorter); then the rest of
        the body is read, so the fields after the file are in `fields` once this ends."""
        while True:
            while len(self._file) >= self._part_bytes:
                part = bytes(self._file[: self._part_bytes])
                del self._file[: self._part_bytes]
                yield part
            if self._file_done:
                break
            if not await self._read():
                raise invalid("The request body ended before its file did.", param="file")
        if self._file:
            part = bytes(self._file)
            self._file.clear()
            yield part
        while await self._read():
            pass

    async def _read(self) -> bool:
        """Parse the next piece of the body; False once the body has ended."""
        if self._ended:
            return False
        try:
            chunk = await anext(self._body)
        except StopAsyncIteration:
            raise invalid("The request body ended before its closing multipart boundary.") from None
        if not chunk:
            return True
        try:
            self._parser.write(chunk)
        except MultipartParseError:
            raise invalid("The request body is not valid multipart/form-data.") from None
        return True

    # --- the parser's callbacks ------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_part(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value.strip(b" \t")
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self._file_field:
            if self.filename is not None:
                self._target = "skip"
                return
            # Sent as UTF-8 by browsers and SDKs alike; a form part without a filename is still the file.
            self.filename = options.get(b"filename", b"").decode("utf-8", "replace") or self._file_field
            self._target = "file"
            return
        self._target = "field"
        self._field_name = name
        self._field.clear()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == "file":
            self._file_size += end - start
            if self._file_size > self._max_file_bytes:
                raise file_too_large(self._max_file_bytes)
            self._file += data[start:end]
        elif self._target == "field":
            self._field += data[start:end]
            if len(self._field) > MAX_FIELD_BYTES:
                raise invalid(f"The form field '{self._field_name}' is longer than {MAX_FIELD_BYTES} bytes.", param=self._field_name)

    def _part_end(self) -> None:
        if self._target == "file":
            self._file_done = True
        elif self._target == "field":
            self.fields[self._field_name] = self._field.decode("utf-8", "replace")
        self._target = None

    def _end(self) -> None:
        self._ended = True
