"""Shared fixtures: a real `threadline serve` process per database, and SDK clients for it.

Every test that takes `server` (or a client) runs once on SQLite and once on PostgreSQL.
THREADLINE_TEST_DATABASES=sqlite (or postgresql) narrows that; THREADLINE_TEST_POSTGRES_URL
names the PostgreSQL server (default: postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import json
import os
import uuid

import openai
import pytest

from tests.servers import ThreadlineServer, postgres_database, write_config
from tests.spec_check import SpecCheck, checked_async_client, checked_client, checked_http

DATABASES = os.environ.get("THREADLINE_TEST_DATABASES", "sqlite,postgresql").split(",")
KEYS = {"alpha": "sk-alpha-test-key", "beta": "sk-beta-test-key"}
# Short heartbeats and leases, so recovery and cross-process cancels show within a test.
FAST_WORKERS = {"heartbeat_s": 0.2, "lease_s": 1.5, "poll_s": 0.05}


@pytest.fixture(params=DATABASES)
def fresh_database_url(request, tmp_path):
    """A new, empty database of each kind, for one test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/threadline.db"
    else:
        with postgres_database(f"threadline_fresh_{uuid.uuid4().hex[:12]}") as url:
            yield url


@pytest.fixture(scope="session", params=DATABASES)
def database_url(request, tmp_path_factory):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/threadline.db"
    else:
        with postgres_database(f"threadline_test_{uuid.uuid4().hex[:12]}") as url:
            yield url


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
    start = server.model_requests_path.stat().st_size

    def received() -> list[dict]:
        with open(server.model_requests_path, "rb") as record:
            record.seek(start)
            return [json.loads(line) for line in record if line.strip()]

    return received


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
