"""The server's encryption keys: configured, or generated once and kept in a key file.

Keys seal what Threadline hands to clients to send back (reasoning, compaction summaries)
and the secrets it keeps at rest. They come from, in this order:
- THREADLINE_ENCRYPTION_KEYS (comma-separated), when set;
- `[security] encryption_keys` in the config;
- a key file (`[security] key_file`; by default threadline.key beside the SQLite database,
  else in the working directory), generated on first start: 32 random bytes, base64.
The first key seals, every key opens: put a new key first to rotate.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import make_url

from threadline.config import Settings

log = logging.getLogger("threadline")

ENVIRONMENT_VARIABLE = "THREADLINE_ENCRYPTION_KEYS"
KEY_FILE_NAME = "threadline.key"


def server_keys(settings: Settings, environ: Mapping[str, str] = os.environ) -> list[str]:
    """The keys this process seals and opens with, newest first (a key file is made if needed)."""
    from_environment = [key.strip() for key in environ.get(ENVIRONMENT_VARIABLE, "").split(",") if key.strip()]
    if from_environment:
        return from_environment
    if settings.security.encryption_keys:
        return settings.security.encryption_keys
    return [read_or_create_key(key_file_path(settings))]


def key_file_path(settings: Settings) -> Path:
    """Where the generated key is kept: as configured, else beside a SQLite database, else
    in the working directory."""
    if settings.security.key_file:
        return Path(settings.security.key_file)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).parent / KEY_FILE_NAME
    return Path(KEY_FILE_NAME)


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def read_or_create_key(path: Path) -> str:
    """The key in the file at `path`, created with a new key (readable by its owner alone) if
    there is none. Processes starting together agree: the file appears whole or not at all."""
    with contextlib.suppress(FileNotFoundError):
        return read_key(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A draft of its own (not named by pid: containers sharing the folder may have the same one).
    descriptor, draft = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # readable by its owner alone
    with os.fdopen(descriptor, "w") as file:
        file.write(new_key() + "\n")
    try:
        os.link(draft, path)  # fails if another process made the file first: its key wins
    except FileExistsError:
        return read_key(path)
    finally:
        os.unlink(draft)
    log.warning(
        "No encryption key is configured: generated one in %s. Every process serving the same clients and database "
        "needs the same key: copy the file, or set [security] encryption_keys or %s to its contents.",
        path.resolve(),
        ENVIRONMENT_VARIABLE,
    )
    return read_key(path)


def read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:
        raise ValueError(f"The key file {path} is empty: delete it to have a new key generated, or put a key in it.")
    log.info("Encryption key read from %s", path.resolve())
    return key
