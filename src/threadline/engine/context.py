"""What the model sees: the earlier items (a chain or a conversation), then the new input.

Also the window rule: with truncation "disabled" an input over the model's context window
is a 400; with "auto" the oldest earlier items are dropped until it fits.
"""

from __future__ import annotations

import math

from threadline.backends.base import Backend, ModelRequest
from threadline.errors import APIError

# A cheap first estimate; the backend's own tokenizer is asked only when it matters.
CHARACTERS_PER_TOKEN = 4


def estimate_item_tokens(item: dict) -> int:
    size = 4
    content = item.get("content")
    if isinstance(content, str):
        size += len(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                size += len(part.get("text") or part.get("refusal") or "")
                if part.get("image_url") or part.get("file_data"):
                    size += 1000
    for key in ("arguments", "output", "input", "encrypted_content"):
        value = item.get(key)
        if isinstance(value, str):
            size += len(value)
    return math.ceil(size / CHARACTERS_PER_TOKEN)


async def fit_to_window(
    backend: Backend, request: ModelRequest, earlier_count: int, truncation: str
) -> ModelRequest:
    """The request, with the oldest earlier items dropped if truncation allows and needs it."""
    resolve = getattr(backend, "resolve_context_window", None)
    window = await resolve() if resolve else backend.context_window
    if not window:
        return request
    estimates = [estimate_item_tokens(item) for item in request.input]
    fixed = math.ceil(len(request.instructions or "") / CHARACTERS_PER_TOKEN)
    total = fixed + sum(estimates)
    if total * 2 < window:
        return request
    total = await backend.count_tokens(request)
    if total <= window:
        return request
    if truncation != "auto":
        raise APIError(
            400,
            f"Your input exceeds the context window of this model ({total} tokens for a window of {window}). "
            "Shorten the input, or set truncation to 'auto'.",
            param="input",
            code="context_length_exceeded",
        )
    # Scale the estimates to the tokenizer's count, then drop from the oldest until it fits.
    scale = total / max(1, fixed + sum(estimates))
    budget = window - (request.max_output_tokens or 0) if (request.max_output_tokens or 0) < window // 2 else window
    # The scaled estimates are close, not exact: leave a margin so one cut is enough.
    budget -= max(16, window // 20)
    drop = 0
    while drop < earlier_count and total > budget:
        total -= estimates[drop] * scale
        drop += 1
    # Never start the history with the answer half of a tool call.
    while drop < earlier_count and request.input[drop].get("type") in ("function_call_output", "reasoning", "custom_tool_call_output"):
        drop += 1
    request.input = request.input[drop:]
    if await backend.count_tokens(request) > window:
        raise APIError(
            400,
            f"Your input exceeds the context window of this model ({window} tokens) even after truncation.",
            param="input",
            code="context_length_exceeded",
        )
    return request
