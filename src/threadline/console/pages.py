"""The console's frame: sign-in and sign-out, the shared layout, and the template renderer
every page uses. Each page (conversations, responses, playground, health) is its own module."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from threadline.console.viewer import COOKIE, SignInRequired, Viewer, page_viewer, same_origin, viewer_for
from threadline.errors import APIError

PACKAGE = resources.files("threadline.console")
templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
static_files = StaticFiles(directory=str(PACKAGE / "static"))

router = APIRouter(prefix="/console", include_in_schema=False)
PageViewer = Annotated[Viewer, Depends(page_viewer)]


def render(request: Request, viewer: Viewer | None, template: str, status_code: int = 200, **context) -> HTMLResponse:
    """A page in the console's layout; `viewer` names who is signed in, for the header."""
    return templates.TemplateResponse(request, template, {"viewer": viewer, **context}, status_code=status_code)


def sign_in_redirect(_request: Request, error: SignInRequired) -> RedirectResponse:
    return RedirectResponse(error.location, status_code=303)


@router.get("")
async def home(viewer: PageViewer) -> RedirectResponse:
    return RedirectResponse("/console/conversations", status_code=303)


@router.get("/login")
async def login_page(request: Request, next: str = "/console/conversations") -> Response:
    if request.app.state.authenticator.is_open:
        return RedirectResponse(_local(next), status_code=303)
    return render(request, None, "login.html", next=_local(next))


@router.post("/login")
async def login(request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/console/conversations") -> Response:
    same_origin(request)  # another site's page must not sign the browser in with a key of its choosing
    try:
        viewer_for(request.app.state.authenticator, "Bearer " + key.strip(), None)
    except APIError:
        return render(request, None, "login.html", status_code=401, next=_local(next), error="That API key is not one this server knows.")
    answer = RedirectResponse(_local(next), status_code=303)
    # A session cookie: gone when the browser closes; never readable by page scripts.
    answer.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict", path="/console", secure=request.url.scheme == "https")
    return answer


@router.post("/logout")
async def logout(viewer: PageViewer) -> RedirectResponse:
    answer = RedirectResponse("/console/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/console")
    return answer


def _local(path: str) -> str:
    """Only a console path is followed after sign-in, never another site."""
    return path if path.startswith("/console") and not path.startswith("//") else "/console/conversations"
