"""Running real Threadline processes (and their PostgreSQL databases) for the tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import tomli_w
import uvicorn

POSTGRES_URL = os.environ.get("THREADLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


class ThreadServer:
    """An ASGI app served by uvicorn from a thread of the test's own process, on a free port."""

    def __init__(self, app, name: str) -> None:
        self.app, self.name = app, name

    def start(self) -> int:
        """Serve until `stop`; the port."""
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        config = uvicorn.Config(self.app, log_level="critical", lifespan="off", timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)  # its connections are at hand, for tests that break them
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._socket]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.01)
        return self._socket.getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self._socket.close()


def run_coroutine(coroutine):
    """asyncio.run, also where Playwright's sync API holds this thread's event loop (a
    browser test): then in a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(tomli_w.dumps(config))
    return path


@contextlib.contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test session, dropped afterwards."""

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    run_coroutine(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        run_coroutine(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def new_database(kind: str, folder: Path, name: str) -> Iterator[str]:
    """The URL of a new, empty database of `kind` ("sqlite", a file in `folder`, or "postgresql",
    named after `name` and dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/threadline.db"
    else:
        with postgres_database(f"threadline_{name}_{uuid.uuid4().hex[:12]}") as url:
            yield url


class ThreadlineServer:
    """`threadline serve` in a child process, on a free port, ready when /health answers 200."""

    def __init__(self, database_url: str, config: Path | None = None, *, env: dict | None = None, flags: tuple[str, ...] = ()) -> None:
        self.database_url = database_url
        self.config = config
        self.flags = flags  # more of `serve`'s flags, e.g. ("--workers", "2")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self, flags_from_environment: bool = False) -> ThreadlineServer:
        settings = {"port": str(self.port), "database": self.database_url, "config": str(self.config) if self.config else None}
        command = [sys.executable, "-m", "threadline", "serve"]
        if flags_from_environment:
            names = {"port": "THREADLINE_PORT", "database": "THREADLINE_DATABASE_URL", "config": "THREADLINE_CONFIG"}
            self.env.update({names[flag]: value for flag, value in settings.items() if value})
        else:
            command += [part for flag, value in settings.items() if value for part in (f"--{flag}", value)]
        command += self.flags
        self.log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"threadline-{self.port}.log", "w")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"threadline exited with {self.process.returncode}; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"threadline did not become healthy; see {self.log.name}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        self.process.kill()
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self.log.closed:
            self.log.close()

    def __enter__(self) -> ThreadlineServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
