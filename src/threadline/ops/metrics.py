"""Prometheus metrics: what the server is doing, at GET /metrics in Prometheus' text format.

Each process counts its own work into prometheus-client's metrics. Under `threadline serve
--workers N` the workers write them to files in PROMETHEUS_MULTIPROC_DIR (ops/workers.py) and
a scrape, whichever worker answers it, sums every worker's. Labels stay bounded: route
templates, configured model ids, statuses and reasons from the API's own enums; never an id
or anything a user wrote. The background queue is the database's, so it is read at scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import time
from collections.abc import AsyncIterator, Iterable

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from threadline.backends.base import Finish

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Seconds: from a quick metadata read to a long generation.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TERMINAL_STATUSES = ("completed", "failed", "incomplete", "cancelled")

REQUESTS = Histogram(
    "threadline_http_request_duration_seconds",
    "HTTP requests by route template, method and status: the time to the end of the answer (a stream's whole length).",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
FIRST_EVENT = Histogram(
    "threadline_stream_first_event_seconds",
    "Streamed answers (server-sent events): the time from the request to the first event.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
OPEN_STREAMS = Gauge("threadline_open_streams", "Server-sent event streams being sent.", multiprocess_mode="livesum")
WEBSOCKETS = Gauge("threadline_websocket_connections", "Open WebSocket connections.", multiprocess_mode="livesum")
RESPONSES = Counter(
    "threadline_responses",
    "Responses ended, by model, final status and reason (incomplete_details.reason of an incomplete one, error.code of a failed one).",
    ["model", "status", "reason"],
)
TOKENS = Counter("threadline_tokens", "Tokens of ended responses and of compactions, by model and direction (input, output).", ["model", "direction"])
RUNNING = Gauge(
    "threadline_responses_running", "Responses running, by mode (foreground, background).", ["mode"], multiprocess_mode="livesum"
)
UPSTREAM_CALLS = Histogram(
    "threadline_upstream_call_duration_seconds",
    "Calls to upstream models, each attempt, by model and outcome (ok, 4xx, 5xx, timeout, error, cancelled).",
    ["model", "outcome"],
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_RETRIES = Counter("threadline_upstream_retries", "Upstream calls made again after a failure, by model.", ["model"])
TOOL_CALLS = Counter("threadline_tool_calls", "Hosted tool calls run, by item type and outcome (the item's status).", ["type", "outcome"])
DB_CONNECTIONS = Gauge("threadline_db_connections_in_use", "Database connections checked out of the pool.", multiprocess_mode="livesum")
WRITE_BATCHES = Histogram(
    "threadline_db_write_batch_size", "Writes committed together in one shared transaction.", buckets=(1, 2, 4, 8, 16, 32, 64)
)


# -- HTTP and WebSocket traffic ------------------------------------------------------------


class RequestMetrics:
    """ASGI middleware: each HTTP request into REQUESTS (streams into FIRST_EVENT and
    OPEN_STREAMS too), each WebSocket into WEBSOCKETS while it is open."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            WEBSOCKETS.inc()
            try:
                return await self.app(scope, receive, send)
            finally:
                WEBSOCKETS.dec()
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # unless an answer starts
        streaming = waiting_for_first = False

        async def observed(message) -> None:
            nonlocal status, streaming, waiting_for_first
            if message["type"] == "http.response.start":
                status = message["status"]
                content_type = dict(message.get("headers") or ()).get(b"content-type", b"")
                if content_type.startswith(b"text/event-stream"):
                    streaming = waiting_for_first = True
                    OPEN_STREAMS.inc()
            elif waiting_for_first and message.get("body"):
                waiting_for_first = False
                FIRST_EVENT.labels(route_template(scope)).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            if streaming:
                OPEN_STREAMS.dec()
            REQUESTS.labels(route_template(scope), scope["method"], str(status)).observe(time.perf_counter() - started)


