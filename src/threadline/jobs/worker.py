"""The background worker inside every `threadline serve`: claims queued responses, runs
them, heartbeats for this process, notices cancels made elsewhere, and recovers the work
of processes that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from threadline.backends.registry import Models
from threadline.config import WorkerSettings
from threadline.engine.prepare import PreparedResponse
from threadline.engine.runner import ResponseRun, Runner
from threadline.jobs.cancel import stop_cancelled
from threadline.jobs.ingestion import Ingestion
from threadline.jobs.payload import UnreadableJob, job_payload, read_job
from threadline.jobs.recovery import failed, recover
from threadline.spec.response import with_status
from threadline.spec.stream import ResponseEvents
from threadline.store.files import EXPIRED_PER_READ, FileStore
from threadline.store.jobs import OwnedResponse

log = logging.getLogger("threadline")


class Worker:
    def __init__(
        self, runner: Runner, models: Models, settings: WorkerSettings, ingestion: Ingestion | None = None, files: FileStore | None = None
    ) -> None:
        self.runner = runner
        self.models = models
        self.settings = settings
        # Files attached to vector stores, claimed and ingested alongside background responses.
        self.ingestion = ingestion
        # Uploaded files, whose expired ones are removed every heartbeat.
        self.files = files
        self._sweep: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._claiming = True

    async def enqueue(self, prepared: PreparedResponse) -> None:
        """Queue a background response; its log starts with response.created and response.queued."""
        prepared.response = with_status(prepared.response, "queued")
        events = ResponseEvents(prepared.response).queued()
        job = job_payload(prepared.model_request, prepared.input_items, prepared.tools, self.runner.tools.secrets)
        await self.runner.responses.begin(prepared.project, prepared.response, prepared.input_items, owner=None, job=job, events=events)
        self._wake.set()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._heartbeat_loop())]
        if self.ingestion is not None:
            self.ingestion.start()

    async def stop(self, grace_s: float) -> None:
        """Stop claiming, give running responses the grace period, then stop the rest."""
        self._claiming = False
        self._wake.set()
        if self.ingestion is not None:
            await self.ingestion.stop()
        runs = [run.task for run in self.runner.runs.values()]
        if runs:
            await asyncio.wait(runs, timeout=grace_s)
        for run in list(self.runner.runs.values()):
            run.stop("shutdown")
        remaining = [run.task for run in self.runner.runs.values()]
        if remaining:
            await asyncio.wait(remaining, timeout=10)
        for task in self._tasks + ([self._sweep] if self._sweep is not None else []):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.runner.jobs.retire(self.runner.owner)

    # -- loops -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while self._claiming:
            if self._background_runs() < self.settings.max_background_jobs:
                try:
                    if await self._claim():
                        continue
                except Exception:
                    log.exception("claiming a background response failed")
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.poll_s)

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.runner.jobs.heartbeat(self.runner.owner, self.settings.lease_s)
                await stop_cancelled(self.runner)
                for response_id in await recover(self.runner.jobs):
                    log.warning("response %s was left by a stopped process and is marked failed", response_id)
                    self.runner.notify(response_id)
            except Exception:
                log.exception("worker heartbeat failed")
            self._start_sweep()
            await asyncio.sleep(self.settings.heartbeat_s)

    def _start_sweep(self) -> None:
        """Remove expired files, beside the heartbeat (which must not wait for it), unless the
        last sweep is still going."""
        if self.files is not None and (self._sweep is None or self._sweep.done()):
            self._sweep = asyncio.create_task(self._remove_expired(self.files))

    async def _remove_expired(self, files: FileStore) -> None:
        """Expired files go, a batch at a time, with their chunks: search finds the chunks of
        completed vector store files only, so an expired file stops being found once its
        sweep withdraws it, within a heartbeat of its expiry."""
        try:
            while await files.remove_expired(int(time.time())) == EXPIRED_PER_READ:
                pass
        except Exception:
            log.exception("removing expired files failed")

    def _background_runs(self) -> int:
        return sum(1 for run in self.runner.runs.values() if run.background)

    async def _claim(self) -> bool:
        """Claim the oldest queued response for this process's models and start it; False if none is queued."""
        claimed = await self.runner.jobs.claim(self.runner.owner, self.models.ids())
        if claimed is None:
            return False
        try:
            job = read_job(claimed.job, self.runner.tools.secrets)
        except UnreadableJob as error:
            log.error("response %s cannot be run here: %s", claimed.response_id, error)
            owned = OwnedResponse(claimed.response_id, self.runner.owner, "in_progress", claimed.response)
            await self.runner.jobs.end(owned, failed(claimed.response, str(error)))
            self.runner.notify(claimed.response_id)
            return True
        prepared = PreparedResponse(
            project=claimed.project,
            backend=self.models.get(claimed.response["model"]),  # claimed for this process's models: it is here
            model_request=job.model_request,
            response=with_status(claimed.response, "in_progress"),
            input_items=job.input_items,
            store=True,
            tools=job.tools,
        )
        run = self.runner.track(ResponseRun(prepared, self.runner, background=True))
        run.task.add_done_callback(lambda _task: self._wake.set())
        return True
