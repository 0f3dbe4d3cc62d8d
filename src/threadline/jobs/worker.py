"""The background worker inside every `threadline serve`: claims queued responses, runs
them, heartbeats for this process, notices cancels made elsewhere, and recovers the work
of processes that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from threadline.backends.base import ModelRequest
from threadline.backends.registry import Models
from threadline.config import WorkerSettings
from threadline.engine.events import ResponseEvents
from threadline.engine.prepare import PreparedResponse
from threadline.engine.runner import ResponseRun, Runner
from threadline.store.idempotency import IdempotencyStore
from threadline.store.jobs import ClaimedJob

log = logging.getLogger("threadline")

EXPIRE_EVERY_S = 60


def job_for(prepared: PreparedResponse) -> dict:
    """What another process needs to run a queued response."""
    return {"model_request": vars(prepared.model_request), "input_items": prepared.input_items}


class Worker:
    def __init__(self, runner: Runner, models: Models, settings: WorkerSettings, idempotency: IdempotencyStore) -> None:
        self.runner = runner
        self.models = models
        self.settings = settings
        self.idempotency = idempotency
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._claiming = True

    async def enqueue(self, prepared: PreparedResponse) -> None:
        """Queue a background response; its log starts with response.created and response.queued."""
        prepared.response["status"] = "queued"
        events = ResponseEvents(prepared.response).queued()
        await self.runner.responses.begin(
            prepared.project, prepared.response, prepared.input_items, owner=None, job=job_for(prepared), events=events
        )
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._expire_loop()),
        ]

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give running responses the grace period, then stop the rest."""
        self._claiming = False
        self._wake.set()
        runs = [run.task for run in self.runner.runs.values()]
        if runs:
            await asyncio.wait(runs, timeout=grace_s)
        for run in list(self.runner.runs.values()):
            run.stop("shutdown")
        remaining = [run.task for run in self.runner.runs.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=10)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.runner.jobs.retire(self.runner.owner)

    # -- loops -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while self._claiming:
            claimed = None
            if self._background_runs() < self.settings.max_background_jobs:
                try:
                    claimed = await self.runner.jobs.claim(self.runner.owner, self.models.ids())
                except Exception:
                    log.exception("claiming a background response failed")
            if claimed is not None:
                self._run(claimed)
                continue
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.runner.jobs.heartbeat(self.runner.owner, self.settings.lease_s)
                for response_id in await self.runner.jobs.cancelled_among(self.runner.owner):
                    run = self.runner.runs.get(response_id)
                    if run is not None and run.stop_reason is None:
                        run.stop("cancelled")
                for response_id in await self.runner.jobs.recover():
                    log.warning("response %s was left by a stopped process and is marked failed", response_id)
                    self.runner.notify(response_id)
            except Exception:
                log.exception("worker heartbeat failed")
            await asyncio.sleep(self.settings.heartbeat_s)

    async def _expire_loop(self) -> None:
        while True:
            try:
                await self.idempotency.expire()
            except Exception:
                log.exception("expiring idempotency keys failed")
            await asyncio.sleep(EXPIRE_EVERY_S)

    def _background_runs(self) -> int:
        return sum(1 for run in self.runner.runs.values() if run.background)

    def _run(self, claimed: ClaimedJob) -> None:
        # Only jobs for this process's models are claimed, so the backend is there.
        model_request = ModelRequest(**claimed.job["model_request"])
        prepared = PreparedResponse(
            project=claimed.project,
            backend=self.models.get(claimed.response["model"]),
            model_request=model_request,
            response={**claimed.response, "status": "in_progress"},
            input_items=claimed.job["input_items"],
            store=True,
        )
        run = self.runner.track(ResponseRun(prepared, self.runner, background=True))
        run.task.add_done_callback(lambda _task: self._wake.set())
