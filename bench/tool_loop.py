"""The tool loop's own cost: overhead per hosted tool call, and memory per waiting approval.

    .venv/bin/python bench/tool_loop.py [--calls 1,4,8] [--repeats 40] [--approvals 200] [--output FILE]

Three processes of its own besides this one, so none shares another's CPU:

- a real MCP server (tests/mcp_servers.py's, over streamable HTTP) behind a middleware that
  records how long it took to handle each `tools/call` request, from the request's first byte
  read to its last byte written; `GET /handled` hands over (and forgets) what it recorded;
- a mock Chat Completions upstream (bench/mock_upstream.py's server) playing a model that calls
  a tool K times across turns, one call per turn, then answers: K comes from the user's text
  (`calls=K`), and the calls made so far are the `tool` messages in the request, so every turn
  is answered at once and without state;
- `threadline serve` on SQLite, with one model on that mock.

**Overhead per call over HTTP.** Each round sends, one after the other over one keep-alive
connection, a stored non-streaming `POST /v1/responses` with the MCP tool
(`require_approval: "never"`, `allowed_tools: ["echo"]`) for K = 0 and each K of `--calls`,
in a shuffled order, and times `echo` calls made directly from this process with the
same client Threadline uses (`McpConnections`, one open session). Per round and K:

    overhead = (time with K calls - time with 0 calls - K x tool time) / K

with the tool time taken two ways: the direct call's round trip (the MCP client, the HTTP
hop and the server: what a call costs anyone), and the server's own handling time of the
K calls Threadline made in that response (so the MCP client's share counts as overhead).
Both responses list the server's tools first, so the listing cancels out; each call adds a
model turn, whose upstream round trip is counted as the loop's (the mock answers at once; its
direct round trip is reported beside). Median and p90 over the rounds.

**Overhead per call in-process.** The same, with no HTTP server and no database: `TurnLoop`
itself driven by a backend that plays the same model, the same real MCP server, events
collected in a list and no checkpoint write; the tool time is the direct call's.

**Memory per waiting approval.** After a warm-up, `--approvals` responses whose model calls a
tool with `require_approval: "always"`: each ends `completed` with an `mcp_approval_request`
as its last item, waiting for the client's answer. Then as many plain responses (the same
tool listing, then an answer) as a baseline. For each block: the server's RSS growth per
response (psutil), the rows added to each table and the bytes they take in the SQLite file
(`dbstat`), and the MCP connections the server still holds. One of the approvals is then
answered, which runs the call: the waiting approval was a stored item, not a task or a
session kept in the process.

Prints a summary and writes bench/results/tool_loop.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import REPO, RESULTS, ThreadlineServer, machine, summarize  # noqa: E402
from load import Client, cpu_model  # noqa: E402

PYTHON = sys.executable
ECHO_TEXT = "ping"


# --- The MCP server, in a process of its own -------------------------------------------------


class HandlingTimes:
    """ASGI middleware: records how long each tools/call request took to handle; GET /handled
    answers the times recorded since the last asked (ms) and forgets them."""

    def __init__(self, app) -> None:
        self.app = app
        self.times: list[float] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/handled":
            times, self.times = self.times, []
            body = orjson.dumps(times)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            is_call = orjson.loads(body).get("method") == "tools/call"
        except (orjson.JSONDecodeError, AttributeError):
            is_call = False
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def timed_send(message: dict) -> None:
            await send(message)
            if is_call and message["type"] == "http.response.body" and not message.get("more_body"):
                self.times.append((time.perf_counter() - started) * 1000)

        await self.app(scope, replay, timed_send)


def serve_mcp() -> None:
    from tests.mcp_servers import ServerState, build_server, serve

    app = HandlingTimes(build_server(ServerState(token="bench")).streamable_http_app())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve(app) as port:
        print(f"listening http://127.0.0.1:{port}/mcp", flush=True)
        stop.wait()


# --- The model, in a process of its own ------------------------------------------------------


def model_answer(request: dict) -> dict:
    """Calls the first tool offered until the request carries K tool results (K from the user's
    `calls=K`), then answers."""
    messages = request.get("messages") or []
    wanted = 0
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str) and content.startswith("calls="):
            wanted = int(content.split("=", 1)[1])
    made = sum(1 for message in messages if message.get("role") == "tool")
    tools = request.get("tools") or []
    if tools and made < wanted:
        call = {"id": f"call_{made}", "type": "function", "function": {"name": tools[0]["function"]["name"], "arguments": orjson.dumps({"text": ECHO_TEXT}).decode()}}
        message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": f"Done after {made} calls."}, "stop"
    return {"message": message, "finish": finish, "usage": {"prompt_tokens": 1 + len(orjson.dumps(messages)) // 16, "completion_tokens": 8, "total_tokens": 0}}


def serve_model() -> None:
    import mock_upstream as mock

    class ModelConnection(mock.Connection):
        def handle(self, method: bytes, path: bytes, body: bytes) -> None:
            if method != b"POST" or path.partition(b"?")[0] not in (b"/v1/chat/completions", b"/chat/completions"):
                super().handle(method, path, body)
                return
            self.server.requests += 1
            request = orjson.loads(body)
            answer = model_answer(request)
            common = {"id": "chatcmpl-tools", "created": mock.CREATED, "model": "tools"}
            if not request.get("stream"):
                body = {**common, "object": "chat.completion", "usage": answer["usage"],
                        "choices": [{"index": 0, "message": answer["message"], "logprobs": None, "finish_reason": answer["finish"]}]}
                self.transport.write(mock.json_response(200, orjson.dumps(body)))
                return
            delta = {key: value for key, value in answer["message"].items() if value is not None}
            chunks = [
                {**common, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]},
                {**common, "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": answer["finish"]}]},
                {**common, "object": "chat.completion.chunk", "choices": [], "usage": answer["usage"]},
            ]
            self.transport.write(mock.STREAM_HEAD + b"".join(mock.chunk_frame(mock.sse(chunk)) for chunk in chunks) + mock.DONE)

    async def main() -> None:
        server = mock.Server(mock.Settings(0.0, 0.0, 16, 8192))
        loop = asyncio.get_running_loop()
        listener = await loop.create_server(lambda: ModelConnection(server), "127.0.0.1", 0)
        print(f"listening http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1", flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(main())


class Child:
    """`python bench/tool_loop.py <role>` in a child process; `url` is what it printed."""

    def __init__(self, role: str) -> None:
        self.process = subprocess.Popen([PYTHON, __file__, role], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the {role} process did not start: {line!r}")
        self.url = line.split(" ", 1)[1].strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- Measuring -----------------------------------------------------------------------------------


def mcp_tool(url: str, approval: str = "never") -> dict:
    return {"type": "mcp", "server_label": "bench", "server_url": url, "require_approval": approval, "allowed_tools": ["echo"]}


async def handled(mcp_root: str) -> list[float]:
    import httpx

    async with httpx.AsyncClient() as client:
        return (await client.get(mcp_root + "/handled")).json()


class DirectTool:
    """`echo` called from this process with Threadline's own MCP client, on one open session."""

    def __init__(self, url: str) -> None:
        from threadline.tools.mcp_client import McpConnections, McpServer

        self.connections = McpConnections(["127.0.0.1"], 30)
        self.server = McpServer(label="bench", url=url)

    async def open(self) -> None:
        await self.connections.list_tools(self.server)
        for _ in range(20):  # warm
            await self.call()

    async def call(self) -> float:
        started = time.perf_counter()
        result = await self.connections.call_tool(self.server, "echo", {"text": ECHO_TEXT})
        elapsed = (time.perf_counter() - started) * 1000
        if result.output != ECHO_TEXT:
            raise RuntimeError(f"echo answered {result}")
        return elapsed

    async def aclose(self) -> None:
        await self.connections.aclose()


