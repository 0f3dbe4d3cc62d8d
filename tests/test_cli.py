"""The `threadline` command: migrate, serve, and flags read from the environment."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import httpx

from tests.servers import ThreadlineServer, write_config


def threadline(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "threadline", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=60)


def tables(path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrate_creates_the_schema(tmp_path):
    result = threadline("migrate", "--database", f"sqlite:///{tmp_path}/a.db")
    assert result.returncode == 0, result.stderr
    assert {"conversations", "conversation_items", "responses", "response_items", "alembic_version"} <= tables(tmp_path / "a.db")
    assert threadline("migrate", "--database", f"sqlite:///{tmp_path}/a.db").returncode == 0  # again: nothing to do


def test_migrate_reads_the_database_from_the_environment_and_relative_paths(tmp_path):
    result = threadline("migrate", env={"THREADLINE_DATABASE_URL": "sqlite:///relative.db"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "conversations" in tables(tmp_path / "relative.db")


def test_a_database_url_with_a_driver_name_is_refused(tmp_path):
    result = threadline("migrate", "--database", f"sqlite+pysqlite:///{tmp_path}/a.db")
    assert result.returncode != 0 and "without a driver name" in result.stderr


def test_serve_reads_its_flags_from_the_environment(tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"models": [{"id": "scripted", "provider": "scripted"}]})
    server = ThreadlineServer(f"sqlite:///{tmp_path}/env.db", config, env={"THREADLINE_HOST": "127.0.0.1"})
    server.start(flags_from_environment=True)
    try:
        assert [model["id"] for model in httpx.get(server.url + "/v1/models").json()["data"]] == ["scripted"]
        assert (tmp_path / "env.db").exists()
        assert httpx.get(server.url + "/openapi.json").json()["info"]["title"] == "Threadline"
    finally:
        server.stop()


def test_help_explains_the_commands():
    result = threadline("--help")
    assert result.returncode == 0 and "serve" in result.stdout and "migrate" in result.stdout


def test_an_unsupported_database_url_is_refused_without_its_password():
    result = threadline("migrate", "--database", "mysql://admin:hunter2-secret@db.internal/app")
    assert result.returncode != 0 and "sqlite:///" in result.stdout + result.stderr
    assert "hunter2-secret" not in result.stdout + result.stderr
