"""The MCP client: one response's sessions with remote MCP servers, on the official `mcp` SDK.

A session is opened on first use and kept until the response ends (`McpConnections.aclose`).
Streamable HTTP is tried first; a server that answers it with a 4xx (other than 401/403) is
spoken to over the older HTTP+SSE transport, and a URL whose path ends in `/sse` goes there
directly.

The SDK's transports run anyio task groups, whose cancel scopes must be entered and left by one
task. So each session lives in a task of its own that enters the SDK's contexts, waits, and
leaves them; the response's tasks (several at once, for parallel tool calls) only send requests
through it.

Every connection goes through the network check: the URL's host before connecting, and every
address at the moment a TCP connection is opened, so neither a changed DNS answer nor a redirect
reaches a host that `allowed_hosts` does not cover. The header values and the authorization
token are sent, never logged, and kept out of every message this module produces.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx2
from mcp import Client, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT, CallToolResult, Implementation

from threadline.errors import APIError
from threadline.tools import network

logger = logging.getLogger("threadline")

CLIENT_INFO = Implementation(name="threadline", version="0.1.0")


@dataclass
class McpServer:
    """An MCP server as a request names it."""

    label: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # sent on every request
    authorization: str | None = None  # sent as "Authorization: Bearer <token>"

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.authorization:
            headers["Authorization"] = f"Bearer {self.authorization}"
        return headers

    def redact(self, text: str) -> str:
        """`text` without any header value or the token in it."""
        secrets = [*self.headers.values(), self.authorization or ""]
        for secret in sorted((s for s in secrets if s), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text


class McpUnavailable(Exception):
    """The server could not be connected to or its tools listed. The message is safe to show.

    `refused` is the 400 when the network check refused the server's host; `status` the HTTP
    status the server answered with, when that is why."""

    def __init__(self, message: str, refused: APIError | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.refused = refused
        self.status = status


@dataclass
class McpResult:
    """One tool call's outcome: `output` (text), or `error` in OpenAI's MCPToolCallError shape."""

    output: str | None = None
    error: dict | None = None


class _GuardedNetwork(httpcore2.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the network check allows, and to no other
    address than the one it checked."""

    def __init__(self, allowed: network.AllowedHosts) -> None:
        self.allowed = allowed
        self.inner = httpcore2.AnyIOBackend()
        self.refused: APIError | None = None

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, **options: Any):
        try:
            addresses = await network.resolve(host, port)
            for address in addresses:
                network.check_address(host, address, self.allowed)
        except APIError as refused:
            self.refused = refused
            raise httpcore2.ConnectError(refused.message) from None
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, **options)
            except httpcore2.ConnectError as failed:
                error = failed
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options=None):
        raise httpcore2.ConnectError("MCP servers are reached over TCP only.")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Transport(httpx2.AsyncHTTPTransport):
    """httpx2's transport, connecting through `_GuardedNetwork`, with no proxy from the
    environment (a proxy would make the connect-time check moot)."""

    def __init__(self, guard: _GuardedNetwork) -> None:
        super().__init__(trust_env=False)
        # httpx2 offers no argument for a network backend; its pool takes one.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False), network_backend=guard
        )


class _Channel:
    """What one session's HTTP traffic showed: the statuses of failed requests, and a refusal."""

    def __init__(self, server: McpServer, allowed: network.AllowedHosts, timeout_s: float) -> None:
        self.server = server
        self.guard = _GuardedNetwork(allowed)
        self.timeout_s = timeout_s
        self.first_post_status: int | None = None
        self.failed_calls: dict[str, int] = {}  # tool name -> HTTP status of its failed tools/call

    def http_client(self, **_: Any) -> httpx2.AsyncClient:
        """An httpx2 client for the SDK's transports; its arguments (the SDK's defaults) are ignored."""
        return httpx2.AsyncClient(
            headers=self.server.request_headers(),
            # Reads may idle for as long as a tool runs; each operation has its own bound.
            timeout=httpx2.Timeout(self.timeout_s, read=None),
            follow_redirects=False,
            trust_env=False,
            transport=_Transport(self.guard),
            event_hooks={"response": [self._record]},
        )

    async def _record(self, response: httpx2.Response) -> None:
        if response.request.method != "POST":
            return
        if self.first_post_status is None:
            self.first_post_status = response.status_code
        if response.status_code >= 400:
            try:
                message = json.loads(response.request.content)
            except ValueError:
                return
            if isinstance(message, dict) and message.get("method") == "tools/call":
                self.failed_calls[str((message.get("params") or {}).get("name"))] = response.status_code


