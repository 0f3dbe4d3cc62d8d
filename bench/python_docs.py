"""A known-item retrieval set built from the Python documentation that Debian ships.

Debian's `python3.11-doc` package installs the reStructuredText sources of every page of the
Python 3.11 documentation under /usr/share/doc/python3.11/html/_sources. Each page is cut at
its section headings into sections. A section is a known item when its heading is specific
(three words or more, found once in the whole documentation) and its body is long enough to
judge; its heading becomes the query, and the body is indexed without it. A search finds the
item when a result comes from that section's file.

No data is downloaded: `apt-get install python3.11-doc` is the only step.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
# Characters reStructuredText underlines (and overlines) headings with.
HEADING_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")
MARKUP = re.compile(r":[a-z:]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`|``([^`]*)``|\*\*?([^*]+)\*\*?")
DIRECTIVE = re.compile(r"^\s*\.\. [a-z-]+::.*$|^\s*\.\. _[^:]+:\s*$|^\s*:[a-z-]+:.*$", re.MULTILINE)


@dataclass
class Section:
    page: str  # the page's path under _sources, without .rst.txt
    title: str
    body: str

    @property
    def words(self) -> int:
        return len(self.body.split())


def plain(text: str) -> str:
    """Text without the markup a reader of the rendered page does not see."""
    text = DIRECTIVE.sub("", text)
    return MARKUP.sub(lambda match: next(group for group in match.groups() if group is not None), text)


def sections(page: Path, root: Path = SOURCES) -> list[Section]:
    """The page cut at its headings: each heading with the text up to the next one."""
    lines = page.read_text(encoding="utf-8", errors="replace").splitlines()
    name = str(page.relative_to(root)).removesuffix(".rst.txt")
    found: list[Section] = []
    title, body = "", []
    index = 0
    while index < len(lines):
        line = lines[index]
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and not HEADING_UNDERLINE.match(line) and HEADING_UNDERLINE.match(following) and len(following.strip()) >= len(line.strip()):
            if title or body:
                found.append(Section(name, title, plain("\n".join(body)).strip()))
            title, body = plain(line.strip()), []
            index += 2
            continue
        if not HEADING_UNDERLINE.match(line):
            body.append(line)
        index += 1
    found.append(Section(name, title, plain("\n".join(body)).strip()))
    return [section for section in found if section.body]


def corpus(root: Path = SOURCES) -> list[Section]:
    """Every section of every page, in a stable order."""
    if not root.is_dir():
        raise SystemExit(f"{root} is missing: install Debian's python3.11-doc package (apt-get install python3.11-doc)")
    return [section for page in sorted(root.rglob("*.rst.txt")) for section in sections(page, root)]


def known_items(all_sections: list[Section], min_words: int = 60) -> list[int]:
    """Indexes of the sections whose heading makes a fair query for them."""
    titles = Counter(section.title.lower() for section in all_sections)
    return [
        index
        for index, section in enumerate(all_sections)
        if len(section.title.split()) >= 3 and titles[section.title.lower()] == 1 and section.words >= min_words
    ]


if __name__ == "__main__":
    everything = corpus()
    items = known_items(everything)
    print(f"{len(everything)} sections, {sum(s.words for s in everything)} words, {len(items)} known items")
    for index in items[:10]:
        print(f"  {everything[index].page}: {everything[index].title!r} ({everything[index].words} words)")
