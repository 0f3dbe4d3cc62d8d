"""The soak: a minute of mixed load per database, then every conversation checked.

Runs `bench/soak.py` as its own process, once per database (THREADLINE_TEST_DATABASES narrows
it, as for the rest of the suite), and asserts its verdicts: no 5xx, no unexpected status, no
lost or duplicated items, nothing from failed or cancelled responses, deleted things gone,
every response's items contiguous and in order, no stalled stream, RSS that levels off, and a
server log without tracebacks. THREADLINE_SOAK_SECONDS changes the 60 seconds of load (CI
runs 60); each database takes about that plus 15 seconds of setup and checking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATABASES = os.environ.get("THREADLINE_TEST_DATABASES", "sqlite,postgresql").split(",")
SECONDS = float(os.environ.get("THREADLINE_SOAK_SECONDS", "60"))


@pytest.mark.slow
@pytest.mark.parametrize("database", DATABASES)
def test_soak(database, tmp_path):
    output = tmp_path / "soak.json"
    command = [
        sys.executable, str(REPO / "bench" / "soak.py"),
        "--duration", str(SECONDS), "--database", database, "--clients", "16", "--output", str(output),
    ]
    # Load, at most a minute of draining, checks: well inside this.
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 300)
    assert output.exists(), f"the soak wrote no results:\n{finished.stdout[-5000:]}\n{finished.stderr[-5000:]}"
    result = json.loads(output.read_text())["databases"][database]
    report = finished.stdout[-8000:]

    assert result["load_requests"] > 1000, report
    ledger = result["ledger"]
    assert ledger["conversations_checked"] > 0 and ledger["items"] > 0, report
    failed = [name for name, ok in result["verdicts"].items() if not ok]
    assert not failed, f"soak verdicts failed: {failed}\n{json.dumps(result['failures_by_kind'], indent=2)}\n{report}"
    assert ledger["lost"] == 0 and ledger["duplicated"] == 0, report
    assert not any(status.isdigit() and int(status) >= 500 for status in result["status_codes"]), report
    assert result["rss"]["pass"], result["rss"]
    assert finished.returncode == 0, report


# --- the soak's own checker, against a fake server: it must catch what it claims to catch -------------


def _load_soak():
    import importlib

    bench = str(REPO / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    return importlib.import_module("soak")


def _message(item_id: str, text: str) -> dict:
    return {"id": item_id, "type": "message", "status": "completed", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _verify(listing: list[str], deleted: tuple[str, ...] = ()) -> dict:
    """Check a conversation whose ledger holds three groups against a server that lists `listing`."""
    import argparse
    import asyncio

    import httpx

    soak = _load_soak()
    items = {name: _message(f"msg_{name}", f"c0-1.{name} text") for name in ("a1", "a2", "b1", "b2", "x1")}
    served = [items[name] for name in listing]

    def handler(request: httpx.Request) -> httpx.Response:
        order = request.url.params.get("order", "desc")
        limit = int(request.url.params.get("limit", 20))
        after = request.url.params.get("after")
        ordered = served if order == "asc" else served[::-1]
        start = 0
        if after is not None:
            start = next(index for index, item in enumerate(ordered) if item["id"] == after) + 1
        page = ordered[start : start + limit]
        return httpx.Response(200, json={"object": "list", "data": page, "has_more": start + limit < len(ordered)})

    async def run() -> dict:
        args = argparse.Namespace(stall_s=5, seed="t")
        checker = soak.Soak("http://threadline.test", args)
        async with httpx.AsyncClient(base_url="http://threadline.test", transport=httpx.MockTransport(handler)) as http:
            checker.http = http
            conv = soak.Conv("conv_test", shared=True, owner=None)
            key = lambda name: soak.item_key(items[name])  # noqa: E731
            # a: items acknowledged at t=1; b: a response sent at t=2 (after a's ack), acknowledged at t=3;
            # x: a response that failed.
            a = conv.add(soak.Group("c0-1", "items", [key("a1"), key("a2")], ["", ""], [None, None], sent_at=0.0))
            conv.ack(a, 0, ["msg_a1", "msg_a2"])
            a.acked_at = 1.0
            b = conv.add(soak.Group("c1-1", "response", [key("b1"), key("b2")], ["", ""], [None, None], sent_at=2.0))
            conv.ack(b, 1)
            b.acked_at = 3.0
            x = conv.add(soak.Group("c2-1", "failing response", [key("x1")], [""], [None], sent_at=2.0))
            conv.reject(x)
            for name in deleted:
                conv.deleted[key(name)] = 0.5
            return await checker.verify(conv, "verify")

    return asyncio.run(run())


def _problems(result: dict) -> dict:
    return {name: n for name, n in result.items() if name != "items" and n}


def test_soak_checker_passes_a_correct_conversation():
    assert _problems(_verify(["a1", "a2", "b1", "b2"])) == {}
    assert _problems(_verify(["a1", "b1", "b2"], deleted=("a2",))) == {}


def test_soak_checker_catches_lost_duplicated_leaked_and_misplaced_items():
    assert _problems(_verify(["a1", "b1", "b2"])) == {"lost": 1}
    assert _problems(_verify(["a1", "a2", "b1", "b2", "b2"]))["duplicated"] == 1
    assert _problems(_verify(["a1", "a2", "x1", "b1", "b2"])) == {"leaked": 1}
    assert _problems(_verify(["a1", "a2", "b1", "b2"], deleted=("a2",))) == {"resurrected": 1}
    assert _problems(_verify(["a1", "b1", "a2", "b2"]))["order"] >= 1  # interleaved
    assert _problems(_verify(["b1", "b2", "a1", "a2"])) == {"order": 1}  # b was sent after a was acknowledged
    assert _problems(_verify(["a2", "a1", "b1", "b2"])) == {"order": 1}  # not in the order sent
