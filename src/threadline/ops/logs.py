"""The server's log: readable text lines by default, JSON lines with `--log-format json`.

Every line written while a request is handled names its request id (and the client's own
X-Client-Request-Id), uvicorn's access and error lines included. Lines never carry keys or
secrets: the configured ones, and anything after `Bearer`, are masked in whatever a line
holds, its traceback included. Message content is never logged in the first place.
"""

from __future__ import annotations

import datetime
import logging
import logging.config
import os
import re
from collections.abc import Iterable
from typing import Literal

import orjson

from threadline.ops.request_ids import client_request_id, request_id

LogFormat = Literal["text", "json"]
MASK = "[redacted]"
# Keys OpenAI-style (sk-...), and credentials after an Authorization scheme.
KEY_PATTERNS = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}|(?<=Bearer )[^\s\"',]+", re.IGNORECASE)


class RequestIdFilter(logging.Filter):
    """Adds the request's ids, if any, to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.client_request_id = client_request_id.get()
        return True


class Redacting(logging.Formatter):
    """A formatter whose lines have every secret masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is masked whole.
        known = sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None

    def redact(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(MASK, text)
        return KEY_PATTERNS.sub(MASK, text)


class TextFormatter(Redacting):
    """`LEVEL logger: message request_id=... client_request_id=...`, then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        for name in ("request_id", "client_request_id"):
            value = getattr(record, name, None)
            if value:
                line += f" {name}={value}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


class JsonFormatter(Redacting):
    """One JSON object a line: time, level, logger, message, the request's ids, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for name in ("request_id", "client_request_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def logging_config(log_format: LogFormat = "text", secrets: Iterable[str] = ()) -> dict:
    """A `logging.config.dictConfig` for the whole process, uvicorn's loggers included (uvicorn
    takes it as its `log_config`, so each worker process applies it too)."""
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_ids": {"()": RequestIdFilter}},
        "formatters": {"threadline": {"()": formatter, "secrets": list(secrets)}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "threadline", "filters": ["request_ids"], "stream": "ext://sys.stderr"}
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        # uvicorn's own loggers write through the same handler, so its lines are alike.
        "loggers": {name: {"level": "INFO", "handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }


def configure(log_format: LogFormat = "text", secrets: Iterable[str] = ()) -> dict:
    """Set the process's logging up; the config, for uvicorn to apply in its workers too."""
    config = logging_config(log_format, secrets)
    logging.config.dictConfig(config)
    return config


def configured_secrets(settings) -> list[str]:
    """Every key and secret in the settings (threadline.config.Settings), for the log to mask."""
    secrets = [api_key.key for api_key in settings.auth.api_keys]
    secrets += [model.api_key for model in settings.models if model.api_key]
    secrets += settings.security.encryption_keys
    secrets += [settings.embeddings.api_key] if settings.embeddings.api_key else []
    web_search = settings.tools.web_search
    secrets += [web_search.api_key] if web_search is not None and web_search.api_key else []
    secrets += [key for key in os.environ.get("THREADLINE_ENCRYPTION_KEYS", "").split(",") if key]
    return secrets
