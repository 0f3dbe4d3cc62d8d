"""Out of the box: a plain `pip install` serves the embedded model, and a server that cannot
start says why in one line, never with a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.servers import free_port, write_config
from threadline.config import LLAMA_CPP_MAX_OUTPUT_TOKENS

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def serve(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """`threadline serve` that is expected to stop by itself, with its output."""
    command = [sys.executable, "-m", "threadline", "serve", "--port", str(free_port()), *args]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("THREADLINE_")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env={**environment, **(env or {})})


def a_model(tmp_path: Path, model_path: Path) -> Path:
    return write_config(tmp_path / "threadline.toml", {"models": [{"id": "local", "provider": "llama-cpp", "model_path": str(model_path)}]})


def assert_one_clear_line(result: subprocess.CompletedProcess, *expected: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output and "File \"" not in output, output
    lines = [line for line in output.splitlines() if all(part in line for part in expected)]
    assert len(lines) == 1, output


def test_a_missing_model_file_stops_the_server_with_one_line(tmp_path):
    result = serve("--config", str(a_model(tmp_path, tmp_path / "nowhere.gguf")), cwd=tmp_path)
    assert_one_clear_line(result, "'local' cannot be loaded", "nowhere.gguf does not exist", "set model_path")


def test_a_file_that_is_not_gguf_stops_the_server_with_one_line(tmp_path):
    (tmp_path / "model.gguf").write_bytes(os.urandom(4096))
    result = serve("--config", str(a_model(tmp_path, tmp_path / "model.gguf")), cwd=tmp_path)
    assert_one_clear_line(result, "'local' cannot be loaded", "is not a GGUF file", "set model_path")


def test_a_damaged_gguf_file_stops_the_server_with_one_line(tmp_path):
    # A GGUF header with nothing sensible after it: llama.cpp itself refuses it.
    (tmp_path / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    result = serve("--config", str(a_model(tmp_path, tmp_path / "model.gguf")), cwd=tmp_path)
    assert_one_clear_line(result, "'local' cannot be loaded", "llama.cpp", "model.gguf", "model_path to a complete GGUF file")


def broken(tmp_path: Path, package: str, error: str) -> dict:
    """The environment of an installation whose `package` fails to import with `error`."""
    (tmp_path / "shadow" / package).mkdir(parents=True)
    (tmp_path / "shadow" / package / "__init__.py").write_text(f"raise {error}\n")
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "shadow"), os.environ.get("PYTHONPATH")]))}


def test_llama_cpp_that_cannot_be_imported_stops_the_server_with_one_line(tmp_path):
    result = serve(cwd=tmp_path, env=broken(tmp_path, "llama_cpp", "ImportError('libllama.so: cannot open shared object file')"))
    assert_one_clear_line(result, f"'{MODEL}' cannot be loaded", "libllama.so", "pip install --force-reinstall llama-cpp-python")


def test_a_missing_library_stops_the_server_with_one_line(tmp_path):
    # numpy serves the embedded model and the vector search alike.
    result = serve(cwd=tmp_path, env=broken(tmp_path, "numpy", "ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')"))
    assert_one_clear_line(result, "Threadline cannot start", "numpy is not installed", "Reinstall Threadline")


def test_a_database_that_cannot_be_opened_stops_the_server_with_one_line_without_its_password(tmp_path):
    config = write_config(tmp_path / "threadline.toml", {"models": [{"id": "scripted", "provider": "scripted"}]})
    url = f"postgresql://threadline:hunter2@127.0.0.1:{free_port()}/nothing"  # nobody listens there
    result = serve("--config", str(config), "--database", url, cwd=tmp_path)
    assert_one_clear_line(result, "Cannot open the database", "127.0.0.1", "check --database")
    assert "hunter2" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "config, expected",
    [
        (None, "Cannot read the config file"),
        ("models = [", "is not valid TOML"),
        ('[[models]]\nid = "m"\nprovider = "telepathy"\n', "provider in [[models]] (the first): Input should be 'openai-chat'"),
    ],
)
def test_a_config_file_that_cannot_be_used_stops_the_server_with_one_line(tmp_path, config, expected):
    path = tmp_path / "threadline.toml"
    if config is not None:
        path.write_text(config)
    result = serve("--config", str(path), cwd=tmp_path)
    assert_one_clear_line(result, expected)
    assert not (tmp_path / "threadline.db").exists()  # nothing started


@pytest.mark.slow
def test_a_fresh_install_serves_the_embedded_model(tmp_path):
    """`pip install .` in a new virtual environment, then `threadline serve` with no
    configuration in an empty folder: "Count from 1 to 5." streamed through the SDK ends
    within the output bound. pip reuses its cached build of llama-cpp-python (`make` built it)."""
    venv, folder = tmp_path / "venv", tmp_path / "empty"
    folder.mkdir()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO)],
        capture_output=True, text=True, timeout=1800,
    )
    assert installed.returncode == 0, installed.stdout[-4000:] + installed.stderr[-4000:]

    port = free_port()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("THREADLINE_", "PYTHON", "VIRTUAL_ENV"))}
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([str(venv / "bin" / "threadline"), "serve", "--port", str(port)], cwd=folder, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not healthy(url):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)

        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
        with client.responses.create(model=MODEL, input="Count from 1 to 5.", stream=True) as stream:
            events = list(stream)
        types = [event.type for event in events]
        assert types[0] == "response.created"
        assert [t for t in types if t in TERMINAL] == [types[-1]] and types[-1] in {"response.completed", "response.incomplete"}, types[-5:]
        # Within the embedded model's documented output bound, which a looping model reaches.
        response = events[-1].response
        assert 0 < response.usage.output_tokens <= LLAMA_CPP_MAX_OUTPUT_TOKENS
        if response.status == "incomplete":
            assert response.incomplete_details.reason == "max_output_tokens"
        assert (folder / "threadline.db").exists()  # the default store, in the working directory
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(venv, ignore_errors=True)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
