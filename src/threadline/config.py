"""Settings: read once at start from flags, environment and the TOML config file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from threadline.engine.prompts import PromptTemplate, read_prompt_dir

DEFAULT_DATABASE_URL = "sqlite:///threadline.db"
# A small model can loop until its context is full; at ~130 tokens/s this ends it in about 4 s.
LLAMA_CPP_MAX_OUTPUT_TOKENS = 512


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class APIKey(_Section):
    key: str = Field(min_length=1)
    project: str = Field(min_length=1)
    admin: bool = False  # the web console shows an admin key every project; /v1 still only its own


class AuthSettings(_Section):
    api_keys: list[APIKey] = []


class ModelSettings(_Section):
    """One model clients can name in `model`; `provider` says which backend serves it."""

    id: str = Field(min_length=1)
    provider: Literal["openai-chat", "openai-responses", "llama-cpp", "scripted"]
    base_url: str | None = None
    api_key: str | None = None
    upstream_model: str | None = None
    context_window: int | None = Field(default=None, gt=0)
    model_path: str | None = None
    timeout_s: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=2, ge=0)
    # The most one response waits on the upstream, every attempt and the waits between them
    # included (each attempt is also held to timeout_s). Default: timeout_s.
    total_timeout_s: float | None = Field(default=None, gt=0)
    # How long connecting to the upstream may take, within timeout_s: a host that drops
    # connection attempts fails each attempt after this long, not after the system's ~2 min.
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # The most an upstream's answer (streamed or not) may hold; a larger one fails the response.
    max_answer_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # The output bound of a request that sets no max_output_tokens (one that does may ask for
    # more or less). llama-cpp models default to LLAMA_CPP_MAX_OUTPUT_TOKENS, others to none.
    max_output_tokens: int | None = Field(default=None, gt=0)
    # What a foreground response does when its client disconnects: "stop" ends it at once
    # (failed), "continue" finishes and stores it. Default: "stop" for llama-cpp models, which
    # serve one request at a time, else "continue". Background responses always continue.
    on_disconnect: Literal["stop", "continue"] | None = None
    # Backend-specific options (e.g. a scripted backend's script, llama.cpp's n_ctx).
    options: dict = {}

    @model_validator(mode="after")
    def _provider_defaults(self) -> ModelSettings:
        if self.total_timeout_s is None:
            self.total_timeout_s = self.timeout_s
        if self.max_output_tokens is None and self.provider == "llama-cpp":
            self.max_output_tokens = LLAMA_CPP_MAX_OUTPUT_TOKENS
        if self.on_disconnect is None:
            self.on_disconnect = "stop" if self.provider == "llama-cpp" else "continue"
        return self


class WorkerSettings(_Section):
    """Background work and crash recovery; see the README for what each one trades."""

    heartbeat_s: float = Field(default=2.0, gt=0)  # how often a process says it is alive
    lease_s: float = Field(default=10.0, gt=0)  # silence after which its work is recovered
    poll_s: float = Field(default=0.25, gt=0)  # how often the queue and other processes' logs are read
    max_background_jobs: int = Field(default=16, ge=1)  # background responses one process runs at once
    # First wait before a file whose embedder failed for a while (timeout, 5xx) is tried again; it doubles.
    ingest_retry_s: float = Field(default=5.0, gt=0)


class ServerSettings(_Section):
    shutdown_grace_s: float = Field(default=30.0, ge=0)  # SIGTERM grace for running responses
    idempotency_ttl_s: float = Field(default=86400.0, gt=0)  # how long Idempotency-Key answers are kept
    idempotency_wait_s: float = Field(default=60.0, ge=0)  # how long a repeat waits for the first answer
    # Connections that hold the server without using it are closed.
    keep_alive_s: float = Field(default=5.0, gt=0)  # idle time allowed between requests on one connection
    header_timeout_s: float = Field(default=10.0, gt=0)  # time allowed for a request's headers, from its first byte
    body_timeout_s: float = Field(default=60.0, gt=0)  # time allowed for a request's whole body, after its headers


class LimitsSettings(_Section):
    max_body_bytes: int = Field(default=32 * 1024 * 1024, gt=0)  # larger request bodies get 413
    max_input_items: int = Field(default=10_000, gt=0)  # more items in a response's `input` get 400


class McpSettings(_Section):
    # Loopback, private and link-local hosts an MCP server_url may name (public ones always
    # may): each entry a host name, an address or a CIDR range, covering nothing else.
    allowed_hosts: list[str] = []
    call_timeout_s: float = Field(default=60.0, gt=0)  # one tool call (listing a server's tools too)


class WebSearchSettings(_Section):
    """The search provider behind the hosted web_search tool; without this table there is none."""

    provider: Literal["searxng", "brave", "tavily"]
    base_url: str | None = None  # searxng: the instance (required); brave and tavily: an override
    api_key: str | None = None  # brave and tavily
    max_results: int = Field(default=10, ge=1, le=50)
    timeout_s: float = Field(default=30.0, gt=0)  # one search

    @model_validator(mode="after")
    def _provider_needs(self) -> WebSearchSettings:
        if self.provider == "searxng" and not self.base_url:
            raise ValueError("the searxng web search provider needs base_url (the instance)")
        if self.provider in ("brave", "tavily") and not self.api_key:
            raise ValueError(f"the {self.provider} web search provider needs api_key")
        return self


class ToolsSettings(_Section):
    max_turns: int = Field(default=16, ge=1)  # model turns in one response; the last is offered no tools
    mcp: McpSettings = McpSettings()
    web_search: WebSearchSettings | None = None


class SecuritySettings(_Section):
    # Keys that seal what clients send back (encrypted reasoning, compaction items) and secrets
    # kept at rest (an MCP tool's headers while its background response runs): the first
    # encrypts, every one decrypts, so a key can be rotated. THREADLINE_ENCRYPTION_KEYS
    # (comma-separated) replaces them; with neither, a key is generated into key_file (keys.py).
    encryption_keys: list[Annotated[str, Field(min_length=1)]] = []
    key_file: str | None = None  # default: threadline.key beside the SQLite database, else in the working directory


class WebSocketSettings(_Section):
    """Limits of one WebSocket connection to /v1/responses (api/websocket.py)."""

    max_lifetime_s: float = Field(default=3600.0, gt=0)  # OpenAI's limit: 60 minutes, then websocket_connection_limit_reached
    idle_timeout_s: float = Field(default=600.0, gt=0)  # closed after this long with no message and no response running
    max_messages: int = Field(default=10_000, ge=1)  # client messages one connection may send


class FilesSettings(_Section):
    max_file_bytes: int = Field(default=512 * 1024 * 1024, gt=0)  # larger uploads get 413


class EmbeddingsSettings(_Section):
    """Where embeddings for file search and /v1/embeddings come from."""

    provider: Literal["embedded", "openai"] = "embedded"  # embedded: offline, bundled with Threadline
    base_url: str | None = None  # openai: any /v1/embeddings upstream
    api_key: str | None = None  # openai
    model: str | None = None  # openai: the upstream's model (required); embedded: one of the bundled ones
    timeout_s: float = Field(default=60.0, gt=0)  # openai: one embeddings request

    @model_validator(mode="after")
    def _provider_needs(self) -> EmbeddingsSettings:
        if self.provider == "openai" and not (self.base_url and self.model):
            raise ValueError("the openai embeddings provider needs base_url and model")
        return self


class TracingSettings(_Section):
    """OpenTelemetry traces (ops/tracing.py); OTEL_* environment variables switch them on too."""

    otlp_endpoint: str | None = None  # an OTLP/HTTP collector, e.g. http://127.0.0.1:4318
    capture_content: bool = False  # prompts, answers and tool arguments in spans


class MetricsSettings(_Section):
    enabled: bool = True  # GET /metrics, in Prometheus' text format (ops/metrics.py)
    require_key: bool = False  # true: /metrics needs a Bearer key, as /v1 does


class Settings(_Section):
    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str = DEFAULT_DATABASE_URL
    auth: AuthSettings = AuthSettings()
    models: list[ModelSettings] = []
    default_model: str | None = None
    server: ServerSettings = ServerSettings()
    limits: LimitsSettings = LimitsSettings()
    workers: WorkerSettings = WorkerSettings()
    tools: ToolsSettings = ToolsSettings()
    security: SecuritySettings = SecuritySettings()
    files: FilesSettings = FilesSettings()
    websocket: WebSocketSettings = WebSocketSettings()
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    prompts: list[PromptTemplate] = []  # [[prompts]]; see engine/prompts.py
    prompts_dir: Path | None = None  # one template per *.toml file, read at start into `prompts`

    @model_validator(mode="after")
    def _prompt_templates(self) -> Settings:
        if self.prompts_dir is not None:
            if not self.prompts_dir.is_dir():
                raise ValueError(f"prompts_dir {str(self.prompts_dir)!r} is not a folder")
            self.prompts = self.prompts + read_prompt_dir(self.prompts_dir)
        named = [(template.id, template.version) for template in self.prompts]
        twice = sorted({f"{id_} version {version}" for id_, version in named if named.count((id_, version)) > 1})
        if twice:
            raise ValueError(f"prompt templates defined twice: {', '.join(twice)}")
        # With no models configured the one model is the embedded default, named in backends/registry.py.
        ids = {model.id for model in self.models}
        for template in self.prompts:
            if ids and template.model is not None and template.model not in ids:
                raise ValueError(f"prompt template {template.id} version {template.version}: model {template.model!r} is not a configured model id")
        return self

    @model_validator(mode="after")
    def _default_model_is_configured(self) -> Settings:
        ids = [model.id for model in self.models]
        if len(set(ids)) != len(ids):
            raise ValueError("model ids must be unique")
        if self.default_model is not None and self.default_model not in ids:
            raise ValueError(f"default_model {self.default_model!r} is not a configured model id")
        return self

    @property
    def projects_by_key(self) -> dict[str, str]:
        return {api_key.key: api_key.project for api_key in self.auth.api_keys}

    @property
    def admin_keys(self) -> set[str]:
        return {api_key.key for api_key in self.auth.api_keys if api_key.admin}


def load_settings(config_file: str | Path | None = None, **overrides: object) -> Settings:
    """Settings from the TOML file, with flags and environment (given as overrides) on top."""
    data: dict = {}
    if config_file:
        with open(config_file, "rb") as f:
            data = tomllib.load(f)
        if isinstance(data.get("prompts_dir"), str):  # relative to the config file's folder
            data["prompts_dir"] = Path(config_file).parent / data["prompts_dir"]
    data.update({key: value for key, value in overrides.items() if value is not None})
    return Settings.model_validate(data)
