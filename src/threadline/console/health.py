"""Models and health: the configured models and whether each can answer, the background queue,
and the processes sharing the database with their heartbeats. One report feeds the page
(/console/health) and its JSON (/console/api/health).

The queue and the processes are the server's, not a project's: every signed-in viewer sees
them, as /metrics shows them."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from threadline.api.json import JSON
from threadline.backends.registry import Models
from threadline.backends.upstream import UpstreamBackend
from threadline.console.api import ApiViewer
from threadline.console.pages import PageViewer, render

router = APIRouter(include_in_schema=False)

# The most a model's probe may take: the page never waits longer than this for an upstream.
PROBE_S = 2.0


@router.get("/console/health")
async def health_page(request: Request, viewer: PageViewer) -> HTMLResponse:
    report = await health_report(request)
    return render(request, viewer, "health.html", section="health", report=report, queue_rows=queue_rows(report["queue"]))


@router.get("/console/api/health")
async def health_json(request: Request, viewer: ApiViewer) -> JSON:
    return JSON(await health_report(request))


async def health_report(request: Request) -> dict:
    state = request.app.state
    models: Models = state.models.models
    this_process = state.responses.runner.owner
    now = time.time()
    probed, queued, running, processes = await asyncio.gather(
        asyncio.gather(*(model_status(models, model_id) for model_id in models.ids())),
        state.jobs.queued_by_model(),
        state.jobs.running_by_model(),
        state.jobs.processes(),
    )
    return {
        "object": "threadline.health",
        "checked_at": int(now),
        "models": list(probed),
        "queue": {
            "queued": [
                {"model": model, "count": count, "oldest_created_at": int(oldest), "oldest_wait_s": max(0, round(now - oldest))}
                for model, count, oldest in sorted(queued)
            ],
            "running": [{"model": model, "count": count} for model, count in sorted(running)],
        },
        "processes": [
            {
                "id": owner,
                "lease_expires_at": round(expires_at, 3),
                "alive": expires_at >= now,
                "running": count,
                "this_process": owner == this_process,
            }
            for owner, expires_at, count in processes
        ],
    }


def queue_rows(queue: dict) -> list[dict]:
    """The queue and the work in progress as one row per model, for the page's table."""
    rows: dict[str, dict] = {}
    for entry in queue["queued"]:
        rows[entry["model"]] = {"model": entry["model"], "queued": entry["count"], "oldest_wait_s": entry["oldest_wait_s"], "oldest_created_at": entry["oldest_created_at"], "running": 0}
    for entry in queue["running"]:
        rows.setdefault(entry["model"], {"model": entry["model"], "queued": 0, "oldest_wait_s": None, "oldest_created_at": None, "running": 0})["running"] = entry["count"]
    return sorted(rows.values(), key=lambda row: row["model"])


async def model_status(models: Models, model_id: str) -> dict:
    """A model's row: an upstream is asked for its model list; a model served in this process
    (embedded, scripted) was loaded at start and is ready. Its status and context window are
    asked at once, so the row waits PROBE_S at most."""
    settings = models.settings[model_id]
    backend = models.get(model_id)
    (status, detail), context_window = await asyncio.gather(
        reachability(backend),
        within_probe(backend.resolve_context_window(), settings.context_window),
    )
    return {
        "id": model_id,
        "provider": settings.provider,
        "default": model_id == models.default_id,
        "context_window": context_window,
        "status": status,
        "detail": detail,
    }


async def reachability(backend) -> tuple[str, str | None]:
    """ready, unreachable or error, and why when it is not ready."""
    if not isinstance(backend, UpstreamBackend):
        return "ready", None
    answer = await within_probe(backend.metadata("GET", f"{backend.base_url}/models"), None)
    if answer is None:
        return "unreachable", f"no answer from {backend.base_url}"
    if answer[0] >= 400:
        return "error", f"{backend.base_url}/models answered HTTP {answer[0]}"
    return "ready", None


async def within_probe(awaitable, fallback):
    """What `awaitable` gives within PROBE_S, else `fallback`."""
    try:
        return await asyncio.wait_for(awaitable, PROBE_S)
    except TimeoutError:
        return fallback
