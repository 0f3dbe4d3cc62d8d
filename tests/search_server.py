"""A web search server for tests, served for real over HTTP from a thread.

It speaks the three APIs Threadline's providers call, with the answers scripted by the test:

    GET  /search?q=...&format=json       SearXNG's JSON API (without format=json: an HTML page,
                                         as SearXNG answers)
    GET  /res/v1/web/search?q=...        Brave's Web Search API (key in X-Subscription-Token)
    POST /search {"query": ...}          Tavily's search API (key as "Authorization: Bearer ...")

    with SearchServer(api_key="brave-or-tavily-key") as search:
        search.add("threadline", hit("https://example.com/a", "A page", "What it says"), ...)
        settings = WebSearchSettings(provider="searxng", base_url=search.base_url)
        ...
        assert search.requests[0].query == "threadline"
        assert search.requests[0].params["language"] == "de-DE"

Scripted results are found by the query with its `site:` operators (and the ORs between them)
taken out, so "threadline site:example.com" finds what `add("threadline", ...)` scripted. Like
an engine that ignores such operators, the server does not filter by them: a test can show that
the caller enforces its allowed domains itself. A query nobody scripted finds nothing. Brave's
`count` and Tavily's `max_results` are obeyed; SearXNG answers all of a query's results at once.

With `api_key` set, Brave and Tavily requests without that key are refused with a 401 in each
API's own shape (SearXNG takes no key). Faults are queued and each answers one request, of any
API, in place of its results:

    search.fail(500)                  an HTTP error (body: each API's error shape, or `body=`)
    search.malformed()                a 200 whose body is broken JSON
    search.stall(5)                   an answer that starts only after that many seconds

Every request lands in `requests` as a SearchRequest: `api` ("searxng", "brave" or "tavily"),
`method`, `path`, `params` (the query string), `headers` (names in lower case), `body` (the
JSON body, or None) and `query` (the q / query it asked, as sent).
`reset()` forgets the script, the faults and the recorded requests.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.servers import ThreadServer

SITE_TERMS = re.compile(r"(?:\s+OR)?\s*\(?\bsite:\S+\)?", re.IGNORECASE)


def hit(url: str, title: str = "", snippet: str = "") -> dict:
    """One scripted result."""
    return {"url": url, "title": title, "snippet": snippet}


def plain_query(query: str) -> str:
    """The query without its site: operators, the way scripts are looked up."""
    return SITE_TERMS.sub("", query).strip()


@dataclass
class SearchRequest:
    api: str
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: Any
    query: str


@dataclass
class Fault:
    status: int = 200
    body: bytes | None = None
    delay: float = 0.0


@dataclass
class SearchServer:
    api_key: str | None = None
    results: dict[str, list[dict]] = field(default_factory=dict)
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[SearchRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/search", self._search, methods=["GET", "POST"]),
                Route("/res/v1/web/search", self._brave, methods=["GET"]),
            ]
        )

    # Scripting.

    def add(self, query: str, *hits: dict) -> None:
        """Results for a query (added to any it already has)."""
        self.results.setdefault(plain_query(query), []).extend(hits)

    def fail(self, status: int, body: bytes | str | None = None) -> None:
        self.faults.append(Fault(status=status, body=body.encode() if isinstance(body, str) else body))

    def malformed(self, body: bytes = b'{"results": [') -> None:
        self.faults.append(Fault(body=body))

    def stall(self, seconds: float) -> None:
        self.faults.append(Fault(delay=seconds))

    def reset(self) -> None:
        self.results.clear()
        self.faults.clear()
        self.requests.clear()

    # The endpoints.

    async def _record(self, request: Request, api: str) -> SearchRequest:
        body = None
        if request.method == "POST":
            raw = await request.body()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        query = (body.get("query") if isinstance(body, dict) else None) or request.query_params.get("q") or ""
        recorded = SearchRequest(api, request.method, request.url.path, dict(request.query_params), dict(request.headers), body, query)
        self.requests.append(recorded)
        return recorded

    async def _fault(self, api: str) -> Response | None:
        if not self.faults:
            return None
        fault = self.faults.popleft()
        await asyncio.sleep(fault.delay)
        if fault.body is not None:
            return Response(fault.body, status_code=fault.status, media_type="application/json")
        if fault.status >= 400:
            return error_response(api, fault.status, "scripted failure")
        return None  # a stall, then the real answer

    def _hits(self, query: str) -> list[dict]:
        return list(self.results.get(plain_query(query), []))

    def _refused(self, api: str, key: str | None) -> Response | None:
        if self.api_key is not None and key != self.api_key:
            return error_response(api, 401, "The provided API key is invalid.")
        return None

    async def _search(self, request: Request) -> Response:
        if request.method == "POST":
            return await self._tavily(request)
        recorded = await self._record(request, "searxng")
        if request.query_params.get("format") != "json":
            return HTMLResponse("<html><body>SearXNG results page</body></html>")
        if (fault := await self._fault("searxng")) is not None:
            return fault
        hits = self._hits(recorded.query)
        return JSONResponse(
            {
                "query": recorded.query,
                "number_of_results": len(hits),
                "results": [
                    {
                        "url": h["url"],
                        "title": h["title"],
                        "content": h["snippet"],
                        "engine": "duckduckgo",
                        "engines": ["duckduckgo"],
                        "positions": [position],
                        "score": 1.0 / position,
                        "category": "general",
                        "template": "default.html",
                    }
                    for position, h in enumerate(hits, start=1)
                ],
                "answers": [],
                "corrections": [],
                "infoboxes": [],
                "suggestions": [],
                "unresponsive_engines": [],
            }
        )

    async def _brave(self, request: Request) -> Response:
        recorded = await self._record(request, "brave")
        if (refused := self._refused("brave", request.headers.get("x-subscription-token"))) is not None:
            return refused
        if (fault := await self._fault("brave")) is not None:
            return fault
        count = int(request.query_params.get("count", "20"))
        hits = self._hits(recorded.query)[:count]
        results = [
            {"type": "search_result", "title": h["title"], "url": h["url"], "description": h["snippet"], "language": "en", "family_friendly": True}
            for h in hits
        ]
        answer: dict[str, Any] = {"type": "search", "query": {"original": recorded.query, "more_results_available": False}}
        if results:  # Brave leaves out `web` when it found no web results
            answer["web"] = {"type": "search", "results": results, "family_friendly": True}
        return JSONResponse(answer)

    async def _tavily(self, request: Request) -> Response:
        recorded = await self._record(request, "tavily")
        authorization = request.headers.get("authorization", "")
        if (refused := self._refused("tavily", authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None)) is not None:
            return refused
        if (fault := await self._fault("tavily")) is not None:
            return fault
        if not isinstance(recorded.body, dict) or not recorded.query:
            return JSONResponse({"detail": {"error": "query is required"}}, status_code=400)
        hits = self._hits(recorded.query)[: int(recorded.body.get("max_results", 5))]
        results = [{"title": h["title"], "url": h["url"], "content": h["snippet"], "score": 0.9, "raw_content": None} for h in hits]
        return JSONResponse({"query": recorded.query, "follow_up_questions": None, "answer": None, "images": [], "results": results, "response_time": 0.01})

    # Serving.

    def __enter__(self) -> SearchServer:
        self._served = ThreadServer(self.app, "the search server")
        port = self._served.start()
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._served.stop()


def error_response(api: str, status: int, message: str) -> Response:
    """An error in the shape each API sends its own."""
    if api == "brave":
        body: dict[str, Any] = {"type": "ErrorResponse", "error": {"code": "ERROR", "detail": message, "status": status}}
    elif api == "tavily":
        body = {"detail": {"error": message}}
    else:  # SearXNG answers errors with a plain page
        return Response(f"{status}: {message}", status_code=status, media_type="text/plain")
    return JSONResponse(body, status_code=status)
