"""API keys and projects, encryption keys, and the providers behind server-side tools (MCP,
web search, embeddings for file search). Keys are counted and named by project, never shown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from collections import defaultdict

from sqlalchemy import make_url

from threadline.config import Settings
from threadline.doctor.checks import Check, fail, ok, plural, warn
from threadline.keys import ENVIRONMENT_VARIABLE, key_file_path
from threadline.retrieval.embedders import EmbeddingError, build_embedder
from threadline.tools.network import AllowedHosts
from threadline.tools.search_providers import SearchFailed, SearchOptions, search_provider

SHORT_KEY = 16  # characters; a shorter API key can be guessed
PROBE_TIMEOUT_S = 30.0
RESOLVE_TIMEOUT_S = 5.0


def key_checks(settings: Settings) -> list[Check]:
    return [api_key_check(settings), encryption_key_check(settings)]


def api_key_check(settings: Settings) -> Check:
    keys = settings.auth.api_keys
    if not keys:
        return warn("API keys", "none: every request is accepted, in one open project; add [[auth.api_keys]] unless a proxy authenticates")
    projects_of: dict[str, set[str]] = defaultdict(set)
    for api_key in keys:
        projects_of[api_key.key].add(api_key.project)
    shared = sorted(" and ".join(sorted(projects)) for projects in projects_of.values() if len(projects) > 1)
    if shared:
        return fail("API keys", f"one key is given to several projects ({'; '.join(shared)}): a key belongs to one project")
    short = sorted({api_key.project for api_key in keys if len(api_key.key) < SHORT_KEY})
    projects = sorted({api_key.project for api_key in keys})
    summary = f"{plural(len(projects_of), 'key')} in {plural(len(projects), 'project')}: {', '.join(projects)}"
    if short:
        return warn("API keys", f"{summary}; keys of {', '.join(short)} are shorter than {SHORT_KEY} characters: use long random keys")
    return ok("API keys", summary)


def encryption_key_check(settings: Settings) -> Check:
    """Where the key that seals reasoning and secrets comes from (see keys.py); nothing is generated here."""
    name = "encryption keys"
    from_environment = [key for key in os.environ.get(ENVIRONMENT_VARIABLE, "").split(",") if key.strip()]
    if from_environment:
        return ok(name, f"{plural(len(from_environment), 'key')} from {ENVIRONMENT_VARIABLE}")
    if settings.security.encryption_keys:
        return ok(name, f"{plural(len(settings.security.encryption_keys), 'key')} from [security] encryption_keys")
    path = key_file_path(settings)
    if path.exists():
        try:
            if not path.read_text().strip():
                return fail(name, f"the key file {path} is empty: delete it to have a key generated, or put a key in it")
        except OSError as exc:
            return fail(name, f"the key file {path} cannot be read ({exc.strerror}): make it readable by Threadline")
        return ok(name, f"from the key file {path}")
    shared_database = make_url(settings.database_url).get_backend_name() != "sqlite"
    if shared_database:
        return warn(name, f"none yet: the first start generates {path}; every process on this database needs the same key: set {ENVIRONMENT_VARIABLE} or [security] encryption_keys")
    return ok(name, f"none yet: the first start generates one in {path}")


async def tool_checks(settings: Settings, generate: bool) -> AsyncIterator[Check]:
    yield await mcp_check(settings)
    yield await web_search_check(settings)
    yield await embeddings_check(settings)


async def mcp_check(settings: Settings) -> Check:
    """MCP servers are named by each request; what the config decides is which private hosts they may be on."""
    mcp = settings.tools.mcp
    allowed = AllowedHosts.parse(mcp.allowed_hosts)
    if not mcp.allowed_hosts:
        return ok("MCP", f"servers on public hosts only (allowed_hosts is empty); a call may take {mcp.call_timeout_s:g} s")
    unresolved = [name for name in sorted(allowed.names) if not await resolves(name)]
    listed = ", ".join(mcp.allowed_hosts)
    if unresolved:
        return warn("MCP", f"allowed_hosts names hosts that do not resolve here: {', '.join(unresolved)} (allowed: {listed})")
    return ok("MCP", f"servers on public hosts and on {listed}; a call may take {mcp.call_timeout_s:g} s")


async def resolves(host: str) -> bool:
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            await asyncio.get_running_loop().getaddrinfo(host, None)
        return True
    except (OSError, TimeoutError):
        return False


async def web_search_check(settings: Settings) -> Check:
    """One real search through the configured provider: it answers, and accepts the key."""
    configured = settings.tools.web_search
    provider = search_provider(configured)
    if configured is None or provider is None:
        return ok("web search", "no provider ([tools.web_search]): requests with the web_search tool are refused")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            results = await provider.search("threadline", SearchOptions(max_results=1))
    except SearchFailed as exc:
        return fail("web search", f"{configured.provider}: a test search failed: {exc}")
    except TimeoutError:
        return fail("web search", f"{configured.provider}: a test search did not finish within {PROBE_TIMEOUT_S:g} s")
    finally:
        await provider.aclose()
    return ok("web search", f"{configured.provider} answered a test search ({plural(len(results), 'result')})")


async def embeddings_check(settings: Settings) -> Check:
    """Embeddings for file search and /v1/embeddings: the bundled model, or one real call to the upstream."""
    configured = settings.embeddings
    try:
        embedder = build_embedder(configured)
    except ValueError as exc:
        return fail("embeddings", f"{exc}")
    try:
        if configured.provider == "embedded":
            return ok("embeddings", f"embedded, bundled with Threadline ({configured.model or 'the default model'})")
        async with asyncio.timeout(PROBE_TIMEOUT_S + 1):
            vectors = await embedder.embed(["threadline doctor"])
        return ok("embeddings", f"{configured.base_url} embedded a test text with {configured.model} ({vectors.shape[1]} dimensions)")
    except EmbeddingError as exc:
        return fail("embeddings", f"{configured.base_url}: a test embedding failed: {exc}")
    except TimeoutError:
        return fail("embeddings", f"{configured.base_url}: a test embedding did not finish in time")
    finally:
        await embedder.aclose()
