"""The console's responses: a list filtered by model, status, time and background, with live
status and cancelling; a response's page (request, usage, timings, items, its event stream
replayed, its previous_response_id chain as a tree); and the JSON those pages read.

An admin opens any project's response: its project is found by id, and the services are
called for that project, as for its own key. Another project's response is not found."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from threadline.api.json import JSON, JSONRoute
from threadline.console.api import ApiViewer
from threadline.console.items import render_item
from threadline.console.pages import PageViewer, render
from threadline.console.viewer import Viewer
from threadline.engine.replay import replay_events
from threadline.errors import APIError, invalid, not_found
from threadline.services.responses import ResponsesService
from threadline.spec.response import present_event
from threadline.store.jobs import FINISHED, JobStore
from threadline.store.response_listing import STATUSES, ResponseFilters, ResponseListing, Tree

router = APIRouter(include_in_schema=False, route_class=JSONRoute)

PAGE_SIZE = 50
MAX_LIMIT = 100
INPUT_ITEMS_SHOWN = 500
EVENTS_PER_READ = 1000
LIVE = ("queued", "in_progress")
LARGEST = 2**63 - 1
# The request's fields a Response echoes, in the order the page shows them.
REQUEST_FIELDS = (
    "model", "instructions", "tools", "tool_choice", "parallel_tool_calls", "max_tool_calls", "temperature", "top_p",
    "top_logprobs", "max_output_tokens", "text", "reasoning", "truncation", "store", "background", "previous_response_id",
    "conversation", "prompt", "prompt_cache_key", "safety_identifier", "service_tier", "user", "metadata",
)


def listing(request: Request) -> ResponseListing:
    return request.app.state.response_listing


def service(request: Request) -> ResponsesService:
    return request.app.state.responses


def job_store(request: Request) -> JobStore:
    return request.app.state.jobs


Listing = Annotated[ResponseListing, Depends(listing)]
Responses = Annotated[ResponsesService, Depends(service)]
Jobs = Annotated[JobStore, Depends(job_store)]


# -- reading the request ---------------------------------------------------------------


def filters_of(query: Mapping[str, str]) -> ResponseFilters:
    """The listing's filters from a query string; an empty value leaves a filter out (as a
    form sends it). A value that cannot be one is a 400 naming it."""
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise invalid(f"Invalid status '{status}': expected one of {', '.join(STATUSES)}.", param="status")
    background = query.get("background") or None
    if background is not None and background not in ("true", "false"):
        raise invalid(f"Invalid background '{background}': expected true or false.", param="background")
    return ResponseFilters(
        model=query.get("model") or None,
        status=status,
        since=whole_number(query, "since", "a Unix time in seconds, such as 1735689600"),
        until=whole_number(query, "until", "a Unix time in seconds, such as 1735689600"),
        background=None if background is None else background == "true",
    )


def whole_number(query: Mapping[str, str], name: str, expected: str) -> int | None:
    """A number the database compares with a 64-bit column; a larger one is no time nor
    sequence number, and no database would take it."""
    value = query.get(name) or None
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or abs(number) > LARGEST:
        raise invalid(f"Invalid {name} '{value}': expected {expected}.", param=name)
    return number


def limit_of(query: Mapping[str, str], default: int) -> int:
    value = query.get("limit") or None
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise invalid(f"Invalid limit '{value}': expected a whole number from 1 to {MAX_LIMIT}.", param="limit")
    return int(value)


async def project_of(viewer: Viewer, responses: ResponseListing, response_id: str) -> str:
    """The project to read a response in: the viewer's own, or for an admin the response's."""
    if not viewer.admin:
        return viewer.project
    project = await responses.project_of(response_id)
    if project is None:
        raise not_found("Response", response_id)
    return project


# -- JSON --------------------------------------------------------------------------------


@router.get("/console/api/responses")
async def list_responses(request: Request, viewer: ApiViewer, responses: Listing) -> JSON:
    query = request.query_params
    page = await responses.list(viewer.project_filter, filters_of(query), after=query.get("after") or None, limit=limit_of(query, PAGE_SIZE))
    return JSON(page.list_object())


@router.get("/console/api/responses/{response_id}")
async def response_summary(response_id: str, viewer: ApiViewer, responses: Listing) -> JSON:
    found = await responses.summary(await project_of(viewer, responses, response_id), response_id)
    if found is None:
        raise not_found("Response", response_id)
    return JSON(found)


@router.post("/console/api/responses/{response_id}/cancel")
async def cancel_response(response_id: str, viewer: ApiViewer, responses: Listing, service: Responses) -> JSON:
    return JSON(await service.cancel(await project_of(viewer, responses, response_id), response_id))


@router.get("/console/api/responses/{response_id}/events")
async def response_events(request: Request, response_id: str, viewer: ApiViewer, responses: Listing, service: Responses, jobs: Jobs) -> JSON:
    """The response's events after sequence number `after`: a background response's event log
    (read again, as it grows, while it runs), or for any other response its stream rebuilt
    from what was stored. `done` says no more will come."""
    after = whole_number(request.query_params, "after", "an event's sequence number")
    after = -1 if after is None else after
    project = await project_of(viewer, responses, response_id)
    response = await service.retrieve(project, response_id, ())
    if response["background"]:
        events = await jobs.events_after(response_id, after, EVENTS_PER_READ)
        done = len(events) < EVENTS_PER_READ and await jobs.log_complete(project, response_id)
        source = "log"
    else:
        events = [event for event in replay_events(response) if event["sequence_number"] > after]
        done, source = response["status"] in FINISHED, "rebuilt"
    shown = [present_event(event, ()) for event in events]
    return JSON({"object": "list", "source": source, "data": shown, "done": done})


@router.get("/console/api/responses/{response_id}/tree")
async def response_tree(response_id: str, viewer: ApiViewer, responses: Listing) -> JSON:
    tree = await responses.tree(await project_of(viewer, responses, response_id), response_id)
    if tree is None:
        raise not_found("Response", response_id)
    return JSON({"object": "response_tree", "root_id": tree.root_id, "current_id": response_id, "truncated": tree.truncated, "nodes": tree.nodes})


# -- pages -------------------------------------------------------------------------------


@router.get("/console/responses")
async def responses_page(request: Request, viewer: PageViewer, responses: Listing) -> HTMLResponse:
    query = request.query_params
    shown = {name: query.get(name, "") for name in ("model", "status", "since", "until", "background")}
    try:
        page = await responses.list(viewer.project_filter, filters_of(query), after=query.get("after") or None, limit=PAGE_SIZE)
    except APIError as error:
        return render(request, viewer, "responses.html", status_code=error.status, section="responses", error=str(error), rows=[], shown=shown, statuses=STATUSES, next_query=None)
    next_query = None
    if page.has_more:
        next_query = urlencode({name: value for name, value in {**shown, "after": page.last_id}.items() if value})
    return render(request, viewer, "responses.html", section="responses", rows=page.data, shown=shown, statuses=STATUSES, next_query=next_query, live=LIVE)


@router.get("/console/responses/{response_id}")
async def response_page(request: Request, response_id: str, viewer: PageViewer, responses: Listing, service: Responses) -> HTMLResponse:
    try:
        project = await project_of(viewer, responses, response_id)
        response = await service.retrieve(project, response_id, ())
    except APIError as error:
        if error.status != 404:
            raise
        return render(request, viewer, "response_missing.html", status_code=404, section="responses", response_id=response_id)
    inputs = await service.input_items(project, response_id, after=None, limit=INPUT_ITEMS_SHOWN, order="asc", include=())
    tree = await responses.tree(project, response_id)
    return render(
        request,
        viewer,
        "response.html",
        section="responses",
        response=response,
        project=project,
        request_fields=[request_field(name, response[name]) for name in REQUEST_FIELDS if name in response],
        input_items=[render_item(item) for item in inputs.data],
        more_inputs=inputs.has_more,
        output_items=[render_item(item) for item in response.get("output") or ()],
        tree=tree_steps(tree) if tree else None,
        tree_root=tree.root if tree else None,
        truncated=tree.truncated if tree else False,
        live=response["status"] in LIVE,
        cancellable=response["background"] and response["status"] in LIVE,
    )


def request_field(name: str, value) -> tuple[str, str, str]:
    """A request field as the page shows it: (name, kind, text), where kind says how."""
    if value is None or value == {} or value == []:
        return name, "none", ""
    if name == "previous_response_id":
        return name, "response", value
    if name == "conversation" and isinstance(value, dict) and "id" in value:
        return name, "conversation", value["id"]
    if isinstance(value, (dict, list)):
        return name, "json", orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    if isinstance(value, bool):
        return name, "text", "true" if value else "false"
    return name, "text", str(value)


def tree_steps(tree: Tree) -> list[tuple[str, dict | None]]:
    """The tree as the template writes it, in order: "branch" opens one, holding a run of
    "node"s (each the only continuation of the one before); "fork" opens the branches that
    continue a run's last node, "join" closes them; "end" closes a branch. Built without
    recursion, and nested only where a chain forks: an agent's chain can be hundreds long."""
    children: dict[str | None, list[dict]] = {}
    for node in tree.nodes:  # oldest first
        children.setdefault(node["previous_response_id"], []).append(node)
    steps: list[tuple[str, dict | None]] = []
    waiting: list[tuple[str, dict | None]] = [("branch", tree.root)]
    while waiting:
        step, node = waiting.pop()
        if step != "branch":
            steps.append((step, None))
            continue
        steps.append(("branch", None))
        while len(following := children.get(node["id"], [])) == 1:
            steps.append(("node", node))
            node = following[0]
        steps.append(("node", node))
        waiting.append(("end", None))
        if following:
            steps.append(("fork", None))
            waiting.append(("join", None))
            waiting.extend(("branch", child) for child in reversed(following))
    return steps
