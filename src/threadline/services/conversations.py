"""The Conversations API's work: conversations and their items, for the caller's project.

Items are returned as the request's `include` asks; lists are Pages.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Literal

from pydantic import BaseModel

from threadline.engine import compaction
from threadline.engine.new_items import new_items
from threadline.engine.reasoning_items import open_reasoning
from threadline.engine.sealed_items import sealed_by_threadline
from threadline.errors import invalid
from threadline.engine.runner import Runner
from threadline.jobs.recovery import failed
from threadline.spec.response import present_item
from threadline.store.conversations import ConversationStore
from threadline.store.pagination import Page
from threadline.tools.secrets import SecretBox


# Why a queued response ends failed when its conversation is deleted.
DELETED_WHILE_QUEUED = "The conversation of this response was deleted before the response ran."


def _deleted_while_queued(response: dict) -> dict:
    return failed(response, DELETED_WHILE_QUEUED)


class ConversationsService:
    def __init__(self, *, conversations: ConversationStore, runner: Runner, max_items_bytes: int, secrets: SecretBox) -> None:
        self.conversations = conversations
        self.runner = runner
        self.secrets = secrets  # the server's keys: items Threadline sealed are checked, as responses.create checks them
        # The most the items of one request may come to, item references expanded.
        self.max_items_bytes = max_items_bytes

    async def create(self, project: str, metadata: dict | None, items: Sequence[dict | BaseModel]) -> dict:
        return await self.conversations.create(project, metadata, await self._new_items(project, items))

    async def retrieve(self, project: str, conversation_id: str) -> dict:
        return await self.conversations.get(project, conversation_id)

    async def update(self, project: str, conversation_id: str, metadata: dict | None) -> dict:
        """Replace the conversation's metadata; None clears it."""
        return await self.conversations.update(project, conversation_id, metadata)

    async def delete(self, project: str, conversation_id: str) -> None:
        """Delete the conversation and its items. Responses still queued or running in it end
        failed, adding nothing to it: queued ones (whichever process queued them) in the
        delete, never reaching their model; those running here stop now; one running in
        another process fails when its model finishes."""
        ended = await self.conversations.delete(
            project, conversation_id, along=lambda connection: self.runner.jobs.end_queued(connection, conversation_id, _deleted_while_queued)
        )
        for response_id in ended:
            self.runner.notify(response_id)
        self.runner.conversation_deleted(conversation_id)

    async def add_items(self, project: str, conversation_id: str, items: Sequence[dict | BaseModel], include: Collection[str]) -> Page:
        added = await self.conversations.add_items(project, conversation_id, await self._new_items(project, items))
        return Page([present_item(item, include) for item in added], has_more=False)

    async def list_items(
        self, project: str, conversation_id: str, *, after: str | None, limit: int, order: Literal["asc", "desc"], include: Collection[str]
    ) -> Page:
        page = await self.conversations.list_items(project, conversation_id, after=after, limit=limit, order=order)
        page.data = [present_item(item, include) for item in page.data]
        return page

    async def retrieve_item(self, project: str, conversation_id: str, item_id: str, include: Collection[str]) -> dict:
        return present_item(await self.conversations.get_item(project, conversation_id, item_id), include)

    async def delete_item(self, project: str, conversation_id: str, item_id: str) -> dict:
        """Delete an item; the conversation it was deleted from."""
        return await self.conversations.delete_item(project, conversation_id, item_id)

    async def _new_items(self, project: str, items: Sequence[dict | BaseModel]) -> list[dict]:
        # A file named by id is stored as sent; it is read when a model reads the item.
        added = await new_items(self.conversations.database, project, items, param="items", max_bytes=self.max_items_bytes)
        for index, item in enumerate(added):
            if item.get("type") == compaction.MARKER:
                raise invalid("A 'compaction_trigger' item is input to a response, not an item a conversation keeps.", param=f"items[{index}].type")
            if item.get("type") == "compaction" and sealed_by_threadline(item["encrypted_content"]):
                # One sealed here that no key opens is refused now, not passed over later;
                # another server's is kept as sent, as every item is.
                compaction.opened(self.secrets, item, f"items[{index}]")
        return open_reasoning(self.secrets, items, added, param="items")
