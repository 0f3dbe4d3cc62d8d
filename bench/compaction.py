"""What compaction costs: the summary's call in tokens and time, and what it saves.

    .venv/bin/python bench/compaction.py [--turns 120] [--embedded-turns 10] [--skip-embedded] [--output FILE]

One `threadline serve` on SQLite with two models: the scripted model (no inference: the
figures are Threadline's own work around the extra call) and the embedded SmolLM2-135M
(real inference: the summary's call is most of the cost). For each model:

- **In a conversation.** `--turns` turns of a conversation with
  `context_management: [{"type": "compaction", "compact_threshold": T}]`, one after the other.
  A turn that compacts makes one more model call; its extra time is its latency less the
  median latency of the turns that did not compact. Its extra tokens are its usage less the
  usage of the turn that follows (which reads about what it read after compacting), and the
  input tokens a turn reads are compared with what it would read without compaction (the
  whole conversation so far, as the model counts it in the turns before the first compaction).
- **POST /v1/responses/compact** on the same context: latency and the usage of the summary's
  call alone (input and output tokens), as the endpoint reports it.

Prints a summary and writes bench/results/compaction.json (or --output).
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ThreadlineServer, database_url, machine, summarize, write_results  # noqa: E402
from tests.servers import write_config  # noqa: E402

KEY = base64.b64encode(b"threadline-bench-compaction-key!").decode()
SCRIPTED_WINDOW = 8192
SCRIPTED_THRESHOLD = 4000
EMBEDDED_THRESHOLD = 1000


def turn_text(turn: int, words: int) -> str:
    return f"Turn {turn}: the note for step {turn} is {turn * 37 % 1000}. " + " ".join(f"detail{turn}-{n}" for n in range(words))


def conversation_run(http: httpx.Client, model: str, turns: int, threshold: int, words: int, max_output_tokens: int | None) -> dict:
    """A conversation of `turns` turns with automatic compaction; per-turn latency and usage."""
    conversation = http.post("/v1/conversations", json={}).json()["id"]
    rows = []
    for turn in range(turns):
        body = {"model": model, "conversation": conversation, "input": turn_text(turn, words),
                "context_management": [{"type": "compaction", "compact_threshold": threshold}]}
        if max_output_tokens:
            body["max_output_tokens"] = max_output_tokens
        started = time.perf_counter()
        response = http.post("/v1/responses", json=body)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        answer = response.json()
        usage = answer["usage"] or {}
        rows.append({"turn": turn, "ms": elapsed, "compacted": answer["output"][0]["type"] == "compaction",
                     "input_tokens": usage.get("input_tokens", 0), "output_tokens": usage.get("output_tokens", 0)})
    compacting = [row for row in rows if row["compacted"]]
    plain = [row["ms"] for row in rows if not row["compacted"]]
    median_plain = statistics.median(plain) if plain else 0.0
    extra_tokens = []
    for row in compacting:
        following = next((other for other in rows[row["turn"] + 1 :] if not other["compacted"]), None)
        if following:
            extra_tokens.append({"input": row["input_tokens"] - following["input_tokens"], "output": row["output_tokens"] - following["output_tokens"]})
    first = compacting[0]["turn"] if compacting else len(rows)
    per_turn = [rows[turn]["input_tokens"] for turn in range(1, first)]
    # Without compaction a turn would read the whole conversation: it grows by what each turn adds.
    growth = (per_turn[-1] - per_turn[0]) / max(1, len(per_turn) - 1) if len(per_turn) > 1 else 0
    uncompacted = sum(per_turn[0] + growth * (turn - 1) for turn in range(1, len(rows))) if per_turn else 0
    read = sum(row["input_tokens"] for row in rows[1:] if not row["compacted"]) + sum(
        row["input_tokens"] - extra["input"] for row, extra in zip(compacting, extra_tokens)
    )
    return {
        "turns": turns,
        "threshold": threshold,
        "compactions": len(compacting),
        "plain_turn_ms": summarize(plain) if plain else None,
        "compacting_turn_ms": summarize([row["ms"] for row in compacting]) if compacting else None,
        "extra_ms_per_compaction": summarize([row["ms"] - median_plain for row in compacting]) if compacting else None,
        "extra_tokens_per_compaction": {
            "input": statistics.median(extra["input"] for extra in extra_tokens) if extra_tokens else None,
            "output": statistics.median(extra["output"] for extra in extra_tokens) if extra_tokens else None,
        },
        "input_tokens_read": {"with_compaction": round(read), "without_compaction_estimated": round(uncompacted)},
        "largest_turn_input_tokens": max(row["input_tokens"] for row in rows if not row["compacted"]),
        "conversation": conversation,
    }


def compact_run(http: httpx.Client, model: str, conversation: str, repeats: int) -> dict:
    """POST /v1/responses/compact on the conversation: latency and the summary call's usage."""
    latencies, usages = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        answer = http.post("/v1/responses/compact", json={"model": model, "conversation": conversation})
        latencies.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
        usages.append(answer.json()["usage"])
    return {
        "latency_ms": summarize(latencies),
        "input_tokens": statistics.median(usage["input_tokens"] for usage in usages),
        "output_tokens": statistics.median(usage["output_tokens"] for usage in usages),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=120)
    parser.add_argument("--embedded-turns", type=int, default=10)
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    results: dict = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="threadline-bench-compaction-") as folder, database_url("sqlite") as url:
        config = write_config(Path(folder) / "threadline.toml", {
            "security": {"encryption_keys": [KEY]},
            "default_model": "scripted",
            "models": [
                {"id": "scripted", "provider": "scripted", "context_window": SCRIPTED_WINDOW},
                {"id": "smollm2", "provider": "llama-cpp"},
            ],
        })
        with ThreadlineServer(url, config) as server, httpx.Client(base_url=server.url, timeout=900) as http:
            scripted = conversation_run(http, "scripted", args.turns, SCRIPTED_THRESHOLD, words=60, max_output_tokens=None)
            scripted["compact_endpoint"] = compact_run(http, "scripted", scripted.pop("conversation"), repeats=20)
            results["scripted"] = scripted
            print(json.dumps({"scripted": scripted}, indent=2), flush=True)
            if not args.skip_embedded:
                embedded = conversation_run(http, "smollm2", args.embedded_turns, EMBEDDED_THRESHOLD, words=25, max_output_tokens=48)
                embedded["compact_endpoint"] = compact_run(http, "smollm2", embedded.pop("conversation"), repeats=1)
                results["embedded"] = embedded
                print(json.dumps({"embedded": embedded}, indent=2), flush=True)
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    else:
        write_results("compaction", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
