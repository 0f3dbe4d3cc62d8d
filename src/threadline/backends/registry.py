"""The configured models, each served by its backend; SmolLM2 when none are configured."""

from __future__ import annotations

from threadline.backends.base import Backend, BackendError
from threadline.config import ModelSettings, Settings
from threadline.errors import APIError

DEFAULT_MODEL = ModelSettings(id="smollm2-135m-instruct", provider="llama-cpp")


class ModelLoadError(Exception):
    """A configured model cannot be served; the message, one line, says which and what to do."""


def build_backend(model: ModelSettings) -> Backend:
    # Imported on demand: a server with only remote models never loads llama.cpp.
    if model.provider == "openai-chat":
        from threadline.backends.openai_chat import OpenAIChatBackend

        return OpenAIChatBackend(model)
    if model.provider == "openai-responses":
        from threadline.backends.openai_responses import OpenAIResponsesBackend

        return OpenAIResponsesBackend(model)
    if model.provider == "llama-cpp":
        from threadline.backends.llama_cpp import LlamaCppBackend

        return LlamaCppBackend(model)
    from threadline.backends.scripted import ScriptedBackend

    return ScriptedBackend(model)


class Models:
    """Looks up the backend for a request's `model`, or the default one."""

    def __init__(self, settings: Settings) -> None:
        configured = settings.models or [DEFAULT_MODEL]
        self.settings = {model.id: model for model in configured}
        self.default_id = settings.default_model or configured[0].id
        self._backends: dict[str, Backend] = {}

    def ids(self) -> list[str]:
        return list(self.settings)

    async def start(self) -> None:
        """Build every backend now, loading embedded models, so the first request waits for none.

        Raises ModelLoadError, naming the model and the fix, for a model that cannot be served."""
        for model_id in self.settings:
            try:
                await self.get(model_id).start()
            except BackendError as exc:
                raise ModelLoadError(f"The model {model_id!r} cannot be loaded. {exc.message}") from None
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.partition(".")[0] == "threadline":
                    raise  # not the installation's fault: a bug
                raise ModelLoadError(
                    f"The model {model_id!r} cannot be loaded: {exc.name} is not installed. Reinstall Threadline to get its dependencies."
                ) from None

    def get(self, model_id: str | None) -> Backend:
        model_id = model_id or self.default_id
        if model_id not in self.settings:
            raise APIError(
                400,
                f"The requested model '{model_id}' does not exist.",
                param="model",
                code="model_not_found",
            )
        backend = self._backends.get(model_id)
        if backend is None:
            backend = self._backends[model_id] = build_backend(self.settings[model_id])
        return backend

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()
