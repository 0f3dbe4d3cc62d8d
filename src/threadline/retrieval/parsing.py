"""A file's text, for search and for a model to read: plain text and code as they are, HTML
without its markup, PDF and docx through pypdf and python-docx.

The kind of a file is told by its name's extension, as OpenAI tells it. The parsers run on
untrusted bytes and are CPU-bound: call `extract_text` in a worker thread.
"""

from __future__ import annotations

import codecs
import io
import zipfile
from html.parser import HTMLParser
from pathlib import PurePosixPath


class UnsupportedFile(Exception):
    """A file of a kind whose text cannot be read (an executable, an archive, an image, ...)."""


class InvalidFile(Exception):
    """A file of a supported kind that is broken: a corrupt PDF or docx, text that decodes as no known encoding."""


# Read as text, whatever they hold: prose, data and source code.
TEXT_EXTENSIONS = frozenset(
    """
    txt text md markdown rst tex log json jsonl csv tsv xml yaml yml toml ini cfg conf
    py pyi js mjs cjs jsx ts tsx java kt kts scala groovy c h cc cpp cxx hpp hh hxx cs go rs rb
    php pl pm swift m mm r jl lua dart ex exs erl hs clj elm ml fs vb sql sh bash zsh fish ps1 bat
    css scss less vue svelte proto graphql gradle cmake mk dockerfile makefile
    """.split()
)
HTML_EXTENSIONS = frozenset({"html", "htm", "xhtml"})
# Names that are a kind of text file by themselves.
TEXT_NAMES = frozenset({"dockerfile", "makefile", "readme", "license", "changelog"})

# A docx is a zip archive: one that would unpack to more than this is refused, not unpacked.
MAX_UNPACKED_BYTES = 256 * 1024 * 1024


def extract_text(filename: str, data: bytes) -> str:
    """The text of a file named `filename` holding `data`.

    Raises UnsupportedFile for a kind of file that holds no readable text, and InvalidFile
    for one of a readable kind whose bytes are broken. The text may be empty (a PDF of
    scanned pages has none)."""
    kind = _kind(filename)
    if kind == "pdf":
        text = _pdf_text(data)
    elif kind == "docx":
        text = _docx_text(data)
    elif kind == "html":
        text = _html_text(decode_text(data))
    elif kind == "text":
        text = decode_text(data)
    else:
        extension = PurePosixPath(filename).suffix or "(none)"
        raise UnsupportedFile(f"Files with extension {extension} are not supported for text extraction: {filename!r}.")
    return _storable(text)


def _kind(filename: str) -> str | None:
    name = PurePosixPath(filename.replace("\\", "/")).name.lower()
    extension = name.rpartition(".")[2] if "." in name else ""
    if extension == "pdf":
        return "pdf"
    if extension == "docx":
        return "docx"
    if extension in HTML_EXTENSIONS:
        return "html"
    if extension in TEXT_EXTENSIONS or (not extension and name in TEXT_NAMES):
        return "text"
    return None


def decode_text(data: bytes) -> str:
    """Bytes as text: UTF-8 (a BOM says UTF-16 or UTF-32), else Windows-1252. Bytes that are
    neither, or that hold NUL characters (a binary file named as text), are an InvalidFile."""
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig")):
        if data.startswith(bom):
            return _decode(data, encoding)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return _decode(data, "utf-16")
    if b"\x00" in data:
        raise InvalidFile("The file holds binary data, not text.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode(data, "cp1252")


def _decode(data: bytes, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise InvalidFile(f"The file's text could not be decoded (tried UTF-8 and {encoding}).") from error
    if "\x00" in text:
        raise InvalidFile("The file holds binary data, not text.")
    return text


def _storable(text: str) -> str:
    """Text every database and JSON encoder takes: no NUL characters (PostgreSQL refuses them
    in text) and no lone surrogates (a PDF's text can hold them)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


# -- PDF ---------------------------------------------------------------------------------


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise InvalidFile("The file is not a PDF: it does not start with %PDF.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            reader.decrypt("")  # many PDFs are "encrypted" with an empty password
        pages = [page.extract_text() or "" for page in reader.pages]
    except FileNotDecryptedError as error:
        raise InvalidFile("The PDF is encrypted with a password.") from error
    # pypdf raises many kinds of errors on broken input (its own, but also ValueError,
    # KeyError, struct.error, ...): any of them means the file cannot be read.
    except Exception as error:  # noqa: BLE001 - see above
        raise InvalidFile(f"The PDF could not be read: {error or type(error).__name__}.") from error
    return "\n\n".join(page.strip() for page in pages if page.strip())


# -- docx ----------------------------------------------------------------------------------


def _docx_text(data: bytes) -> str:
    import docx

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as error:
        raise InvalidFile("The docx file is not a valid zip archive.") from error
    if unpacked > MAX_UNPACKED_BYTES:
        raise InvalidFile(f"The docx file unpacks to more than {MAX_UNPACKED_BYTES} bytes.")
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [paragraph.text for paragraph in document.paragraphs]
        for table in document.tables:
            for row in table.rows:
                blocks.append("\t".join(cell.text for cell in row.cells))
    # As with PDFs, a broken docx surfaces as any of several errors (zip, XML, missing parts).
    except Exception as error:  # noqa: BLE001 - see above
        raise InvalidFile(f"The docx file could not be read: {error or type(error).__name__}.") from error
    return "\n".join(block for block in blocks if block.strip())


# -- HTML ----------------------------------------------------------------------------------

# Elements whose content is not text a reader sees.
_HIDDEN = frozenset({"script", "style", "noscript", "template", "svg"})
# Elements that start a line of their own.
_BLOCKS = frozenset(
    "address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 h4 h5 h6 "
    "header hr li main nav ol p pre section table tbody td th thead tr ul title".split()
)


class _TextOfHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def _html_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)
