"""One check's outcome, and how it is shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "FAIL", "skip"]


@dataclass(frozen=True)
class Check:
    status: Status
    name: str  # what was checked: "config", "database", "model gpt-4o", ...
    detail: str  # what was found, and for a warning or a failure, what to do

    def line(self) -> str:
        return f"{self.status:<5}{self.name}: {self.detail}"


def ok(name: str, detail: str) -> Check:
    return Check("ok", name, detail)


def warn(name: str, detail: str) -> Check:
    return Check("warn", name, detail)


def fail(name: str, detail: str) -> Check:
    return Check("FAIL", name, detail)


def skip(name: str, detail: str) -> Check:
    return Check("skip", name, detail)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
