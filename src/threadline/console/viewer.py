"""Who is looking: the console signs in with an API key, kept in a cookie, or takes a Bearer key.

The cookie is HttpOnly (page scripts never hold the key) and SameSite=Strict (another site's
page cannot send it); a state-changing request that rides on the cookie must also come from a
page of this origin."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request

from threadline.api.auth import Authenticator
from threadline.errors import APIError

COOKIE = "threadline_console"


@dataclass(frozen=True)
class Viewer:
    """A signed-in console user: a project's key, an admin key (every project), or nobody on an open server."""

    project: str
    admin: bool = False
    open: bool = False

    @property
    def project_filter(self) -> str | None:
        """The project listings are held to: None for an admin, who sees them all."""
        return None if self.admin else self.project

    def sees(self, project: str) -> bool:
        return self.admin or project == self.project


class SignInRequired(Exception):
    """A page was asked for without a usable key: the browser is sent to the sign-in page."""

    def __init__(self, path: str) -> None:
        self.location = "/console/login?next=" + quote(path, safe="/")


def viewer_for(authenticator: Authenticator, authorization: str | None, cookie: str | None) -> Viewer:
    """The viewer of a Bearer header, else of the sign-in cookie; raises 401 APIError for neither."""
    if authenticator.is_open:
        caller = authenticator.caller_for(None)
        return Viewer(caller.project, open=True)
    if authorization is None and cookie:
        authorization = "Bearer " + cookie
    caller = authenticator.caller_for(authorization)
    return Viewer(caller.project, admin=caller.admin)


def api_viewer(request: Request) -> Viewer:
    """Dependency for /console/api: the viewer, or 401 in OpenAI's envelope."""
    viewer = viewer_for(request.app.state.authenticator, request.headers.get("authorization"), request.cookies.get(COOKIE))
    if request.method not in ("GET", "HEAD") and "authorization" not in request.headers:
        same_origin(request)
    return viewer


def page_viewer(request: Request) -> Viewer:
    """Dependency for console pages: the viewer, or a redirect to the sign-in page."""
    try:
        viewer = viewer_for(request.app.state.authenticator, None, request.cookies.get(COOKIE))
    except APIError:
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path) from None
    if request.method not in ("GET", "HEAD"):
        same_origin(request)
    return viewer


def same_origin(request: Request) -> None:
    """Refuses (403) a cookie-borne change sent from a page of another origin."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
        raise APIError(403, f"Console requests from pages of another origin ({origin}) are refused.", code="cross_origin_request")
