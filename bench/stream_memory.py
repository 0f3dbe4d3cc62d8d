"""Where an idle stream's memory goes: the bytes each open stream keeps, by the stack that allocated them.

    .venv/bin/python bench/stream_memory.py [--streams 1000] [--output stacks.txt]

`threadline serve` runs in this process (its main thread, as the command runs it), traced by
tracemalloc once it is up; the mock upstream and a bench/load.py holding `--streams` streams on the
mock's `hold` model (no first token for an hour) run in processes of their own, as in figure 6
of bench/run.py. The allocations alive with the streams open, less those alive before
(after the same warm-up as figure 6), are each stream's share: written as collapsed stacks
("outer;inner;leaf bytes" per line, bytes per stream) for `bench/flamegraph.py --unit B`,
and summed by area. tracemalloc sees what Python allocates; RSS also counts what C libraries
(uvloop, httptools, OpenSSL) allocate themselves, and the allocator's own overhead.
"""

from __future__ import annotations

import argparse
import ast
import functools
import gc
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import database_url  # noqa: E402
from mock_upstream import MockUpstream  # noqa: E402
from run import CONTEXT_WINDOW, HOLD, INSTANT, PYTHON, run_load  # noqa: E402
from tests.servers import free_port, write_config  # noqa: E402

STDLIB = re.compile(r"^.*/lib/python3\.\d+/(?!site-packages/)")  # a standard module is named from its package
# Frames below these are the event loop's and the command's: the same for every stack.
LOOP_FILES = ("asyncio/runners.py", "asyncio/base_events.py", "asyncio/events.py")
# Each allocation counts for the area of the innermost frame that names one (else "other").
AREAS = (
    ("upstream aiohttp", ("/aiohttp/", "/yarl/", "/multidict/", "/aiohappyeyeballs/", "threadline/backends/")),
    ("streaming response (its task group or listener)", ("starlette/responses.py", "/anyio/", "threadline/api/sse.py")),
    ("uvicorn connection", ("/uvicorn/", "/httptools/", "/h11/")),
    ("events", ("threadline/spec/stream.py", "threadline/spec/response.py", "threadline/engine/client_stream.py")),
    ("run state", ("threadline/engine/", "threadline/services/", "threadline/spec/", "threadline/store/", "threadline/ops/metrics.py")),
    ("ASGI request chain", ("/starlette/", "/fastapi/", "/pydantic", "threadline/")),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=None, help="write collapsed stacks (bytes per stream) here")
    parser.add_argument("--frames", type=int, default=60, help="frames kept per allocation")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    measured: dict = {}
    with tempfile.TemporaryDirectory(prefix="stream-memory-") as folder, database_url("sqlite") as url, MockUpstream(tokens=16, context=CONTEXT_WINDOW) as mock:
        models = [
            {"id": "instant", "provider": "openai-chat", "base_url": mock.url, "upstream_model": INSTANT},
            {"id": "hold", "provider": "openai-chat", "base_url": mock.url, "upstream_model": HOLD, "timeout_s": 7200},
        ]
        config = write_config(Path(folder) / "threadline.toml", {"default_model": "instant", "models": models})
        port = free_port()
        measuring = threading.Thread(target=measure, args=(f"http://127.0.0.1:{port}", mock, args.streams, args.frames, measured), daemon=True)
        measuring.start()
        serve(port, url, config)
        measuring.join()
    tracemalloc.stop()
    if "error" in measured:
        raise SystemExit(f"not measured: {measured['error']}")
    report(measured, args.output)


def serve(port: int, url: str, config: Path) -> None:
    """`threadline serve` in this thread, until SIGINT."""
    import typer

    from threadline.cli import cli

    typer.main.get_command(cli)(["serve", "--port", str(port), "--database", url, "--config", str(config)], standalone_mode=False)


