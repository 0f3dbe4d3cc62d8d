"""Threadline's benchmark suite: what Threadline costs on top of the model, as ratios.

    make bench                       # the whole suite, under 15 minutes
    .venv/bin/python bench/run.py [--quick] [--only 1,3] [--target URL --target-model M]

Every figure is measured against a baseline taken in the same run (these machines are
shared and noisy), with the mock upstream (bench/mock_upstream.py) standing in for the
model and the load generator (bench/load.py) in processes of their own:

  0  the harness itself: the mock called directly with `hey`, and load.py against hey
  1  added latency: stored non-streaming responses through Threadline vs the same request
     to the mock directly, concurrency 1, 16 and 64, upstream answering at once
  2  streaming: 256 concurrent streams of 200 tokens at 50 tokens/s: time to first event
     vs the upstream's first token, and tokens relayed per second vs the mock directly
  3  saturation: responses per second with 1-4 Threadline processes on PostgreSQL (the
     load spread over their ports) and 1 on SQLite, CPU per response of every process
     involved, and a py-spy flame graph of a Threadline process at saturation
  4  chain growth: latency of turn N of a previous_response_id chain, N = 1, 10, 100, 1000
  5  conversation growth: responses.create (truncation auto) in conversations of 10, 1,000
     and 10,000 items, and listing a page of their items
  6  memory per open stream: RSS growth over 1,000 streams held open before their first token
  7  embedded model: bench/embedded_model.py (tokens/s vs llama-cpp-python directly)
  8  peers: reference figures for other servers, and with --target any /v1/responses server
     measured by the same harness (point its upstream at the mock: --mock-port fixes its port)
  9  tool loop: bench/tool_loop.py (the loop's own overhead per hosted MCP call beyond the
     tool's time, and the memory and rows a waiting approval takes)
  10 file search: bench/retrieval.py (recall@10 and nDCG@10 of hybrid, keyword and vector
     search on the Python documentation's known items; the full suite reuses the last full
     run's results/retrieval.json, which takes about 25 minutes, and runs it when there is none)
  11 compaction: bench/compaction.py (the summary's call in tokens and time, in a conversation
     and through POST /v1/responses/compact, on the scripted and the embedded model)
  12 WebSocket mode: bench/websocket.py (per-turn latency of the same 50-turn session over one
     WebSocket and over SSE, with the response stored and not)
  13 console: bench/console.py (server time of a conversation's page in the web console, the
     first 50 items of a 10,000-item conversation rendered, against a 100-item one)

It prints a table (figure, value, baseline, ratio, target, met or missed by how much) and
writes bench/results/benchmarks.json, PNG plots, and flame graphs with their summaries (flamegraph*.svg, profile*.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
FIGURES = BENCH / "figures"  # the plots of the last full run, shown by bench/README.md
sys.path.insert(0, str(BENCH))

import flamegraph  # noqa: E402
from common import REPO, RESULTS, ThreadlineServer, database_url, machine, py_spy, summarize  # noqa: E402
from load import Client, cpu_model  # noqa: E402
from mock_upstream import MockUpstream  # noqa: E402
from tests.servers import write_config  # noqa: E402

PYTHON = sys.executable
OUT = RESULTS  # where this run writes; --quick runs write to bench/results/quick/ and leave the full results alone

# The models Threadline is configured with; the mock reads its behaviour from the names.
INSTANT = "ttft=0,tps=0,n=16"
STREAM_TTFT = 0.05
STREAM = f"ttft={STREAM_TTFT},tps=50,n=200"
HOLD = "ttft=3600,tps=50,n=16"
CONTEXT_WINDOW = 8192  # what the mock reports as max_model_len (the embedded model's cap)
# Chains and conversations set max_output_tokens: truncation then leaves room for the answer.
# (Without it, truncation "auto" cuts the history to exactly the estimated window and the
# exact count afterwards can come out a few tokens over: a 400 "even after truncation".)
MAX_OUTPUT_TOKENS = 64

# Targets that several figures' rows judge against.
CPU_PER_RESPONSE_MS = 0.7  # CPU of one stored non-streaming response
IDLE_STREAM_KIB = 32  # RSS an open stream waiting for its first token keeps
SEARCH_P50_MS = 20  # a hybrid file search over 100,000 chunks, SQLite
SEARCH_TARGET_CHUNKS = 100_000
WEBSOCKET_RATIO = 0.8  # a WebSocket turn against the SSE turn of the same kind: at least 20% faster

# Reference figures for other servers, measured on a machine like this one (2 cores; 2,000 requests at concurrency 16).
PEER_REFERENCES = {
    "mock upstream directly": (11000, 14000),
    "ogx 1.5.0 (SQLite)": (55, 87),
    "LiteLLM 1.106 proxy (stores nothing)": (90, 210),
    "Hugging Face responses.js (stores nothing)": (800, 1300),
}

FULL = {
    "hey_seconds": 5.0,
    "lat_rounds": 2, "lat_seconds": 5.0, "lat_warmup": 1.5, "lat_databases": ["sqlite", "postgresql"],
    "stream_seconds": 15.0, "stream_warmup": 5.0, "stream_profile": True, "stream_processes": [1, 2],
    "sat_processes": [1, 2, 3, 4], "sat_concurrency": [16, 64], "sat_seconds": 10.0, "sat_warmup": 3.0, "profile_seconds": 12.0,
    "chain_depths": [1, 10, 100, 1000], "chain_samples": 15, "chain_profile": True, "memory_profile": True,
    "conversation_sizes": [10, 1000, 10000], "conversation_samples": 20,
    "open_streams": 1000, "embedded": "run",
    # (database, processes): one process, and the best count of figure 3.
    "peer_requests": 2000, "peer_fleets": [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)],
    "tool_calls": "1,4,8", "tool_repeats": 40, "tool_approvals": 200,
    "retrieval": "reuse",
    "ws_sessions": 6, "ws_databases": "both",
    "compaction_turns": 120, "compaction_embedded": True,
    "console_items": 10000, "console_requests": 60, "console_databases": "both",
}
QUICK = {
    "hey_seconds": 2.0,
    "lat_rounds": 1, "lat_seconds": 2.0, "lat_warmup": 1.0, "lat_databases": ["sqlite"],
    "stream_seconds": 8.0, "stream_warmup": 1.0, "stream_profile": False, "stream_processes": [1],  # measures the ramp-up too
    "sat_processes": [1], "sat_concurrency": [64], "sat_seconds": 4.0, "sat_warmup": 1.5, "profile_seconds": 5.0,
    "chain_depths": [1, 10, 100, 300], "chain_samples": 5, "chain_profile": False, "memory_profile": False,
    "conversation_sizes": [10, 1000, 10000], "conversation_samples": 5,
    "open_streams": 500, "embedded": "reuse",
    "peer_requests": 300, "peer_fleets": [("sqlite", 1)],
    "tool_calls": "1,4", "tool_repeats": 8, "tool_approvals": 50,
    "retrieval": "quick",
    "ws_sessions": 2, "ws_databases": "sqlite",
    "compaction_turns": 40, "compaction_embedded": False,
    "console_items": 10000, "console_requests": 15, "console_databases": "sqlite",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- The table -------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, figure: str, name: str, value, unit: str, baseline=None, ratio=None, target: str = "", met: bool | None = None, by: str = "") -> None:
        self.rows.append(
            {"figure": figure, "name": name, "value": value, "unit": unit, "baseline": baseline, "ratio": ratio, "target": target, "met": met, "by": by}
        )

    def render(self) -> str:
        def fmt(x) -> str:
            if x is None:
                return "—"
            if isinstance(x, float):
                return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
            if isinstance(x, int):
                return f"{x:,}"
            return str(x)

        header = ["fig", "measure", "value", "baseline", "ratio", "target", "result"]
        lines = []
        for row in self.rows:
            result = "—" if row["met"] is None else ("met" if row["met"] else "MISSED")
            if row["by"]:
                result += f" ({row['by']})"
            unit = f" {row['unit']}" if row["unit"] else ""
            lines.append(
                [row["figure"], row["name"], fmt(row["value"]) + unit, fmt(row["baseline"]) + (unit if isinstance(row["baseline"], (int, float)) else ""),
                 "—" if row["ratio"] is None else f"{row['ratio']:.2f}x", row["target"] or "—", result]
            )
        widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
        out = [" | ".join(h.ljust(w) for h, w in zip(header, widths)), "-+-".join("-" * w for w in widths)]
        out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths)) for line in lines]
        return "\n".join(out)

    def markdown(self) -> str:
        def fmt(x) -> str:
            if x is None:
                return "—"
            if isinstance(x, float):
                return f"{x:,.3f}" if abs(x) < 10 else f"{x:,.1f}"
            if isinstance(x, int):
                return f"{x:,}"
            return str(x)

        out = ["| fig | measure | value | baseline | ratio | target | result |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            unit = f" {row['unit']}" if row["unit"] else ""
            result = "—" if row["met"] is None else ("met" if row["met"] else "**missed**")
            if row["by"]:
                result += f" ({row['by']})"
            out.append(
                f"| {row['figure']} | {row['name']} | {fmt(row['value'])}{unit} | {fmt(row['baseline'])}{unit if isinstance(row['baseline'], (int, float)) else ''} | "
                f"{'—' if row['ratio'] is None else format(row['ratio'], '.2f') + 'x'} | {row['target'] or '—'} | {result} |"
            )
        return "\n".join(out)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


# --- Processes -------------------------------------------------------------------------------


def run_load(urls: list[str] | str, *, timeout: float = 900, **options) -> dict:
    """bench/load.py in a process of its own; options are its flags (underscores for dashes)."""
    urls = [urls] if isinstance(urls, str) else urls
    with tempfile.NamedTemporaryFile(prefix="load-", suffix=".json") as output:
        command = [PYTHON, str(BENCH / "load.py"), "--url", ",".join(urls), "--output", output.name]
        for name, value in options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:
                command.append(flag)
            elif value not in (None, False):
                command += [flag, json.dumps(value) if isinstance(value, dict) else str(value)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"load.py failed: {done.stderr[-2000:]}")
        return json.loads(Path(output.name).read_text())


class Fleet:
    """N `threadline serve` processes on one database, each on its own port."""

    def __init__(self, database: str, config: Path, count: int = 1) -> None:
        self.servers = [ThreadlineServer(database, config) for _ in range(count)]

    def __enter__(self) -> Fleet:
        try:
            for server in self.servers:  # one at a time: the first migrates the database
                server.start()
        except Exception:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        for server in self.servers:
            if server.process is not None:
                server.stop()

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    @property
    def pids(self) -> list[int]:
        return [server.process.pid for server in self.servers]


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def busy_share(pids: list[int], after: float, seconds: float) -> Future[tuple[float, float]]:
    """How many cores `pids` keep busy over `seconds`, starting `after` seconds from now, and
    the share of the whole machine's CPU in use meanwhile."""

    def measure() -> tuple[float, float]:
        time.sleep(after)
        before, machine_before = cpu_seconds(pids), psutil.cpu_times()
        time.sleep(seconds)
        machine_after = psutil.cpu_times()
        idle = (machine_after.idle - machine_before.idle) / seconds / psutil.cpu_count()
        return (cpu_seconds(pids) - before) / seconds, 1 - idle

    executor = ThreadPoolExecutor(1)
    measured = executor.submit(measure)
    executor.shutdown(wait=False)  # the thread ends on its own
    return measured


