"""The database: async engine for SQLite or PostgreSQL, and transactions that write safely."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Executable, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from threadline.ops.metrics import watch_pool, write_batch

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[Any]]
# Rows to insert: (an INSERT statement, its rows).
Inserts = Sequence[tuple[Executable, list[dict]]]


class Waiting(NamedTuple):
    """A write waiting for the next shared transaction, and where its outcome goes."""

    work: Work | None
    inserts: Inserts
    future: asyncio.Future

# The most writes one shared transaction takes; more wait for the next.
MAX_BATCH = 64

ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def async_url(database_url: str) -> str:
    """`sqlite:///x.db` or `postgresql://...` with Threadline's async driver filled in."""
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend not in ASYNC_DRIVERS:
        shown = url.render_as_string(hide_password=True)  # an error is shown and logged: never the password
        raise ValueError(f"unsupported database {shown!r}: use sqlite:/// or postgresql://")
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
        watch_pool(self.engine)
        # SQLite takes one writer at a time; queueing writers here instead of inside
        # SQLite's busy handler keeps waits short and fair.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._waiting: list[Waiting] = []
        self._committer: asyncio.Task | None = None

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

    async def write_together(self, work: Callable[[AsyncConnection], Awaitable[T]] | None, inserts: Inserts = ()) -> T | None:
        """Run `inserts`, then `work`, in a transaction shared with the other writes waiting
        meanwhile: one commit for all, and one statement for all the rows each INSERT gets.

        Under load the writes of many requests then cost one BEGIN and one COMMIT (and, on
        SQLite, one turn of the write lock). A write that fails takes the others' writes
        with it, so they are run again, each in a transaction of its own.
        """
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(Waiting(work, inserts, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        # Shielded: a caller cancelled now does not undo a write already under way.
        return await asyncio.shield(future)

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            write_batch(len(batch))
            try:
                async with self.write() as connection:
                    results = await _run(connection, batch)
            except Exception as error:  # noqa: BLE001 - each write's own outcome is reported below
                if len(batch) == 1:
                    _settle(batch[0].future, error=error)
                else:  # one write failed and took the others' with it: each on its own
                    for waiting in batch:
                        await self._write_alone(waiting)
                continue
            except BaseException as error:  # cancelled: nobody may wait forever
                abandoned, self._waiting = batch + self._waiting, []
                for waiting in abandoned:
                    _settle(waiting.future, error=error)
                raise
            for waiting, result in zip(batch, results):
                _settle(waiting.future, result=result)

    async def _write_alone(self, waiting: Waiting) -> None:
        try:
            async with self.write() as connection:
                (result,) = await _run(connection, [waiting])
        except Exception as error:  # noqa: BLE001 - raised in the caller's task
            _settle(waiting.future, error=error)
        else:
            _settle(waiting.future, result=result)

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


async def _run(connection: AsyncConnection, batch: list[Waiting]) -> list[Any]:
    """The writes' inserts, each statement once with every write's rows (in the order the
    statements first appear), then each write's work; the works' results."""
    rows: dict[Executable, list[dict]] = {}
    for waiting in batch:
        for statement, statement_rows in waiting.inserts:
            rows.setdefault(statement, []).extend(statement_rows)
    for statement, statement_rows in rows.items():
        if statement_rows:
            await connection.execute(statement, statement_rows)
    return [await waiting.work(connection) if waiting.work is not None else None for waiting in batch]


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
