"""API keys: a Bearer key names the project whose objects the request may see."""

from __future__ import annotations

import hmac

from fastapi import Request

from threadline.errors import APIError

OPEN_PROJECT = "default"


class Authenticator:
    def __init__(self, projects_by_key: dict[str, str]) -> None:
        self._keys = [(key.encode(), project) for key, project in projects_by_key.items()]

    @property
    def is_open(self) -> bool:
        return not self._keys

    def project_for(self, authorization: str | None) -> str:
        """The caller's project; raises 401 for a missing or unknown key."""
        if self.is_open:
            return OPEN_PROJECT
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
        for key, project in self._keys:
            if hmac.compare_digest(key, presented_bytes):
                found = project
        if found is None:
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")
        return found


async def project(request: Request) -> str:
    """FastAPI dependency: the project of the request's API key (async: no worker thread needed)."""
    return request.app.state.authenticator.project_for(request.headers.get("authorization"))
