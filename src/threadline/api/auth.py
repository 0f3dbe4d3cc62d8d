"""API keys: a Bearer key names the project whose objects the request may see."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from threadline.errors import APIError

OPEN_PROJECT = "default"


@dataclass(frozen=True)
class Caller:
    """Who a key belongs to: its project, and whether it is an admin key (the console's)."""

    project: str
    admin: bool = False


class Authenticator:
    def __init__(self, projects_by_key: dict[str, str], admin_keys: set[str] = frozenset()) -> None:
        self._keys = [(key.encode(), Caller(project, key in admin_keys)) for key, project in projects_by_key.items()]

    @property
    def is_open(self) -> bool:
        return not self._keys

    def project_for(self, authorization: str | None) -> str:
        """The caller's project; raises 401 for a missing or unknown key."""
        if self.is_open:
            return OPEN_PROJECT
        return self.caller_for(authorization).project

    def caller_for(self, authorization: str | None) -> Caller:
        """The caller behind an `Authorization` header; raises 401 for a missing or unknown key."""
        if self.is_open:
            return Caller(OPEN_PROJECT)
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise APIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        presented_bytes = presented.strip().encode()
        found = None
        # Compare against every key so the time taken does not say which one nearly matched.
        for key, caller in self._keys:
            if hmac.compare_digest(key, presented_bytes):
                found = caller
        if found is None:
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
        return found


async def project(request: Request) -> str:
    """FastAPI dependency: the project of the request's API key (async: no worker thread needed)."""
    return request.app.state.authenticator.project_for(request.headers.get("authorization"))