def postgres_cpu_seconds() -> float:
    """CPU of the whole PostgreSQL server: live processes, plus backends that have exited
    (the postmaster collects their times). Other databases on the server count too."""
    total = 0.0
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
            parent = process.parent()
            if parent is None or parent.name() != "postgres":  # the postmaster
                total += times.children_user + times.children_system
    return total


def postgres_sessions(url: str) -> int:
    """Connections ever opened to this database (pg_stat_database.sessions, PostgreSQL 14+)."""
    import asyncpg

    async def query() -> int:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()") or 0
        finally:
            await connection.close()

    with contextlib.suppress(Exception):
        return asyncio.run(query())
    return 0


# --- Suite -----------------------------------------------------------------------------------


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = QUICK if args.quick else FULL
        self.table = Table()
        self.results: dict = {
            "suite": "quick" if args.quick else "full",
            "machine": {**machine(), "cpu_model": cpu_model(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1)},
            "load_average": {"start": load_average()},
            "source": git_state(),
            "figures": {},
        }
        self.only = {part.strip() for part in args.only.split(",")} if args.only else None
        self.folder = Path(tempfile.mkdtemp(prefix="threadline-bench-"))
        self.mock: MockUpstream | None = None
        self.config: Path | None = None

    def update_readme(self) -> None:
        """Rewrite bench/README.md's results block (between its markers) with this run's table
        and plots, README.md's summary block with one line about it, and keep the plots and
        flame graphs in bench/figures/, which is committed."""
        FIGURES.mkdir(exist_ok=True)
        for old in FIGURES.iterdir():
            old.unlink()
        for pattern in ("fig*.png", "flamegraph*.svg", "profile*.txt"):
            for path in OUT.glob(pattern):
                shutil.copy2(path, FIGURES / path.name)
        m = self.results["machine"]
        figures = self.results["figures"]
        when = m.get("first_at") or m["at"]
        summary = (
            f"Latest full run: {when} ({self.results['suite']} suite, {self.results['seconds']:.0f} s"
            + (f"; figures {', '.join(r['figures'][0] for r in self.results.get('partial_reruns', []))} re-run at "
               f"{', '.join(r['at'] for r in self.results.get('partial_reruns', []))}" if self.results.get("partial_reruns") else "")
            + f"), on {m['cpus']} × {m.get('cpu_model') or 'CPU'}, {m.get('memory_gib')} GiB, {m['platform']}, Python {m['python']}; "
            + f"commit {self.results['source']['commit'][:10]}"
            + (f" with {len(self.results['source']['modified'])} files modified in the tree" if self.results["source"]["modified"] else "")
            + ". Load average (1 min) at the start and end of each figure: "
            + "; ".join(f"{k}: {v['load_average'].get('start', ['?'])[0]}→{v['load_average'].get('end', ['?'])[0]}" for k, v in sorted(figures.items()))
            + "."
        )
        plots = [f"![{name}](figures/{name})" for name in sorted(p.name for p in FIGURES.glob("fig*.png"))]
        flames = [f"[{path.name}](figures/{path.name})" for path in sorted(FIGURES.glob("*.svg"))]
        texts = [f"[{path.name}](figures/{path.name})" for path in sorted(FIGURES.glob("profile*.txt"))]
        replace_block(BENCH / "README.md", "results", [summary, "", self.table.markdown(), "", *plots, "", "Flame graphs: " + ", ".join(flames) + ".",
                                                   "Their summaries (self time by package, task, stage and function): " + ", ".join(texts) + ".", ""])
        replace_block(REPO / "README.md", "summary", [self.one_line_summary()])

    def one_line_summary(self) -> str:
        """The README's line about the latest full run: how many targets it met, and where the rest are."""
        judged = [row for row in self.table.rows if row["met"] is not None]
        missed = sorted({row["figure"] for row in judged if not row["met"]}, key=int)
        m = self.results["machine"]
        when = (m.get("first_at") or m["at"])[:10]
        return (
            f"Latest full run, {when} on {m['cpus']} cores (commit {self.results['source']['commit'][:10]}): "
            f"{sum(1 for row in judged if row['met'])} of {len(judged)} targets met"
            + (f"; missed in figure{'s' if len(missed) > 1 else ''} {', '.join(missed)}" if missed else "")
            + ". Full table, plots and what stands in the way: [bench/README.md](bench/README.md#latest-results)."
        )

    def merge_earlier(self) -> None:
        """A run of some figures (--only) keeps the other figures of the last results file."""
        path = OUT / "benchmarks.json"
        if not path.exists():
            return
        with contextlib.suppress(ValueError, KeyError):
            earlier = json.loads(path.read_text())
            if earlier.get("suite") != self.results["suite"]:
                return
            for key, figure in earlier["figures"].items():
                if key not in self.results["figures"]:
                    self.results["figures"][key] = {**figure, "from_earlier_run": earlier.get("machine", {}).get("at")}
            kept = [row for row in earlier["table"] if row["figure"] not in self.only]
            order = {key: index for index, key in enumerate([*"0123456789", "10", "11", "12", "13"])}
            self.table.rows = sorted(kept + self.table.rows, key=lambda row: order.get(row["figure"], 99))
            self.results["table"] = self.table.rows
            self.results["partial_reruns"] = earlier.get("partial_reruns", []) + [
                {"figures": sorted(self.only), "at": self.results["machine"]["at"], "seconds": self.results["seconds"]}]
            self.results["seconds"] = earlier.get("seconds", 0.0)  # the full run's, which the README gives
            self.results["machine"]["first_at"] = earlier.get("machine", {}).get("first_at") or earlier.get("machine", {}).get("at")

    def wanted(self, figure: str) -> bool:
        return self.only is None or figure in self.only

    def figure(self, key: str) -> dict:
        return self.results["figures"].setdefault(key, {"load_average": {"start": load_average()}})

    def end_figure(self, key: str) -> None:
        self.results["figures"][key]["load_average"]["end"] = load_average()

    def write_config(self) -> Path:
        base_url = self.mock.url
        models = [
            {"id": "instant", "provider": "openai-chat", "base_url": base_url, "upstream_model": INSTANT},
            {"id": "stream", "provider": "openai-chat", "base_url": base_url, "upstream_model": STREAM},
            {"id": "hold", "provider": "openai-chat", "base_url": base_url, "upstream_model": HOLD, "timeout_s": 7200},
        ]
        return write_config(self.folder / "threadline.toml", {"default_model": "instant", "models": models})

    def run(self) -> int:
        started = time.monotonic()
        OUT.mkdir(parents=True, exist_ok=True)
        with MockUpstream(tokens=16, context=CONTEXT_WINDOW, port=self.args.mock_port) as mock:
            self.mock = mock
            self.config = self.write_config()
            self.results["mock_upstream"] = {"url": mock.url, "models": {"instant": INSTANT, "stream": STREAM, "hold": HOLD}, "context_window": CONTEXT_WINDOW}
            log(f"mock upstream at {mock.url} (pid {mock.pid}); Threadline config {self.config}")
            steps = [
                ("0", self.harness), ("1", self.added_latency), ("2", self.streaming), ("3", self.saturation),
                ("4", self.chain_growth), ("5", self.conversation_growth), ("6", self.memory_per_stream),
                ("7", self.embedded_model), ("8", self.peers), ("9", self.tool_loop), ("10", self.retrieval),
                ("11", self.compaction),
                ("12", self.websocket),
                ("13", self.console),
            ]
            for key, step in steps:
                if not self.wanted(key):
                    continue
                log(f"figure {key}: {step.__doc__.strip().splitlines()[0]}")
                begun = time.monotonic()
                try:
                    step()
                except Exception as error:  # one broken figure does not lose the others
                    log(f"figure {key} failed: {error!r}")
                    self.figure(key)["error"] = repr(error)
                    self.table.add(key, f"figure {key} failed", None, "", target="", met=False, by=(str(error) or repr(error))[:80])
                self.figure(key)["seconds"] = round(time.monotonic() - begun, 1)
                self.end_figure(key)
        self.results["load_average"]["end"] = load_average()
        self.results["seconds"] = round(time.monotonic() - started, 1)
        self.results["table"] = self.table.rows
        if self.only is not None:
            self.merge_earlier()
        path = OUT / "benchmarks.json"
        path.write_text(json.dumps(self.results, indent=2) + "\n")
        (OUT / "benchmarks.md").write_text(self.table.markdown() + "\n")
        self.plot()
        if self.args.readme and not self.args.quick:  # the README shows full runs only
            self.update_readme()
        print()
        print(self.table.render())
        print()
        log(f"done in {self.results['seconds']:.0f} s; load average {self.results['load_average']}; results in {path}")
        shutil.rmtree(self.folder, ignore_errors=True)
        return 0

    # -- 0: the harness ----------------------------------------------------------------------

    def harness(self) -> None:
        """the harness: mock upstream called directly with hey, and load.py against hey"""
        fig = self.figure("0")
        body = json.dumps({"model": INSTANT, "messages": [{"role": "user", "content": "Say hello."}]})
        seconds = self.settings["hey_seconds"]
        hey = shutil.which("hey")
        if hey:
            out = subprocess.run(
                [hey, "-z", f"{seconds}s", "-c", "16", "-m", "POST", "-T", "application/json", "-d", body, self.mock.url + "/chat/completions"],
                capture_output=True, text=True, timeout=seconds + 60,
            ).stdout
            hey_rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            fig["hey_rps"] = hey_rps
            self.table.add("0", "mock directly, hey c=16", round(hey_rps), "req/s", target=">= 10,000 req/s", met=hey_rps >= 10000,
                           by="" if hey_rps >= 10000 else f"{10000 - hey_rps:,.0f} req/s short")
        else:
            hey_rps = None
        mine = run_load(self.mock.url, api="chat", model=INSTANT, concurrency=16, duration=seconds, warmup=1)
        fig["load_py"] = mine
        met = mine["throughput_rps"] >= 10000
        self.table.add("0", "mock directly, load.py c=16", round(mine["throughput_rps"]), "req/s", baseline=round(hey_rps) if hey_rps else None,
                       ratio=ratio(mine["throughput_rps"], hey_rps), target=">= 10,000 req/s (10x Threadline's target)", met=met,
                       by=f"{mine['generator_cpu_us_per_request']:.0f} us CPU/request")

    # -- 1: added latency --------------------------------------------------------------------

    def added_latency(self) -> None:
        """added latency of a stored non-streaming response vs the mock directly"""
        fig = self.figure("1")
        s = self.settings
        for kind in s["lat_databases"]:
            with database_url(kind) as url, Fleet(url, self.config) as fleet:
                per_kind = fig.setdefault(kind, {})
                for concurrency in (1, 16, 64):
                    samples = {"direct": [], "threadline": []}
                    rps = {"direct": [], "threadline": []}
                    for _ in range(s["lat_rounds"]):
                        for who in ("direct", "threadline"):
                            if who == "direct":
                                out = run_load(self.mock.url, api="chat", model=INSTANT, concurrency=concurrency,
                                               duration=s["lat_seconds"], warmup=s["lat_warmup"], samples=True)
                            else:
                                out = run_load(fleet.urls, api="responses", model="instant", concurrency=concurrency,
                                               duration=s["lat_seconds"], warmup=s["lat_warmup"], samples=True)
                            samples[who] += out.pop("latency_samples_ms", [])
                            rps[who].append(out["throughput_rps"])
                            if out["errors"] or set(out["statuses"]) - {"200"}:
                                per_kind.setdefault("problems", []).append({who: [out["statuses"], out["errors"]]})
                    direct, through = summarize(samples["direct"]), summarize(samples["threadline"])
                    per_kind[f"c{concurrency}"] = {
                        "direct": direct, "threadline": through,
                        "direct_rps": round(sum(rps["direct"]) / len(rps["direct"]), 1),
                        "threadline_rps": round(sum(rps["threadline"]) / len(rps["threadline"]), 1),
                        "added_p50_ms": round(through["p50"] - direct["p50"], 3),
                        "added_p99_ms": round(through["p99"] - direct["p99"], 3),
                    }
                    log(f"  {kind} c={concurrency}: direct p50 {direct['p50']:.2f} p99 {direct['p99']:.2f} ms; "
                        f"threadline p50 {through['p50']:.2f} p99 {through['p99']:.2f} ms, {per_kind[f'c{concurrency}']['threadline_rps']} req/s")
                    for p, limit in (("p50", 3.0), ("p99", 15.0)):
                        added = through[p] - direct[p]
                        target = f"<= baseline + {limit:g} ms" if concurrency == 16 else ""
                        met = added <= limit if concurrency == 16 else None
                        rps_through = per_kind[f"c{concurrency}"]["threadline_rps"]
                        # What stands in the way: the requests in flight queue for one process's CPU.
                        why = f"; one process serves {rps_through:,.0f}/s, so {concurrency} in flight wait ~{concurrency * 1000 / rps_through:.1f} ms"
                        self.table.add("1", f"latency {p}, c={concurrency}, {kind}", round(through[p], 2), "ms", baseline=round(direct[p], 3),
                                       ratio=ratio(through[p], direct[p]), target=target, met=met,
                                       by=f"+{added:.1f} ms" + (f", {added - limit:.1f} ms over" + why if met is False else ""))

    # -- 2: streaming ------------------------------------------------------------------------

    def streaming(self) -> None:
        """streaming: 256 concurrent streams of 200 tokens at 50 tokens/s, on one process and more"""
        fig = self.figure("2")
        s = self.settings
        common = {"concurrency": 256, "duration": s["stream_seconds"], "warmup": s["stream_warmup"], "stagger": 4.0, "stream": True, "timeout": 60}
        direct = run_load(self.mock.url, api="chat", model=STREAM, **common)
        if not direct["ok"]:
            raise RuntimeError(f"no direct stream started and ended in the measured window: {direct['statuses']} {direct['errors']}")
        fig["direct"] = direct
        for processes in s["stream_processes"]:
            with database_url("sqlite") as url, Fleet(url, self.config, processes) as fleet:
                # CPU over the middle of the measured window, when all 256 streams are open.
                busy = busy_share(fleet.pids, s["stream_warmup"] + 1, s["stream_seconds"] - 2)
                through = run_load(fleet.urls, api="responses", model="stream", **common)
                cores, machine_share = busy.result()
                share = cores / processes
                if processes == 1:
                    # A profile of the relay at a lighter load (64 streams), for where the CPU per token goes.
                    seconds = self.settings["profile_seconds"]
                    fig["profile_64_streams"] = None if not s["stream_profile"] else profile_during(
                        fleet.pids[0], seconds, "_streaming", "64 streams of 200 tokens at 50 tokens/s (ms are per stream)",
                        lambda: run_load(fleet.urls, api="responses", model="stream", concurrency=64, duration=seconds, warmup=1.0, stagger=1.0,
                                         stream=True, timeout=60),
                        self.folder,
                    )
            if not through["ok"]:
                raise RuntimeError(f"no Threadline stream started and ended in the measured window: {through['statuses']} {through['errors']}")
            fig["threadline" if processes == 1 else f"threadline_{processes}_processes"] = {
                **through, "cpu_share_per_process": round(share, 3), "machine_cpu_share": round(machine_share, 3)}
            self.stream_rows(direct, through, processes, share, machine_share)
        fig["expected_tokens_per_s"] = 256 * 50

    def stream_rows(self, direct: dict, through: dict, processes: int, share: float, machine_share: float) -> None:
        on = f"256 streams, {processes} process{'es' if processes > 1 else ''}"
        # What stands in the way when a target is missed: how busy the relaying processes were.
        busy = f"; each process relaying them kept {share:.0%} of a core busy, the machine (with the load generator and the mock) {machine_share:.0%} of its CPUs"
        for p in ("p50", "p99"):
            value, base = through.get("first_event_ms", {}).get(p), direct.get("first_event_ms", {}).get(p)
            if value is None or base is None:
                continue
            added = value - base
            target = "<= first token + 3 ms" if p == "p50" else ""
            met = added <= 3.0 if p == "p50" else None
            self.table.add("2", f"time to first event {p} ({on})", round(value, 2), "ms", baseline=round(base, 2), ratio=ratio(value, base),
                           target=target, met=met, by=f"+{added:.1f} ms" + (f", {added - 3:.1f} ms over" + busy if met is False else ""))
        value, base = through.get("tokens_received_per_s"), direct.get("tokens_received_per_s")
        if value is not None and base:
            met = value >= 0.98 * base
            self.table.add("2", f"relay tokens/s ({on}, 50 tok/s each)", round(value), "tok/s", baseline=round(base), ratio=ratio(value, base),
                           target=">= 98% of direct", met=met, by="" if met else f"{(1 - value / base) * 100:.1f}% short" + busy)
        value, base = through["stream_duration_ms"]["p99"], direct["stream_duration_ms"]["p99"]
        self.table.add("2", f"stream duration p99 ({on})", round(value), "ms", baseline=round(base), ratio=ratio(value, base))

    # -- 3: saturation -----------------------------------------------------------------------

    def saturation(self) -> None:
        """saturation throughput of stored non-streaming responses, 1-4 processes"""
        fig = self.figure("3")
        s = self.settings
        options = {"duration": s["sat_seconds"], "warmup": s["sat_warmup"]}
        direct = run_load(self.mock.url, api="chat", model=INSTANT, concurrency=64, **options)
        fig["direct"] = direct
        runs = []
        configs = [("postgresql", n) for n in s["sat_processes"]] + [("sqlite", 1)]
        for kind, count in configs:
            with database_url(kind) as url, Fleet(url, self.config, count) as fleet:
                run_load(fleet.urls, api="responses", model="instant", concurrency=16, duration=1, warmup=0)  # pools and caches
                for concurrency in s["sat_concurrency"]:
                    pg = kind == "postgresql"
                    sessions = postgres_sessions(url) if pg else 0
                    before = {"threadline": cpu_seconds(fleet.pids), "mock": cpu_seconds([self.mock.pid]),
                              "postgresql (whole server)": postgres_cpu_seconds() if pg else 0.0}
                    out = run_load(fleet.urls, api="responses", model="instant", concurrency=concurrency, **options)
                    after = {"threadline": cpu_seconds(fleet.pids), "mock": cpu_seconds([self.mock.pid]),
                             "postgresql (whole server)": postgres_cpu_seconds() if pg else 0.0}
                    measured = out["measured_s"] + s["sat_warmup"]
                    total = max(1, out["ok"])
                    cpu_ms = {name: round((after[name] - before[name]) * 1000 / total, 3) for name in after}
                    cpu_ms["load generator"] = round(out["generator_cpu_us_per_request"] / 1000, 3)
                    entry = {"database": kind, "processes": count, "concurrency": concurrency, "rps": out["throughput_rps"],
                             "latency_ms": out.get("latency_ms"), "statuses": out["statuses"], "errors": out["errors"],
                             "cpu_ms_per_response": cpu_ms,
                             "threadline_cores_busy": round((after["threadline"] - before["threadline"]) / measured, 2),
                             "postgres_connections_opened": (postgres_sessions(url) - sessions) if pg else None}
                    runs.append(entry)
                    log(f"  {kind} x{count} c={concurrency}: {out['throughput_rps']} responses/s, p99 {out.get('latency_ms', {}).get('p99')} ms, "
                        f"CPU ms/response {cpu_ms}, PostgreSQL connections opened {entry['postgres_connections_opened']}")
                if count == 1:
                    self.profile(fleet, {"concurrency": 64}, kind)
        fig["runs"] = runs
        best = max(runs, key=lambda r: r["rps"])
        fig["best"] = best
        for entry in runs:
            label = f"responses/s, {entry['database']} x{entry['processes']}, c={entry['concurrency']}"
            self.table.add("3", label, round(entry["rps"]), "/s", baseline=round(direct["throughput_rps"]), ratio=ratio(entry["rps"], direct["throughput_rps"]))
        met = best["rps"] >= 1000
        self.table.add("3", f"saturation, best ({best['database']} x{best['processes']}, c={best['concurrency']})", round(best["rps"]), "/s",
                       baseline=round(direct["throughput_rps"]), ratio=ratio(best["rps"], direct["throughput_rps"]),
                       target=">= 1,000 /s", met=met, by="" if met else f"{1000 - best['rps']:,.0f}/s short ({best['rps'] / 10:.0f}% of target)")
        for entry in runs:
            if entry["processes"] != 1:
                continue
            # What stands in the way of a missed CPU target: where the profiled process spends it (profile*.txt).
            profiled = fig.get("profile" if entry["database"] == "postgresql" else f"profile_{entry['database']}") or {}
            heaviest = ", ".join(f"{part['package']} {part['ms']:.2f} ms" for part in profiled.get("self_by_package", [])[:3])
            cpu = entry["cpu_ms_per_response"]
            met = cpu["threadline"] <= CPU_PER_RESPONSE_MS
            server = f"PostgreSQL server {cpu['postgresql (whole server)']:.2f} ms" if entry["database"] == "postgresql" else ""
            missed = f"{cpu['threadline'] - CPU_PER_RESPONSE_MS:.2f} ms over" + (f"; {server}" if server else "") + (
                f"; heaviest packages in the profile ({entry['database']} x1): {heaviest}" if heaviest else "")
            self.table.add("3", f"CPU/response in Threadline, {entry['database']} x1 c={entry['concurrency']}", cpu["threadline"], "ms",
                           target=f"<= {CPU_PER_RESPONSE_MS} ms (the process and its threads)", met=met, by=server if met else missed)

    def profile(self, fleet: Fleet, options: dict, database: str) -> None:
        """py-spy on the first process while the fleet is loaded again: flamegraph.svg and profile.txt
        on PostgreSQL, flamegraph_sqlite.svg and profile_sqlite.txt on SQLite."""
        seconds = self.settings["profile_seconds"]
        suffix = "" if database == "postgresql" else f"_{database}"
        summary = profile_during(
            fleet.pids[0], seconds, suffix, f"stored non-streaming responses at saturation ({database})",
            lambda: run_load(fleet.urls, api="responses", model="instant", concurrency=options["concurrency"], duration=seconds + 1, warmup=0.5),
            self.folder,
        )
        self.figure("3")[f"profile{suffix}"] = summary
        log(f"  profile written to {OUT}/flamegraph{suffix}.svg and profile{suffix}.txt")

    # -- 4: chain growth ---------------------------------------------------------------------

    def chain_growth(self) -> None:
        """chain growth: latency of turn N of a previous_response_id chain"""
        fig = self.figure("4")
        s = self.settings
        depths = s["chain_depths"]
        with database_url("sqlite") as url, Fleet(url, self.config) as fleet:
            result = asyncio.run(chain_latencies(fleet.urls[0], depths, s["chain_samples"]))
            base = result["turns"]["1"]["p50"]
            if result["turns"][str(depths[-1])]["p50"] > 1.3 * base and s["chain_profile"]:
                # Where a deep turn's time goes: flamegraph_chain.svg, profile_chain.txt.
                seconds = self.settings["profile_seconds"]
                fig["profile_deepest_turn"] = profile_during(
                    fleet.pids[0], seconds, "_chain", f"turns at depth {depths[-1]} of a chain, one at a time (ms are per turn)",
                    lambda: asyncio.run(turns_for(fleet.urls[0], result["deepest_response_id"], seconds + 1)), self.folder)
        fig.update(result)
        for depth in depths:
            value = result["turns"][str(depth)]["p50"]
            r = value / base
            target = "<= 1.3x turn 1" if depth == 1000 else ("(target is at turn 1000)" if depth == depths[-1] else "")
            met = (r <= 1.3) if depth == 1000 else None
            # The mock counts a token per 16 bytes of request: how much history each turn carries to the model.
            sent = f"{result['input_tokens'][str(depth)] * 16 / 1024:.0f} KiB to the model, against {result['input_tokens']['1'] * 16 / 1024:.1f} KiB at turn 1"
            self.table.add("4", f"turn {depth} of a chain, p50", round(value, 2), "ms", baseline=round(base, 2), ratio=r, target=target, met=met,
                           by=f"{r / 1.3:.1f}x the limit; the window's history is checked, converted and sent every turn: {sent}" if met is False else "")

    # -- 5: conversation growth --------------------------------------------------------------

    def conversation_growth(self) -> None:
        """conversation growth: create a response in, and list a page of, conversations of 10-10,000 items"""
        fig = self.figure("5")
        s = self.settings
        with database_url("sqlite") as url, Fleet(url, self.config) as fleet:
            result = asyncio.run(conversation_latencies(fleet.urls[0], s["conversation_sizes"], s["conversation_samples"]))
        fig.update(result)
        smallest = str(s["conversation_sizes"][0])
        largest = s["conversation_sizes"][-1]
        for what in ("create", "list"):
            base = result[what][smallest]["p50"]
            for size in s["conversation_sizes"]:
                value = result[what][str(size)]["p50"]
                r = value / base
                target = f"<= 2x {smallest} items" if size == largest else ""
                met = (r <= 2.0) if size == largest else None
                label = "responses.create (truncation auto)" if what == "create" else "list a page of 20 items"
                # What stands in the way of a slow create: the history read and sent to the model with it.
                tokens = result["upstream_prompt_tokens_reported_by_mock"]
                sent = (f"; {tokens[str(size)]:,} input tokens sent to the model, against {tokens[smallest]:,} at {smallest} items"
                        if what == "create" and None not in (tokens[str(size)], tokens[smallest]) else "")
                self.table.add("5", f"{label}, {size:,} items, p50", round(value, 2), "ms", baseline=round(base, 2), ratio=r, target=target, met=met,
                               by=f"{r / 2:.1f}x the limit{sent}" if met is False else "")

    # -- 6: memory per open stream -----------------------------------------------------------

    def memory_per_stream(self) -> None:
        """memory per open stream: RSS growth over 1,000 streams waiting for their first token"""
        fig = self.figure("6")
        count = self.settings["open_streams"]
        with database_url("sqlite") as url, Fleet(url, self.config) as fleet:
            process = psutil.Process(fleet.pids[0])
            # Warm every code path a held stream takes, then let the allocator settle.
            run_load(fleet.urls, api="responses", model="instant", concurrency=16, duration=2, warmup=0, stream=True)
            time.sleep(1.0)
            base_rss = process.memory_info().rss
            waiting0 = self.mock.stats()["waiting_first_token"]
            holder = subprocess.Popen(
                [PYTHON, str(BENCH / "load.py"), "--url", fleet.urls[0], "--model", "hold", "--open-streams", str(count), "--hold", "600", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
            curve = []
            deadline = time.monotonic() + 180
            try:
                while time.monotonic() < deadline:
                    waiting = self.mock.stats()["waiting_first_token"] - waiting0
                    curve.append((waiting, process.memory_info().rss))
                    if waiting >= count:
                        break
                    time.sleep(0.25)
                time.sleep(2.0)
                waiting = self.mock.stats()["waiting_first_token"] - waiting0
                rss = max(process.memory_info().rss for _ in range(3) if time.sleep(0.2) is None)
                curve.append((waiting, rss))
                connections = len(process.net_connections(kind="tcp"))
            finally:
                holder.kill()
                holder.wait()
                self.mock.release()
            time.sleep(1.0)
        per_stream = (rss - base_rss) / max(1, waiting)
        fig.update({"streams_open": waiting, "rss_before_mib": round(base_rss / 2**20, 1), "rss_open_mib": round(rss / 2**20, 1),
                    "kib_per_stream": round(per_stream / 1024, 1), "threadline_tcp_connections": connections,
                    "curve": [(n, round(r / 2**20, 2)) for n, r in curve]})
        kib = per_stream / 1024
        met = kib <= IDLE_STREAM_KIB and waiting >= count
        largest = self.memory_profile(count) if kib > IDLE_STREAM_KIB and self.settings["memory_profile"] else ""
        self.table.add("6", f"RSS per idle open stream ({waiting:,} open)", round(kib, 1), "KiB", baseline=f"RSS {base_rss / 2**20:.1f} MiB before",
                       target=f"<= {IDLE_STREAM_KIB} KiB", met=met,
                       by="" if met else (f"{kib / IDLE_STREAM_KIB:.2f}x the limit{largest}" if kib > IDLE_STREAM_KIB else f"only {waiting:,} of {count:,} streams opened"))

    def memory_profile(self, count: int) -> str:
        """What an idle stream keeps, by the stack that allocated it (stream_memory.py, tracemalloc):
        flamegraph_memory.svg and profile_memory.txt."""
        stacks = OUT / "profile_memory.raw"
        done = subprocess.run([PYTHON, str(BENCH / "stream_memory.py"), "--streams", str(count), "--output", str(stacks)],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"stream_memory.py failed: {done.stderr[-2000:]}")
        (OUT / "profile_memory.txt").write_text(done.stdout)
        collapsed = flamegraph.read_collapsed(stacks.read_text())
        (OUT / "flamegraph_memory.svg").write_text(flamegraph.render(collapsed, f"What an idle stream keeps ({count:,} streams, tracemalloc)", "bytes"))
        kept = sum(amount for _, amount in collapsed) / 1024
        self.figure("6")["tracemalloc_kib_per_stream"] = round(kept, 1)
        return f"; tracemalloc sees {kept:.1f} KiB a stream (flamegraph_memory.svg, profile_memory.txt)"

    # -- 7: embedded model -------------------------------------------------------------------

    def embedded_model(self) -> None:
        """embedded model: tokens/s through the llama.cpp backend vs llama-cpp-python directly"""
        fig = self.figure("7")
        path = RESULTS / "embedded_model.json"
        reused = self.settings["embedded"] == "reuse" and path.exists()
        if not reused:
            subprocess.run([PYTHON, str(BENCH / "embedded_model.py"), "--runs", "3"], check=True, timeout=600, capture_output=True)
        result = json.loads(path.read_text())
        fig.update({"result": result, "reused": reused, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(path.stat().st_mtime))})
        value, base = result["backend_tokens_per_s"], result["llama_cpp_tokens_per_s"]
        met = value >= 0.95 * base
        self.table.add("7", "embedded smollm2 tokens/s" + (" (reused)" if reused else ""), value, "tok/s", baseline=base, ratio=ratio(value, base),
                       target=">= 95% of llama-cpp-python", met=met, by="" if met else f"{(0.95 - value / base) * 100:.1f} points short")

    # -- 8: peers ----------------------------------------------------------------------------

    def peers(self) -> None:
        """peers: 2,000 requests at concurrency 16, Threadline and --target, vs the reference figures"""
        fig = self.figure("8")
        requests = self.settings["peer_requests"]
        options = {"concurrency": 16, "requests": requests, "warmup": 1.0}
        direct = run_load(self.mock.url, api="chat", model=INSTANT, **options)
        measured = {}
        for kind, processes in self.settings["peer_fleets"]:
            with database_url(kind) as url, Fleet(url, self.config, processes) as fleet:
                name = f"Threadline ({kind}, {processes} process{'es' if processes > 1 else ''})"
                measured[name] = run_load(fleet.urls, api="responses", model="instant", **options)
        if self.args.target:
            measured[f"--target {self.args.target}"] = run_load(
                self.args.target, api="responses", model=self.args.target_model, api_key=self.args.target_api_key, **options
            )
            for concurrency in (1, 64):
                measured[f"--target c={concurrency}"] = run_load(
                    self.args.target, api="responses", model=self.args.target_model, api_key=self.args.target_api_key,
                    concurrency=concurrency, duration=5, warmup=1,
                )
        fig.update({"direct": direct, "measured": measured, "references": PEER_REFERENCES})
        best_peer = max(high for name, (low, high) in PEER_REFERENCES.items() if "mock" not in name)
        for name, out in measured.items():
            latency = out.get("latency_ms") or {}
            value = out["throughput_rps"]
            threadline = name.startswith("Threadline")
            met = value > best_peer if threadline else None
            self.table.add("8", f"{name}: {requests:,} req c=16" if "c=" not in name else name, round(value), "req/s", baseline=round(direct["throughput_rps"]),
                           ratio=ratio(value, direct["throughput_rps"]),
                           target=f"> every peer (best {best_peer:,}/s)" if threadline else "", met=met,
                           by=f"p99 {latency.get('p99', 0):.0f} ms" + ("" if met is not False else f"; {best_peer - value:,.0f}/s short; CPU-bound, see figure 3"))
        for name, (low, high) in PEER_REFERENCES.items():
            self.table.add("8", f"reference: {name}", f"{low:,}-{high:,}", "req/s", target="(reference figures)")

    # -- 9: tool loop -------------------------------------------------------------------------

    def tool_loop(self) -> None:
        """tool loop: overhead per hosted tool call beyond the tool's own time, memory per waiting approval"""
        fig = self.figure("9")
        s = self.settings
        output = self.folder / "tool_loop.json"
        command = [PYTHON, str(BENCH / "tool_loop.py"), "--calls", s["tool_calls"], "--repeats", str(s["tool_repeats"]),
                   "--approvals", str(s["tool_approvals"]), "--output", str(output)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"tool_loop.py failed: {done.stderr[-2000:]}")
        result = json.loads(output.read_text())
        result.pop("machine", None)
        fig.update(result)
        http, local, approvals = result["http"], result["in_process"], result["approvals"]
        tool = http["direct_tool_call_ms"]["p50"]
        every = http["overhead_beyond_direct_call_ms"]["all"]
        met = every["p50"] <= 2.0
        # What stands in the way: what the loop does per call besides the tool (a model turn, the
        # response stored before the call) shows in the in-process figure, which leaves out HTTP and the database.
        self.table.add("9", f"loop overhead per hosted MCP call, p50 (K={s['tool_calls']} calls)", round(every["p50"], 3), "ms",
                       baseline=round(tool, 3), target="<= 2 ms beyond the tool's own time (a direct call)", met=met,
                       by=f"p90 {every['p90']:.2f} ms" + ("" if met else f"; {every['p50'] - 2:.2f} ms over; in-process (no HTTP, no database) "
                                                          f"{local['overhead_beyond_direct_call_ms']['all']['p50']:.2f} ms"))
        handling = http["overhead_beyond_server_handling_ms"]["all"]
        self.table.add("9", "loop overhead per call beyond the MCP server's own handling, p50", round(handling["p50"], 3), "ms",
                       baseline=round(http["server_handling_per_call_ms"]["p50"], 3), by=f"p90 {handling['p90']:.2f} ms; counts the MCP client's share")
        inproc = local["overhead_beyond_direct_call_ms"]["all"]
        self.table.add("9", "loop overhead per call in-process (TurnLoop, no HTTP, no database), p50", round(inproc["p50"], 3), "ms",
                       baseline=round(tool, 3), by=f"p90 {inproc['p90']:.2f} ms")
        waiting = approvals["approvals"]
        stored = sum(waiting["bytes_per_response"].values())
        rows = sum(waiting["rows_per_response"].values())
        self.table.add("9", f"RSS per waiting approval ({approvals['count']:,} waiting)", round(waiting["rss_bytes_per_response"] / 1024, 2), "KiB",
                       baseline=round(approvals["plain"]["rss_bytes_per_response"] / 1024, 2),
                       by=f"a stored item: {waiting['mcp_connections_held_after']} MCP connections held; the oldest answered later ran its call")
        self.table.add("9", "stored per waiting approval (SQLite, whole response)", stored, "bytes",
                       by=f"{rows:g} rows: " + ", ".join(f"{t} {n:g}" for t, n in waiting["rows_per_response"].items()))

    # -- 11: compaction ----------------------------------------------------------------------

    def compaction(self) -> None:
        """compaction: the summary's call in tokens and time, and the input tokens it saves"""
        fig = self.figure("11")
        s = self.settings
        output = self.folder / "compaction.json"
        command = [PYTHON, str(BENCH / "compaction.py"), "--turns", str(s["compaction_turns"]), "--output", str(output)]
        done = subprocess.run(command + ([] if s["compaction_embedded"] else ["--skip-embedded"]), capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"compaction.py failed: {done.stderr[-2000:]}")
        result = json.loads(output.read_text())
        result.pop("machine", None)
        fig.update(result)
        for model, out in result.items():
            extra, compact = out["extra_ms_per_compaction"], out["compact_endpoint"]
            read = out["input_tokens_read"]
            self.table.add("11", f"{model}: extra time of a turn that compacts, p50 ({out['compactions']} of {out['turns']} turns)",
                           round(extra["p50"], 1) if extra else None, "ms", baseline=round(out["plain_turn_ms"]["p50"], 1),
                           by=f"threshold {out['threshold']:,} tokens")
            self.table.add("11", f"{model}: POST /v1/responses/compact, p50", round(compact["latency_ms"]["p50"], 1), "ms",
                           by=f"summary call: {compact['input_tokens']:g} tokens in, {compact['output_tokens']:g} out")
            self.table.add("11", f"{model}: input tokens read over the conversation", read["with_compaction"], "tokens",
                           baseline=read["without_compaction_estimated"], ratio=ratio(read["with_compaction"], read["without_compaction_estimated"]),
                           by=f"largest turn {out['largest_turn_input_tokens']:,} tokens")


    # -- 12: WebSocket mode -----------------------------------------------------------------

    def websocket(self) -> None:
        """WebSocket mode: per-turn latency of a 50-turn session over one WebSocket vs over SSE"""
        fig = self.figure("12")
        s = self.settings
        output = self.folder / "websocket.json"
        command = [PYTHON, str(BENCH / "websocket.py"), "--sessions", str(s["ws_sessions"]), "--database", s["ws_databases"], "--output", str(output)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"websocket.py failed: {done.stderr[-2000:]}")
        result = json.loads(output.read_text())
        result.pop("machine", None)
        fig.update(result)
        for database, kinds in result["databases"].items():
            # Against the SSE request a client of the same kind sends: Codex over HTTP resends the
            # whole history unstored; a stored chain sends previous_response_id.
            for websocket, sse in (("ws_unstored", "sse_stateless"), ("ws_stored", "sse_chain")):
                value, baseline = kinds[websocket]["turn_ms"]["p50"], kinds[sse]["turn_ms"]["p50"]
                met = value <= WEBSOCKET_RATIO * baseline
                self.table.add("12", f"turn p50 of a {result['turns']}-turn session, {websocket} vs {sse} ({database})", round(value, 2), "ms",
                               baseline=round(baseline, 2), ratio=round(value / baseline, 2), target=f"<= {WEBSOCKET_RATIO}x SSE (20% faster)", met=met,
                               by=f"turns 41-50 p50 {kinds[websocket]['last_ten_p50_ms']:.2f} vs {kinds[sse]['last_ten_p50_ms']:.2f} ms"
                               + ("" if met else f"; {value / baseline:.2f}x SSE"))
    # -- 13: the web console -----------------------------------------------------------------

    def console(self) -> None:
        """console: server time of a long conversation's page (its first 50 items rendered)"""
        fig = self.figure("13")
        s = self.settings
        output = self.folder / "console.json"
        command = [PYTHON, str(BENCH / "console.py"), "--items", str(s["console_items"]), "--requests", str(s["console_requests"]),
                   "--database", s["console_databases"], "--output", str(output)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if not output.exists():  # it exits 1 when a target is missed, with its results written
            raise RuntimeError(f"console.py failed: {done.stderr[-2000:]}")
        result = json.loads(output.read_text())
        result.pop("machine", None)
        fig.update(result)
        for database, found in result["databases"].items():
            value, baseline = found["ms"]["first_page"]["p90"], found["ms"]["first_page_small"]["p90"]
            self.table.add("13", f"console: first page of a {found['items']:,}-item conversation, p90 ({database})", round(value, 2), "ms",
                           baseline=round(baseline, 2), ratio=round(value / baseline, 2), target="< 300 ms", met=found["pass"],
                           by="" if found["pass"] else f"{value / 300:.1f}x the limit")

    # -- 10: file search ---------------------------------------------------------------------

    def retrieval(self) -> None:
        """file search: recall@10 and nDCG@10 of hybrid, keyword and vector search, and search latency"""
        fig = self.figure("10")
        full = RESULTS / "retrieval.json"
        reused = self.settings["retrieval"] == "reuse" and full.exists()
        path = full if reused or self.settings["retrieval"] == "reuse" else OUT / "retrieval_quick.json"
        if not reused:
            command = [PYTHON, str(BENCH / "retrieval.py"), "--output", str(path)] + (["--quick"] if self.settings["retrieval"] == "quick" else ["--profile"])
            done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
            if done.returncode != 0:
                raise RuntimeError(f"retrieval.py failed: {done.stderr[-2000:]}")
        result = json.loads(path.read_text())
        fig.update({"suite": result["suite"], "reused": reused, "measured_at": result["machine"]["at"], "corpus": result["corpus"],
                    "databases": {kind: {key: value for key, value in found.items() if key != "fusion"} for kind, found in result["databases"].items()}})
        label = f"{result['corpus']['known_items']:,} known items" + (" (reused)" if reused else "")
        for kind, found in result["databases"].items():
            quality = found.get("quality")
            if quality:
                best_single = {m: max(quality["keyword"]["all"][m], quality["vector"]["all"][m]) for m in ("recall@10", "ndcg@10")}
                for measure in ("recall@10", "ndcg@10"):
                    value = quality["hybrid"]["all"][measure]
                    met = value > best_single[measure]
                    self.table.add("10", f"hybrid {measure}, {kind}, {label}", value, "", baseline=best_single[measure], ratio=ratio(value, best_single[measure]),
                                   target="> keyword-only and vector-only", met=met,
                                   by=f"keyword {quality['keyword']['all'][measure]}, vector {quality['vector']['all'][measure]}"
                                   + ("" if met else f"; {best_single[measure] - value:.3f} short" if value < best_single[measure] else "; level with the best"))
            latency = found.get("latency")
            if latency:
                http = latency["http_ms"]["hybrid"]
                judged = kind == "sqlite" and latency["chunks"] >= SEARCH_TARGET_CHUNKS
                met = http["p50"] <= SEARCH_P50_MS if judged else None
                heaviest = self.search_profile(kind, latency, path.parent) if met is False else ""
                self.table.add("10", f"hybrid search p50 over HTTP, {kind}, {latency['chunks']:,} chunks", http["p50"], "ms",
                               target=f"<= {SEARCH_P50_MS} ms at {SEARCH_TARGET_CHUNKS:,} chunks" if judged else "", met=met,
                               by=f"p99 {http['p99']:.0f} ms; in-process p50 {latency['in_process_ms']['hybrid']['p50']:.0f} ms; "
                                  f"server RSS {latency['server_rss_mib']['after_searches']} MiB"
                                  + (f"; {http['p50'] / SEARCH_P50_MS:.1f}x the limit" if met is False else "") + heaviest)

    def search_profile(self, kind: str, latency: dict, folder: Path) -> str:
        """What stands in the way of a missed search target: retrieval.py's profile of the server during
        hybrid searches, as flamegraph_file_search.svg and profile_file_search.txt."""
        profiled = latency.get("profile")
        if not profiled or not (folder / profiled["raw"]).exists():
            return ""
        shutil.copyfile(folder / profiled["flamegraph"], OUT / "flamegraph_file_search.svg")
        summary, text = summarize_profile(folder / profiled["raw"], profiled["cpu_ms_per_search"], profiled["searches_per_s"],
                                          f"hybrid file searches over HTTP, {kind}, {latency['chunks']:,} chunks (per response = per search)", gil=False)
        (OUT / "profile_file_search.txt").write_text(text)
        self.figure("10")["profile_file_search"] = summary
        return "; heaviest packages in the profile: " + ", ".join(f"{part['package']} {part['ms']:.1f} ms" for part in summary["self_by_package"][:3])

    # -- plots -------------------------------------------------------------------------------

    def plot(self) -> None:
        plot_figures(self.results["figures"])


def profile_during(pid: int, seconds: float, suffix: str, what: str, load, folder: Path) -> dict:
    """py-spy (GIL-holding samples, 200/s) on `pid` while `load()` runs: flamegraph{suffix}.svg, profile{suffix}.txt."""
    raw = OUT / f"profile{suffix}.raw"  # collapsed stacks, for another look later
    recorders = py_spy(pid, seconds, OUT / f"flamegraph{suffix}.svg", raw)
    before = cpu_seconds([pid])
    out = load()
    cpu = cpu_seconds([pid]) - before
    for recorder in recorders:
        recorder.wait(timeout=60)
    cpu_ms = cpu * 1000 / max(1, out["ok"])
    summary, text = summarize_profile(raw, cpu_ms, out["throughput_rps"], what)
    (OUT / f"profile{suffix}.txt").write_text(text)
    return {**summary, "rps_while_profiled": out["throughput_rps"], "cpu_ms_per_response_while_profiled": round(cpu_ms, 3),
            "tokens_per_s_while_profiled": out.get("tokens_received_per_s")}


# --- Chains and conversations (sequential, timed with the raw client of load.py) -------------


def chain_turn(previous: str | None) -> dict:
    """A turn of figure 4's chains: `previous` continued, or a new chain."""
    body = {"model": "instant", "input": "One more turn: say hello.", "truncation": "auto", "max_output_tokens": MAX_OUTPUT_TOKENS}
    return {**body, "previous_response_id": previous} if previous else body


async def turns_for(base: str, previous: str, seconds: float) -> dict:
    """New turns continuing `previous`, one after another for `seconds` (the load a profile watches)."""
    client = Client(base)
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        await client.request("POST", "/v1/responses", chain_turn(previous))
        done += 1
    return {"ok": done, "throughput_rps": round(done / (time.monotonic() - started), 1)}


async def chain_latencies(base: str, depths: list[int], samples: int) -> dict:
    client = Client(base)
    # Build the chain; remember the response at every depth that is measured (turn N continues turn N-1).
    wanted = {depth - 1 for depth in depths if depth > 1}
    at_depth: dict[int, str] = {}
    previous = None
    build_started = time.monotonic()
    build_ms: dict[int, float] = {}
    for turn in range(1, max(depths)):
        body = {"model": "instant", "input": f"Turn {turn}: say hello.", "truncation": "auto", "max_output_tokens": MAX_OUTPUT_TOKENS}
        if previous:
            body["previous_response_id"] = previous
        elapsed, response = await client.request("POST", "/v1/responses", body)
        previous = response["id"]
        if turn in wanted:
            at_depth[turn] = previous
        if turn % 100 == 0 or turn in wanted:
            build_ms[turn] = round(elapsed, 3)
    build_seconds = time.monotonic() - build_started
    timings: dict[int, list[float]] = defaultdict(list)
    input_tokens: dict[str, int] = {}
    for _ in range(samples):  # interleaved, so drift hits every depth alike
        for depth in depths:
            elapsed, response = await client.request("POST", "/v1/responses", chain_turn(at_depth.get(depth - 1)))
            assert response["status"] == "completed", response["status"]
            timings[depth].append(elapsed)
            input_tokens[str(depth)] = response["usage"]["input_tokens"]
    return {"turns": {str(d): summarize(timings[d]) for d in depths}, "input_tokens": input_tokens,
            "build_seconds": round(build_seconds, 1), "build_turn_ms": build_ms,
            "context_window": CONTEXT_WINDOW, "truncation": "auto", "deepest_response_id": at_depth[max(depths) - 1]}


async def conversation_latencies(base: str, sizes: list[int], samples: int) -> dict:
    client = Client(base)
    conversations = {}
    build_started = time.monotonic()
    for size in sizes:
        _, conversation = await client.request("POST", "/v1/conversations", {})
        for start in range(0, size, 20):
            items = [
                {"type": "message", "role": "user" if i % 2 == 0 else "assistant",
                 "content": f"Message {i} of the conversation: a few words of ordinary text to make it look real."}
                for i in range(start, min(size, start + 20))
            ]
            await client.request("POST", f"/v1/conversations/{conversation['id']}/items", {"items": items})
        conversations[size] = conversation["id"]
    build_seconds = time.monotonic() - build_started
    create: dict[int, list[float]] = defaultdict(list)
    listing: dict[int, list[float]] = defaultdict(list)
    input_tokens: dict[int, int] = {}
    for _ in range(samples):
        for size in sizes:
            body = {"model": "instant", "input": "Say hello.", "conversation": conversations[size], "truncation": "auto",
                    "max_output_tokens": MAX_OUTPUT_TOKENS}
            elapsed, response = await client.request("POST", "/v1/responses", body)
            assert response["status"] == "completed", response["status"]
            create[size].append(elapsed)
            input_tokens[size] = response.get("usage", {}).get("input_tokens")
            elapsed, page = await client.request("GET", f"/v1/conversations/{conversations[size]}/items?limit=20")
            assert len(page["data"]) == 20 or size < 20
            listing[size].append(elapsed)
    return {
        "create": {str(s): summarize(create[s]) for s in sizes},
        "list": {str(s): summarize(listing[s]) for s in sizes},
        "upstream_prompt_tokens_reported_by_mock": {str(s): input_tokens[s] for s in sizes},
        "build_seconds": round(build_seconds, 1),
        "context_window": CONTEXT_WINDOW,
    }


# --- Profile summary ---------------------------------------------------------------------------

PACKAGES = [
    ("threadline", "threadline (own code)"),
    ("sqlalchemy", "SQLAlchemy"),
    ("asyncpg", "asyncpg"),
    ("aiosqlite", "aiosqlite / sqlite3"),
    ("sqlite3", "aiosqlite / sqlite3"),
    ("aiohttp", "aiohttp (upstream client)"),
    ("anyio", "anyio (threads)"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("pydantic", "pydantic"),
    ("uvicorn", "uvicorn"),
    ("logging", "logging"),
    ("asyncio", "asyncio"),
    ("json", "json / orjson"),
    ("orjson", "json / orjson"),
    ("secrets", "ids (secrets)"),
    ("random", "ids (secrets)"),
    ("uuid", "ids (secrets)"),
    ("typing", "typing / copy / other stdlib"),
    ("copy", "typing / copy / other stdlib"),
]

# Threadline frames whose inclusive time says what a response costs, in order of the request.
STAGES = [
    ("BodyLimits.__call__", "the whole request through the ASGI app"),
    ("create_response", "create_response handler (after body parsing)"),
    ("Preparer.prepare", "prepare: model, tools, context, Response echo"),
    ("Runner.start", "start the run (a streamed response is recorded meanwhile)"),
    ("ResponseRun._run", "the run task: upstream call + events + store"),
    ("UpstreamBackend._call", "upstream HTTP call (aiohttp)"),
    ("ResponseStore.complete", "store the response (queued for the next shared transaction)"),
    ("Database._commit_waiting", "the shared transactions (group commit) of every waiting write"),
    ("JSON.render", "render the answer (orjson)"),
    ("project", "auth dependency"),
    ("solve_dependencies", "FastAPI dependencies and body validation"),
    ("RequestResponseCycle.send", "uvicorn write"),
    ("HttpToolsProtocol.data_received", "uvicorn HTTP parsing"),
    ("StreamHandler.emit", "logging (uvicorn access log)"),
    ("Logger.info", "logging calls"),
]


def frame_package(frame: str) -> str:
    match = re.search(r"\(([^)]*)\)$", frame)
    path = match.group(1) if match else ""
    for key, name in PACKAGES:
        if re.search(rf"(^|/){key}(/|\.py|$)", path):
            return name
    if "site-packages" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0]
    return path.split("/", 1)[0] if "/" in path else (path or "native / unknown")


def task_root(frames: list[str]) -> str:
    """The coroutine a sample's event loop step was running (or the thread it came from)."""
    if frames and frames[0].startswith("Thread._bootstrap"):
        for index, frame in enumerate(frames):
            if frame.startswith("Thread.run ") and index + 1 < len(frames):
                return "thread: " + frames[index + 1]
        return "thread: " + frames[-1]
    for index, frame in enumerate(frames):
        if frame.startswith("Runner.run (asyncio/runners.py") or frame.startswith("run_until_complete (asyncio/"):
            rest = [f for f in frames[index + 1 :] if not f.startswith(("Handle._run", "BaseEventLoop.", "_run_once", "Task."))]
            return rest[0] if rest else "event loop itself (uvloop, native)"
    return frames[0] if frames else "?"


def summarize_profile(raw: Path, cpu_ms_per_response: float, rps: float, what: str = "stored non-streaming responses", gil: bool = True) -> tuple[dict, str]:
    stacks = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    total = sum(count for _, count in stacks) or 1
    own: Counter = Counter()
    package: Counter = Counter()
    inclusive: Counter = Counter()
    roots: Counter = Counter()
    for frames, count in stacks:
        roots[task_root(frames)] += count
        own[frames[-1]] += count
        package[frame_package(frames[-1])] += count
        for name in {frame.split(" (")[0] for frame in frames}:
            inclusive[name] += count

    def ms(share: float) -> float:
        return round(share * cpu_ms_per_response, 3)

    lines = [
        f"Where a Threadline process spends CPU: {what} (py-spy, {'GIL-holding samples' if gil else 'samples of every thread not waiting'})",
        f"{total} samples; the process used {cpu_ms_per_response:.2f} ms of CPU per response at {rps:.0f} responses/s.",
        f"Shares are of the samples {'that held the GIL' if gil else 'of threads not waiting, C code without the GIL included'}; ms = share x CPU per response.",
        "",
        "Self time by package:",
    ]
    by_package = [(name, count / total) for name, count in package.most_common()]
    lines += [f"  {share:6.1%}  {ms(share):6.3f} ms  {name}" for name, share in by_package[:16]]
    by_root = [(name, count / total) for name, count in roots.most_common(12)]
    lines += ["", "By task (the coroutine the event loop was running, or the thread):"]
    lines += [f"  {share:6.1%}  {ms(share):6.3f} ms  {name}" for name, share in by_root]
    lines += ["", "Stages (inclusive, a frame counted once per sample):"]
    stages = []
    for frame, label in STAGES:
        count = sum(c for name, c in inclusive.items() if name == frame or name.endswith("." + frame))
        if count:
            stages.append((label, frame, count / total))
    lines += [f"  {share:6.1%}  {ms(share):6.3f} ms  {label} [{frame}]" for label, frame, share in stages]
    lines += ["", "Top functions by self time:"]
    top_self = [(frame, count / total) for frame, count in own.most_common(25)]
    lines += [f"  {share:6.1%}  {ms(share):6.3f} ms  {frame}" for frame, share in top_self]
    lines += ["", "Top Threadline functions (inclusive):"]
    own_frames = Counter()
    for frames, count in stacks:
        for name in {frame for frame in frames if "threadline/" in frame and "threadline/cli.py" not in frame and "__main__" not in frame}:
            own_frames[name] += count
    ours = [(frame, count / total) for frame, count in own_frames.most_common(20)]
    lines += [f"  {share:6.1%}  {ms(share):6.3f} ms  {frame}" for frame, share in ours]
    summary = {
        "samples": total,
        "cpu_ms_per_response": round(cpu_ms_per_response, 3),
        "self_by_package": [{"package": n, "share": round(s, 4), "ms": ms(s)} for n, s in by_package[:16]],
        "by_task": [{"task": n, "share": round(s, 4), "ms": ms(s)} for n, s in by_root],
        "stages": [{"stage": label, "frame": frame, "share": round(s, 4), "ms": ms(s)} for label, frame, s in stages],
        "top_self": [{"frame": f, "share": round(s, 4), "ms": ms(s)} for f, s in top_self],
        "threadline_inclusive": [{"frame": f, "share": round(s, 4), "ms": ms(s)} for f, s in ours],
    }
    return summary, "\n".join(lines) + "\n"


def replace_block(path: Path, name: str, lines: list[str]) -> None:
    """Put `lines` between the file's two `run.py <name>` markers."""
    start, end = f"<!-- run.py {name}: start -->", f"<!-- run.py {name}: end -->"
    text = path.read_text()
    if start not in text or end not in text:
        log(f"{path.name} has no {name} markers; not updated")
        return
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(before + "\n".join([start, *lines, end]) + after)
    log(f"{path.relative_to(REPO)} {name} block updated")


# --- Plots -----------------------------------------------------------------------------------


def plot_figures(figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(OUT / name, dpi=110)
        plt.close(fig)

    if "1" in figures and any(k in figures["1"] for k in ("sqlite", "postgresql")):
        kinds = [k for k in ("sqlite", "postgresql") if k in figures["1"]]
        fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
        for ax, kind in zip(axes[0], kinds):
            data = figures["1"][kind]
            labels, x = [], 0
            for c in (1, 16, 64):
                entry = data.get(f"c{c}")
                if not entry:
                    continue
                for offset, who, color in ((0, "direct", "tab:gray"), (1, "threadline", "tab:blue")):
                    values = [entry[who][p] for p in ("p50", "p90", "p99")]
                    ax.bar([x + offset * 0.4 + i * 1.0 for i in range(3)], values, width=0.38, color=color, label=who if c == 1 else None)
                labels.append((x + 1.2, f"c={c}"))
                x += 3.6
            ax.set_yscale("log")
            ax.set_ylabel("latency (ms), bars: p50 p90 p99")
            ax.set_xticks([p for p, _ in labels], [t for _, t in labels])
            ax.set_title(f"1. stored non-streaming response vs mock directly ({kind})")
            ax.legend()
        save(fig, "fig1_added_latency.png")

    if "2" in figures and "threadline" in figures["2"]:
        data = figures["2"]
        fig, ax = plt.subplots(figsize=(7, 4))
        names = ["first event p50", "first event p99", "stream p50 (s/100)", "stream p99 (s/100)"]
        bars = [(who, label, color) for who, label, color in (("direct", "direct", "tab:gray"), ("threadline", "Threadline", "tab:blue"),
                ("threadline_2_processes", "Threadline, 2 processes", "tab:cyan")) if who in data]
        for offset, (who, label, color) in enumerate(bars):
            d = data[who]
            values = [d["first_event_ms"]["p50"], d["first_event_ms"]["p99"], d["stream_duration_ms"]["p50"] / 100, d["stream_duration_ms"]["p99"] / 100]
            ax.bar([i + offset * 0.8 / len(bars) for i in range(4)], values, width=0.78 / len(bars), color=color,
                   label=f"{label}: {d.get('tokens_received_per_s', 0):,.0f} tokens/s")
        ax.set_xticks([i + 0.4 - 0.4 / len(bars) for i in range(4)], names)
        ax.set_ylabel("ms")
        ax.set_title("2. 256 streams x 200 tokens at 50 tokens/s")
        ax.legend()
        save(fig, "fig2_streaming.png")

    if "3" in figures and "runs" in figures["3"]:
        runs = figures["3"]["runs"]
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        pg = [r for r in runs if r["database"] == "postgresql"]
        ax.plot([r["processes"] for r in pg], [r["rps"] for r in pg], "o-", label="PostgreSQL")
        for r in runs:
            if r["database"] == "sqlite":
                ax.plot([r["processes"]], [r["rps"]], "s", color="tab:orange", label="SQLite")
        ax.axhline(1000, color="tab:red", linestyle="--", label="target 1,000/s")
        ax.set_xlabel("Threadline processes")
        ax.set_ylabel("stored responses/s")
        ax.set_title("3. saturation throughput (2 cores)")
        ax.legend()
        names = ["threadline", "postgresql (whole server)", "mock", "load generator"]
        bottom = [0.0] * len(runs)
        labels = [f"{'PG' if r['database'] == 'postgresql' else 'SQLite'} x{r['processes']}\nc={r.get('concurrency', '')}" for r in runs]
        for name in names:
            values = [r["cpu_ms_per_response"].get(name, 0.0) for r in runs]
            ax2.bar(labels, values, bottom=bottom, label=name)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax2.set_ylabel("CPU ms per response")
        ax2.set_title("where the CPU goes")
        ax2.legend()
        save(fig, "fig3_saturation.png")

    if "4" in figures and "turns" in figures["4"]:
        turns = figures["4"]["turns"]
        depths = sorted(int(d) for d in turns)
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in ("p50", "p90"):
            ax.plot(depths, [turns[str(d)][p] for d in depths], "o-", label=p)
        ax.axhline(turns["1"]["p50"] * 1.3, color="tab:red", linestyle="--", label="target: 1.3x turn 1 (p50)")
        ax.set_xscale("log")
        ax.set_xlabel("turn N of a previous_response_id chain")
        ax.set_ylabel("latency (ms)")
        ax.set_title("4. chain growth")
        ax.legend()
        save(fig, "fig4_chain_growth.png")

    if "5" in figures and "create" in figures["5"]:
        data = figures["5"]
        sizes = sorted(int(s) for s in data["create"])
        fig, ax = plt.subplots(figsize=(6, 4))
        for what, label in (("create", "responses.create (truncation auto)"), ("list", "list 20 items")):
            ax.plot(sizes, [data[what][str(s)]["p50"] for s in sizes], "o-", label=label + " p50")
        ax.axhline(data["create"][str(sizes[0])]["p50"] * 2, color="tab:red", linestyle="--", label="target: 2x create at 10 items")
        ax.set_xscale("log")
        ax.set_xlabel("items in the conversation")
        ax.set_ylabel("latency (ms)")
        ax.set_title("5. conversation growth")
        ax.legend()
        save(fig, "fig5_conversation_growth.png")

    if "6" in figures and "curve" in figures["6"]:
        curve = figures["6"]["curve"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([n for n, _ in curve], [r for _, r in curve], ".-", label="Threadline RSS")
        base = figures["6"]["rss_before_mib"]
        ax.plot([0, 1000], [base, base + 1000 * IDLE_STREAM_KIB / 1024], "--", color="tab:red", label=f"target: {IDLE_STREAM_KIB} KiB per stream")
        ax.set_xlabel("streams open (waiting for their first token)")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title("6. memory per open stream")
        ax.legend()
        save(fig, "fig6_memory_per_stream.png")


def git_state() -> dict:
    """The commit measured, and the files other engineers had changed in the tree at the time."""

    def git(*args: str) -> str:
        with contextlib.suppress(Exception):
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return ""

    return {"commit": git("rev-parse", "HEAD"), "modified": [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short version (2-3 minutes)")
    parser.add_argument("--only", default=None, help="figures to run, e.g. 1,3 (0 is the harness check)")
    parser.add_argument("--target", default=None, help="another server's base URL that speaks /v1/responses (figure 8)")
    parser.add_argument("--target-model", default="instant", help="the model name to send to --target")
    parser.add_argument("--target-api-key", default=None)
    parser.add_argument("--readme", action="store_true", help="write this run's table into bench/README.md and a one-line summary into README.md")
    parser.add_argument("--mock-port", type=int, default=0, help="a fixed port for the mock upstream, so a --target can be pointed at it")
    parser.add_argument("--results", type=Path, default=None, help="the folder to write to (bench/results/, or bench/results/quick/ with --quick)")
    args = parser.parse_args()
    # A thousand open streams need a few thousand descriptors, in every process started from here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    global OUT
    OUT = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    OUT.mkdir(parents=True, exist_ok=True)
    return Suite(args).run()


if __name__ == "__main__":
    sys.exit(main())