def overheads(rounds: list[dict], ks: list[int], tool_key: str) -> dict:
    """Per K: the overhead per call in each round, summarized (ms)."""
    out = {}
    for k in ks:
        per_round = [(r["response_ms"][k] - r["response_ms"][0] - r[tool_key][k]) / k for r in rounds]
        out[str(k)] = summarize(per_round)
    every = [(r["response_ms"][k] - r["response_ms"][0] - r[tool_key][k]) / k for r in rounds for k in ks]
    out["all"] = summarize(every)
    return out


async def http_overhead(base: str, mcp_url: str, mcp_root: str, model_url: str, ks: list[int], repeats: int, direct: DirectTool) -> dict:
    client = Client(base)
    model = Client(model_url)
    tool = mcp_tool(mcp_url)

    async def response(k: int) -> tuple[float, dict]:
        elapsed, body = await client.request("POST", "/v1/responses", {"model": "tools", "input": f"calls={k}", "tools": [tool]})
        calls = [item for item in body["output"] if item["type"] == "mcp_call"]
        if body["status"] != "completed" or len(calls) != k or any(call["output"] != ECHO_TEXT for call in calls):
            raise RuntimeError(f"calls={k}: {body['status']}, {[item['type'] for item in body['output']]}")
        return elapsed, body

    for k in [0, *ks] * 3:  # warm every path
        await response(k)
    await handled(mcp_root)
    rounds = []
    for _ in range(repeats):
        order = [0, *ks]
        random.shuffle(order)
        entry: dict = {"response_ms": {}, "server_tool_ms": {}, "direct_tool_ms": {}}
        for k in order:
            entry["response_ms"][k], _ = await response(k)
            entry["server_tool_ms"][k] = sum(await handled(mcp_root))
        entry["no_tools_ms"], _ = await client.request("POST", "/v1/responses", {"model": "tools", "input": "calls=0"})
        direct_calls = [await direct.call() for _ in range(max(ks))]
        mean_direct = statistics.fmean(direct_calls)
        entry["direct_tool_ms"] = {k: k * mean_direct for k in ks}
        entry["direct_calls_ms"] = direct_calls
        rounds.append(entry)
    # The model's own round trip, for scale: the same mock answered directly.
    model_rtt = []
    for _ in range(repeats):
        elapsed, _ = await model.request("POST", "/v1/chat/completions", {"model": "tools", "messages": [{"role": "user", "content": "calls=1"}],
                                                                            "tools": [{"type": "function", "function": {"name": "echo", "parameters": {}}}]})
        model_rtt.append(elapsed)
    return {
        "response_ms": {str(k): summarize([r["response_ms"][k] for r in rounds]) for k in [0, *ks]},
        # What a response with the MCP tool costs before any call: its session opened, its tools listed.
        "no_tools_response_ms": summarize([r["no_tools_ms"] for r in rounds]),
        "direct_tool_call_ms": summarize([ms for r in rounds for ms in r["direct_calls_ms"]]),
        "server_handling_per_call_ms": summarize([r["server_tool_ms"][k] / k for r in rounds for k in ks]),
        "model_round_trip_direct_ms": summarize(model_rtt),
        "overhead_beyond_direct_call_ms": overheads(rounds, ks, "direct_tool_ms"),
        "overhead_beyond_server_handling_ms": overheads(rounds, ks, "server_tool_ms"),
        "rounds": repeats,
    }


