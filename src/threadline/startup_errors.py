"""Start-up errors an operator can cause, each told in a line or two that names the fix.

A config file's problems name the file, the key and its table, and for a key Threadline does
not know, the nearest one it does; a port another process holds is found before anything
starts, rather than after the database is migrated and the models are loaded.
"""

from __future__ import annotations

import difflib
import errno
import socket
import types
import typing
from pathlib import Path

from pydantic import BaseModel, ValidationError

from threadline.config import Settings

ORDINALS = ("first", "second", "third")


def config_problems(error: ValidationError, config_file: str | Path | None) -> list[str]:
    """One line per problem in the settings, naming the file, the table and the key."""
    where = f"{config_file}: " if config_file else "Invalid configuration: "
    return [where + problem(entry) for entry in error.errors()]


def problem(entry: dict) -> str:
    loc = tuple(entry["loc"])
    if entry["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        return unknown_key(loc[:-1], loc[-1])
    message = entry["msg"].removeprefix("Value error, ")
    if not loc:
        return message + "."
    table, key = loc[:-1], loc[-1]
    if isinstance(key, int) or model_at(loc) is not None:  # a whole table is wrong
        return f"{table_name(loc)}: {message}."
    return f"{key} {'at the top level' if not table else 'in ' + table_name(table)}: {message}."


def unknown_key(table: tuple, key: str) -> str:
    """Names the unknown key, its table, and the nearest valid key (or the valid ones)."""
    place = "at the top level" if not table else f"in {table_name(table)}"
    valid = sorted(keys_of(model_at(table)))
    nearest = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if nearest:
        return f"unknown key {key!r} {place}; did you mean {nearest[0]!r}?"
    elsewhere = places_with_key(Settings, key)
    if elsewhere:
        return f"unknown key {key!r} {place}; it belongs {elsewhere[0]}."
    return f"unknown key {key!r} {place}; the keys there are: {', '.join(valid)}."


def table_name(loc: tuple) -> str:
    """`("models", 0)` as `[[models]] (the first)`, `("tools", "mcp")` as `[tools.mcp]`."""
    names = [part for part in loc if isinstance(part, str)]
    indexes = [part for part in loc if isinstance(part, int)]
    if not indexes:
        return f"[{'.'.join(names)}]"
    index = indexes[-1]
    ordinal = ORDINALS[index] if index < len(ORDINALS) else f"number {index + 1}"
    return f"[[{'.'.join(names)}]] (the {ordinal})"


def model_at(loc: tuple) -> type[BaseModel] | None:
    """The settings model of the table at `loc`, list indexes skipped."""
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = settings_model(field.annotation) if field else None
    return model


def settings_model(annotation: object) -> type[BaseModel] | None:
    """The model inside an annotation such as `X`, `X | None` or `list[X]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            if model := settings_model(argument):
                return model
    return None


def keys_of(model: type[BaseModel] | None) -> set[str]:
    return set(model.model_fields) if model else set()


def places_with_key(model: type[BaseModel], key: str, table: str = "") -> list[str]:
    """Where, anywhere in the settings, `key` is valid: "at the top level", "in [server]", ..."""
    found = [f"in {table}" if table else "at the top level"] if key in model.model_fields else []
    for name, field in model.model_fields.items():
        inner = settings_model(field.annotation)
        if inner is not None:
            inner_table = f"{table.strip('[]')}.{name}" if table else name
            is_list = typing.get_origin(field.annotation) is list
            found += places_with_key(inner, key, f"[[{inner_table}]]" if is_list else f"[{inner_table}]")
    return found


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (in use, not an address here, not allowed), or None."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OverflowError:
        return f"Cannot listen on port {port}: a port is a number from 0 to 65535. Check --port."
    except socket.gaierror:
        return f"Cannot listen on {host}:{port}: {host} is not an address or host name of this machine. Check --host."
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"Cannot listen on {host}:{port}: another process is using that port. Stop it, or choose another --port."
        reason = exc.strerror or str(exc)
        return f"Cannot listen on {host}:{port} ({reason}). Check --host and --port (ports below 1024 need privileges)."
    return None
