"""The console's routes, static files and sign-in redirect, added to the app in one call."""

from __future__ import annotations

from fastapi import FastAPI

from threadline.console import api, conversations, health, pages, playground, responses
from threadline.console.viewer import SignInRequired

SECTIONS = (api, pages, conversations, responses, playground, health)  # each with its `router`


def install_console(app: FastAPI) -> None:
    for section in SECTIONS:
        app.include_router(section.router)
    app.mount("/console/static", pages.static_files, name="console-static")
    app.add_exception_handler(SignInRequired, pages.sign_in_redirect)
