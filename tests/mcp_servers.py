"""Real MCP servers for the tests, built with the `mcp` SDK and served by uvicorn in a thread.

Usage:

    from tests.mcp_servers import run_mcp_server

    with run_mcp_server() as server:                      # streamable HTTP at http://127.0.0.1:<port>/mcp
        ...  # point an MCP tool's server_url at server.url
    with run_mcp_server("sse") as server:                 # HTTP+SSE at http://127.0.0.1:<port>/sse
        ...
    with run_mcp_server("sse", sse_path="/legacy") as server:   # SSE at a path that does not end in /sse
        ...
    with run_mcp_server(token="s3cret", require_token=True) as server:   # every request needs the bearer token
        ...
    with run_mcp_server(tool_count=30) as server:         # adds tool_01 ... tool_30, for allowed_tools
        ...

The server runs in the test's own process, so a test reads what the tools did from `server.state`:
`state.increments` (how many times `increment` ran), `state.slow_started` / `slow_finished` /
`slow_cancelled` (threading.Events set by `slow`), `state.authorization` (the Authorization
header each call of `secret` / `header` carried, in order), `state.requests` (HTTP requests
that reached the server), `state.call_metas` (the `_meta` of each tools/call: its trace context).

Tools on every server:
- `add(a, b)` -> a + b;  `echo(text)` -> text;
- `fail(message)` raises, so the call ends with isError and the message as its content;
- `slow(seconds)` sleeps, then answers "slept"; sets `slow_started`, then `slow_finished` or
  `slow_cancelled` (a cancelled call stops the sleep);
- `secret()` answers "the secret is 42" only when the request carries `Authorization: Bearer
  <token>` (token "s3cret" unless given), and fails with "unauthorized" otherwise;
- `header(name)` -> the value of request header `name`, or "" when absent;
- `increment()` -> how many times it has run, counted in `state.increments`;
- `rendezvous(key, count)` answers once `count` calls with `key` run at once (fails after 10 s),
  which shows calls running in parallel without measuring time;
- `protocol_error()` answers with a JSON-RPC error (-32602);
- `http_error()` is answered with HTTP 503 (streamable HTTP; over SSE the 503 goes to the POST
  of the message, and the SDK's SSE client does not report it: the call waits for its timeout).

`redirect_server(location)` is a plain HTTP server that answers every request with a 307 to
`location`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerState:
    """What the tools did, for the test to read."""

    token: str
    increments: int = 0
    requests: int = 0  # HTTP requests that reached the server
    call_metas: list[dict] = field(default_factory=list)  # the `_meta` of each tools/call, in order (trace context)
    arrivals: dict[str, int] = field(default_factory=dict)
    authorization: list[str | None] = field(default_factory=list)
    slow_started: threading.Event = field(default_factory=threading.Event)
    slow_finished: threading.Event = field(default_factory=threading.Event)
    slow_cancelled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def build_server(state: ServerState, tool_count: int = 0) -> MCPServer:
    """The MCP server every test uses: the tools listed in the module docstring."""
    mcp = MCPServer("threadline-test", log_level="WARNING")

    def authorization(ctx: Context) -> str | None:
        headers = ctx.headers or {}
        value = headers.get("authorization")
        with state.lock:
            state.authorization.append(value)
        return value

    @mcp.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @mcp.tool(description="Answer the text given.")
    def echo(text: str) -> str:
        return text

    @mcp.tool(description="Always fails with the message given.")
    def fail(message: str = "this tool always fails") -> str:
        raise ToolError(message)

    @mcp.tool(description="Sleep for a number of seconds, then answer.")
    async def slow(seconds: float) -> str:
        state.slow_started.set()
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            state.slow_cancelled.set()
            raise
        state.slow_finished.set()
        return "slept"

    @mcp.tool(description="Tell the secret, to a caller with the right bearer token.")
    def secret(ctx: Context) -> str:
        if authorization(ctx) != f"Bearer {state.token}":
            raise ToolError("unauthorized: this tool needs the right bearer token")
        return "the secret is 42"

    @mcp.tool(description="Answer the value of a request header.")
    def header(name: str, ctx: Context) -> str:
        authorization(ctx)
        return (ctx.headers or {}).get(name.lower(), "")

    @mcp.tool(description="Wait until `count` calls with the same key are running at once.")
    async def rendezvous(key: str, count: int) -> str:
        state.arrivals[key] = state.arrivals.get(key, 0) + 1
        with anyio.move_on_after(10):
            while state.arrivals[key] < count:
                await anyio.sleep(0.01)
            return f"{count} calls met"
        raise ToolError(f"only {state.arrivals[key]} of {count} calls were running at once")

    @mcp.tool(description="Always answers with a JSON-RPC error (invalid params).")
    def protocol_error() -> str:
        raise MCPError(INVALID_PARAMS, "protocol_error always answers with a JSON-RPC error")

    @mcp.tool(description="Never runs: its HTTP request is answered 503 (see Observe).")
    def http_error() -> str:
        return "unreachable"

    @mcp.tool(description="Count a side effect; answers how many times it has run.")
    def increment() -> int:
        with state.lock:
            state.increments += 1
            return state.increments

    for number in range(1, tool_count + 1):
        name = f"tool_{number:02d}"
        mcp.add_tool(answers(name), name=name, description=f"Answers its own name, {name}.")
    return mcp


def answers(text: str):
    def tool() -> str:
        return text

    return tool


class Observe:
    """ASGI middleware: counts requests, and answers 503 to a request that calls the tool `http_error`."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self.state.lock:
                self.state.requests += 1
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if isinstance(request, dict) and request.get("method") == "tools/call":
            with self.state.lock:
                self.state.call_metas.append((request.get("params") or {}).get("_meta") or {})
        if isinstance(request, dict) and (request.get("params") or {}).get("name") == "http_error":
            await JSONResponse({"error": "unavailable"}, status_code=503)(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


class RequireToken:
    """ASGI middleware: a 401 for any HTTP request without `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != self.expected:
            await JSONResponse({"error": "unauthorized"}, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


@contextlib.contextmanager
def serve(app: ASGIApp, port: int | None = None) -> Iterator[int]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1; yields the port."""
    port = port or free_port()
    # A session's SSE stream stays open until its client closes it; shutdown does not wait for it.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class McpTestServer:
    url: str
    port: int
    state: ServerState


@contextlib.contextmanager
def run_mcp_server(
    transport: str = "streamable_http",
    *,
    token: str = "s3cret",
    require_token: bool = False,
    tool_count: int = 0,
    sse_path: str = "/sse",
) -> Iterator[McpTestServer]:
    """An MCP server over `transport` ("streamable_http" or "sse") on a free port.

    `require_token` answers 401 to every request without the bearer token; `tool_count` adds
    that many extra tools; `sse_path` is where the SSE transport listens."""
    state = ServerState(token=token)
    mcp = build_server(state, tool_count)
    if transport == "streamable_http":
        app: ASGIApp = mcp.streamable_http_app()
        path = "/mcp"
    elif transport == "sse":
        app = mcp.sse_app(sse_path=sse_path)
        path = sse_path
    else:
        raise ValueError(f"unknown transport {transport!r}")
    app = Observe(app, state)
    if require_token:
        app = RequireToken(app, token)
    with serve(app) as port:
        yield McpTestServer(url=f"http://127.0.0.1:{port}{path}", port=port, state=state)


@contextlib.contextmanager
def redirect_server(location: str) -> Iterator[str]:
    """A server that answers every request with a 307 to `location`; yields its URL."""

    async def redirect(request: Request) -> RedirectResponse:
        return RedirectResponse(location, status_code=307)

    app = Starlette(routes=[Route("/{path:path}", redirect, methods=["GET", "POST", "DELETE"])])
    with serve(app) as port:
        yield f"http://127.0.0.1:{port}/mcp"
