"""`threadline doctor`: whether a deployment is configured right, one line per check.

The checks read and ask; they change nothing (no migration, no key file, no database file).
Each line starts with ok, warn, FAIL or skip, and any FAIL makes the exit status 1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from threadline.doctor.checks import Check, fail, skip
from threadline.doctor.database import database_checks
from threadline.doctor.models import model_checks
from threadline.doctor.services import key_checks, tool_checks
from threadline.doctor.settings import settings_checks

__all__ = ["Check", "diagnose", "run"]


async def diagnose(config_file: str | None, database_url: str | None, generate: bool) -> AsyncIterator[Check]:
    """Every check's outcome, in order; those that need valid settings are skipped without them."""
    settings, checks = settings_checks(config_file, database_url)
    for check in checks:
        yield check
    if settings is None:
        yield skip("the rest", "the config must be right first")
        return
    for check in await database_checks(settings.database_url):
        yield check
    for check in key_checks(settings):
        yield check
    async for check in model_checks(settings, generate):
        yield check
    async for check in tool_checks(settings, generate):
        yield check


def run(config_file: str | None, database_url: str | None, generate: bool, echo: Callable[[str], None]) -> int:
    """Runs the checks, echoing a line for each as it completes; the exit status (1 on any FAIL)."""

    async def checked() -> bool:
        failed = False
        async for check in diagnose(config_file, database_url, generate):
            echo(check.line())
            failed = failed or check.status == "FAIL"
        return failed

    try:
        return 1 if asyncio.run(checked()) else 0
    except KeyboardInterrupt:
        echo(fail("doctor", "interrupted").line())
        return 1
