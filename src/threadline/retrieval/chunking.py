"""A file's text cut into overlapping chunks, each within a number of tokens, for search.

Tokens are counted as Threadline estimates them everywhere no tokenizer can be asked
(threadline.backends.estimate): about four characters a token. So a chunk of at most N
tokens holds at most 4N characters, and the bounds hold whichever model later reads it.
"""

from __future__ import annotations

import re

from threadline.backends.estimate import CHARACTERS_PER_TOKEN

# OpenAI's bounds on a static chunking strategy, and what `auto` means.
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 100, 4096
AUTO_MAX_TOKENS, AUTO_OVERLAP_TOKENS = 800, 400

# Where a chunk prefers to end, best first: a paragraph, a line, a sentence, a word.
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?]\s"), re.compile(r"\s"))


def static_strategy(max_tokens: int = AUTO_MAX_TOKENS, overlap_tokens: int = AUTO_OVERLAP_TOKENS) -> dict:
    """A chunking strategy as a vector store file shows it (an `auto` one shows what it means)."""
    return {"type": "static", "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap_tokens}}


def chunk(text: str, max_tokens: int, overlap_tokens: int) -> list[str]:
    """`text` in chunks of at most `max_tokens` tokens, each starting about `overlap_tokens`
    tokens before the previous one ended. Chunks end at a paragraph, line, sentence or word
    boundary when one lies in their second half, and start at a word; none is blank."""
    if max_tokens < 1 or not 0 <= overlap_tokens < max_tokens:
        raise ValueError("need max_tokens >= 1 and 0 <= overlap_tokens < max_tokens")
    max_characters = max_tokens * CHARACTERS_PER_TOKEN
    overlap_characters = overlap_tokens * CHARACTERS_PER_TOKEN
    chunks: list[str] = []
    start = _skip_space(text, 0)
    while start < len(text):
        end = _chunk_end(text, start, max_characters)
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end >= len(text):
            break
        # The next chunk starts `overlap` back from this one's end, at a word, yet always
        # after this one's start, so every step moves forward.
        next_start = _word_start(text, max(end - overlap_characters, start + 1), end)
        start = _skip_space(text, next_start)
    return chunks


def _chunk_end(text: str, start: int, max_characters: int) -> int:
    limit = start + max_characters
    if limit >= len(text):
        return len(text)
    window = text[start:limit]
    half = len(window) // 2
    for pattern in _BREAKS:
        ends = [match.end() for match in pattern.finditer(window, half)]
        if ends:
            return start + ends[-1]
    return limit  # a word longer than half a chunk: cut it


def _word_start(text: str, position: int, end: int) -> int:
    """The first word start at or after `position` (but not past `end`)."""
    if position == 0 or text[position - 1].isspace():
        return position
    match = re.compile(r"\s").search(text, position, end)
    return match.end() if match else position


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
