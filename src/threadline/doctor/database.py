"""The database: a URL Threadline can use, reachable, and where its schema stands among the migrations.

Nothing is created: a SQLite file that does not exist yet is only checked to be creatable.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from threadline.doctor.checks import Check, fail, ok, warn
from threadline.store.database import async_url
from threadline.store.migrate import _alembic_config

CONNECT_TIMEOUT_S = 10.0


async def database_checks(database_url: str) -> list[Check]:
    """Checks of the database URL, its reachability and its migration state."""
    try:
        driver_url = async_url(database_url)
    except (ValueError, ArgumentError):
        return [fail("database", "not a URL Threadline can use: give sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE, without a driver name")]
    url = make_url(database_url)
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return [warn("database", "SQLite in memory: everything is lost when the server stops; give a file")]
        path = Path(url.database)
        if not path.exists():
            return [sqlite_to_be_created(shown, path)]
    try:
        state = await asyncio.wait_for(read_state(driver_url), CONNECT_TIMEOUT_S)
    except (DBAPIError, OSError) as exc:
        reason = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0]
        return [fail("database", f"cannot open {shown} ({reason}): {fix_for(url.get_backend_name())}")]
    except TimeoutError:
        return [fail("database", f"{shown} did not answer within {CONNECT_TIMEOUT_S:g} s: {fix_for(url.get_backend_name())}")]
    checks = [ok("database", f"{shown} is reachable ({state.version})"), migration_state(state.revision, state.tables)]
    if state.pgvector is not None:
        checks.append(vector_ranking(state))
    return checks


def sqlite_to_be_created(shown: str, path: Path) -> Check:
    folder = next(parent for parent in path.absolute().parents if parent.exists())
    if not folder.is_dir():
        return fail("database", f"{shown} cannot be created: {folder} is a file, not a folder")
    if os.access(folder, os.W_OK):
        return ok("database", f"{shown} does not exist yet: `threadline serve` or `threadline migrate` creates it")
    return fail("database", f"{shown} does not exist and cannot be created: {folder} is not writable")


def fix_for(backend: str) -> str:
    if backend == "sqlite":
        return "check --database, and that the file is a SQLite database Threadline may read and write"
    return "check --database, and that the server runs, accepts this user and has this database"


@dataclass
class State:
    version: str  # the server's
    revision: str | None  # the schema's, None without one
    tables: list[str]
    pgvector: bool | None = None  # PostgreSQL: the chunks table has its pgvector column, or (before the schema) the extension can be had
    migrated_chunks: bool = False


async def read_state(driver_url: str) -> State:
    is_sqlite = driver_url.startswith("sqlite")
    engine = create_async_engine(driver_url, connect_args={} if is_sqlite else {"timeout": CONNECT_TIMEOUT_S})
    try:
        async with engine.connect() as connection:
            version_query = "SELECT 'SQLite ' || sqlite_version()" if is_sqlite else "SHOW server_version"
            version = (await connection.execute(text(version_query))).scalar_one()
            version = version if is_sqlite else f"PostgreSQL {version}"
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            state = State(version, None, tables)
            if "alembic_version" in tables:
                state.revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
            if not is_sqlite:
                state.migrated_chunks = "chunks" in tables
                state.pgvector = (await connection.execute(text(PGVECTOR_COLUMN if state.migrated_chunks else PGVECTOR_AVAILABLE))).first() is not None
            return state
    finally:
        await engine.dispose()


# As index.py and migration 0006 decide it: the column once the schema has chunks, else whether the extension can be had.
PGVECTOR_COLUMN = (
    "SELECT 1 FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'chunks' AND column_name = 'embedding_vector'"
)
PGVECTOR_AVAILABLE = "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"


def vector_ranking(state: State) -> Check:
    """Where file search will compare embeddings on PostgreSQL: in the database (pgvector) or in Threadline."""
    if state.pgvector:
        if state.migrated_chunks:
            return ok("vectors", "pgvector compares file search's embeddings in the database")
        return ok("vectors", "pgvector is available: the first start creates the extension, and the database compares embeddings")
    if state.migrated_chunks:
        return warn("vectors", "no pgvector: file search compares embeddings in Threadline (exact, slower on large stores); a schema made without it keeps doing so")
    return warn("vectors", "pgvector is not installed in this PostgreSQL: install it before the first start, or file search compares embeddings in Threadline")


def migration_state(revision: str | None, tables: list[str]) -> Check:
    """Where the schema stands: new, at the newest revision, behind it, or ahead of this Threadline."""
    scripts = ScriptDirectory.from_config(_alembic_config())
    head = scripts.get_current_head()
    if revision is None:
        if tables:
            return fail("migrations", f"the database has tables ({', '.join(sorted(tables)[:5])}) but no Threadline schema: give Threadline a database of its own")
        return ok("migrations", f"the database is empty: `threadline serve` or `threadline migrate` creates the schema (revision {head})")
    if revision == head:
        return ok("migrations", f"the schema is at the newest revision, {head}")
    known = {script.revision for script in scripts.walk_revisions()}
    if revision in known:
        behind = sum(1 for _ in scripts.iterate_revisions(head, revision))  # the revisions after `revision`
        return warn("migrations", f"the schema is at revision {revision}, {behind} behind {head}: `threadline migrate` (or the next start) upgrades it")
    return fail("migrations", f"the schema is at revision {revision}, which this Threadline does not know: a newer Threadline migrated it; upgrade Threadline")
