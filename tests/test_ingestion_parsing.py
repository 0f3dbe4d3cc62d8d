"""A file's text and its chunks: every supported kind read, broken and unsupported files told apart,
chunks within their token bound, overlapping, cut at boundaries."""

from __future__ import annotations

import math

import pytest

from tests.documents import corrupt_pdf, docx, pdf
from threadline.backends.estimate import CHARACTERS_PER_TOKEN
from threadline.retrieval.chunking import chunk
from threadline.retrieval.parsing import InvalidFile, UnsupportedFile, extract_text


@pytest.mark.parametrize(
    ("filename", "data", "text"),
    [
        ("notes.txt", b"plain text\n", "plain text\n"),
        ("README.md", b"# Title\n\nBody", "# Title\n\nBody"),
        ("data.json", b'{"a": 1}', '{"a": 1}'),
        ("table.csv", b"a,b\n1,2\n", "a,b\n1,2\n"),
        ("main.py", b"def f():\n    return 1\n", "def f():\n    return 1\n"),
        ("lib.rs", b"fn main() {}", "fn main() {}"),
        ("Main.java", b"class Main {}", "class Main {}"),
        ("app.TS", b"let x = 1;", "let x = 1;"),
        ("windows.txt", "caf\xe9 cr\xe8me".encode("cp1252"), "café crème"),
        ("bom.txt", "\ufeffwith a BOM".encode(), "with a BOM"),
        ("wide.txt", "in UTF-16".encode("utf-16"), "in UTF-16"),
        ("Makefile", b"all:\n\ttrue\n", "all:\n\ttrue\n"),
    ],
)
def test_text_files_read_as_they_are(filename, data, text):
    assert extract_text(filename, data) == text


def test_html_loses_its_markup_scripts_and_styles():
    html = b"""<html><head><title>The title</title><style>p { color: red }</style>
    <script>var secret = "not text";</script></head>
    <body><h1>Heading</h1><p>One &amp; <b>two</b></p><ul><li>first</li><li>second</li></ul></body></html>"""
    assert extract_text("page.html", html) == "The title\nHeading\nOne & two\nfirst\nsecond"


def test_pdf_and_docx_text():
    assert extract_text("paper.pdf", pdf(["First page text", "Second page"])) == "First page text\n\nSecond page"
    assert extract_text("memo.docx", docx(["Dear reader,", "the plan."])) == "Dear reader,\nthe plan."


@pytest.mark.parametrize(
    ("filename", "data"),
    [("tool.exe", b"MZ\x90\x00"), ("bundle.zip", b"PK\x03\x04"), ("photo.png", b"\x89PNG\r\n"), ("no_extension", b"text"), ("old.doc", b"\xd0\xcf")],
)
def test_unsupported_kinds(filename, data):
    with pytest.raises(UnsupportedFile):
        extract_text(filename, data)


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("cut.pdf", corrupt_pdf()),
        ("fake.pdf", b"this is not a PDF at all"),
        ("cut.docx", docx(["some text"])[:500]),
        ("fake.docx", b"not a zip"),
        ("binary.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00"),
    ],
)
def test_broken_files_are_invalid(filename, data):
    with pytest.raises(InvalidFile):
        extract_text(filename, data)


def tokens(text: str) -> int:
    return math.ceil(len(text) / CHARACTERS_PER_TOKEN)


def test_chunks_stay_within_the_bound_and_overlap():
    sentences = [f"Sentence number {n} says something about topic {n % 7}." for n in range(2000)]
    text = "\n\n".join(" ".join(sentences[i : i + 5]) for i in range(0, len(sentences), 5))
    chunks = chunk(text, 100, 50)
    assert len(chunks) > 100
    assert all(tokens(piece) <= 100 for piece in chunks)
    for earlier, later in zip(chunks, chunks[1:]):
        # Each chunk starts inside the one before (the overlap) and ends at a sentence at least.
        assert later[:20] in earlier
        assert earlier.endswith(".")
    # Every sentence is in some chunk.
    joined = "\n".join(chunks)
    assert all(sentence in joined for sentence in sentences)


def test_no_overlap_and_unbroken_text():
    assert chunk("x" * 1000, 100, 0) == ["x" * 400, "x" * 400, "x" * 200]
    assert chunk("", 800, 400) == [] and chunk(" \n\t", 800, 400) == []
    assert chunk("a short file", 800, 400) == ["a short file"]


def test_chunks_start_at_words():
    words = " ".join(f"word{n}" for n in range(3000))
    for piece in chunk(words, 100, 40):
        assert piece.startswith("word") and piece.split()[-1].startswith("word")
