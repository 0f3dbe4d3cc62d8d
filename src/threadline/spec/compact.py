"""The body of POST /v1/responses/compact (`CompactResponseMethodPublicBody` in OpenAI's description)."""

from __future__ import annotations

from typing import Literal

from threadline.items import InputItem
from threadline.spec.request import ConversationParam, CreateResponseBody, ObjectId, Tolerant


class CompactBody(Tolerant):
    model: str | None = None
    input: str | list[InputItem] | None = None
    previous_response_id: ObjectId | None = None
    conversation: ObjectId | ConversationParam | None = None
    instructions: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None

    def as_create(self) -> CreateResponseBody:
        """The request to prepare: this context, compacted now (a final compaction_trigger), stored nowhere."""
        text = [{"type": "message", "role": "user", "content": self.input}] if isinstance(self.input, str) else None
        items = text or [item.model_dump(mode="json", exclude_unset=True) for item in self.input or []]
        return CreateResponseBody.model_validate(
            {
                "model": self.model,
                "input": items + [{"type": "compaction_trigger"}],
                "previous_response_id": self.previous_response_id,
                "conversation": self.conversation.model_dump() if isinstance(self.conversation, ConversationParam) else self.conversation,
                "instructions": self.instructions,
                "store": False,
            }
        )
