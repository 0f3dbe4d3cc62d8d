"""The server's encryption keys: generated and kept when none is configured, read from the
config or THREADLINE_ENCRYPTION_KEYS, and rotated (the newest seals, every one opens).

Shown with what a client sees: reasoning sealed by one server, sent back to another.
Real `threadline serve` processes on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import json
import stat
import threading
from pathlib import Path

import openai
import pytest

from threadline.config import Settings, load_settings
from threadline import keys
from threadline.keys import key_file_path, read_or_create_key
from tests.servers import ThreadlineServer, write_config

INCLUDE = ["reasoning.encrypted_content"]
SCRIPTED = {"id": "scripted", "provider": "scripted"}


def config(folder: Path, **security) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder / "threadline.toml", {"models": [SCRIPTED], "security": security})


def client_of(server: ThreadlineServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def sealed_reasoning(server: ThreadlineServer, thought: str) -> dict:
    """A reasoning item the server sealed, as a stateless client keeps it (without its text)."""
    steps = "#script " + json.dumps([{"reasoning": thought}, {"text": "ok"}])
    response = client_of(server).responses.create(model="scripted", input=steps, store=False, include=INCLUDE)
    item = response.output[0].model_dump(exclude_none=True)
    item.pop("content")
    return item


def opens(server: ThreadlineServer, item: dict) -> bool:
    """Whether the server reads the item back (a 400 invalid_encrypted_content if not)."""
    try:
        client_of(server).responses.create(model="scripted", input=[{"role": "user", "content": "Hi"}, item], store=False)
    except openai.BadRequestError as error:
        assert error.body["code"] == "invalid_encrypted_content"
        return False
    return True


def log_of(server: ThreadlineServer) -> str:
    with open(server.log.name) as log:
        return log.read()


def test_a_key_is_generated_on_first_start_and_kept(fresh_database_url, tmp_path):
    key_file = tmp_path / "keys" / "threadline.key"
    path = config(tmp_path / "config", key_file=str(key_file))
    with ThreadlineServer(fresh_database_url, path) as first:
        item = sealed_reasoning(first, "Kept across restarts.")
    assert "generated one in" in log_of(first) and "needs the same key" in log_of(first)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(base64.b64decode(key, validate=True)) == 32

    with ThreadlineServer(fresh_database_url, path) as restarted:
        assert opens(restarted, item)
    assert "generated one in" not in log_of(restarted) and "Encryption key read from" in log_of(restarted)
    assert key_file.read_text().strip() == key


def test_a_sqlite_server_keeps_its_key_beside_the_database(tmp_path):
    database_url = f"sqlite:///{tmp_path}/data/threadline.db"
    (tmp_path / "data").mkdir()
    with ThreadlineServer(database_url, config(tmp_path / "config")) as server:
        sealed_reasoning(server, "Here.")
    assert (tmp_path / "data" / "threadline.key").exists()


def test_rotation_the_newest_key_seals_and_every_key_opens(fresh_database_url, tmp_path):
    """Keys from the environment or the config; a server given [new, old] reads what the old
    key sealed and seals with the new one; a server without the old key refuses the old items."""
    with ThreadlineServer(fresh_database_url, config(tmp_path / "old"), env={"THREADLINE_ENCRYPTION_KEYS": "old-key-0123456789"}) as old:
        old_item = sealed_reasoning(old, "Sealed by the old key.")
        with ThreadlineServer(fresh_database_url, config(tmp_path / "both", encryption_keys=["new-key-0123456789", "old-key-0123456789"])) as both:
            assert opens(both, old_item)
            new_item = sealed_reasoning(both, "Sealed by the new key.")
            assert not opens(old, new_item)
    # The environment replaces the config's keys.
    path = config(tmp_path / "new", encryption_keys=["old-key-0123456789"])
    with ThreadlineServer(fresh_database_url, path, env={"THREADLINE_ENCRYPTION_KEYS": " new-key-0123456789 "}) as new:
        assert opens(new, new_item)
        assert not opens(new, old_item)


def test_where_the_generated_key_is_kept():
    assert key_file_path(Settings(database_url="sqlite:////srv/threadline/data.db")) == Path("/srv/threadline/threadline.key")
    assert key_file_path(Settings(database_url="sqlite:///relative/data.db")) == Path("relative/threadline.key")
    assert key_file_path(Settings(database_url="postgresql://app@db/threadline")) == Path("threadline.key")
    assert key_file_path(Settings(security={"key_file": "/etc/threadline/key"})) == Path("/etc/threadline/key")


def test_processes_starting_together_agree_on_one_key(tmp_path):
    path = tmp_path / "threadline.key"
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(read_or_create_key(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_text().strip()
    assert [entry.name for entry in tmp_path.iterdir()] == ["threadline.key"]  # no draft left behind


def test_an_empty_key_is_refused(tmp_path):
    (tmp_path / "threadline.key").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        read_or_create_key(tmp_path / "threadline.key")
    path = write_config(tmp_path / "threadline.toml", {"security": {"encryption_keys": [""]}})
    with pytest.raises(ValueError, match="security.encryption_keys"):
        load_settings(path)


def test_processes_with_the_same_pid_agree_on_one_key(tmp_path, monkeypatch):
    """Two containers sharing the key file's volume may both be pid 1: while one makes its key,
    the other's does not overwrite it (threads of one process stand for them here)."""
    path = tmp_path / "threadline.key"
    first_done, second_writing = threading.Event(), threading.Event()
    made = keys.new_key

    def new_key() -> str:
        if threading.current_thread().name == "second":
            second_writing.set()
            first_done.wait(10)
        return made()

    monkeypatch.setattr(keys, "new_key", new_key)
    found: dict[str, str] = {}
    second = threading.Thread(target=lambda: found.setdefault("second", read_or_create_key(path)), name="second")
    second.start()
    second_writing.wait(10)
    found["first"] = read_or_create_key(path)
    first_done.set()
    second.join()
    assert found["first"] == found["second"] == path.read_text().strip()


def test_a_stored_reasoning_item_outlives_its_key(fresh_database_url, tmp_path):
    """A stored reasoning item named by item_reference keeps its text in the store: a server
    that no longer holds the key it was sealed under still gives it to the model."""
    steps = "#script " + json.dumps([{"reasoning": "Stored thought."}, {"text": "ok"}])
    with ThreadlineServer(fresh_database_url, config(tmp_path / "old"), env={"THREADLINE_ENCRYPTION_KEYS": "old-key-0123456789"}) as old:
        stored = client_of(old).responses.create(model="scripted", input=steps, include=INCLUDE)
    assert stored.output[0].encrypted_content
    with ThreadlineServer(fresh_database_url, config(tmp_path / "new"), env={"THREADLINE_ENCRYPTION_KEYS": "new-key-0123456789"}) as new:
        reference = {"type": "item_reference", "id": stored.output[0].id}
        again = client_of(new).responses.create(model="scripted", input=[{"role": "user", "content": "Hi"}, reference], store=False)
    assert again.status == "completed"
