"""The `threadline` command: serve the API, or apply migrations."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Annotated, Optional

import typer

from threadline.config import DEFAULT_DATABASE_URL, load_settings

# The collector's thresholds (young, middle, old generation); Python's own are (700, 10, 10).
GC_THRESHOLDS = (20_000, 20, 20)

cli = typer.Typer(help="Threadline: OpenAI's Responses and Conversations APIs, self-hosted.", no_args_is_help=True)

DatabaseOption = Annotated[
    Optional[str],
    typer.Option("--database", envvar="THREADLINE_DATABASE_URL", help=f"sqlite:///path.db or postgresql://user@host/db [default: {DEFAULT_DATABASE_URL}]", show_default=False),
]
ConfigOption = Annotated[
    Optional[str], typer.Option("--config", envvar="THREADLINE_CONFIG", help="A TOML config file.")
]


@cli.command()
def serve(
    host: Annotated[Optional[str], typer.Option(envvar="THREADLINE_HOST", help="Address to listen on [default: 127.0.0.1]", show_default=False)] = None,
    port: Annotated[Optional[int], typer.Option(envvar="THREADLINE_PORT", help="Port to listen on [default: 8000]", show_default=False)] = None,
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Serve the API (migrating the database first)."""
    import uvicorn

    from threadline.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = load_settings(config, host=host, port=port, database_url=database)
    app = create_app(settings)
    # What is loaded by now lives as long as the process: keep it out of the collector's
    # passes, and let young objects pile up longer between passes (requests make many).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        # Open streams get the grace period too; what is left is stopped and recorded.
        timeout_graceful_shutdown=settings.server.shutdown_grace_s,
    )


@cli.command()
def migrate(database: DatabaseOption = None, config: ConfigOption = None) -> None:
    """Apply schema migrations and exit."""
    from threadline.store.database import Database
    from threadline.store.migrate import migrate as apply_migrations

    settings = load_settings(config, database_url=database)

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            await apply_migrations(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    typer.echo(f"Migrated {settings.database_url}")


def main() -> None:
    cli()
