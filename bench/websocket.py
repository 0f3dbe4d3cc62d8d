"""WebSocket mode against SSE: per-turn latency of the same 50-turn session.

    .venv/bin/python bench/websocket.py [--turns 50] [--sessions 6] [--database sqlite|postgresql|both]
                                        [--turn-bytes 1000] [--output FILE]

One `threadline serve` per database, on the scripted model (it answers at once, so the
figures are Threadline's and the transport's, not a model's). A session is `--turns` turns,
each a user message of about `--turn-bytes` bytes, answered with a reply as long; a turn's
latency runs from sending its request to reading its terminal event. The session runs four
ways, the ways a coding agent can talk to a server, each from one client connection kept for
the whole session:

- `sse_chain`: POST /v1/responses with `stream: true`, `store: true`, only the new message and
  `previous_response_id` (keep-alive HTTP; the server reads the chain from the database);
- `sse_stateless`: the same with `store: false` and the whole history sent every turn, as
  Codex does over HTTP;
- `ws_unstored`: one WebSocket, `store: false`, only the new message and
  `previous_response_id` (the connection remembers the latest response), as Codex does over a
  WebSocket;
- `ws_stored`: the same with `store: true` (the response is also written to the database).

Sessions of the four kinds alternate, so drift on a shared machine touches all alike. For each
kind: the p50 and p90 of all turns, the p50 of the first and last ten turns (how a turn's cost
grows with the history), and the median session time. Prints a table and writes
bench/results/websocket.json (or --output).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ThreadlineServer, database_url, machine, summarize, write_results  # noqa: E402
from tests.servers import write_config  # noqa: E402

KINDS = ("sse_chain", "sse_stateless", "ws_unstored", "ws_stored")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def message(turn: int, size: int) -> dict:
    text = f"Turn {turn}: " + ("the quick brown fox jumps over the lazy dog " * (size // 44 + 1))[:size]
    return {"type": "message", "role": "user", "content": text}


async def sse_session(url: str, turns: int, size: int, *, stored: bool) -> list[float]:
    latencies, previous, history = [], None, []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for turn in range(turns):
            new = message(turn, size)
            body = {"model": "scripted", "stream": True, "store": stored}
            if stored:
                body.update(input=[new], previous_response_id=previous)
            else:
                body.update(input=history + [new])
            started = time.perf_counter()
            ended = None
            async with http.stream("POST", "/v1/responses", json=body) as answer:
                assert answer.status_code == 200, await answer.aread()
                async for line in answer.aiter_lines():
                    if line.startswith("data: ") and '"response.' in line[:40]:
                        event = json.loads(line[6:])
                        if event["type"] in TERMINAL:
                            ended = event["response"]
            latencies.append((time.perf_counter() - started) * 1000)
            assert ended and ended["status"] == "completed", ended
            previous = ended["id"]
            history += [new, *ended["output"]]
    return latencies


async def ws_session(url: str, turns: int, size: int, *, stored: bool) -> list[float]:
    latencies, previous = [], None
    async with websockets.connect(url.replace("http://", "ws://") + "/v1/responses", max_size=None) as socket:
        for turn in range(turns):
            body = {"type": "response.create", "model": "scripted", "store": stored, "input": [message(turn, size)], "previous_response_id": previous}
            started = time.perf_counter()
            await socket.send(json.dumps(body))
            while True:
                event = json.loads(await socket.recv())
                assert event["type"] != "error", event
                if event["type"] in TERMINAL:
                    break
            latencies.append((time.perf_counter() - started) * 1000)
            assert event["response"]["status"] == "completed", event
            previous = event["response"]["id"]
    return latencies


SESSIONS = {
    "sse_chain": lambda url, turns, size: sse_session(url, turns, size, stored=True),
    "sse_stateless": lambda url, turns, size: sse_session(url, turns, size, stored=False),
    "ws_unstored": lambda url, turns, size: ws_session(url, turns, size, stored=False),
    "ws_stored": lambda url, turns, size: ws_session(url, turns, size, stored=True),
}


def measure(kind_of_database: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="threadline-ws-bench-") as folder, database_url(kind_of_database) as url:
        # A window the whole session fits in: no truncation, every turn sees every earlier one.
        config = write_config(Path(folder) / "threadline.toml", {
            "default_model": "scripted",
            "models": [{"id": "scripted", "provider": "scripted", "context_window": 1_000_000}],
        })
        with ThreadlineServer(url, config) as server:
            asyncio.run(SESSIONS["ws_unstored"](server.url, 3, args.turn_bytes))  # warm-up
            turns: dict[str, list[list[float]]] = {kind: [] for kind in KINDS}
            for session in range(args.sessions):
                for kind in KINDS[session % len(KINDS):] + KINDS[: session % len(KINDS)]:
                    turns[kind].append(asyncio.run(SESSIONS[kind](server.url, args.turns, args.turn_bytes)))
    results = {}
    for kind, sessions in turns.items():
        every = [latency for session in sessions for latency in session]
        results[kind] = {
            "turn_ms": summarize(every),
            "first_ten_p50_ms": round(statistics.median([latency for session in sessions for latency in session[:10]]), 3),
            "last_ten_p50_ms": round(statistics.median([latency for session in sessions for latency in session[-10:]]), 3),
            "session_ms_median": round(statistics.median(sum(session) for session in sessions), 1),
            "per_turn_p50_ms": [round(statistics.median(session[turn] for session in sessions), 3) for turn in range(args.turns)],
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=6, help="sessions of each kind")
    parser.add_argument("--turn-bytes", type=int, default=1000)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = {"machine": machine(), "turns": args.turns, "sessions": args.sessions, "turn_bytes": args.turn_bytes, "databases": {}}
    for database in databases:
        figures = results["databases"][database] = measure(database, args)
        print(f"\n{database}: {args.turns}-turn sessions, {args.sessions} of each kind, ~{args.turn_bytes} bytes a turn each way")
        print(f"{'kind':<15}{'turn p50':>10}{'turn p90':>10}{'turns 1-10':>12}{'turns 41-50':>13}{'session':>10}  (ms)")
        for kind, figure in figures.items():
            print(f"{kind:<15}{figure['turn_ms']['p50']:>10.2f}{figure['turn_ms']['p90']:>10.2f}{figure['first_ten_p50_ms']:>12.2f}"
                  f"{figure['last_ten_p50_ms']:>13.2f}{figure['session_ms_median']:>10.0f}")
        for websocket, sse in (("ws_unstored", "sse_stateless"), ("ws_stored", "sse_chain")):
            ratio = figures[websocket]["turn_ms"]["p50"] / figures[sse]["turn_ms"]["p50"]
            print(f"{websocket} / {sse}: per-turn p50 x{ratio:.2f}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    else:
        write_results("websocket", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
