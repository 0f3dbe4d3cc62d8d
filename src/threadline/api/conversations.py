"""The Conversations API over HTTP: /v1/conversations and their items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from threadline.api.auth import project
from threadline.api.json import JSON, JSONRoute, body_is_null
from threadline.api.openapi import Conversation, ConversationDeleted, Item, ItemList, answers
from threadline.api.schemas import Order, include_values
from threadline.errors import invalid
from threadline.items import InputItem
from threadline.services.conversations import ConversationsService
from threadline.spec.request import Metadata, Tolerant

router = APIRouter(prefix="/v1/conversations", tags=["Conversations"], route_class=JSONRoute)


class CreateConversationBody(Tolerant):
    items: Annotated[list[InputItem], Field(max_length=20)] | None = None
    metadata: Metadata | None = None


class UpdateConversationBody(Tolerant):
    # Required, yet nullable as in OpenAI's description: null clears the metadata.
    metadata: Metadata | None


class CreateItemsBody(Tolerant):
    items: Annotated[list[InputItem], Field(min_length=1, max_length=20)]


async def service(request: Request) -> ConversationsService:
    return request.app.state.conversations


Conversations = Annotated[ConversationsService, Depends(service)]
Project = Annotated[str, Depends(project)]
Include = Annotated[list[str], Depends(include_values)]


@router.post("", summary="Create a conversation", responses=answers(Conversation, 400, 404, 413))
async def create_conversation(
    request: Request, project: Project, conversations: Conversations, body: CreateConversationBody | None = None
) -> JSON:
    # Every field is optional, so a POST without a body creates an empty conversation; a
    # body of JSON `null` is refused as any other body that is not an object.
    if body is None and body_is_null(request):
        raise invalid("Invalid type for request body: expected an object, but got null instead.")
    body = body or CreateConversationBody()
    return JSON(await conversations.create(project, body.metadata, body.items or []))


@router.get("/{conversation_id}", summary="Retrieve a conversation", responses=answers(Conversation, 404))
async def retrieve_conversation(conversation_id: str, project: Project, conversations: Conversations) -> JSON:
    return JSON(await conversations.retrieve(project, conversation_id))


@router.post("/{conversation_id}", summary="Update a conversation's metadata", responses=answers(Conversation, 400, 404, 413))
async def update_conversation(
    conversation_id: str, body: UpdateConversationBody, project: Project, conversations: Conversations
) -> JSON:
    return JSON(await conversations.update(project, conversation_id, body.metadata))


@router.delete(
    "/{conversation_id}",
    summary="Delete a conversation and its items",
    description="Responses still running in the conversation end `failed`, adding nothing to it.",
    responses=answers(ConversationDeleted, 404),
)
async def delete_conversation(conversation_id: str, project: Project, conversations: Conversations) -> JSON:
    await conversations.delete(project, conversation_id)
    return JSON({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@router.post("/{conversation_id}/items", summary="Add items to a conversation", responses=answers(ItemList, 400, 404, 413))
async def create_items(
    conversation_id: str, body: CreateItemsBody, project: Project, conversations: Conversations, include: Include
) -> JSON:
    return JSON((await conversations.add_items(project, conversation_id, body.items, include)).list_object())


@router.get("/{conversation_id}/items", summary="List a conversation's items", responses=answers(ItemList, 400, 404))
async def list_items(
    conversation_id: str,
    project: Project,
    conversations: Conversations,
    include: Include,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Order = "desc",
) -> JSON:
    page = await conversations.list_items(project, conversation_id, after=after, limit=limit, order=order, include=include)
    return JSON(page.list_object())


@router.get("/{conversation_id}/items/{item_id}", summary="Retrieve an item", responses=answers(Item, 400, 404))
async def retrieve_item(
    conversation_id: str, item_id: str, project: Project, conversations: Conversations, include: Include
) -> JSON:
    return JSON(await conversations.retrieve_item(project, conversation_id, item_id, include))


@router.delete(
    "/{conversation_id}/items/{item_id}",
    summary="Delete an item",
    description="Answers with the conversation the item was deleted from.",
    responses=answers(Conversation, 404),
)
async def delete_item(conversation_id: str, item_id: str, project: Project, conversations: Conversations) -> JSON:
    return JSON(await conversations.delete_item(project, conversation_id, item_id))
