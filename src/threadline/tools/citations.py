"""What the model reads of a search, and the citations its answer earns.

The model sees the results of a response's searches (web and file searches alike) numbered
on from 1 (`results_for_model`, `file_results_for_model`) and is asked to cite them by number.
`citations` then finds, in the text it wrote, every place that cites one of those results,
whichever way the model chose:
- a numbered marker: `[2]`, or `[1, 3]` (each number annotated on its own digits);
- a markdown link to a web result's URL: `[the docs](https://example.com/docs)`;
- a web result's URL written out: `see https://example.com/docs.`
A web result earns a url_citation over the span that cites it; indexes are Python string
offsets into the text, start inclusive, end exclusive. A file's passage earns a
file_citation at one `index`, as OpenAI places them: where the text it supports ends, that
is where the marker starts.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from threadline.tools.search_providers import SearchResult


@dataclass(frozen=True)
class FileSource:
    """A passage of a file that a file search gave the model."""

    file_id: str
    filename: str
    text: str


Source = SearchResult | FileSource

# A markdown link: [text](url), [text](<url>) or [text](url "title"); a URL may hold one level
# of parentheses, as Wikipedia's do.
MARKDOWN_LINK = re.compile(r"""\[[^\]\n]*\]\(\s*<?((?:[^()\s<>]|\([^()\s]*\))+)>?(?:\s+"[^"\n]*")?\s*\)""")
# [1] or [1, 3]; not a link's text ("[1](...)" is a link, read as one).
MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\](?!\()")
BARE_URL = re.compile(r"https?://(?:[^\s<>\"'()\[\]]|\([^\s()<>]*\))+", re.IGNORECASE)
# What ends a sentence after a URL is not part of it.
TRAILING_PUNCTUATION = ".,;:!?*_~"


def results_for_model(query: str, results: list[SearchResult], first_number: int = 1) -> str:
    """The tool output the model reads: the results numbered from `first_number` (the
    searches of one response number on), and how to cite them."""
    if not results:
        return f'The web search for "{query}" found no results.'
    lines = [f'Web search results for "{query}":', ""]
    for number, result in enumerate(results, start=first_number):
        lines.append(f"[{number}] {result.title or result.url}")
        lines.append(f"URL: {result.url}")
        if result.snippet:
            lines.append(result.snippet)
        lines.append("")
    lines.append(f"Cite the results you use with their numbers in square brackets, like [{first_number}], right after what they support.")
    return "\n".join(lines)


def file_results_for_model(queries: list[str], passages: list[FileSource], first_number: int = 1) -> str:
    """The tool output the model reads of a file search: the passages numbered from
    `first_number`, each with its file's name, and how to cite them."""
    searched = ", ".join(f'"{query}"' for query in queries)
    if not passages:
        return f"The file search for {searched} found nothing in the files."
    lines = [f"File search results for {searched}:", ""]
    for number, passage in enumerate(passages, start=first_number):
        lines.append(f"[{number}] {passage.filename}")
        lines.append(passage.text)
        lines.append("")
    lines.append(f"Cite the results you use with their numbers in square brackets, like [{first_number}], right after what they support.")
    return "\n".join(lines)


def citations(text: str, sources: list[Source]) -> list[dict]:
    """OpenAI's annotations (url_citation, file_citation) for every place in `text` that
    cites one of `sources`.

    `sources` are in the order the model was given them, so `[n]` is sources[n - 1]. Annotations
    come in the order they appear in the text; a file is cited once at each place that cites it.
    """
    if not sources or not text:
        return []
    by_url: dict[str, SearchResult] = {}
    for source in sources:
        if isinstance(source, SearchResult):
            by_url.setdefault(url_key(source.url), source)
    found: list[tuple[int, int, Source]] = []
    taken: list[tuple[int, int]] = []  # spans already read as links, whose parts are not cited again

    for match in MARKDOWN_LINK.finditer(text):
        taken.append(match.span())
        if (source := by_url.get(url_key(match.group(1)))) is not None:
            found.append((match.start(), match.end(), source))

    def free(start: int, end: int) -> bool:
        return not any(start < taken_end and taken_start < end for taken_start, taken_end in taken)

    for match in MARKER.finditer(text):
        if not free(*match.span()):
            continue
        numbers = list(re.finditer(r"\d+", match.group(1)))
        for number in numbers:
            index = int(number.group()) - 1
            if not 0 <= index < len(sources):
                continue
            if isinstance(sources[index], FileSource):
                # At the marker's start, where the text it backs ends.
                found.append((match.start(), match.start(), sources[index]))
                continue
            # One number is the whole marker; in a list, each number is its own citation.
            span = match.span() if len(numbers) == 1 else (match.start(1) + number.start(), match.start(1) + number.end())
            found.append((*span, sources[index]))

    for match in BARE_URL.finditer(text):
        url = match.group().rstrip(TRAILING_PUNCTUATION)
        start, end = match.start(), match.start() + len(url)
        if free(start, end) and (source := by_url.get(url_key(url))) is not None:
            found.append((start, end, source))

    found.sort(key=lambda citation: (citation[0], citation[1]))
    annotations: list[dict] = []
    for start, end, source in found:
        if isinstance(source, FileSource):
            annotation = {"type": "file_citation", "file_id": source.file_id, "filename": source.filename, "index": start}
        else:
            annotation = {"type": "url_citation", "start_index": start, "end_index": end, "url": source.url, "title": source.title}
        if annotation not in annotations:
            annotations.append(annotation)
    return annotations


def url_key(url: str) -> str:
    """A URL as compared with the results': the scheme and host in lower case, no fragment, no trailing slash."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
    except ValueError:
        return url.strip()
    path = parts.path.rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))
