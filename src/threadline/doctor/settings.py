"""The config file: readable, valid TOML, and only keys Threadline knows, with valid values."""

from __future__ import annotations

import tomllib

from pydantic import ValidationError

from threadline.config import Settings, load_settings
from threadline.doctor.checks import Check, fail, ok, plural
from threadline.startup_errors import config_problems


def settings_checks(config_file: str | None, database_url: str | None) -> tuple[Settings | None, list[Check]]:
    """The settings (None when they cannot be had) and a line for each problem, or one that says all is well."""
    try:
        settings = load_settings(config_file, database_url=database_url)
    except OSError as exc:
        return None, [fail("config", f"cannot read {config_file}: {exc.strerror}")]
    except tomllib.TOMLDecodeError as exc:
        return None, [fail("config", f"{config_file} is not valid TOML: {exc}")]
    except ValidationError as exc:
        return None, [fail("config", problem) for problem in config_problems(exc, config_file)]
    models = plural(len(settings.models), "model") if settings.models else "no models (the embedded default)"
    if not config_file:
        return settings, [ok("config", f"no config file: the defaults, with flags and THREADLINE_* variables; {models}")]
    return settings, [ok("config", f"{config_file} is valid: {models}, {plural(len(settings.prompts), 'prompt template')}")]
