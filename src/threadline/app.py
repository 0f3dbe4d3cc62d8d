"""The ASGI application: routes, error handlers, and the store opened for its lifetime."""

from __future__ import annotations

import contextlib
import logging
import time

from fastapi import FastAPI

from threadline import __version__
from threadline.api import conversations, models, responses
from threadline.api.auth import Authenticator
from threadline.api.errors import install_error_handlers
from threadline.api.json import JSON
from threadline.api.limits import BodyLimits
from threadline.api.openapi import openapi_document
from threadline.config import Settings
from threadline.backends.registry import Models
from threadline.engine.prepare import Preparer
from threadline.engine.runner import Runner
from threadline.ids import new_id
from threadline.jobs.worker import Worker
from threadline.store.conversations import ConversationStore
from threadline.store.idempotency import IdempotencyStore
from threadline.store.jobs import JobStore
from threadline.store.responses import ResponseStore
from threadline.store.database import Database
from threadline.store.migrate import migrate

log = logging.getLogger("threadline")


def create_app(settings: Settings) -> FastAPI:
    """A Threadline app for these settings; the database is opened and migrated at start-up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        database = Database(settings.database_url)
        await migrate(database)
        app.state.database = database
        app.state.conversations = ConversationStore(database)
        app.state.responses = ResponseStore(database)
        app.state.models = Models(settings)
        await app.state.models.start()
        app.state.preparer = Preparer(database, app.state.models, app.state.responses, app.state.conversations, settings.limits)
        app.state.jobs = JobStore(database)
        app.state.idempotency = IdempotencyStore(database, settings.server.idempotency_ttl_s)
        app.state.runner = Runner(app.state.responses, app.state.jobs, owner=new_id("proc"))
        app.state.worker = Worker(app.state.runner, app.state.models, settings.workers)
        await app.state.jobs.heartbeat(app.state.runner.owner, settings.workers.lease_s)
        app.state.worker.start()
        app.state.started_at = int(time.time())
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await app.state.worker.stop(settings.server.shutdown_grace_s)
            await app.state.models.close()
            await database.dispose()

    app = FastAPI(
        title="Threadline",
        version=__version__,
        summary="OpenAI's Responses and Conversations APIs, self-hosted.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    # /v1/conversations/ is not /v1/conversations: answer 404 rather than redirect.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.ready = False
    app.state.authenticator = Authenticator(settings.projects_by_key)
    if app.state.authenticator.is_open:
        log.warning("No API keys are configured: every request is accepted, in one open project.")
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_body_bytes=settings.limits.max_body_bytes, timeout_s=settings.server.body_timeout_s)
    app.include_router(conversations.router)
    app.include_router(responses.router)
    app.include_router(models.router)
    # Built on first request and kept; it documents answers as well as request bodies.
    app.openapi = lambda: openapi_document(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSON:
        if not app.state.ready:
            return JSON({"status": "starting"}, status_code=503)
        return JSON({"status": "ok"})

    return app