class ToolCallingModel:
    """The mock's model as a backend: a call of the first tool offered per turn, K in all, then an answer."""

    def __init__(self) -> None:
        from threadline.config import ModelSettings

        self.id = "tools"
        self.settings = ModelSettings(id="tools", provider="scripted")
        self.context_window = 8192

    async def generate(self, request):
        from threadline.backends.base import Finish, TextDelta, ToolCallDelta, Usage

        wanted = int(next(item["content"] for item in request.input if item.get("role") == "user").split("=", 1)[1])
        made = sum(1 for item in request.input if item.get("type") == "function_call_output")
        if request.tools and made < wanted:
            yield ToolCallDelta(index=0, call_id=f"call_{made}", name=request.tools[0]["name"], arguments=orjson.dumps({"text": ECHO_TEXT}).decode())
            yield Finish("tool_calls", Usage(input_tokens=10, output_tokens=1))
        else:
            yield TextDelta(f"Done after {made} calls.")
            yield Finish("stop", Usage(input_tokens=10, output_tokens=4))


async def in_process_overhead(mcp_url: str, ks: list[int], repeats: int, direct: DirectTool) -> dict:
    from threadline.backends.base import ModelRequest
    from threadline.config import McpSettings, ToolsSettings
    from threadline.engine.turns import TurnLoop
    from threadline.spec.stream import ResponseEvents
    from threadline.tools.plan import McpServerPlan, ToolPlan
    from threadline.tools.secrets import SecretBox
    from threadline.tools.toolbox import ToolServices

    services = ToolServices(ToolsSettings(mcp=McpSettings(allowed_hosts=["127.0.0.1"], call_timeout_s=30)), SecretBox([]))
    backend = ToolCallingModel()

    async def response(k: int) -> float:
        plan = ToolPlan(mcp_servers=[McpServerPlan(label="bench", url=mcp_url, allowed_tools=["echo"], require_approval="never")])
        request = ModelRequest(model="tools", input=[{"type": "message", "role": "user", "content": f"calls={k}"}], stream=False)
        response = {"id": f"resp_bench{random.getrandbits(64):016x}", "object": "response", "status": "in_progress", "output": [], "tool_choice": "auto", "usage": None, "error": None}
        published: list[dict] = []
        loop = TurnLoop(backend, request, ResponseEvents(response), published.extend, lambda: None, plan, services)
        started = time.perf_counter()
        ending = await loop.run(None, False)
        elapsed = (time.perf_counter() - started) * 1000
        calls = [item for item in response["output"] if item["type"] == "mcp_call"]
        if response["status"] != "completed" or len(calls) != k or not ending:
            raise RuntimeError(f"in-process calls={k}: {response['status']} {[item['type'] for item in response['output']]}")
        return elapsed

    for k in [0, *ks] * 3:
        await response(k)
    rounds = []
    for _ in range(repeats):
        order = [0, *ks]
        random.shuffle(order)
        entry: dict = {"response_ms": {}}
        for k in order:
            entry["response_ms"][k] = await response(k)
        direct_calls = [await direct.call() for _ in range(max(ks))]
        entry["direct_tool_ms"] = {k: k * statistics.fmean(direct_calls) for k in ks}
        rounds.append(entry)
    await services.aclose()
    return {
        "response_ms": {str(k): summarize([r["response_ms"][k] for r in rounds]) for k in [0, *ks]},
        "overhead_beyond_direct_call_ms": overheads(rounds, ks, "direct_tool_ms"),
        "rounds": repeats,
    }


