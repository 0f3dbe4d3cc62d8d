"""The console's conversation page stays fast on a long conversation: the first page of a
10,000-item conversation renders in under 300 ms of server time.

    .venv/bin/python bench/console.py [--items 10000] [--requests 60] [--warmup 5]
                                      [--database sqlite|postgresql|both] [--output FILE]

For each database it starts a `threadline serve` with no API keys (an open server, so the page
needs no sign-in), fills one conversation with `--items` items and another with 100, both
through POST /v1/conversations/{id}/items, 20 at a time, as a client would. The items are a
tool-using chat: a user question in markdown, a function call, its output, and an assistant
answer in markdown with a URL citation and a file citation. Then it times, over HTTP on the
loopback (keep-alive, after warm-up, the cases interleaved so drift touches all alike):

- the conversation's page, `GET /console/conversations/{id}`: its metadata and the first 50
  items, rendered with markdown (the figure judged: p90 < 300 ms);
- the same page of the 100-item conversation (the baseline: how much the length costs);
- the fragment the page fetches as the reader scrolls, 50 items from the middle
  (`/console/conversations/{id}/items?after=...`).

Over the loopback the client's share is a fraction of a millisecond, so the time measured is an
upper bound on the server's. Prints the figures and writes bench/results/console.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ThreadlineServer, database_url, machine, summarize, write_results  # noqa: E402

TARGET_MS = 300.0
SMALL = 100
BATCH = 20  # the most items one POST may add


def sample_item(index: int) -> dict:
    """Item `index` of a tool-using chat, rendered as the console renders a real one."""
    turn, kind = divmod(index, 4)
    call_id = f"call_{turn:08d}"
    if kind == 0:
        return {
            "type": "message",
            "role": "user",
            "content": f"Turn {turn}: what is the **weather** in City {turn % 997}?\n\n- should I bring an umbrella?\n- and a `jacket`?",
        }
    if kind == 1:
        arguments = {"city": f"City {turn % 997}", "unit": "celsius", "days": 2}
        return {"type": "function_call", "call_id": call_id, "name": "get_forecast", "arguments": json.dumps(arguments)}
    if kind == 2:
        output = {"today": {"temperature": turn % 35, "rain": 0.2}, "tomorrow": {"temperature": (turn + 3) % 35, "rain": 0.7}}
        return {"type": "function_call_output", "call_id": call_id, "output": json.dumps(output)}
    text = (
        f"It is **{turn % 35} °C** in City {turn % 997} today. Tomorrow brings a 70% chance of rain "
        "([the forecast](https://weather.example/forecast)), so:\n\n1. take an umbrella;\n2. and a light jacket."
    )
    annotations = [
        {"type": "url_citation", "url": "https://weather.example/forecast", "title": "Forecast", "start_index": 0, "end_index": 10},
        {"type": "file_citation", "file_id": "file-climate", "filename": "climate.pdf", "index": 20},
    ]
    return {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": annotations}]}


def fill(http: httpx.Client, size: int) -> tuple[str, list[str]]:
    """A new conversation of `size` items, added through the API; its id and its items' ids."""
    made = http.post("/v1/conversations", json={"metadata": {"bench": "console", "size": str(size)}})
    made.raise_for_status()
    conversation_id, item_ids = made.json()["id"], []
    for start in range(0, size, BATCH):
        added = http.post(f"/v1/conversations/{conversation_id}/items", json={"items": [sample_item(n) for n in range(start, min(start + BATCH, size))]})
        added.raise_for_status()
        item_ids += [item["id"] for item in added.json()["data"]]
    return conversation_id, item_ids


def timed_get(http: httpx.Client, path: str, expect: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200 or expect not in answer.text:
        raise RuntimeError(f"GET {path}: {answer.status_code}, {answer.text[:300]!r}")
    return elapsed


def measure(kind: str, items: int, requests: int, warmup: int) -> dict:
    with database_url(kind) as url, ThreadlineServer(url) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        began = time.monotonic()
        big, big_ids = fill(http, items)
        small, small_ids = fill(http, SMALL)
        filled_s = time.monotonic() - began
        middle = big_ids[len(big_ids) // 2]
        # Each case, and what its page must hold: the 50th item of its page, so a short page fails.
        cases = {
            "first_page": (f"/console/conversations/{big}", big_ids[49]),
            "first_page_small": (f"/console/conversations/{small}", small_ids[49]),
            "scroll_fragment": (f"/console/conversations/{big}/items?after={middle}", big_ids[len(big_ids) // 2 + 50]),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for round_ in range(warmup + requests):
            for name, (path, expect) in cases.items():
                elapsed = timed_get(http, path, expect)
                if round_ >= warmup:
                    samples[name].append(elapsed)
        page_bytes = len(http.get(cases["first_page"][0]).content)
    figures = {name: summarize(values) for name, values in samples.items()}
    return {
        "items": items,
        "fill_seconds": round(filled_s, 1),
        "page_bytes": page_bytes,
        "ms": figures,
        "ratio_p50_to_small": round(figures["first_page"]["p50"] / figures["first_page_small"]["p50"], 2),
        "pass": figures["first_page"]["p90"] < TARGET_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = {"benchmark": "console", "machine": machine(), "target": f"p90 of the first page < {TARGET_MS:.0f} ms", "databases": {}}
    for kind in databases:
        found = results["databases"][kind] = measure(kind, args.items, args.requests, args.warmup)
        print(f"\n{kind}: a conversation of {found['items']:,} items (filled in {found['fill_seconds']} s); page {found['page_bytes']:,} bytes")
        print(f"{'case':<20}{'p50':>9}{'p90':>9}{'p99':>9}  (ms)")
        for name, figure in found["ms"].items():
            print(f"{name:<20}{figure['p50']:>9.2f}{figure['p90']:>9.2f}{figure['p99']:>9.2f}")
        print(f"first page p90 {found['ms']['first_page']['p90']:.1f} ms: {'met' if found['pass'] else 'MISSED'} (< {TARGET_MS:.0f} ms)")
    results["pass"] = all(found["pass"] for found in results["databases"].values())
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    else:
        write_results("console", results)
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
