"""The README's endpoint tables list every endpoint the server routes, and nothing else: the
API's in "Endpoints", the web console's JSON in "Web console"."""

from __future__ import annotations

import re
from pathlib import Path

from threadline.app import create_app
from threadline.config import Settings
from threadline.console.install import SECTIONS

README = Path(__file__).resolve().parent.parent / "README.md"


def endpoint(method: str, path: str) -> tuple[str, str]:
    """(method, path) with path parameters unnamed: /v1/models/{model_id:path} is /v1/models/{}."""
    return method, re.sub(r"\{[^}]*\}", "{}", path)


def readme_endpoints(heading: str = "Endpoints") -> set[tuple[str, str]]:
    section = README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {
        endpoint(method, path)
        for row in rows
        for methods, path in re.findall(r"`([A-Z]+(?:/[A-Z]+)*) (/[^`?\s]*)", row)
        for method in methods.split("/")
    }


def routed_endpoints() -> set[tuple[str, str]]:
    """What the app routes: the API its OpenAPI document describes, and the routes outside it."""
    app = create_app(Settings())
    described = {endpoint(method.upper(), path) for path, operations in app.openapi()["paths"].items() for method in operations}
    # Routes of the app itself (/health, /openapi.json, /docs); routers' routes are described
    # above. Swagger UI's sign-in helper belongs to /docs, not to the API.
    own = {
        endpoint(method, route.path)
        for route in app.routes
        if getattr(route, "methods", None) and route.path != app.swagger_ui_oauth2_redirect_url
        for method in route.methods - {"HEAD"}
    }
    return described | own


def console_endpoints() -> set[tuple[str, str]]:
    """The console's routes: its pages, and its JSON under /console/api."""
    return {
        endpoint(method, route.path)
        for section in SECTIONS
        for route in section.router.routes
        for method in route.methods - {"HEAD"}
    }


def test_the_readme_lists_every_endpoint():
    routed = routed_endpoints()
    assert ("POST", "/v1/responses/{}/cancel") in routed
    # The console is one row there: its pages are reached from /console.
    assert readme_endpoints() == routed | {("GET", "/console")}


def test_the_readme_lists_every_endpoint_of_the_console_api():
    console_api = {(method, path) for method, path in console_endpoints() if path.startswith("/console/api/")}
    assert ("GET", "/console/api/conversations") in console_api
    assert readme_endpoints("Web console") == console_api
