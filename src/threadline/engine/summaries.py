"""The summary a compaction item holds: what the model wrote of the compacted turns, then the
user's own earlier messages, newest first within a budget.

The user's words are kept as they were (each cut to a few hundred characters), as OpenAI's
compaction keeps the user's messages: the facts a conversation goes on about are mostly
stated there, and a small model's summary may lose them. They carry over from one
compaction to the next, so an early statement fades only as newer ones crowd it out.
"""

from __future__ import annotations

from threadline.backends.base import Backend, BackendError, Finish, ModelRequest, TextDelta, Usage
from threadline.engine.output_bound import bounded
from threadline.ops import tracing

SUMMARY_HEADER = "Summary of the earlier conversation (compacted):\n"
NOTES_HEADER = "\n\nWhat the user said earlier, in their own words (newest first):\n"
SUMMARY_INSTRUCTIONS = (
    "You compact a conversation so it can go on in a smaller context. Summarise the transcript the user "
    "gives you. Keep every fact, name, number, date, decision, file and open task that the conversation "
    "may need later. Write only the summary."
)
# Characters the summariser's transcript may take per token of its window: fewer than the
# usual four, so that an estimate short of the tokenizer's count still fits.
TRANSCRIPT_CHARACTERS_PER_TOKEN = 3
MAX_SUMMARY_TOKENS = 1024
NOTE_CHARACTERS = 300  # of one user message kept in the user's words
LINE_CHARACTERS = 2000  # of one item in the summariser's transcript: a long tool output gives way, its start kept


def summary_message(summary: str) -> dict:
    """The compacted turns as the model reads them: one user message."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_HEADER + summary}]}


async def summarise(backend: Backend, request: ModelRequest, older: list[dict], budget: int) -> tuple[str, Usage]:
    """The summary of the `older` items (as the model reads them), in about `budget` tokens
    (the model's part) and half as many more (the user's words), and the usage of the one call
    of the model that wrote it. Raises BackendError if the model fails or writes nothing."""
    window = await backend.resolve_context_window() or 32768
    budget = min(budget, window // 8)
    characters = (window - budget - len(SUMMARY_INSTRUCTIONS) // 2) * TRANSCRIPT_CHARACTERS_PER_TOKEN
    summary_request = ModelRequest(
        model=request.model,
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": transcript(older, characters)}]}],
        instructions=SUMMARY_INSTRUCTIONS,
        tool_choice="none",
        max_output_tokens=budget,
        temperature=0.0,
        stream=True,
    )
    text, usage = [], Usage()
    # A model turn of its own, traced as the response's turns are.
    async for event in tracing.model_call(backend, summary_request, bounded(backend.generate(summary_request), summary_request)):
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, Finish) and event.usage is not None:
            usage = event.usage
    written = "".join(text).strip()
    if not written:
        raise BackendError("The model wrote an empty summary while compacting the context.", code="server_error")
    # A model that writes past its bound is cut at it: the summary must leave room for the turns.
    notes = user_notes(older, 2 * budget)
    return written[: budget * 4] + (NOTES_HEADER + "\n".join(f"- {note}" for note in notes) if notes else ""), usage


def user_notes(older: list[dict], characters: int) -> list[str]:
    """The user's messages among `older`, then those an earlier summary kept, newest first,
    each cut to NOTE_CHARACTERS, as many as `characters` hold."""
    notes = []
    for item in reversed(older):
        text = message_text(item) if item.get("type", "message") == "message" else ""
        if text.startswith(SUMMARY_HEADER):
            notes += [line[2:] for line in text.partition(NOTES_HEADER)[2].split("\n") if line.startswith("- ")]
        elif item.get("role") == "user" and text.strip():
            notes.append(" ".join(text.split())[:NOTE_CHARACTERS])
    kept, size = [], 0
    for note in notes:
        size += len(note) + 3
        if size > characters:
            break
        kept.append(note)
    return kept


def transcript(items: list[dict], characters: int) -> str:
    """The items as a plain transcript for the summariser, its oldest lines dropped (an
    earlier summary, first, is kept) until it holds `characters`."""
    longest = min(LINE_CHARACTERS, max(500, characters // 4))
    lines = [line[:longest] for line in (transcript_line(item) for item in items) if line]
    size = sum(len(line) + 1 for line in lines)
    first = 1 if lines and lines[0].startswith("Earlier summary") else 0
    while size > characters and len(lines) > first + 1:
        size -= len(lines.pop(first)) + 1
    return "\n".join(lines)[:characters]


def transcript_line(item: dict) -> str:
    kind = item.get("type", "message")
    if kind == "message":
        text = message_text(item)
        if text.startswith(SUMMARY_HEADER):
            # The user's words it kept are carried over as they are, not summarised again.
            return "Earlier summary: " + text[len(SUMMARY_HEADER) :].partition(NOTES_HEADER)[0]
        return f"{item.get('role', 'user').capitalize()}: {text}"
    if kind in ("function_call", "custom_tool_call"):
        return f"Assistant called {item.get('name')}: {item.get('arguments') or item.get('input') or ''}"
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        return f"Tool result: {output if isinstance(output, str) else message_text({'content': output})}"
    return ""  # reasoning and other items the summary need not carry


def message_text(item: dict) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict):
            if part.get("type") in ("input_image", "input_file"):
                parts.append(f"[{part['type'].removeprefix('input_')}]")
            else:
                parts.append(part.get("text") or part.get("refusal") or "")
    return " ".join(parts)