def route_template(scope) -> str:
    """The matched route's template ("/v1/responses/{response_id}"), never the path itself;
    "unmatched" for a path no route has, and for a request refused before it was routed (a
    body declared larger than the server takes)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


# -- Responses, upstream calls, tools ------------------------------------------------------


def watch_run(run) -> None:
    """Count a response run (engine/runner.py ResponseRun) as running until its task ends,
    then its final status, reason and tokens."""
    mode = "background" if run.background else "foreground"
    RUNNING.labels(mode).inc()

    def ended(_task: asyncio.Task) -> None:
        RUNNING.labels(mode).dec()
        response_ended(run.events.response)

    run.task.add_done_callback(ended)


def response_ended(response: dict) -> None:
    """Count an ended response; one that did not end (refused, or handed back to the queue) is not."""
    status = response.get("status")
    if status not in TERMINAL_STATUSES:
        return
    model = response.get("model") or "unknown"
    reason = ""
    if status == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason") or ""
    elif status == "failed":
        reason = (response.get("error") or {}).get("code") or ""
    RESPONSES.labels(model, status, reason).inc()
    tokens_used(model, response.get("usage") or {})


def tokens_used(model: str, usage: dict) -> None:
    """Count the tokens of a `usage` object (a response's, or a compaction's)."""
    for direction in ("input", "output"):
        if usage.get(f"{direction}_tokens"):
            TOKENS.labels(model, direction).inc(usage[f"{direction}_tokens"])


async def observed_upstream_call(model: str, events: AsyncIterator) -> AsyncIterator:
    """The events of one upstream call (one attempt), its duration and outcome counted."""
    started = time.perf_counter()
    outcome = "ok"
    finished = False
    try:
        async with contextlib.aclosing(events):
            async for model_event in events:
                finished = isinstance(model_event, Finish)
                yield model_event
    except (GeneratorExit, asyncio.CancelledError):
        outcome = "ok" if finished else "cancelled"  # a reader may stop once the answer is done
        raise
    except BaseException as error:
        outcome = upstream_outcome(error)
        raise
    finally:
        UPSTREAM_CALLS.labels(model, outcome).observe(time.perf_counter() - started)


def upstream_outcome(error: BaseException) -> str:
    status = getattr(error, "upstream_status", None)
    if status is not None:
        return "4xx" if status < 500 else "5xx"
    if isinstance(error.__cause__ or error.__context__, TimeoutError):  # aiohttp's timeouts are TimeoutErrors
        return "timeout"
    return "error"  # no connection, or an error inside an answer that began


def with_upstream_status(status: int, error: BaseException) -> BaseException:
    """`error`, marked as the upstream's HTTP answer `status`, for the outcome of its call."""
    error.upstream_status = status
    return error


def upstream_retried(model: str) -> None:
    UPSTREAM_RETRIES.labels(model).inc()


def tool_call_ended(item: dict) -> None:
    """Count a hosted tool call that ran (an mcp_call, web_search_call or file_search_call item)."""
    TOOL_CALLS.labels(item.get("type") or "unknown", item.get("status") or "unknown").inc()


# -- The database ------------------------------------------------------------------------


def watch_pool(engine: AsyncEngine) -> None:
    """Keep DB_CONNECTIONS up to date with the engine's pool."""
    event.listen(engine.sync_engine, "checkout", lambda *_: DB_CONNECTIONS.inc())
    event.listen(engine.sync_engine, "checkin", lambda *_: DB_CONNECTIONS.dec())


def write_batch(size: int) -> None:
    WRITE_BATCHES.observe(size)


class QueueCollector:
    """The background queue as it stood when read: queued responses by model, and the age
    of the oldest. The same for every process, so read from the database at scrape."""

    def __init__(self, models: Iterable[str], queued: Iterable[tuple[str, int, float]], now: float) -> None:
        self.models = list(models)  # the configured ones, shown at 0 while none of theirs wait
        self.queued = {model: (count, oldest) for model, count, oldest in queued}
        self.now = now

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily("threadline_queue_depth", "Background responses queued, by model.", labels=["model"])
        age = GaugeMetricFamily("threadline_queue_oldest_age_seconds", "Age of the oldest queued background response, by model.", labels=["model"])
        for model in sorted(set(self.models) | set(self.queued)):
            count, oldest = self.queued.get(model, (0, self.now))
            depth.add_metric([model], count)
            age.add_metric([model], max(0.0, self.now - oldest))
        return [depth, age]


# -- GET /metrics --------------------------------------------------------------------------


def install_metrics(app: FastAPI, enabled: bool, require_key: bool) -> None:
    """Count the app's traffic and serve GET /metrics (behind a Bearer key if `require_key`)."""
    if not enabled:
        return
    app.add_middleware(RequestMetrics)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        state = request.app.state
        if require_key:
            state.authenticator.project_for(request.headers.get("authorization"))  # a 401 without one
        queue = QueueCollector(state.models.models.ids(), await state.jobs.queued_by_model(), time.time())
        body = await asyncio.to_thread(exposition, queue)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


def exposition(*collectors) -> bytes:
    """Every metric in Prometheus' text format: this process's, or with several workers every
    worker's (read from their files), then `collectors`'."""
    if os.environ.get(MULTIPROCESS_DIR):
        forget_dead_processes(os.environ[MULTIPROCESS_DIR])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        counted = generate_latest(registry)
    else:
        counted = generate_latest(REGISTRY)
    extra = CollectorRegistry()
    for collector in collectors:
        extra.register(collector)
    return counted + generate_latest(extra)


LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db$")


def forget_dead_processes(folder: str) -> None:
    """Drop the live gauges of worker processes that are gone (uvicorn replaces a worker that
    dies; its streams and connections are not open any more)."""
    for path in glob.glob(os.path.join(folder, "gauge_live*.db")):
        found = LIVE_GAUGE_FILE.search(path)
        if found and not process_alive(int(found[1])):
            multiprocess.mark_process_dead(int(found[1]), folder)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
