"""`threadline doctor`: each check passing and failing, as an operator sees it (one line per
check, exit status 1 on any failure), against real databases and real HTTP upstreams."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from threadline.store.migrate import _alembic_config

from tests.embeddings_server import EmbeddingsServer
from tests.mock_upstream import MockUpstream, Refused, error, finish, reply, text
from tests.search_server import SearchServer, hit
from tests.servers import ThreadServer, write_config
from tests.test_cli import threadline

SCRIPTED = {"id": "scripted", "provider": "scripted"}
MIGRATIONS = ScriptDirectory.from_config(_alembic_config())
HEAD = MIGRATIONS.get_current_head()
TWO_BEFORE_HEAD = MIGRATIONS.get_revision(MIGRATIONS.get_revision(HEAD).down_revision).down_revision


@dataclass
class Report:
    returncode: int
    lines: list[str]

    def about(self, name: str) -> list[str]:
        """The lines of the checks called `name`, each "STATUS detail"."""
        return [f"{line[:5].strip()} {line[5:].partition(': ')[2]}" for line in self.lines if line[5:].partition(": ")[0] == name]

    def one(self, name: str) -> str:
        (line,) = self.about(name)
        return line


def doctor(tmp_path, config: dict | None = None, *flags: str, database: str | None = None, env: dict | None = None) -> Report:
    """`threadline doctor` on a deployment of this config (a scripted model unless it names models)."""
    args = ["doctor", "--database", database or f"sqlite:///{tmp_path}/threadline.db", *flags]
    if config is not None:
        args += ["--config", str(write_config(tmp_path / "threadline.toml", {"models": [SCRIPTED], **config}))]
    result = threadline(*args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert all(line[:5] in ("ok   ", "warn ", "FAIL ", "skip ") for line in lines), result.stdout
    assert result.returncode == (1 if any(line.startswith("FAIL") for line in lines) else 0)
    return Report(result.returncode, lines)


# --- A healthy deployment ---------------------------------------------------------------------


def test_a_healthy_deployment_passes_every_check(tmp_path):
    keys = [{"key": "sk-alpha-0123456789abcdef", "project": "alpha"}]
    report = doctor(tmp_path, {"auth": {"api_keys": keys}}, env={"THREADLINE_ENCRYPTION_KEYS": "a2V5"})
    assert report.returncode == 0
    assert [line.split(":")[0] for line in report.lines] == [
        "ok   config", "ok   database", "ok   API keys", "ok   encryption keys", "ok   model scripted", "ok   MCP", "ok   web search", "ok   embeddings",
    ]
    assert "sk-alpha-0123456789abcdef" not in "\n".join(report.lines)
    assert not (tmp_path / "threadline.db").exists() and not (tmp_path / "threadline.key").exists()  # the doctor changes nothing


def test_help_names_the_doctor_and_its_flags():
    result = threadline("doctor", "--help")
    assert result.returncode == 0
    assert all(flag in result.stdout for flag in ("--config", "--database", "--generate"))


# --- The config file ---------------------------------------------------------------------------


def test_a_valid_config_file_is_named(tmp_path):
    assert doctor(tmp_path, {}).one("config") == f"ok {tmp_path / 'threadline.toml'} is valid: 1 model, 0 prompt templates"


def test_no_config_file_means_the_defaults(tmp_path):
    assert doctor(tmp_path).one("config").startswith("ok no config file: the defaults")


def test_unknown_keys_fail_naming_the_nearest_valid_key_and_stop_the_checks(tmp_path):
    report = doctor(tmp_path, {"defualt_model": "scripted", "tools": {"mcp": {"allowed_host": ["10.0.0.1"]}}})
    config = tmp_path / "threadline.toml"
    assert sorted(report.about("config")) == [
        f"FAIL {config}: unknown key 'allowed_host' in [tools.mcp]; did you mean 'allowed_hosts'?",
        f"FAIL {config}: unknown key 'defualt_model' at the top level; did you mean 'default_model'?",
    ]
    assert report.lines[-1] == "skip the rest: the config must be right first"


def test_a_config_that_is_not_toml_fails(tmp_path):
    config = tmp_path / "threadline.toml"
    config.write_text("[server\n")
    report = doctor(tmp_path, None, "--config", str(config))
    assert report.one("config").startswith(f"FAIL {config} is not valid TOML: ")


def test_a_missing_config_file_fails(tmp_path):
    report = doctor(tmp_path, None, "--config", str(tmp_path / "nowhere.toml"))
    assert report.one("config") == f"FAIL cannot read {tmp_path / 'nowhere.toml'}: No such file or directory"


# --- The database and its migrations ---------------------------------------------------------


def test_a_new_database_is_reported_empty_and_a_migrated_one_at_the_newest_revision(tmp_path, fresh_database_url):
    report = doctor(tmp_path, {}, database=fresh_database_url)
    if fresh_database_url.startswith("sqlite"):
        assert report.one("database") == f"ok {fresh_database_url} does not exist yet: `threadline serve` or `threadline migrate` creates it"
    else:
        assert report.one("migrations") == f"ok the database is empty: `threadline serve` or `threadline migrate` creates the schema (revision {HEAD})"
    assert threadline("migrate", "--database", fresh_database_url).returncode == 0
    report = doctor(tmp_path, {}, database=fresh_database_url)
    assert report.one("database").startswith(f"ok {fresh_database_url} is reachable (")
    assert report.one("migrations") == f"ok the schema is at the newest revision, {HEAD}"


@pytest.mark.parametrize(
    "revision, line",
    [
        (TWO_BEFORE_HEAD, f"warn the schema is at revision {TWO_BEFORE_HEAD}, 2 behind {HEAD}: `threadline migrate` (or the next start) upgrades it"),
        ("0099", "FAIL the schema is at revision 0099, which this Threadline does not know: a newer Threadline migrated it; upgrade Threadline"),
    ],
)
def test_a_schema_behind_or_ahead_of_this_threadline_is_told(tmp_path, fresh_database_url, revision, line):
    assert threadline("migrate", "--database", fresh_database_url).returncode == 0
    execute(fresh_database_url, f"UPDATE alembic_version SET version_num = '{revision}'")
    assert doctor(tmp_path, {}, database=fresh_database_url).one("migrations") == line


def test_a_database_of_another_application_fails(tmp_path, fresh_database_url):
    execute(fresh_database_url, "CREATE TABLE invoices (id INTEGER)")
    line = "FAIL the database has tables (invoices) but no Threadline schema: give Threadline a database of its own"
    assert doctor(tmp_path, {}, database=fresh_database_url).one("migrations") == line


def test_an_unreachable_postgresql_fails_without_showing_its_password(tmp_path):
    with Refused() as refused:
        port = refused.base_url.split(":")[2].split("/")[0]
        report = doctor(tmp_path, {}, database=f"postgresql://threadline:secret-pw@127.0.0.1:{port}/threadline")
    assert report.one("database").startswith(f"FAIL cannot open postgresql://threadline:***@127.0.0.1:{port}/threadline (")
    assert report.one("database").endswith("check --database, and that the server runs, accepts this user and has this database")
    assert "secret-pw" not in "\n".join(report.lines)


def test_a_file_that_is_not_a_sqlite_database_fails(tmp_path):
    (tmp_path / "notes.db").write_text("not a database")
    report = doctor(tmp_path, {}, database=f"sqlite:///{tmp_path}/notes.db")
    assert report.one("database") == (
        f"FAIL cannot open sqlite:///{tmp_path}/notes.db (file is not a database): "
        "check --database, and that the file is a SQLite database Threadline may read and write"
    )


def test_a_sqlite_file_that_cannot_be_created_fails(tmp_path):
    (tmp_path / "a-file").write_text("")
    report = doctor(tmp_path, {}, database=f"sqlite:///{tmp_path}/a-file/threadline.db")
    assert report.one("database") == f"FAIL sqlite:///{tmp_path}/a-file/threadline.db cannot be created: {tmp_path}/a-file is a file, not a folder"


def test_an_unusable_database_url_fails(tmp_path):
    report = doctor(tmp_path, {}, database="mysql://db.internal/app")
    assert report.one("database") == "FAIL not a URL Threadline can use: give sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE, without a driver name"


def test_postgresql_says_whether_pgvector_compares_the_embeddings(tmp_path, fresh_database_url):
    if fresh_database_url.startswith("sqlite"):
        assert doctor(tmp_path, {}, database=fresh_database_url).about("vectors") == []  # sqlite-vec comes with Threadline
        return
    available = fetch(fresh_database_url, "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'") is not None
    before = doctor(tmp_path, {}, database=fresh_database_url).one("vectors")
    assert threadline("migrate", "--database", fresh_database_url).returncode == 0
    after = doctor(tmp_path, {}, database=fresh_database_url).one("vectors")
    if available:  # the PostgreSQL with pgvector that tests/pgvector/server.py runs
        assert before == "ok pgvector is available: the first start creates the extension, and the database compares embeddings"
        assert after == "ok pgvector compares file search's embeddings in the database"
    else:
        assert before == "warn pgvector is not installed in this PostgreSQL: install it before the first start, or file search compares embeddings in Threadline"
        assert after == "warn no pgvector: file search compares embeddings in Threadline (exact, slower on large stores); a schema made without it keeps doing so"


def fetch(database_url: str, query: str):
    async def run():
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return asyncio.run(run())


def execute(database_url: str, statement: str) -> None:
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
            connection.execute(statement)
        return

    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


# --- Models -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream():
    with MockUpstream() as mock:
        yield mock


@pytest.fixture
def mock(upstream):
    upstream.reset(model="mock-model", max_model_len=32768)
    return upstream


@pytest.mark.parametrize("provider", ["openai-chat", "openai-responses"])
def test_an_upstream_model_that_is_listed_passes_with_its_context_window(tmp_path, mock, provider):
    model = {"id": "mock-model", "provider": provider, "base_url": mock.base_url}
    assert doctor(tmp_path, {"models": [model]}).about("model mock-model") == [
        f"ok the upstream {mock.base_url} is reachable",
        "ok the upstream lists 'mock-model'",
        "ok context window 32768 tokens, as the upstream reports",
    ]


def test_a_model_the_upstream_does_not_list_fails_naming_the_nearest(tmp_path, mock):
    model = {"id": "fast", "provider": "openai-chat", "base_url": mock.base_url, "upstream_model": "mock-modle"}
    lines = doctor(tmp_path, {"models": [model]}).about("model fast")
    assert "FAIL the upstream does not list 'mock-modle'; nearest: mock-model: check upstream_model (or id)" in lines


def test_a_context_window_the_upstream_does_not_report_is_the_configured_one_or_a_warning(tmp_path, mock):
    mock.reset(model="mock-model", max_model_len=None)
    models = [
        {"id": "mock-model", "provider": "openai-chat", "base_url": mock.base_url, "context_window": 4096},
        {"id": "other", "provider": "openai-chat", "base_url": mock.base_url, "upstream_model": "mock-model"},
    ]
    report = doctor(tmp_path, {"models": models})
    assert report.about("model mock-model")[-1] == "ok context window 4096 tokens, as configured"
    assert report.about("model other")[-1] == "warn context window unknown (the upstream does not report one): set context_window, so that truncation and token limits know it"


def test_an_unreachable_upstream_fails(tmp_path):
    with Refused() as refused:
        report = doctor(tmp_path, {"models": [{"id": "gone", "provider": "openai-chat", "base_url": refused.base_url}]})
    (line,) = report.about("model gone")
    assert line.startswith(f"FAIL the upstream {refused.base_url} cannot be reached (") and line.endswith("): check base_url")


def test_an_upstream_that_refuses_the_key_fails(tmp_path):
    refusing = Starlette(routes=[Route("/v1/models", lambda _: JSONResponse({"error": {"message": "bad key"}}, status_code=401))])
    served = ThreadServer(refusing, "a refusing upstream")
    base_url = f"http://127.0.0.1:{served.start()}/v1"
    try:
        report = doctor(tmp_path, {"models": [{"id": "locked", "provider": "openai-chat", "base_url": base_url, "api_key": "sk-wrong-key-123"}]})
    finally:
        served.stop()
    assert report.about("model locked") == [f"FAIL the upstream {base_url} refused the key (401): check api_key"]
    assert "sk-wrong-key-123" not in "\n".join(report.lines)


@pytest.mark.parametrize("provider", ["openai-chat", "openai-responses"])
def test_generate_asks_each_model_for_a_tiny_answer(tmp_path, mock, provider):
    mock.script(reply(text("OK"), finish("stop")))
    model = {"id": "mock-model", "provider": provider, "base_url": mock.base_url}
    report = doctor(tmp_path, {"models": [model]}, "--generate")
    assert report.about("model mock-model")[-1].startswith("ok a test generation answered 'OK' in ")
    assert mock.requests[0]["model"] == "mock-model"


def test_a_failing_generation_fails(tmp_path, mock):
    mock.script(error(500, "the GPU is on fire"))
    model = {"id": "mock-model", "provider": "openai-chat", "base_url": mock.base_url, "max_retries": 0}
    report = doctor(tmp_path, {"models": [model]}, "--generate")
    assert report.about("model mock-model")[-1].startswith("FAIL a test generation failed: ")
    assert "the GPU is on fire" in report.about("model mock-model")[-1]


def test_without_generate_no_model_is_asked_to_generate(tmp_path, mock):
    doctor(tmp_path, {"models": [{"id": "mock-model", "provider": "openai-chat", "base_url": mock.base_url}]})
    assert mock.requests == []


def test_an_embedded_model_file_is_checked_with_its_context_window(tmp_path):
    report = doctor(tmp_path, {"models": [{"id": "local", "provider": "llama-cpp"}]})
    file_line, window_line = report.about("model local")
    assert file_line.startswith("ok GGUF file ") and file_line.endswith(".gguf (98 MB)")
    assert window_line == "ok context window 8192 tokens (trained for 8192; set context_window for another)"


def test_a_missing_or_broken_model_file_fails(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"GGUF")
    models = [
        {"id": "missing", "provider": "llama-cpp", "model_path": str(tmp_path / "missing.gguf")},
        {"id": "broken", "provider": "llama-cpp", "model_path": str(tmp_path / "broken.gguf")},
    ]
    report = doctor(tmp_path, {"models": models}, "--generate")
    assert report.about("model missing") == [f"FAIL The model file {tmp_path / 'missing.gguf'} does not exist: set model_path to a GGUF file."]
    assert report.about("model broken")[-1] == f"FAIL llama.cpp cannot read {tmp_path / 'broken.gguf'}: set model_path to a complete GGUF file of a model llama.cpp supports"


@pytest.mark.slow
def test_generate_runs_the_embedded_model(tmp_path):
    report = doctor(tmp_path, {"models": [{"id": "local", "provider": "llama-cpp"}]}, "--generate")
    assert report.about("model local")[-1].startswith("ok a test generation answered ")


# --- Keys and projects ---------------------------------------------------------------------------


def test_api_keys_are_counted_by_project_and_never_shown(tmp_path):
    keys = [{"key": "sk-alpha-0123456789abcdef", "project": "alpha"}, {"key": "sk-beta-0123456789abcdef", "project": "beta"}]
    report = doctor(tmp_path, {"auth": {"api_keys": keys}})
    assert report.one("API keys") == "ok 2 keys in 2 projects: alpha, beta"
    assert "0123456789abcdef" not in "\n".join(report.lines)


def test_no_api_keys_is_a_warning(tmp_path):
    assert doctor(tmp_path, {}).one("API keys").startswith("warn none: every request is accepted, in one open project")


def test_one_key_in_two_projects_fails_and_short_keys_are_a_warning(tmp_path):
    shared = [{"key": "sk-shared-0123456789abcdef", "project": "alpha"}, {"key": "sk-shared-0123456789abcdef", "project": "beta"}]
    assert doctor(tmp_path, {"auth": {"api_keys": shared}}).one("API keys") == "FAIL one key is given to several projects (alpha and beta): a key belongs to one project"
    short = [{"key": "sk-1", "project": "alpha"}]
    assert doctor(tmp_path, {"auth": {"api_keys": short}}).one("API keys") == "warn 1 key in 1 project: alpha; keys of alpha are shorter than 16 characters: use long random keys"


def test_encryption_keys_come_from_the_environment_the_config_or_a_key_file(tmp_path):
    assert doctor(tmp_path, {}, env={"THREADLINE_ENCRYPTION_KEYS": "a2V5,b2xk"}).one("encryption keys") == "ok 2 keys from THREADLINE_ENCRYPTION_KEYS"
    assert doctor(tmp_path, {"security": {"encryption_keys": ["a2V5"]}}).one("encryption keys") == "ok 1 key from [security] encryption_keys"
    assert doctor(tmp_path, {}).one("encryption keys") == f"ok none yet: the first start generates one in {tmp_path / 'threadline.key'}"
    (tmp_path / "threadline.key").write_text("a2V5\n")
    assert doctor(tmp_path, {}).one("encryption keys") == f"ok from the key file {tmp_path / 'threadline.key'}"


def test_an_empty_key_file_fails_and_a_shared_database_without_a_key_warns(tmp_path):
    (tmp_path / "threadline.key").write_text("")
    line = f"FAIL the key file {tmp_path / 'threadline.key'} is empty: delete it to have a key generated, or put a key in it"
    assert doctor(tmp_path, {}).one("encryption keys") == line
    report = doctor(tmp_path, {"security": {"key_file": str(tmp_path / "new.key")}}, database="postgresql://threadline@127.0.0.1:1/threadline")
    assert report.one("encryption keys").startswith(f"warn none yet: the first start generates {tmp_path / 'new.key'}; every process on this database needs the same key")


# --- MCP and search providers ----------------------------------------------------------------


def test_mcp_allowed_hosts_that_do_not_resolve_are_a_warning(tmp_path):
    assert doctor(tmp_path, {}).one("MCP") == "ok servers on public hosts only (allowed_hosts is empty); a call may take 60 s"
    allowed = {"tools": {"mcp": {"allowed_hosts": ["localhost", "10.0.0.0/8"]}}}
    assert doctor(tmp_path, allowed).one("MCP") == "ok servers on public hosts and on localhost, 10.0.0.0/8; a call may take 60 s"
    unresolved = {"tools": {"mcp": {"allowed_hosts": ["tools.invalid", "localhost"]}}}
    assert doctor(tmp_path, unresolved).one("MCP") == "warn allowed_hosts names hosts that do not resolve here: tools.invalid (allowed: tools.invalid, localhost)"


def test_a_web_search_provider_is_asked_one_search(tmp_path):
    with SearchServer(api_key="brave-key-0123456789") as search:
        search.add("threadline", hit("https://example.com/a", "A page", "What it says"))
        searxng = {"tools": {"web_search": {"provider": "searxng", "base_url": search.base_url}}}
        assert doctor(tmp_path, searxng).one("web search") == "ok searxng answered a test search (1 result)"
        search.fail(500)
        assert doctor(tmp_path, searxng).one("web search").startswith("FAIL searxng: a test search failed: ")
        brave = {"tools": {"web_search": {"provider": "brave", "base_url": search.base_url, "api_key": "wrong-key"}}}
        line = doctor(tmp_path, brave).one("web search")
    assert line.startswith("FAIL brave: a test search failed: ") and "wrong-key" not in line
    assert doctor(tmp_path, {}).one("web search") == "ok no provider ([tools.web_search]): requests with the web_search tool are refused"


def test_an_embeddings_upstream_is_asked_one_embedding(tmp_path):
    with EmbeddingsServer(api_key="sk-embed-0123456789") as upstream:
        settings = {"provider": "openai", "base_url": upstream.base_url, "model": "text-embedding-3-small"}
        good = doctor(tmp_path, {"embeddings": {**settings, "api_key": "sk-embed-0123456789"}}).one("embeddings")
        assert good.startswith(f"ok {upstream.base_url} embedded a test text with text-embedding-3-small (") and good.endswith(" dimensions)")
        bad = doctor(tmp_path, {"embeddings": {**settings, "api_key": "sk-wrong"}}).one("embeddings")
    assert bad.startswith(f"FAIL {upstream.base_url}: a test embedding failed: ")
    assert doctor(tmp_path, {}).one("embeddings") == "ok embedded, bundled with Threadline (the default model)"
