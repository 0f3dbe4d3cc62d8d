"""The playground: try a model with instructions, function tools, MCP servers and file search,
and watch the answer stream in. Its requests are POST /v1/responses run for the viewer's
project (an admin's, their own key's project): the same body, checks, errors and events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from threadline.api import responses as response_api
from threadline.api.json import JSON, JSONRoute
from threadline.console.api import ApiViewer
from threadline.console.pages import PageViewer, render
from threadline.spec.request import CreateResponseBody
from threadline.store.vector_stores import Listing

router = APIRouter(include_in_schema=False, route_class=JSONRoute)

# Vector stores offered for file search: the newest, enough for a page of checkboxes.
VECTOR_STORES_SHOWN = 100


@router.get("/console/playground")
async def playground_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    models = request.app.state.models.models
    vector_stores = await request.app.state.vector_stores.list(viewer.project, Listing(None, None, VECTOR_STORES_SHOWN, "desc"))
    return render(
        request,
        viewer,
        "playground.html",
        section="playground",
        models=models.ids(),
        default_model=models.default_id,
        vector_stores=vector_stores.data,
    )


@router.post("/console/api/playground/responses")
async def create_response(body: CreateResponseBody, viewer: ApiViewer, request: Request):
    """What POST /v1/responses does, for the viewer's project: a Response, or its events."""
    return await response_api.create_response(body, viewer.project, request.app.state.responses, request)


@router.post("/console/api/playground/conversations")
async def create_conversation(viewer: ApiViewer, request: Request) -> JSON:
    """A new, empty conversation for the playground to continue in."""
    return JSON(await request.app.state.conversations.create(viewer.project, {"source": "console playground"}, []))
