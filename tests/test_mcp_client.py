"""The MCP client and the network check, against real MCP servers over streamable HTTP and SSE."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx2
import pytest
import pytest_asyncio

from threadline.errors import APIError
from threadline.tools import network
from threadline.tools.mcp_client import McpConnections, McpServer, McpUnavailable, _Channel

from tests.mcp_servers import free_port, redirect_server, run_mcp_server

pytestmark = pytest.mark.asyncio

LOOPBACK = ["127.0.0.1"]


@pytest.fixture(params=["streamable_http", "sse"])
def server(request):
    with run_mcp_server(request.param) as running:
        yield running


@pytest_asyncio.fixture
async def connections():
    connections = McpConnections(LOOPBACK, timeout_s=10)
    yield connections
    await connections.aclose()


def mcp(url: str, headers: dict | None = None, authorization: str | None = None) -> McpServer:
    return McpServer(label="test", url=url, headers=headers or {}, authorization=authorization)


async def wait_for(event) -> bool:
    return await asyncio.to_thread(event.wait, 10)


# The network check


async def refused(url: str, allowed: list[str]) -> APIError:
    with pytest.raises(APIError) as raised:
        await network.check_host(url, allowed, param="tools[0].server_url")
    assert raised.value.status == 400
    assert raised.value.param == "tools[0].server_url"
    return raised.value


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/mcp", "file:///etc/passwd", "http:///mcp", "not a url"])
async def test_only_http_urls_with_a_host_are_accepted(url):
    await refused(url, LOOPBACK)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "0.0.0.0",
        "224.0.0.1", "240.0.0.1", "100.64.0.1", "[::1]", "[fe80::1]", "[fc00::1]", "[::ffff:127.0.0.1]", "[::]",
    ],
)
async def test_non_public_addresses_are_refused_by_default(host):
    error = await refused(f"http://{host}:8000/mcp", [])
    assert "allowed_hosts" in error.message


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "[2001:4860:4860::8888]"])
async def test_public_addresses_always_pass(host):
    await network.check_host(f"https://{host}/mcp", [], param="tools[0].server_url")


async def test_an_address_entry_covers_that_address_only():
    await network.check_host("http://127.0.0.1:9/mcp", ["127.0.0.1"])
    await refused("http://127.0.0.2:9/mcp", ["127.0.0.1"])
    await refused("http://10.0.0.1/mcp", ["127.0.0.1"])


async def test_a_cidr_entry_covers_its_range_only():
    allowed = ["10.0.0.0/8", "fd00::/8"]
    await network.check_host("http://10.200.3.4/mcp", allowed)
    await network.check_host("http://[fd12::1]/mcp", allowed)
    await refused("http://172.16.0.1/mcp", allowed)
    await refused("http://192.168.0.1/mcp", allowed)
    await refused("http://127.0.0.1/mcp", allowed)


async def test_a_host_name_entry_covers_that_name_only():
    await network.check_host("http://LocalHost:9/mcp", ["localhost"])
    # The name does not cover the addresses it resolves to when written as addresses.
    await refused("http://127.0.0.1:9/mcp", ["localhost"])


async def test_a_name_that_resolves_to_loopback_is_refused():
    error = await refused("http://localhost:9/mcp", [])
    assert "localhost" in error.message and "resolves to" in error.message
    # An address entry must cover every address the name resolves to (it may have ::1 too).
    await refused("http://localhost:9/mcp", ["127.0.0.2"])
    await network.check_host("http://localhost:9/mcp", ["127.0.0.0/8", "::1"])


async def test_a_name_that_does_not_resolve_passes_the_check_and_cannot_be_reached():
    await network.check_host("http://no-such-host.invalid/mcp", [])  # a server that cannot be reached, not a bad request
    connections = McpConnections([], timeout_s=5)
    try:
        with pytest.raises(McpUnavailable):
            await connections.list_tools(McpServer(label="gone", url="http://no-such-host.invalid/mcp", headers={}, authorization=None))
    finally:
        await connections.aclose()


async def test_the_connect_time_check_refuses_what_the_url_check_would():
    allowed = network.AllowedHosts.parse(["10.0.0.0/8", "internal.example"])
    network.check_address("anything.example", "10.1.1.1", allowed)
    network.check_address("internal.example", "192.168.1.1", allowed)
    network.check_address("public.example", "8.8.8.8", allowed)
    with pytest.raises(APIError):
        network.check_address("rebound.example", "127.0.0.1", allowed)


async def test_connections_are_checked_when_they_are_opened(server):
    """Whatever a URL check let through, the address a connection goes to is checked again."""
    channel = _Channel(mcp(server.url), network.AllowedHosts.parse([]), timeout_s=5)
    async with channel.http_client() as http:
        with pytest.raises(httpx2.ConnectError):
            await http.get(server.url)
    assert channel.guard.refused is not None and "loopback" in channel.guard.refused.message
    assert server.state.requests == 0


# Listing and calling


async def test_list_tools(server, connections):
    tools = {tool["name"]: tool for tool in await connections.list_tools(mcp(server.url))}
    assert {"add", "echo", "fail", "slow", "secret", "increment"} <= set(tools)
    assert tools["add"]["description"] == "Add two integers."
    assert tools["add"]["input_schema"]["properties"].keys() == {"a", "b"}
    assert set(tools["add"]) == {"name", "description", "input_schema", "annotations"}


async def test_call_tools(server, connections):
    target = mcp(server.url)
    assert (await connections.call_tool(target, "add", {"a": 2, "b": 40})).output == "42"
    result = await connections.call_tool(target, "echo", {"text": "héllo"})
    assert result.output == "héllo" and result.error is None


async def test_many_tools_are_all_listed():
    with run_mcp_server(tool_count=30) as server:
        connections = McpConnections(LOOPBACK, timeout_s=10)
        try:
            names = [tool["name"] for tool in await connections.list_tools(mcp(server.url))]
            assert [name for name in names if name.startswith("tool_")] == [f"tool_{n:02d}" for n in range(1, 31)]
            assert (await connections.call_tool(mcp(server.url), "tool_17", {})).output == "tool_17"
        finally:
            await connections.aclose()


async def test_a_tool_that_raises_is_an_execution_error(server, connections):
    result = await connections.call_tool(mcp(server.url), "fail", {"message": "the disk is full"})
    assert result.output is None
    assert result.error["type"] == "mcp_tool_execution_error"
    assert "the disk is full" in result.error["content"][0]["text"]
    assert result.error["content"][0]["type"] == "text"


async def test_a_json_rpc_error_is_a_protocol_error(server, connections):
    result = await connections.call_tool(mcp(server.url), "protocol_error", {})
    assert result.error == {
        "type": "mcp_protocol_error",
        "code": -32602,
        "message": "protocol_error always answers with a JSON-RPC error",
    }


async def test_an_http_failure_is_an_http_error(connections):
    with run_mcp_server() as server:
        target = mcp(server.url)
        result = await connections.call_tool(target, "http_error", {})
        assert result.error["type"] == "http_error" and result.error["code"] == 503
        assert (await connections.call_tool(target, "add", {"a": 1, "b": 1})).output == "2"


async def test_a_side_effect_runs_exactly_once(server, connections):
    result = await connections.call_tool(mcp(server.url), "increment", {})
    assert result.output == "1"
    assert server.state.increments == 1


# Headers and authorization


async def test_the_authorization_token_is_sent_as_a_bearer(server, connections):
    result = await connections.call_tool(mcp(server.url, authorization="s3cret"), "secret", {})
    assert result.output == "the secret is 42"
    assert server.state.authorization == ["Bearer s3cret"]


async def test_a_tool_that_needs_authorization_fails_without_it(server, connections):
    result = await connections.call_tool(mcp(server.url), "secret", {})
    assert result.error["type"] == "mcp_tool_execution_error"
    assert "unauthorized" in result.error["content"][0]["text"]
    assert server.state.authorization == [None]


async def test_headers_are_sent_on_every_request(server, connections):
    target = mcp(server.url, headers={"X-Api-Key": "key-123"})
    assert (await connections.call_tool(target, "header", {"name": "x-api-key"})).output == "key-123"
    assert (await connections.call_tool(target, "header", {"name": "X-Api-Key"})).output == "key-123"


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_a_server_that_needs_a_token_is_unavailable_without_it(transport, connections):
    with run_mcp_server(transport, token="s3cret", require_token=True) as server:
        with pytest.raises(McpUnavailable) as raised:
            await connections.list_tools(mcp(server.url, authorization="wrong"))
        assert raised.value.status == 401
        result = await connections.call_tool(mcp(server.url, authorization="wrong"), "add", {"a": 1, "b": 2})
        assert result.error["type"] == "http_error" and result.error["code"] == 401
        assert await connections.list_tools(mcp(server.url, authorization="s3cret"))


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_secrets_appear_in_no_message_and_no_log(transport, connections, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = {"headers": {"X-Api-Key": "key-5ecret-value"}, "authorization": "t0ken-5ecret-value"}
    with run_mcp_server(transport, require_token=True) as server:
        with pytest.raises(McpUnavailable) as raised:
            await connections.list_tools(mcp(server.url, **secrets))
        result = await connections.call_tool(mcp(server.url, **secrets), "add", {"a": 1, "b": 2})
    shown = str(raised.value) + str(result.error) + caplog.text
    assert "401" in str(raised.value)
    assert "5ecret" not in shown


# Timeouts, cancellation, parallel calls


async def test_a_call_that_takes_too_long_times_out(server):
    connections = McpConnections(LOOPBACK, timeout_s=1)
    try:
        result = await connections.call_tool(mcp(server.url), "slow", {"seconds": 60})
    finally:
        await connections.aclose()
    assert result.output is None
    assert result.error["type"] == "mcp_protocol_error"
    assert "timed out after 1 s" in result.error["message"]
    assert await wait_for(server.state.slow_cancelled)
    assert not server.state.slow_finished.is_set()


async def test_a_cancelled_call_stops_on_the_server(server, connections):
    call = asyncio.create_task(connections.call_tool(mcp(server.url), "slow", {"seconds": 60}))
    assert await wait_for(server.state.slow_started)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await wait_for(server.state.slow_cancelled)
    assert not server.state.slow_finished.is_set()
    # The session is still usable after a cancelled call.
    assert (await connections.call_tool(mcp(server.url), "add", {"a": 1, "b": 2})).output == "3"


async def test_parallel_calls_on_one_server_run_at_once(server, connections):
    target = mcp(server.url)

    async def meet():
        return await connections.call_tool(target, "rendezvous", {"key": "parallel", "count": 4})

    # The first use of the server happens in the child tasks themselves.
    results = await asyncio.gather(*(asyncio.create_task(meet()) for _ in range(4)))
    assert [result.output for result in results] == ["4 calls met"] * 4


async def test_parallel_side_effects_each_run_once(server, connections):
    target = mcp(server.url)
    results = await asyncio.gather(*(connections.call_tool(target, "increment", {}) for _ in range(10)))
    assert sorted(int(result.output) for result in results) == list(range(1, 11))
    assert server.state.increments == 10


# Transports and failures to connect


async def test_a_server_that_does_not_speak_streamable_http_is_spoken_to_over_sse(connections):
    with run_mcp_server("sse", sse_path="/legacy") as server:
        assert not server.url.endswith("/sse")
        target = mcp(server.url)
        assert "add" in [tool["name"] for tool in await connections.list_tools(target)]
        assert (await connections.call_tool(target, "add", {"a": 3, "b": 4})).output == "7"


async def test_an_unreachable_server_is_unavailable(connections):
    target = mcp(f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(McpUnavailable) as raised:
        await connections.list_tools(target)
    assert "Could not connect to MCP server 'test'" in str(raised.value)
    result = await connections.call_tool(target, "add", {"a": 1, "b": 2})
    assert result.output is None and result.error["type"] == "mcp_protocol_error"


async def test_a_refused_host_is_unavailable_and_never_contacted(server):
    connections = McpConnections([], timeout_s=10)
    try:
        with pytest.raises(McpUnavailable) as raised:
            await connections.list_tools(mcp(server.url))
    finally:
        await connections.aclose()
    assert raised.value.refused is not None and raised.value.refused.status == 400
    assert "loopback" in str(raised.value)
    assert server.state.requests == 0


async def test_a_redirect_to_a_loopback_host_is_not_followed(connections):
    with run_mcp_server() as server, redirect_server(f"http://localhost:{server.port}/mcp") as url:
        with pytest.raises(McpUnavailable) as raised:
            await connections.list_tools(mcp(url))
        assert "not followed" in str(raised.value)
        assert server.state.requests == 0


async def test_a_server_that_never_answers_is_unavailable_after_the_timeout():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        connections = McpConnections(LOOPBACK, timeout_s=1)
        try:
            with pytest.raises(McpUnavailable) as raised:
                await connections.list_tools(mcp(f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"))
        finally:
            await connections.aclose()
    assert "did not answer within 1 s" in str(raised.value)
