"""Each model: its upstream reachable and listing it, its context window, and with --generate a
tiny generation; for an embedded model, its GGUF file."""

from __future__ import annotations

import asyncio
import ctypes
import difflib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson

from threadline.backends.base import Backend, BackendError, ModelRequest, TextDelta
from threadline.backends.registry import DEFAULT_MODEL, build_backend
from threadline.backends.upstream import METADATA_TIMEOUT_S, UpstreamBackend, context_window_in, described, redact, upstream_message
from threadline.config import ModelSettings, Settings
from threadline.doctor.checks import Check, fail, ok, warn

GENERATION_PROMPT = "Say OK."
GENERATION_TOKENS = 16
GENERATION_TIMEOUT_S = 120.0  # an embedded model is loaded first


async def model_checks(settings: Settings, generate: bool) -> AsyncIterator[Check]:
    for model in settings.models or [DEFAULT_MODEL]:
        name = f"model {model.id}"
        if model.provider == "scripted":
            yield ok(name, "scripted: it answers from its script (for tests)")
            continue
        backend = build_backend(model)
        try:
            if isinstance(backend, UpstreamBackend):
                checks = await upstream_checks(name, backend)
            else:
                checks = await model_file_checks(name, model)
            for check in checks:
                yield check
            if generate and all(check.status != "FAIL" for check in checks):
                yield await generation(name, backend)
        finally:
            await backend.close()


async def upstream_checks(name: str, backend: UpstreamBackend) -> list[Check]:
    """GET {base_url}/models: the upstream answers, lists the model, and tells its context window."""
    url = f"{backend.base_url}/models"
    try:
        async with backend.request("GET", url, backend.metadata_timeout) as response:
            status, content = response.status, await response.read()
    except aiohttp.ClientError as exc:
        return [fail(name, f"the upstream {backend.base_url} cannot be reached ({redact(described(exc))}): check base_url")]
    except TimeoutError:
        return [fail(name, f"the upstream {backend.base_url} did not answer within {METADATA_TIMEOUT_S:g} s: check base_url")]
    if status in (401, 403):
        return [fail(name, f"the upstream {backend.base_url} refused the key ({status}): check api_key")]
    if status == 404:
        return [
            warn(name, f"the upstream {backend.base_url} answers but lists no models (GET /models: 404), so the name cannot be checked"),
            context_window(name, backend, None),
        ]
    try:
        listing = orjson.loads(content)
    except orjson.JSONDecodeError:
        listing = None
    if status != 200 or not isinstance(listing, dict):
        reason = redact(upstream_message(listing) or "not a model list")
        return [fail(name, f"the upstream {backend.base_url} answered GET /models with {status} ({reason}): check base_url")]
    checks = [ok(name, f"the upstream {backend.base_url} is reachable")]
    listed = [entry.get("id") for entry in listing.get("data") or [] if isinstance(entry, dict) and isinstance(entry.get("id"), str)]
    if backend.upstream_model in listed:
        checks.append(ok(name, f"the upstream lists {backend.upstream_model!r}"))
    else:
        nearest = difflib.get_close_matches(backend.upstream_model, listed, n=3)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else f"; it lists {len(listed)}"
        checks.append(fail(name, f"the upstream does not list {backend.upstream_model!r}{hint}: check upstream_model (or id)"))
    checks.append(context_window(name, backend, listing))
    return checks


def context_window(name: str, backend: UpstreamBackend, listing: dict | None) -> Check:
    """The window Threadline will use: the upstream's own, else the configured one."""
    reported = context_window_in(listing, backend.upstream_model) if listing else None
    configured = backend.settings.context_window
    if reported:
        differs = f" (context_window = {configured} is overridden)" if configured and configured != reported else ""
        return ok(name, f"context window {reported} tokens, as the upstream reports{differs}")
    if configured:
        return ok(name, f"context window {configured} tokens, as configured")
    return warn(name, "context window unknown (the upstream does not report one): set context_window, so that truncation and token limits know it")


async def model_file_checks(name: str, model: ModelSettings) -> list[Check]:
    """An embedded (llama-cpp) model: a GGUF file that exists and is one, and its context window."""
    from threadline.backends.llama_cpp.backend import DEFAULT_CONTEXT_CAP
    from threadline.backends.llama_cpp.model_file import model_file

    try:
        path = model_file(model.model_path)
    except BackendError as exc:
        return [fail(name, exc.message)]
    checks = [ok(name, f"GGUF file {path} ({path.stat().st_size / 1e6:.0f} MB)")]
    configured = model.context_window or model.options.get("n_ctx")
    trained = await asyncio.to_thread(trained_context, path)
    if trained is None:
        checks.append(fail(name, f"llama.cpp cannot read {path}: set model_path to a complete GGUF file of a model llama.cpp supports"))
    elif configured:
        checks.append(ok(name, f"context window {configured} tokens, as configured (trained for {trained})"))
    else:  # as the backend decides it when loading
        checks.append(ok(name, f"context window {min(trained, DEFAULT_CONTEXT_CAP)} tokens (trained for {trained}; set context_window for another)"))
    return checks


def trained_context(path: Path) -> int | None:
    """The context length a GGUF file's metadata says its model was trained for, read without
    loading its weights; None when llama.cpp cannot read the file."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with suppress_stdout_stderr(disable=False):  # llama.cpp's loading chatter
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        return None
    try:

        def metadata(key: str) -> str | None:
            value = ctypes.create_string_buffer(256)
            return value.value.decode() if llama_cpp.llama_model_meta_val_str(model, key.encode(), value, len(value)) >= 0 else None

        architecture = metadata("general.architecture")
        length = metadata(f"{architecture}.context_length") if architecture else None
        return int(length) if length and length.isdigit() else None
    finally:
        llama_cpp.llama_model_free(model)


async def generation(name: str, backend: Backend) -> Check:
    """A tiny real generation: the model answers, and how fast."""
    request = ModelRequest(
        model=getattr(backend, "upstream_model", backend.id),
        input=[{"type": "message", "role": "user", "content": [{"type": "input_text", "text": GENERATION_PROMPT}]}],
        max_output_tokens=GENERATION_TOKENS,
        stream=False,
    )
    started = time.monotonic()
    answer = ""
    try:
        async with asyncio.timeout(GENERATION_TIMEOUT_S):
            await backend.start()
            async for event in backend.generate(request):
                if isinstance(event, TextDelta):
                    answer += event.text
    except BackendError as exc:
        return fail(name, f"a test generation failed: {exc.message}")
    except TimeoutError:
        return fail(name, f"a test generation did not finish within {GENERATION_TIMEOUT_S:g} s")
    return ok(name, f"a test generation answered {answer.strip()[:40]!r} in {time.monotonic() - started:.1f} s")