def measure(base_url: str, mock: MockUpstream, count: int, frames: int, measured: dict) -> None:
    """Open `count` streams against the server in this process, with snapshots before and
    with them open; stop the server afterwards. Tracing starts once the server is up (it
    would slow its start many times over)."""
    import httpx

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)
        process = psutil.Process()
        tracemalloc.start(frames)
        run_load(base_url, api="responses", model="instant", concurrency=16, duration=2, warmup=0, stream=True)
        time.sleep(1.0)
        gc.collect()
        measured["rss_before"] = process.memory_info().rss
        measured["before"] = tracemalloc.take_snapshot()
        waiting0 = mock.stats()["waiting_first_token"]
        holder = subprocess.Popen(
            [PYTHON, str(BENCH / "load.py"), "--url", base_url, "--model", "hold", "--open-streams", str(count), "--hold", "600", "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 180
            while mock.stats()["waiting_first_token"] - waiting0 < count and time.monotonic() < deadline:
                time.sleep(0.25)
            time.sleep(2.0)
            gc.collect()
            measured["streams"] = mock.stats()["waiting_first_token"] - waiting0
            measured["rss_open"] = process.memory_info().rss
            measured["open"] = tracemalloc.take_snapshot()
        finally:
            holder.kill()
            holder.wait()
            mock.release()
    except Exception as error:  # reported by the main thread, once the server is down
        measured["error"] = repr(error)
    finally:
        os.kill(os.getpid(), signal.SIGINT)


def report(measured: dict, output: Path | None) -> None:
    streams = max(1, measured["streams"])
    stacks: dict[str, float] = defaultdict(float)
    areas: dict[str, float] = defaultdict(float)
    for stat in measured["open"].compare_to(measured["before"], "traceback"):
        if stat.size_diff:
            frames = from_the_task(stat.traceback)
            stacks[";".join(frame_name(f.filename, f.lineno) for f in frames) or "(event loop)"] += stat.size_diff / streams
            areas[area(frames)] += stat.size_diff / streams
    traced = sum(areas.values())
    rss = (measured["rss_open"] - measured["rss_before"]) / streams
    print(f"{measured['streams']:,} streams open: {traced / 1024:.1f} KiB per stream allocated by Python (RSS {rss / 1024:.1f} KiB, tracemalloc's own records included):")
    for name, size in sorted(areas.items(), key=lambda item: -item[1]):
        print(f"  {size / 1024:7.1f} KiB  {name}")
    if output:
        lines = [f"{stack} {size:.1f}" for stack, size in sorted(stacks.items()) if size > 0]
        output.write_text("\n".join(lines) + "\n")
        print(f"collapsed stacks (bytes per stream) in {output}; draw them with: bench/flamegraph.py {output} --output memory.svg --unit B")


def from_the_task(traceback: tracemalloc.Traceback) -> list[tracemalloc.Frame]:
    """The frames above the event loop's (tracemalloc lists them outermost first)."""
    frames = list(traceback)
    loop = [index for index, frame in enumerate(frames) if frame.filename.endswith(LOOP_FILES)]
    return frames[loop[-1] + 1 :] if loop else frames


def area(frames: list[tracemalloc.Frame]) -> str:
    if any("threadline/jobs/" in frame.filename for frame in frames):
        return "job worker (its heartbeat's reads: not the streams')"
    if not frames:
        return "event loop (uvloop's transports and handles)"
    for frame in reversed(frames):
        path = frame.filename.replace(os.sep, "/")
        for name, markers in AREAS:
            if any(marker in path for marker in markers):
                return name
    return "other"


def frame_name(filename: str, lineno: int) -> str:
    """`package/module.py:function:line`, the path cut to where the package starts."""
    path = STDLIB.sub("", filename.replace(os.sep, "/"))
    for marker in ("/site-packages/", "/src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{function_at(filename, lineno)}:{lineno}"


@functools.cache
def functions_in(filename: str) -> list[tuple[int, int, str]]:
    """(first line, last line, qualified name) of every function and class in a source file."""
    try:
        tree = ast.parse(Path(filename).read_text())
    except (OSError, SyntaxError, ValueError):
        return []
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                found.append((child.lineno, child.end_lineno or child.lineno, name))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def function_at(filename: str, lineno: int) -> str:
    inside = [(first, name) for first, last, name in functions_in(filename) if first <= lineno <= last]
    return max(inside)[1] if inside else "<module>"


if __name__ == "__main__":
    main()
