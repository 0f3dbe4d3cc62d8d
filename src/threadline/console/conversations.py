"""The console's conversations: the list (searched by id and by metadata), a conversation's page
(its items, 50 at a time, the next page loaded as the reader scrolls; its metadata, editable),
and the JSON behind them under /console/api.

Reads and changes go through ConversationsService for the viewer's project; an admin sees every
project, so a conversation is first looked up for the project it belongs to, then read as that
project. Another project's conversation is "not found", exactly as a missing one is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import escape

from threadline.api.conversations import UpdateConversationBody
from threadline.api.json import JSON, JSONRoute
from threadline.console.api import ApiViewer
from threadline.console.items import render_items
from threadline.console.pages import PageViewer, render, templates
from threadline.console.viewer import Viewer
from threadline.errors import APIError, invalid
from threadline.services.conversations import ConversationsService
from threadline.spec.request import METADATA_KEY_LENGTH, METADATA_PAIRS, METADATA_VALUE_LENGTH
from threadline.store.conversation_listing import list_conversations, project_of
from threadline.store.pagination import Page

router = APIRouter(include_in_schema=False, route_class=JSONRoute)

ITEMS_PAGE = 50  # items a conversation's page shows at first, and each scroll adds
LIST_PAGE = 25  # conversations a page of the list shows
# Shown as the service would show them: search results hold the sources, file searches their results.
ITEM_INCLUDE = ("web_search_call.action.sources", "file_search_call.results")


def service(request: Request) -> ConversationsService:
    return request.app.state.conversations


async def project_for(request: Request, viewer: Viewer, conversation_id: str) -> str:
    """The project to read a conversation as: the viewer's, or for an admin the one it belongs to."""
    if viewer.admin:
        return await project_of(service(request).conversations.database, conversation_id) or viewer.project
    return viewer.project


def metadata_filter(values: list[str]) -> list[tuple[str, str]]:
    """`key=value` search terms as the pairs the metadata must hold; 400 for a term without `=`."""
    pairs = []
    for value in values:
        key, equals, wanted = value.partition("=")
        if not equals or not key.strip():
            raise invalid(f"Invalid metadata filter '{value}': write it as key=value.", param="metadata")
        pairs.append((key.strip(), wanted.strip()))
    return pairs


async def listing(request: Request, viewer: Viewer, *, id: str | None, metadata: list[str], project: str | None, after: str | None, limit: int) -> Page:
    """The viewer's conversations with these filters; an admin may narrow them to one project."""
    scope = viewer.project_filter
    if project and viewer.admin:
        scope = project
    return await list_conversations(
        service(request).conversations.database, scope, id_prefix=(id or "").strip() or None, metadata=metadata_filter(metadata), after=after or None, limit=limit
    )


# --- JSON ------------------------------------------------------------------------------------


@router.get("/console/api/conversations")
async def api_list(
    request: Request,
    viewer: ApiViewer,
    id: Annotated[str | None, Query(description="an id, or the start of one")] = None,
    metadata: Annotated[list[str], Query(description="key=value; repeat for more")] = [],  # noqa: B006 (FastAPI copies it)
    project: Annotated[str | None, Query(description="admins: one project only")] = None,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> JSON:
    """Conversations newest first, in OpenAI's list shape, each with its `project`."""
    page = await listing(request, viewer, id=id, metadata=metadata, project=project, after=after, limit=limit)
    return JSON(page.list_object())


@router.post("/console/api/conversations/{conversation_id}")
async def api_update(request: Request, conversation_id: str, body: UpdateConversationBody, viewer: ApiViewer) -> JSON:
    """Replaces the metadata, validated as POST /v1/conversations/{id} validates it."""
    project = await project_for(request, viewer, conversation_id)
    return JSON({**await service(request).update(project, conversation_id, body.metadata), "project": project})


# --- Pages -----------------------------------------------------------------------------------


@router.get("/console/conversations")
async def list_page(
    request: Request,
    viewer: PageViewer,
    id: str = "",
    metadata: str = "",
    project: str = "",
    after: str = "",
) -> HTMLResponse:
    search = {"id": id, "metadata": metadata, "project": project}
    try:
        page = await listing(request, viewer, id=id, metadata=[metadata] if metadata.strip() else [], project=project, after=after, limit=LIST_PAGE)
    except APIError as refused:  # a bad search term or cursor: said in the page, above an empty list
        return render(request, viewer, "conversations.html", refused.status, section="conversations", page=Page([], False), search=search, error=refused.message)
    return render(request, viewer, "conversations.html", section="conversations", page=page, search=search)


@router.get("/console/conversations/{conversation_id}")
async def conversation_page(request: Request, conversation_id: str, viewer: PageViewer) -> HTMLResponse:
    conversations = service(request)
    project = await project_for(request, viewer, conversation_id)
    try:
        conversation = await conversations.retrieve(project, conversation_id)
        items = await conversations.list_items(project, conversation_id, after=None, limit=ITEMS_PAGE, order="asc", include=ITEM_INCLUDE)
    except APIError as missing:
        if missing.status != 404:
            raise
        return render(request, viewer, "conversation_missing.html", status_code=404, section="conversations", conversation_id=conversation_id)
    return render(
        request,
        viewer,
        "conversation.html",
        section="conversations",
        conversation=conversation,
        conversation_id=conversation_id,
        project=project,
        items=items,
        rendered=render_items(items.data),
        limits={"pairs": METADATA_PAIRS, "key": METADATA_KEY_LENGTH, "value": METADATA_VALUE_LENGTH},
    )


@router.get("/console/conversations/{conversation_id}/items")
async def items_fragment(request: Request, conversation_id: str, viewer: PageViewer, after: str | None = None) -> HTMLResponse:
    """The next page of items as HTML to append to the page, with the control for the page after."""
    project = await project_for(request, viewer, conversation_id)
    try:
        items = await service(request).list_items(project, conversation_id, after=after, limit=ITEMS_PAGE, order="asc", include=ITEM_INCLUDE)
    except APIError as refused:
        return HTMLResponse(f'<p class="error" role="alert">{escape(refused.message)}</p>', status_code=refused.status)
    return templates.TemplateResponse(
        request, "_conversation_items.html", {"conversation_id": conversation_id, "items": items, "rendered": render_items(items.data)}
    )