def _leaves(error: BaseException) -> Iterable[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _describe(error: BaseException, channel: _Channel) -> tuple[str, int | None]:
    """Why a connection failed, in words safe to show, and the HTTP status that said so if any."""
    if channel.guard.refused is not None:
        return channel.guard.refused.message, None
    leaves = list(_leaves(error))
    for leaf in leaves:
        if isinstance(leaf, httpx2.HTTPStatusError):
            status = leaf.response.status_code
            return f"the server answered HTTP {status}", status
    for leaf in leaves:
        if isinstance(leaf, MCPError):
            status = channel.first_post_status
            if status is not None and status >= 400:
                return f"the server answered HTTP {status}", status
            return f"the server answered with error {leaf.code}: {leaf.message}", None
    for leaf in leaves:
        if isinstance(leaf, httpx2.TimeoutException | TimeoutError):
            return "the server did not answer in time", None
        if isinstance(leaf, httpx2.HTTPError | OSError):
            return f"could not connect ({leaf})", None
    return f"could not connect ({type(leaves[0]).__name__}: {leaves[0]})", None


# The errors the SDK's streamable HTTP transport makes up for an HTTP failure without a JSON-RPC
# error in its body; the HTTP status is then the real error.
_HTTP_STAND_INS = {"Server returned an error response", "Not Found", "Session terminated"}


def _streamable_unsupported(status: int | None) -> bool:
    """Whether the answer to the first POST says the server does not speak streamable HTTP."""
    return status is not None and 400 <= status < 500 and status not in (401, 403)


class _Session:
    """One server's open MCP session, owned by a task of its own (see the module docstring)."""

    def __init__(self, server: McpServer, allowed: network.AllowedHosts, timeout_s: float) -> None:
        self.server = server
        self.allowed = allowed
        self.timeout_s = timeout_s
        self.channel = _Channel(server, allowed, timeout_s)
        self._ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def client(self) -> Client:
        """The connected client; McpUnavailable when the server cannot be reached in time."""
        if self._task is None:
            self._task = asyncio.create_task(self._own(), name=f"mcp session {self.server.label}")
        try:
            async with asyncio.timeout(self.timeout_s):
                return await asyncio.shield(self._ready)
        except TimeoutError:
            self._fail(
                McpUnavailable(
                    f"Could not connect to MCP server '{self.server.label}': "
                    f"it did not answer within {self.timeout_s:g} s."
                )
            )
            self._task.cancel()
            return await self._ready

    async def _own(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await self._connect(stack)
                self._ready.set_result(client)
                await self._stop.wait()
        except McpUnavailable as unavailable:
            self._fail(unavailable)
        except asyncio.CancelledError:
            self._fail(McpUnavailable(f"The connection to MCP server '{self.server.label}' was closed."))
            raise
        except BaseException as error:  # the SDK's task groups raise groups; every failure ends the session
            reason, status = _describe(error, self.channel)
            reason = self.server.redact(reason)
            if self._ready.done():
                logger.warning("MCP server '%s' closed its session: %s", self.server.label, reason)
            message = f"Could not connect to MCP server '{self.server.label}': {reason}."
            self._fail(McpUnavailable(message, status=status))
            if not isinstance(error, Exception):
                raise

    def _fail(self, unavailable: McpUnavailable) -> None:
        if not self._ready.done():
            self._ready.set_exception(unavailable)
            self._ready.exception()  # seen here, so asyncio never reports it as unretrieved

    async def _connect(self, stack: AsyncExitStack) -> Client:
        server = self.server
        try:
            await network.check_host(server.url, self.allowed)
        except APIError as refused:
            raise McpUnavailable(
                f"Could not connect to MCP server '{server.label}': {refused.message}", refused=refused
            ) from None
        if not urlsplit(server.url).path.rstrip("/").endswith("/sse"):
            attempt = AsyncExitStack()
            try:
                http = await attempt.enter_async_context(self.channel.http_client())
                transport = streamable_http_client(server.url, http_client=http)
                client = await attempt.enter_async_context(Client(transport, cache=None, client_info=CLIENT_INFO))
            except Exception:
                await attempt.aclose()
                refused = self.channel.guard.refused is not None
                if refused or not _streamable_unsupported(self.channel.first_post_status):
                    raise
                logger.info("MCP server '%s' does not speak streamable HTTP; trying HTTP+SSE", server.label)
                self.channel.first_post_status = None
            else:
                await stack.enter_async_context(attempt)
                return client
        transport = sse_client(server.url, httpx_client_factory=self.channel.http_client)
        return await stack.enter_async_context(Client(transport, cache=None, client_info=CLIENT_INFO))

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        done, _ = await asyncio.wait({self._task}, timeout=self.timeout_s)
        if not done:
            self._task.cancel()
        # _own records every failure itself; what is left here is its cancellation.
        await asyncio.gather(self._task, return_exceptions=True)


def _tool_dict(tool: Any) -> dict:
    annotations = tool.annotations.model_dump(by_alias=True, exclude_none=True) if tool.annotations else None
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.input_schema,
        "annotations": annotations,
    }


def _result(result: CallToolResult) -> McpResult:
    content = [block.model_dump(by_alias=True, exclude_none=True, mode="json") for block in result.content]
    if result.is_error:
        return McpResult(error={"type": "mcp_tool_execution_error", "content": content})
    texts = [block["text"] for block in content if block.get("type") == "text"]
    if texts:
        return McpResult(output="\n".join(texts))
    if result.structured_content is not None:
        return McpResult(output=json.dumps(result.structured_content))
    return McpResult(output=json.dumps(content) if content else "")


class McpConnections:
    """This response's open sessions, one per server, opened on first use, closed by aclose().

    Used from the response's task; `call_tool` may also be awaited from several of its child
    tasks at once. Each operation is bounded by `timeout_s`."""

    def __init__(self, allowed_hosts: list[str], timeout_s: float) -> None:
        self.allowed = network.AllowedHosts.parse(allowed_hosts)
        self.timeout_s = timeout_s
        self._sessions: dict[tuple, _Session] = {}

    def _session(self, server: McpServer) -> _Session:
        key = (server.url, tuple(sorted(server.headers.items())), server.authorization)
        if key not in self._sessions:
            self._sessions[key] = _Session(server, self.allowed, self.timeout_s)
        return self._sessions[key]

    async def list_tools(self, server: McpServer) -> list[dict]:
        """The server's tools as [{"name", "description", "input_schema", "annotations"}];
        McpUnavailable when it cannot be reached or answers the listing with an error."""
        session = self._session(server)
        client = await session.client()
        tools: list[dict] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(_tool_dict(tool) for tool in page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        return tools
        except TimeoutError:
            raise McpUnavailable(
                f"MCP server '{server.label}' did not list its tools within {self.timeout_s:g} s."
            ) from None
        except MCPError as error:
            reason = server.redact(f"error {error.code}: {error.message}")
            raise McpUnavailable(f"MCP server '{server.label}' could not list its tools: {reason}.") from None

    async def call_tool(self, server: McpServer, name: str, arguments: dict) -> McpResult:
        """Run one tool. Tool, protocol, HTTP and connection failures and the timeout come back as
        `McpResult.error`; a cancelled call is abandoned (the server is told) and re-raised."""
        session = self._session(server)
        try:
            client = await session.client()
        except McpUnavailable as unavailable:
            message = unavailable.message
            if unavailable.status is not None:
                return McpResult(error={"type": "http_error", "code": unavailable.status, "message": message})
            return McpResult(error={"type": "mcp_protocol_error", "code": CONNECTION_CLOSED, "message": message})
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await client.call_tool(name, arguments)
        except TimeoutError:
            message = f"The tool call timed out after {self.timeout_s:g} s."
            return McpResult(error={"type": "mcp_protocol_error", "code": REQUEST_TIMEOUT, "message": message})
        except MCPError as error:
            status = session.channel.failed_calls.pop(name, None)
            if status is not None and error.message in _HTTP_STAND_INS:
                message = f"The MCP server answered HTTP {status}."
                return McpResult(error={"type": "http_error", "code": status, "message": message})
            message = server.redact(error.message)
            return McpResult(error={"type": "mcp_protocol_error", "code": error.code, "message": message})
        except (httpx2.HTTPError, OSError) as error:
            message = server.redact(f"The connection to the MCP server failed: {error}")
            return McpResult(error={"type": "mcp_protocol_error", "code": CONNECTION_CLOSED, "message": message})
        finally:
            session.channel.failed_calls.pop(name, None)
        return _result(result)

    async def aclose(self) -> None:
        """Close every session this response opened."""
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(session.aclose() for session in sessions), return_exceptions=True)
