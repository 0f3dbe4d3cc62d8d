"""The ASGI application: routes, error handlers, and the services they call, built for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import FastAPI

from threadline import __version__
from threadline.api import conversations as conversation_routes
from threadline.api import embeddings as embedding_routes
from threadline.api import files as file_routes
from threadline.api import models as model_routes
from threadline.api import responses as response_routes
from threadline.api import vector_stores as vector_store_routes
from threadline.api import websocket as websocket_routes
from threadline.api.auth import Authenticator
from threadline.api.errors import install_error_handlers
from threadline.api.json import JSON
from threadline.api.limits import BodyLimits
from threadline.api.openapi import openapi_document
from threadline.api.uploads import FORM_ALLOWANCE_BYTES
from threadline.backends.registry import Models
from threadline.config import Settings
from threadline.console.install import install_console
from threadline.engine.prepare import Preparer
from threadline.engine.prompts import PromptTemplates
from threadline.engine.runner import Runner
from threadline.ids import new_id
from threadline.jobs.ingestion import Ingestion
from threadline.jobs.worker import Worker
from threadline.keys import server_keys
from threadline.ops import tracing
from threadline.ops.request_ids import RequestIds
from threadline.ops.metrics import install_metrics
from threadline.retrieval.embedders import build_embedder
from threadline.retrieval.index import ChunkIndex
from threadline.retrieval.search import Searcher
from threadline.services.conversations import ConversationsService
from threadline.services.embeddings import EmbeddingsService
from threadline.services.files import FilesService
from threadline.services.idempotency import Idempotency
from threadline.services.models import ModelsService
from threadline.services.responses import ResponsesService
from threadline.services.vector_stores import VectorStoresService
from threadline.store.conversations import ConversationStore
from threadline.store.database import Database
from threadline.store.files import FileStore
from threadline.store.idempotency import IdempotencyStore
from threadline.store.ingestion import IngestionQueue
from threadline.store.jobs import JobStore
from threadline.store.migrate import migrate
from threadline.store.response_listing import ResponseListing
from threadline.store.responses import ResponseStore
from threadline.store.vector_stores import VectorStoreStore
from threadline.tools.secrets import SecretBox
from threadline.tools.toolbox import ToolServices

log = logging.getLogger("threadline")


def create_app(settings: Settings) -> FastAPI:
    """A Threadline app for these settings; the database is opened and migrated at start-up."""
    prompts = PromptTemplates(settings.prompts)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        tracer_provider = tracing.start_tracing(settings.tracing)
        database = Database(settings.database_url)
        await migrate(database)
        models = Models(settings)
        await models.start()
        embedder = build_embedder(settings.embeddings)
        responses = ResponseStore(database)
        conversations = ConversationStore(database)
        jobs = JobStore(database)
        chunk_index = ChunkIndex(database)
        searcher = Searcher(database, embedder, chunk_index)
        vector_stores = VectorStoreStore(database)
        keys = await asyncio.to_thread(server_keys, settings)  # may write the key file
        tools = ToolServices(settings.tools, SecretBox(keys), searcher, vector_stores)
        files = FileStore(database)
        runner = Runner(responses, jobs, owner=new_id("proc"), tools=tools, files=files, max_input_bytes=settings.limits.max_body_bytes)
        await chunk_index.mode()  # how vectors are ranked, decided and logged at start
        ingestion = Ingestion(
            IngestionQueue(database), files, embedder, chunk_index, owner=runner.owner, settings=settings.workers
        )
        worker = Worker(runner, models, settings.workers, ingestion, files)
        idempotency = Idempotency(
            IdempotencyStore(database, settings.server.idempotency_ttl_s),
            owner=runner.owner,
            wait_s=settings.server.idempotency_wait_s,
            poll_s=settings.workers.poll_s,
        )
        app.state.responses = ResponsesService(
            preparer=Preparer(database, models, responses, conversations, settings.limits, tools, files, prompts),
            runner=runner,
            worker=worker,
            responses=responses,
            idempotency=idempotency,
            poll_s=settings.workers.poll_s,
        )
        app.state.conversations = ConversationsService(
            conversations=conversations, runner=runner, max_items_bytes=settings.limits.max_body_bytes, secrets=tools.secrets
        )
        app.state.files = FilesService(files, max_file_bytes=settings.files.max_file_bytes)
        app.state.models = ModelsService(models, started_at=int(time.time()))
        app.state.embeddings = EmbeddingsService(embedder)
        app.state.vector_stores = VectorStoresService(
            store=vector_stores, index=chunk_index, searcher=searcher, ingestion=ingestion
        )
        app.state.jobs = jobs  # /metrics reads the background queue
        app.state.response_listing = ResponseListing(database)  # the console's listing
        await jobs.heartbeat(runner.owner, settings.workers.lease_s)
        worker.start()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            await worker.stop(settings.server.shutdown_grace_s)
            await models.close()
            await embedder.aclose()
            await tools.aclose()
            await database.dispose()
            await asyncio.to_thread(tracing.stop_tracing, tracer_provider)

    app = FastAPI(
        title="Threadline",
        version=__version__,
        summary="OpenAI's Responses and Conversations APIs, self-hosted.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        telemetry={"exclude": tracing.untraced},  # FastAPI's own request spans (ops/tracing.py)
    )
    # /v1/conversations/ is not /v1/conversations: answer 404 rather than redirect.
    app.router.redirect_slashes = False
    app.state.ready = False
    app.state.authenticator = Authenticator(settings.projects_by_key, settings.admin_keys)
    app.state.websocket_limits = settings.websocket
    if prompts:
        log.info("Prompt templates loaded: %s.", prompts.describe())
    if app.state.authenticator.is_open:
        log.warning("No API keys are configured: every request is accepted, in one open project.")
    install_error_handlers(app)
    app.add_middleware(
        BodyLimits,
        max_body_bytes=settings.limits.max_body_bytes,
        timeout_s=settings.server.body_timeout_s,
        uploads={"/v1/files": settings.files.max_file_bytes + FORM_ALLOWANCE_BYTES},
    )
    install_metrics(app, settings.metrics.enabled, settings.metrics.require_key)  # counts the bodies refused too
    app.add_middleware(RequestIds)  # outermost: every log line, and the request's span, name the request
    app.include_router(conversation_routes.router)
    app.include_router(response_routes.router)
    app.include_router(websocket_routes.router)  # GET /v1/responses as a WebSocket
    app.include_router(model_routes.router)
    app.include_router(embedding_routes.router)
    app.include_router(file_routes.router)
    app.include_router(vector_store_routes.router)
    install_console(app)
    # Built on first request and kept; it documents answers as well as request bodies.
    app.openapi = lambda: openapi_document(app)

    @app.get("/health", include_in_schema=False)
    async def health() -> JSON:
        if not app.state.ready:
            return JSON({"status": "starting"}, status_code=503)
        return JSON({"status": "ok"})

    return app
