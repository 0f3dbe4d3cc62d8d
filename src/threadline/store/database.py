"""The database: async engine for SQLite or PostgreSQL, and transactions that write safely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(database_url: str) -> str:
    """`sqlite:///x.db` or `postgresql://...` with Threadline's async driver filled in."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {database_url!r}: use sqlite:/// or postgresql://")
    if url.drivername != backend:
        raise ValueError(f"give the database URL without a driver name, as {backend}://...")
    return url.set(drivername=ASYNC_DRIVERS[backend]).render_as_string(hide_password=False)


class Database:
    """An engine plus the one rule that matters for writes on each backend."""

    def __init__(self, database_url: str) -> None:
        url = make_url(async_url(database_url))
        self.is_sqlite = url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: AsyncEngine = create_async_engine(url, connect_args={"timeout": 30})
            _configure_sqlite(self.engine)
        else:
            self.engine = create_async_engine(url, pool_size=10, max_overflow=20)
        # SQLite takes one writer at a time; queueing writers here instead of inside
        # SQLite's busy handler keeps waits short and fair.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction that commits on success and rolls back on any error."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock:
            connection = await self.engine.connect()
            try:
                connection = await connection.execution_options(threadline_write=True)
                async with connection.begin():
                    yield connection
            finally:
                await connection.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event below emit BEGIN, so writes can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY when
        # another process wrote in between; IMMEDIATE takes the write lock at BEGIN.
        write = connection.get_execution_options().get("threadline_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
