"""The `threadline` command: serve the API, apply migrations, or check a deployment."""

from __future__ import annotations

import asyncio
import functools
import gc
import sys
import tomllib
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from threadline.backends.registry import ModelLoadError
from threadline.config import DEFAULT_DATABASE_URL, Settings, load_settings
from threadline.ops import logs
from threadline.ops.logs import LogFormat
from threadline.startup_errors import config_problems, port_taken
from threadline.store.database import async_url

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
    log_format: Annotated[LogFormat, typer.Option(envvar="THREADLINE_LOG_FORMAT", help="text: readable lines; json: one JSON object a line")] = "text",
    workers: Annotated[int, typer.Option(envvar="THREADLINE_WORKERS", min=1, help="Processes serving the port [default: 1]", show_default=False)] = 1,
) -> None:
    """Serve the API (migrating the database first)."""
    import uvicorn

    try:
        from threadline.api.limits import HeaderTimeout
        from threadline.app import create_app
        from threadline.ops.workers import worker_processes
    except ModuleNotFoundError as exc:  # an installation with a dependency missing
        typer.echo(f"Threadline cannot start: {exc.name} is not installed. Reinstall Threadline to get its dependencies.", err=True)
        raise typer.Exit(1) from None

    settings = settings_or_exit(config, host=host, port=port, database_url=database)
    if problem := port_taken(settings.host, settings.port):  # before the migrations and models, not after
        typer.echo(problem, err=True)
        raise typer.Exit(1)
    log_config = logs.configure(log_format, logs.configured_secrets(settings))
    if workers > 1:
        app = worker_processes(config=config, database=database, log_format=log_format)  # each builds its own app
    else:
        app = startup_failures_in_one_line(create_app(settings), settings.database_url)
        # What is loaded by now lives as long as the process: keep it out of the collector's
        # passes, and let young objects pile up longer between passes (requests make many).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(
        app,
        factory=workers > 1,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=log_config,
        # Open streams get the grace period too; what is left is stopped and recorded.
        timeout_graceful_shutdown=settings.server.shutdown_grace_s,
        timeout_keep_alive=settings.server.keep_alive_s,
        http=functools.partial(HeaderTimeout, header_timeout_s=settings.server.header_timeout_s),
        ws_max_size=settings.limits.max_body_bytes,  # a WebSocket message carries a request body
    )


@cli.command()
def migrate(database: DatabaseOption = None, config: ConfigOption = None) -> None:
    """Apply schema migrations and exit."""
    from threadline.store.database import Database
    from threadline.store.migrate import migrate as apply_migrations

    settings = settings_or_exit(config, database_url=database)

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            await apply_migrations(db)
        finally:
            await db.dispose()

    asyncio.run(run())
    typer.echo(f"Migrated {make_url(settings.database_url).render_as_string(hide_password=True)}")


@cli.command()
def doctor(
    database: DatabaseOption = None,
    config: ConfigOption = None,
    generate: Annotated[bool, typer.Option("--generate", help="Also ask each model for a tiny generation.")] = False,
) -> None:
    """Check the config, database, models, keys and tools, one line each; exit 1 on any failure."""
    from threadline.doctor import run

    raise typer.Exit(run(config, database, generate, typer.echo))


def settings_or_exit(config_file: str | None, **overrides: object) -> Settings:
    """The settings, or an exit with one line that says what is wrong with them."""
    try:
        settings = load_settings(config_file, **overrides)
        async_url(settings.database_url)  # a URL Threadline cannot use is refused before anything starts
        return settings
    except OSError as exc:
        message = f"Cannot read the config file {config_file}: {exc.strerror}."
    except tomllib.TOMLDecodeError as exc:
        message = f"The config file {config_file} is not valid TOML: {exc}."
    except ValidationError as exc:
        message = "\n".join(config_problems(exc, config_file))
    except (ValueError, ArgumentError):  # the message would show the URL, password and all
        message = "Invalid database URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE, without a driver name."
    typer.echo(message, err=True)
    raise typer.Exit(2)


def startup_failure(error: BaseException | None, database_url: str) -> str | None:
    """One line on why start-up failed and what to do, where the fix is the operator's (a
    model that cannot load, a database that cannot be opened); None for anything else."""
    if isinstance(error, ModelLoadError):
        return str(error)
    if isinstance(error, (OSError, DBAPIError)):
        reason = str(error.orig if isinstance(error, DBAPIError) else error).splitlines()[0]
        url = make_url(database_url)
        fix = "that its folder exists and is writable" if url.get_backend_name() == "sqlite" else "that its server runs and the database exists"
        return f"Cannot open the database {url.render_as_string(hide_password=True)} ({reason}): check --database, and {fix}."
    return None


def startup_failures_in_one_line(app, database_url: str):
    """`app`, whose start-up failure for a reason the operator can fix is logged as one line
    that names the fix rather than as a traceback."""

    async def asgi(scope, receive, send):
        if scope["type"] != "lifespan":
            return await app(scope, receive, send)

        async def report(message):
            # Starlette reports a failed start-up while handling the exception that failed it.
            line = startup_failure(sys.exc_info()[1], database_url)
            if message["type"] == "lifespan.startup.failed" and line:
                message = {**message, "message": line}
            await send(message)

        return await app(scope, receive, report)

    return asgi


def main() -> None:
    cli()
