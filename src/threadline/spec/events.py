"""The events that end a response's stream.

Every stream ends with exactly one of these, chosen by the Response's final status. OpenAI
has no event for a cancelled response: its stream ends with response.failed carrying it.
"""

from __future__ import annotations

TERMINAL_EVENTS = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
    "cancelled": "response.failed",
}
TERMINAL_TYPES = frozenset(TERMINAL_EVENTS.values())


def terminal_event(response: dict, sequence_number: int) -> dict:
    """The event that ends the stream of `response` (finished), numbered `sequence_number`."""
    return {"type": TERMINAL_EVENTS[response["status"]], "sequence_number": sequence_number, "response": response}
