"""Shared fixtures: a real `threadline serve` process per database, and SDK clients for it.

Every test that takes `server` (or a client) runs once on SQLite and once on PostgreSQL.
THREADLINE_TEST_DATABASES=sqlite (or postgresql) narrows that; THREADLINE_TEST_POSTGRES_URL
names the PostgreSQL server (default: postgresql://postgres@127.0.0.1:5432/test).

A module whose tests need a server configured otherwise (models on the mock upstream, small
limits, ...) overrides `server` with one it starts through `start_server`, on a database of
its own; `client`, `http` and the others then talk to that one:

    @pytest.fixture(scope="module")
    def server(start_server, upstream):
        return start_server({"models": upstream_models(upstream.base_url, {"": {}})})
"""

from __future__ import annotations

import contextlib
import os

import httpx
import openai
import pytest

from tests.browser import chromium, new_page
from tests.helpers import PROVIDERS, database_rows, recorded_from_now
from tests.mock_upstream import MockUpstream
from tests.servers import ThreadlineServer, new_database, write_config
from tests.spec_check import SpecCheck, checked_async_client, checked_client, checked_http

DATABASES = os.environ.get("THREADLINE_TEST_DATABASES", "sqlite,postgresql").split(",")
# The tables a request can write to.
STORED_TABLES = ("conversations", "conversation_items", "responses", "response_items")
KEYS = {"alpha": "sk-alpha-test-key", "beta": "sk-beta-test-key"}
# Short heartbeats and leases, so recovery and cross-process cancels show within a test.
FAST_WORKERS = {"heartbeat_s": 0.2, "lease_s": 1.5, "poll_s": 0.05}


@pytest.fixture(params=DATABASES)
def fresh_database_url(request, tmp_path):
    """A new, empty database of each kind, for one test."""
    with new_database(request.param, tmp_path, "fresh") as url:
        yield url


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request, tmp_path_factory):
    """The session's database of each kind, which the session's `server` uses."""
    with new_database(request.param, tmp_path_factory.mktemp(request.param), "test") as url:
        yield url


@pytest.fixture(scope="module")
def own_database(database_url, request, tmp_path_factory):
    """A new database of `database_url`'s kind, for this module's servers alone.

    Processes on one database share its background queue and judge each other's heartbeats,
    so a module's servers and the session's `server` (other models, other worker timings)
    must not meet."""
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    with new_database(kind, tmp_path_factory.mktemp(name), name) as url:
        yield url


@pytest.fixture(scope="module")
def start_server(own_database, tmp_path_factory):
    """Starts Threadline on this module's own database: `start_server(config)` with a config (a
    dict, as the TOML file holds it), `start_server()` with none. Each stops when the module ends."""
    with contextlib.ExitStack() as started:

        def start(config: dict | None = None) -> ThreadlineServer:
            path = None if config is None else write_config(tmp_path_factory.mktemp("config") / "threadline.toml", config)
            return started.enter_context(ThreadlineServer(own_database, path))

        yield start


@pytest.fixture(scope="module")
def embedded(start_server):
    """A server started with no config at all: no keys, no models, the embedded default model."""
    return start_server()


@pytest.fixture
def sdk(embedded, spec_check) -> openai.OpenAI:
    """The SDK on the embedded model's server."""
    return checked_client(spec_check, embedded.url + "/v1", "unused")


@pytest.fixture(scope="module")
def upstream():
    """A mock OpenAI-compatible upstream, a real HTTP server (tests/mock_upstream.py), for this module."""
    with MockUpstream() as running:
        yield running


@pytest.fixture
def mock(upstream):
    """The module's upstream with nothing scripted or recorded. A module's server (a fixture of
    a wider scope) starts before it: what the server asked at start-up is not this test's."""
    upstream.reset()
    return upstream


@pytest.fixture(params=list(PROVIDERS))
def model(request) -> str:
    """Each upstream provider in turn, by its model id on a module's server: "chat" speaks Chat
    Completions to the upstream, "resp" the Responses API."""
    return request.param


@pytest.fixture(scope="session")
def server(database_url, tmp_path_factory):
    """Threadline with two projects, alpha and beta, each with its own API key."""
    folder = tmp_path_factory.mktemp("config")
    record = folder / "model_requests.jsonl"
    record.touch()
    scripted = {"provider": "scripted", "options": {"record_to": str(record)}}
    config = write_config(
        folder / "threadline.toml",
        {
            "auth": {"api_keys": [{"key": key, "project": project} for project, key in KEYS.items()]},
            "models": [
                {"id": "scripted", **scripted},
                {"id": "scripted-small", "context_window": 60, **scripted},
            ],
            "workers": FAST_WORKERS,
        },
    )
    with ThreadlineServer(database_url, config) as running:
        running.model_requests_path = record
        yield running


@pytest.fixture
def model_requests(server):
    """What the scripted model received during this test, one dict per request."""
    return recorded_from_now(server.model_requests_path)


@pytest.fixture
def row_counts(server):
    """Counts the rows of the tables a request can write to (or of `tables`), read straight from
    the server's database: for showing that a refused request stored nothing."""

    def count(tables: tuple[str, ...] = STORED_TABLES) -> dict[str, int]:
        return {table: database_rows(server.database_url, f"SELECT count(*) FROM {table}")[0][0] for table in tables}

    return count


@pytest.fixture
def spec_check():
    """Checks every Response and event the test's clients receive against both specs; a
    failure fails the test, even one the test caught."""
    check = SpecCheck()
    yield check
    check.assert_clean()


@pytest.fixture
def client(server, spec_check) -> openai.OpenAI:
    return checked_client(spec_check, server.url + "/v1", KEYS["alpha"])


@pytest.fixture
def beta_client(server, spec_check) -> openai.OpenAI:
    return checked_client(spec_check, server.url + "/v1", KEYS["beta"])


@pytest.fixture
def async_client(server, spec_check) -> openai.AsyncOpenAI:
    return checked_async_client(spec_check, server.url + "/v1", KEYS["alpha"])


@pytest.fixture
def http(server, spec_check):
    """Raw HTTP as project alpha, for input the SDK will not send."""
    with checked_http(spec_check, server.url, headers={"Authorization": f"Bearer {KEYS['alpha']}"}, timeout=30) as session:
        yield session


@pytest.fixture
def quick_http(server):
    """Raw HTTP that gives up after 20 s, so a stream that never ends fails the test."""
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEYS['alpha']}"}, timeout=20) as session:
        yield session


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (Debian's, driven by Playwright) for this module's console tests."""
    with chromium() as running:
        yield running


@pytest.fixture
def page(browser, server):
    """A fresh browser page, signed in to nothing, on the module's `server`."""
    with new_page(browser, server.url) as opened:
        yield opened