def database_figures(path: Path) -> dict:
    """Rows and bytes (pages in use, dbstat) of each table and its indexes."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        rows = {name: db.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0] for name in tables}
        owners = dict(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        used: dict[str, int] = {}
        for name, size in db.execute("SELECT name, sum(pgsize - unused) FROM dbstat GROUP BY name"):
            table = owners.get(name, name)
            used[table] = used.get(table, 0) + size
        file_bytes = db.execute("PRAGMA page_count").fetchone()[0] * db.execute("PRAGMA page_size").fetchone()[0]
    return {"rows": rows, "bytes": used, "file_bytes": file_bytes}


def growth(before: dict, after: dict, count: int) -> dict:
    return {
        "rows_per_response": {t: round((after["rows"][t] - before["rows"].get(t, 0)) / count, 2) for t in after["rows"] if after["rows"][t] != before["rows"].get(t, 0)},
        "bytes_per_response": {t: round((after["bytes"][t] - before["bytes"].get(t, 0)) / count) for t in after["bytes"] if after["bytes"][t] != before["bytes"].get(t, 0)},
        "file_bytes_per_response": round((after["file_bytes"] - before["file_bytes"]) / count),
    }


def rss(process: psutil.Process) -> int:
    samples = []
    for _ in range(5):
        samples.append(process.memory_info().rss)
        time.sleep(0.1)
    return int(statistics.median(samples))


def mcp_connections(process: psutil.Process, port: int) -> int:
    return sum(1 for c in process.net_connections(kind="tcp") if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


async def approval_memory(server: ThreadlineServer, db_path: Path, mcp_url: str, count: int) -> dict:
    from urllib.parse import urlsplit

    client = Client(server.url)
    process = psutil.Process(server.process.pid)
    mcp_port = urlsplit(mcp_url).port
    asking, plain = mcp_tool(mcp_url, "always"), mcp_tool(mcp_url)

    async def ask() -> dict:
        _, body = await client.request("POST", "/v1/responses", {"model": "tools", "input": "calls=1", "tools": [asking]})
        if body["status"] != "completed" or body["output"][-1]["type"] != "mcp_approval_request":
            raise RuntimeError(f"no approval request: {body['status']} {[item['type'] for item in body['output']]}")
        return body

    async def answer_plainly() -> dict:
        _, body = await client.request("POST", "/v1/responses", {"model": "tools", "input": "calls=0", "tools": [plain]})
        return body

    for _ in range(50):  # every path warm, the allocator's pools grown
        await ask()
        await answer_plainly()
    time.sleep(1.0)
    result: dict = {"count": count}
    waiting: list[dict] = []
    for name, make in (("approvals", ask), ("plain", answer_plainly)):
        rss_before, db_before = rss(process), database_figures(db_path)
        curve = [(0, round(rss_before / 2**20, 2))]
        for number in range(1, count + 1):
            body = await make()
            if name == "approvals":
                waiting.append(body)
            if number % max(1, count // 10) == 0:
                curve.append((number, round(process.memory_info().rss / 2**20, 2)))
        time.sleep(1.0)
        rss_after, db_after = rss(process), database_figures(db_path)
        result[name] = {
            "rss_before_mib": round(rss_before / 2**20, 2), "rss_after_mib": round(rss_after / 2**20, 2),
            "rss_bytes_per_response": round((rss_after - rss_before) / count), "curve_mib": curve,
            **growth(db_before, db_after, count),
            "mcp_connections_held_after": mcp_connections(process, mcp_port),
            "threads_after": process.num_threads(),
        }
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        sizes = [n for (n,) in db.execute("SELECT length(data) FROM response_items WHERE data LIKE '%\"type\":\"mcp_approval_request\"%'")]
    result["approval_item_json_bytes"] = summarize([float(n) for n in sizes]) if sizes else None
    # The first one asked is still waiting: answering it runs the call, and the model goes on.
    first = waiting[0]
    request = first["output"][-1]
    approval = {"type": "mcp_approval_response", "approval_request_id": request["id"], "approve": True}
    _, answered = await client.request("POST", "/v1/responses", {"model": "tools", "input": [approval], "previous_response_id": first["id"], "tools": [asking]})
    call = next((item for item in answered["output"] if item["type"] == "mcp_call"), None)
    result["oldest_answered"] = {"status": answered["status"], "mcp_call_output": call and call["output"], "approval_request_id": call and call.get("approval_request_id")}
    if not call or call["output"] != ECHO_TEXT or call.get("approval_request_id") != request["id"]:
        raise RuntimeError(f"answering the oldest approval did not run its call: {answered['output']}")
    return result


def measure(ks: list[int], repeats: int, approvals: int) -> dict:
    started = time.monotonic()
    results: dict = {"machine": {**machine(), "cpu_model": cpu_model()}, "calls": ks, "repeats": repeats}
    mcp = Child("mcp-server")
    model = Child("model")
    folder = Path(tempfile.mkdtemp(prefix="threadline-tool-loop-"))
    mcp_root = mcp.url.rsplit("/", 1)[0]
    try:
        config = folder / "threadline.toml"
        import tomli_w

        config.write_text(tomli_w.dumps({
            "default_model": "tools",
            "models": [{"id": "tools", "provider": "openai-chat", "base_url": model.url, "upstream_model": "tools"}],
            "tools": {"mcp": {"allowed_hosts": ["127.0.0.1"], "call_timeout_s": 30}},
        }))

        async def run_all() -> None:
            direct = DirectTool(mcp.url)
            await direct.open()
            try:
                db_path = folder / "overhead.db"
                with ThreadlineServer(f"sqlite:///{db_path}", config) as server:
                    results["http"] = await http_overhead(server.url, mcp.url, mcp_root, model.url, ks, repeats, direct)
                results["in_process"] = await in_process_overhead(mcp.url, ks, repeats, direct)
                await handled(mcp_root)
                db_path = folder / "approvals.db"
                with ThreadlineServer(f"sqlite:///{db_path}", config) as server:
                    results["approvals"] = await approval_memory(server, db_path, mcp.url, approvals)
            finally:
                await direct.aclose()

        asyncio.run(run_all())
    finally:
        mcp.stop()
        model.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def report(results: dict) -> str:
    http, local, approvals = results["http"], results["in_process"], results["approvals"]
    lines = ["Overhead of the loop per hosted tool call (ms per call; median / p90 over rounds):"]
    for label, data, key in (
        ("HTTP, beyond the direct call", http, "overhead_beyond_direct_call_ms"),
        ("HTTP, beyond the server's handling", http, "overhead_beyond_server_handling_ms"),
        ("in-process TurnLoop, beyond the direct call", local, "overhead_beyond_direct_call_ms"),
    ):
        parts = [f"K={k}: {data[key][k]['p50']:.2f} / {data[key][k]['p90']:.2f}" for k in map(str, results["calls"])]
        lines.append(f"  {label:45} " + "; ".join(parts) + f"; all: {data[key]['all']['p50']:.2f} / {data[key]['all']['p90']:.2f}")
    lines.append(f"  tool time: direct echo call p50 {http['direct_tool_call_ms']['p50']:.2f} ms, server handling p50 "
                 f"{http['server_handling_per_call_ms']['p50']:.2f} ms; mock model round trip p50 {http['model_round_trip_direct_ms']['p50']:.2f} ms")
    lines.append(f"  response ms p50 (HTTP): no tools {http['no_tools_response_ms']['p50']:.1f}, " + ", ".join(f"K={k} {v['p50']:.1f}" for k, v in http["response_ms"].items())
                 + "; in-process: " + ", ".join(f"K={k} {v['p50']:.1f}" for k, v in local["response_ms"].items()))
    lines.append(f"Memory per waiting approval ({approvals['count']} of each):")
    for name in ("approvals", "plain"):
        a = approvals[name]
        lines.append(f"  {name:9}: RSS {a['rss_before_mib']} -> {a['rss_after_mib']} MiB, {a['rss_bytes_per_response'] / 1024:.1f} KiB per response; "
                     f"rows {a['rows_per_response']}; bytes {a['bytes_per_response']}; MCP connections held {a['mcp_connections_held_after']}")
    lines.append(f"  approval item JSON: {approvals['approval_item_json_bytes']['p50']:.0f} bytes; oldest answered: {approvals['oldest_answered']}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "mcp-server":
        serve_mcp()
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "model":
        serve_model()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,4,8", help="tool calls per response to measure, besides 0 (at most 15: max_turns is 16)")
    parser.add_argument("--repeats", type=int, default=40, help="rounds; each times one response per K")
    parser.add_argument("--approvals", type=int, default=200, help="waiting approvals to create (and as many plain responses)")
    parser.add_argument("--output", type=Path, default=RESULTS / "tool_loop.json")
    args = parser.parse_args()
    ks = sorted({int(k) for k in args.calls.split(",") if int(k) > 0})
    results = measure(ks, args.repeats, args.approvals)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"written to {args.output} in {results['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
