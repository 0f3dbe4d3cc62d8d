"""Soak: mixed load for a while, then every conversation checked against what was sent.

For each database this starts a real `threadline serve` (on the scripted
model, so the load measures Threadline and not a model), samples the server's RSS every
second, and runs `--clients` async clients for `--duration` seconds. Each client picks
operations from a weighted mix:

  - responses.create: plain (some with store=false), continuing a previous_response_id
    chain, and in a conversation (shared with other clients or its own);
  - streamed creates, reading every event; some drop the connection early, and the
    response must still complete and land in its conversation;
  - background creates, polled (or followed as a stream) to the end; some are cancelled;
  - creates whose model fails (before or after some output), or ends incomplete;
  - creates with an Idempotency-Key, some sent twice at once (an SDK retry);
  - conversation item creates (1-20 items), full listings in both orders (every page),
    item retrieves and deletes, response retrieves (with input items) and deletes;
  - conversation deletes, only of conversations nobody else is using.

A few conversations are shared by several clients at once; when one has grown to
`--conversation-items` it leaves the pool, is checked, and is deleted or kept.

Every request is entered in a ledger. The checks, on every conversation that survives
(and at retirement on those that leave the pool):

  - every acknowledged item and response item is present exactly once (no lost, no
    duplicated items), with the id it was acknowledged with;
  - the input and output of each response (and the items of each POST) are contiguous and
    in the order sent; anything acknowledged before another request was sent comes first;
  - nothing from failed or cancelled responses; nothing deleted; listing `desc` is the
    exact reverse of listing `asc`;
  - the model saw the exact context: for chains and single-client conversations the
    scripted model's `usage.input_tokens` (a function of every context item) must match;
  - deleted responses, items and conversations answer 404; every kept response still
    has its status and output.

It also counts every status code (any 5xx fails the run, as does any status the ledger
did not expect), times every request kind, and scans the server log for tracebacks.
RSS must level off: it may grow at most max(--rss-limit-mb, --rss-limit-pct of the
midpoint RSS) over the second half of the run.

    python bench/soak.py [--duration 60] [--database sqlite|postgresql|both] [--clients 16]

Figures are printed and written to bench/results/soak.json (or --output); the exit status
is 0 only when every check passes on every database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from common import ThreadlineServer, database_url, machine, summarize, write_results
from tests.servers import write_config
from threadline.backends.scripted import item_text

API_KEY = "sk-soak-test-key"
MODEL = "scripted"
TERMINAL = {"completed", "incomplete", "failed", "cancelled"}
LANDS = {"completed", "incomplete"}  # statuses whose items reach the conversation
WORDS = (
    "river lantern copper meadow signal harbor quiet amber falcon orbit velvet summit "
    "cinder mosaic tundra willow ember prism canyon drift"
).split()

# Operation weights (relative).
MIX = {
    "create_plain": 6,
    "create_chain": 6,
    "create_conversation": 10,
    "stream": 10,
    "background": 7,
    "failing": 3,
    "idempotent": 3,
    "add_items": 10,
    "list_items": 6,
    "get_item": 4,
    "delete_item": 3,
    "get_response": 4,
    "delete_response": 2,
    "cycle_private": 1,
}


# --- items and their keys ----------------------------------------------------------------------


def item_key(item: dict) -> str:
    """What identifies an item whatever shape the server returns it in (every text carries a tag)."""
    kind = item.get("type") or "message"
    if kind == "message":
        content = item.get("content")
        text = content if isinstance(content, str) else "".join(part.get("text") or part.get("refusal") or "" for part in content or [])
        return f"message|{item.get('role')}|{text}"
    if kind == "function_call":
        return f"function_call|{item.get('call_id')}|{item.get('name')}|{item.get('arguments')}"
    if kind == "function_call_output":
        return f"function_call_output|{item.get('call_id')}|{item.get('output')}"
    if kind == "reasoning":
        return "reasoning|" + "".join(part.get("text", "") for part in item.get("content") or [])
    return "other|" + orjson.dumps({k: v for k, v in item.items() if k not in ("id", "status")}, option=orjson.OPT_SORT_KEYS).decode()


TAG = re.compile(r"\bc\d+-\d+\b")


def tag_of(text: str) -> str:
    found = TAG.search(text)
    return found.group(0) if found else "?"


def expected_tokens(instructions: str | None, context: list[str]) -> int:
    """What the scripted model reports as input_tokens for this context (see estimate_tokens)."""
    return math.ceil((len(instructions or "") + sum(len(text) + 4 for text in context)) / 4)


# --- the ledger --------------------------------------------------------------------------------


@dataclass
class Group:
    """Items that must land together, contiguous and in this order: one POST, or one response."""

    tag: str
    kind: str
    keys: list[str]
    texts: list[str]  # item_text of each, for the context the model must see
    ids: list[str | None]
    sent_at: float
    acked_at: float | None = None
    outcome: str = "pending"  # pending | acked | rejected | unknown
    response_id: str | None = None


@dataclass
class Conv:
    id: str
    shared: bool
    owner: int | None
    groups: list[Group] = field(default_factory=list)
    by_key: dict[str, tuple[Group, int]] = field(default_factory=dict)
    deleting: dict[str, float] = field(default_factory=dict)  # key -> when its delete was sent
    deleted: dict[str, float] = field(default_factory=dict)  # key -> when its delete was acknowledged
    state: str = "active"  # active | retiring | checking | deleted
    inflight: int = 0
    max_inflight: int = 0  # most operations on it at once
    acked_items: int = 0
    # items with a known id, for retrieves and deletes: (key, id, owner)
    known: list[tuple[str, str, int]] = field(default_factory=list)

    def add(self, group: Group) -> Group:
        self.groups.append(group)
        for index, key in enumerate(group.keys):
            self.by_key[key] = (group, index)
        return group

    def ack(self, group: Group, owner: int, ids: list[str | None] | None = None, response_id: str | None = None) -> None:
        group.outcome, group.acked_at = "acked", time.monotonic()
        group.response_id = response_id
        if ids is not None:
            group.ids = list(ids)
        self.acked_items += len(group.keys)
        self.known += [(key, item_id, owner) for key, item_id in zip(group.keys, group.ids) if item_id]

    def reject(self, group: Group) -> None:
        group.outcome, group.acked_at = "rejected", time.monotonic()

    def context(self) -> list[str]:
        """The surviving items' texts in order, for a conversation only one client writes to."""
        texts = []
        for group in self.groups:
            if group.outcome == "acked":
                texts += [text for key, text in zip(group.keys, group.texts) if key not in self.deleted]
        return texts


@dataclass
class StoredResponse:
    id: str
    status: str
    output_ids: list[str]
    input_keys: list[str]


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    operations: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    failure_counts: Counter = field(default_factory=Counter)
    failure_kinds: Counter = field(default_factory=Counter)  # (category, kind) -> count
    checks: Counter = field(default_factory=Counter)
    warnings: Counter = field(default_factory=Counter)
    warning_details: list[str] = field(default_factory=list)

    def warn(self, kind: str, detail: str) -> None:
        self.warnings[kind] += 1
        if len(self.warning_details) < 50:
            self.warning_details.append(f"{kind}: {detail[:600]}")

    def fail(self, category: str, kind: str, detail: str) -> None:
        self.failure_counts[category] += 1
        self.failure_kinds[f"{category}: {kind}"] += 1
        if self.failure_kinds[f"{category}: {kind}"] <= 5 and len(self.failures) < 200:
            self.failures.append({"category": category, "kind": kind, "detail": detail[:1500]})


# --- the soak ----------------------------------------------------------------------------------


class Soak:
    def __init__(self, url: str, args: argparse.Namespace) -> None:
        self.url = url
        self.args = args
        self.stats = Stats()
        self.http: httpx.AsyncClient | None = None
        self.shared: list[Conv] = []  # the pool clients pick from
        self.convs: list[Conv] = []  # every conversation ever created
        self.responses: list[StoredResponse] = []  # kept (stored, not deleted) responses
        self.deleted_responses: list[str] = []
        self.unstored_responses: list[str] = []
        self.deadline = 0.0
        self.started = 0.0

    # -- HTTP with accounting ----------------------------------------------------------------

    def _record(self, kind: str, status: int | str, started: float) -> None:
        self.stats.latencies[kind].append((time.perf_counter() - started) * 1000)
        self.stats.statuses[kind][str(status)] += 1

    def _check_status(self, kind: str, what: str, response: httpx.Response, expect: tuple[int, ...]) -> bool:
        if response.status_code in expect:
            return True
        category = "5xx" if response.status_code >= 500 else "unexpected_status"
        self.stats.fail(category, kind, f"{what} -> {response.status_code} (expected {expect}): {response.text[:800]}")
        return False

    async def call(self, kind: str, method: str, path: str, *, expect=(200,), **kwargs) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            self._record(kind, "transport_error", started)
            self.stats.fail("transport", kind, f"{method} {path}: {type(error).__name__}: {error}")
            return None
        self._record(kind, response.status_code, started)
        self._check_status(kind, f"{method} {path}", response, expect)
        return response

    async def stream(self, kind: str, body: dict, *, drop_after: int | None = None, on_event=None):
        """POST a streamed create; every event (or the first `drop_after`).

        Returns (status, events, dropped): status is 200, another HTTP status, "stalled" when no
        event came for --stall-s seconds before the stream ended, or None on a transport error."""
        started = time.perf_counter()
        events: list[dict] = []
        dropped = False
        timeout = httpx.Timeout(60, read=self.args.stall_s)
        try:
            async with self.http.stream("POST", "/v1/responses", json=body, timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    self._record(kind, response.status_code, started)
                    self._check_status(kind, "POST /v1/responses (stream)", response, (200,))
                    return response.status_code, events, False
                name = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        name = line[len("event: ") :]
                    elif line.startswith("data: "):
                        event = orjson.loads(line[len("data: ") :])
                        if event.get("type") != name:
                            self.stats.fail("check", kind, f"event line {name!r} names a {event.get('type')!r} event")
                        events.append(event)
                        if on_event is not None:
                            on_event(event)
                        if drop_after is not None and len(events) >= drop_after:
                            dropped = True
                            break  # leaving the block closes the connection mid-stream
        except httpx.ReadTimeout:
            self._record(kind, "stalled", started)
            response_id = events[0].get("response", {}).get("id") if events else None
            numbers = [event.get("sequence_number") for event in events]
            self.stats.fail(
                "stalled_stream", kind,
                f"no event for {self.args.stall_s} s and no end, after {len(events)} events "
                f"(last {events[-1]['type'] if events else None}, sequence numbers {numbers[-3:]}) of {response_id}",
            )
            return "stalled", events, dropped
        except httpx.HTTPError as error:
            self._record(kind, "transport_error", started)
            self.stats.fail("transport", kind, f"POST /v1/responses (stream): {type(error).__name__}: {error}")
            return None, events, dropped
        self._record(kind, 200, started)
        return 200, events, dropped

    def same_output(self, stored: StoredResponse, body: dict, kind: str) -> None:
        """A finished response's output does not change. A cancelled one's may (a known issue:
        it reads as cancelled, output [], before its run records the partial output): a warning."""
        now = [item["id"] for item in body["output"]]
        if now == stored.output_ids:
            self.check(True, kind, "")
        elif stored.status == "cancelled":
            self.stats.warn("cancelled response's output changed after it read as cancelled", f"{stored.id}: {stored.output_ids} -> {now}")
            stored.output_ids = now
        else:
            self.check(False, kind, f"{stored.id} ({stored.status}): output ids changed from {stored.output_ids} to {now}")

    def check(self, ok: bool, kind: str, detail: str) -> bool:
        self.stats.checks[kind] += 1
        if not ok:
            self.stats.fail("check", kind, detail)
        return ok

    def check_events(self, kind: str, events: list[dict], complete: bool) -> dict | None:
        """Sequence numbers from 0 without gaps; a complete stream ends with one terminal event.

        Returns the final Response of a complete stream."""
        numbers = [event.get("sequence_number") for event in events]
        self.check(numbers == list(range(len(events))), kind, f"sequence numbers {numbers[:50]}")
        if not events:
            self.check(False, kind, "a stream with no events")
            return None
        self.check(events[0]["type"] == "response.created", kind, f"first event {events[0]['type']}")
        terminal = [event for event in events if event["type"] in ("response.completed", "response.incomplete", "response.failed")]
        if not complete:
            self.check(not terminal or terminal[-1] is events[-1], kind, "events after the terminal event")
            return None
        if not self.check(len(terminal) == 1 and terminal[0] is events[-1], kind, f"terminal events {[e['type'] for e in terminal]}"):
            return None
        final = events[-1]["response"]
        # The text deltas must spell each output message's text.
        deltas: dict[str, str] = defaultdict(str)
        for event in events:
            if event["type"] == "response.output_text.delta":
                deltas[event["item_id"]] += event["delta"]
        for item in final.get("output", []):
            if item.get("type") == "message" and item.get("content") and final["status"] != "failed":
                text = "".join(part.get("text", "") for part in item["content"])
                self.check(deltas.get(item["id"], "") == text, kind, f"deltas {deltas.get(item['id'])!r} != text {text!r}")
        return final

    # -- picking ----------------------------------------------------------------------------------

    def pick_shared(self, rng: random.Random) -> Conv | None:
        active = [conv for conv in self.shared if conv.state == "active"]
        return rng.choice(active) if active else None

    async def new_conversation(self, client: Client, shared: bool, initial: int = 0) -> Conv | None:
        items, texts = client.items(initial) if initial else ([], [])
        body = {"metadata": {"soak": "shared" if shared else f"client-{client.index}"}}
        if items:
            body["items"] = items
        sent = time.monotonic()
        response = await self.call("conversations.create", "POST", "/v1/conversations", json=body)
        if response is None or response.status_code != 200:
            return None
        conv = Conv(response.json()["id"], shared=shared, owner=None if shared else client.index)
        self.convs.append(conv)
        if items:
            group = conv.add(Group(tag_of(texts[0]), "initial items", [item_key(item) for item in items], texts, [None] * len(items), sent))
            conv.ack(group, client.index)
        return conv

    def maybe_retire(self, conv: Conv) -> None:
        if conv.shared and conv.state == "active" and conv.acked_items >= self.args.conversation_items:
            conv.state = "retiring"

    # -- checking a conversation against the ledger -----------------------------------------------

    async def list_all(self, kind: str, conv: Conv, order: str, limit: int) -> list[dict] | None:
        """Every item, page by page; None if a page failed (a cursor deleted meanwhile restarts it)."""
        for _attempt in range(5):
            items: list[dict] = []
            params: dict = {"limit": limit, "order": order}
            restarted = False
            while True:
                response = await self.call(kind, "GET", f"/v1/conversations/{conv.id}/items", params=params, expect=(200, 404))
                if response is None:
                    return None
                if response.status_code == 404:
                    cursor = params.get("after")
                    cursor_key = next((key for key, item_id, _ in conv.known if item_id == cursor), None)
                    if cursor is not None and cursor_key in conv.deleting:
                        restarted = True  # its `after` item was deleted under it: allowed, start again
                        break
                    self.stats.fail("unexpected_status", kind, f"list {conv.id} after={cursor} -> 404: {response.text[:300]}")
                    return None
                page = response.json()
                items += page["data"]
                if not page["has_more"]:
                    break
                if not page["data"]:
                    self.stats.fail("check", kind, f"has_more with an empty page in {conv.id}")
                    return None
                params["after"] = page["last_id"]
            if not restarted:
                return items
        return None

    async def check_under_load(self, conv: Conv, rng: random.Random) -> None:
        """A full listing while others write: no duplicates, nothing acknowledged before it started missing."""
        started = time.monotonic()
        order = rng.choice(("asc", "desc"))
        limit = rng.choice((1, 3, 10, 20, 50, 100))
        items = await self.list_all("conversations.items.list", conv, order, limit)
        if items is None:
            return
        ended = time.monotonic()
        keys = [item_key(item) for item in items]
        counts = Counter(keys)
        self.check(all(n == 1 for n in counts.values()), "list under load", f"{conv.id}: duplicated {[k for k, n in counts.items() if n > 1][:3]}")
        for key in keys:
            entry = conv.by_key.get(key)
            if entry is None:
                self.check(False, "list under load", f"{conv.id}: an item nobody sent: {key[:120]}")
            elif entry[0].outcome == "rejected":
                self.check(False, "list under load", f"{conv.id}: item of a {entry[0].kind} that was refused, failed or cancelled (response {entry[0].response_id}): {key[:120]}")
            elif key in conv.deleted and conv.deleted[key] < started:
                self.check(False, "list under load", f"{conv.id}: an item deleted before the listing: {key[:120]}")
        present = set(keys)
        for group in conv.groups:
            if group.outcome == "acked" and group.acked_at < started:
                for key in group.keys:
                    if key not in present and not (key in conv.deleting and conv.deleting[key] < ended):
                        self.check(False, "list under load", f"{conv.id}: acknowledged item missing from a listing: {group.kind} {group.tag} {key[:120]}")
        self.stats.checks["list under load"] += 1

    async def verify(self, conv: Conv, phase: str) -> dict:
        """The whole conversation against the ledger; no writer may be active."""
        result = {"lost": 0, "duplicated": 0, "unexpected": 0, "leaked": 0, "resurrected": 0, "order": 0, "id_mismatch": 0}
        asc = await self.list_all("verify.items.list", conv, "asc", 100)
        desc = await self.list_all("verify.items.list", conv, "desc", random.choice((7, 100)))
        if asc is None or desc is None:
            self.stats.fail("check", phase, f"{conv.id}: could not list")
            return result
        self.check([i["id"] for i in desc] == [i["id"] for i in reversed(asc)], phase, f"{conv.id}: desc is not the reverse of asc")
        keys = [item_key(item) for item in asc]
        counts = Counter(keys)
        positions: dict[str, int] = {}
        for position, (item, key) in enumerate(zip(asc, keys)):
            positions.setdefault(key, position)
            entry = conv.by_key.get(key)
            if entry is None:
                result["unexpected"] += 1
                self.stats.fail("check", phase, f"{conv.id}: item nobody sent at {position}: {orjson.dumps(item).decode()[:300]}")
                continue
            group, index = entry
            if group.outcome == "rejected":
                result["leaked"] += 1
                self.stats.fail("check", phase, f"{conv.id}: item {item['id']} of {group.kind} {group.tag} (response {group.response_id}) that was refused/failed/cancelled")
            elif group.outcome != "acked":
                result["unexpected"] += 1
                self.stats.fail("check", phase, f"{conv.id}: item {item['id']} of {group.kind} {group.tag} whose outcome is {group.outcome}")
            if key in conv.deleted:
                result["resurrected"] += 1
                self.stats.fail("check", phase, f"{conv.id}: deleted item {item['id']} is listed")
            if group.ids[index] and group.ids[index] != item["id"] and counts[key] == 1:
                result["id_mismatch"] += 1
                self.stats.fail("check", phase, f"{conv.id}: item {key[:60]} has id {item['id']}, acknowledged as {group.ids[index]}")
        for key, n in counts.items():
            if n > 1:
                result["duplicated"] += n - 1
                self.stats.fail("check", phase, f"{conv.id}: item {key[:100]} listed {n} times")
        spans = []
        for group in conv.groups:
            if group.outcome != "acked":
                continue
            surviving = [key for key in group.keys if key not in conv.deleted]
            missing = [key for key in surviving if key not in positions]
            if missing:
                result["lost"] += len(missing)
                self.stats.fail("check", phase, f"{conv.id}: {len(missing)} item(s) of {group.kind} {group.tag} (response {group.response_id}) lost, e.g. {missing[0][:100]}")
                continue
            if not surviving:
                continue
            found = [positions[key] for key in surviving]
            if found != list(range(found[0], found[0] + len(found))):
                result["order"] += 1
                self.stats.fail("check", phase, f"{conv.id}: {group.kind} {group.tag} not contiguous and in order: positions {found}")
            spans.append((found[0], group))
        # Acknowledged before another was sent => placed before it.
        spans.sort(key=lambda span: span[0])
        earliest_ack_after = math.inf
        for position, group in reversed(spans):
            if earliest_ack_after < group.sent_at:
                result["order"] += 1
                self.stats.fail("check", phase, f"{conv.id}: {group.kind} {group.tag} at {position} sits before something acknowledged before it was sent")
            earliest_ack_after = min(earliest_ack_after, group.acked_at)
        self.stats.checks[phase] += 1
        result["items"] = len(asc)
        return result

    async def retire(self, conv: Conv, client: Client) -> None:
        """A shared conversation out of the pool and idle: check it, then delete it or keep it."""
        conv.state = "checking"
        client.totals(await self.verify(conv, "verify at retirement"))
        if client.rng.random() < 0.5:
            await self.delete_conversation(conv)
        else:
            conv.state = "kept"

    async def delete_conversation(self, conv: Conv) -> None:
        response = await self.call("conversations.delete", "DELETE", f"/v1/conversations/{conv.id}")
        if response is not None and response.status_code == 200:
            conv.state = "deleted"
            gone = await self.call("conversations.retrieve (deleted)", "GET", f"/v1/conversations/{conv.id}", expect=(404,))
            items = await self.call("conversations.items.list (deleted)", "GET", f"/v1/conversations/{conv.id}/items", expect=(404,))
            self.check(gone is not None and gone.status_code == 404 and items is not None and items.status_code == 404, "deleted conversation gone", conv.id)

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> dict:
        limits = httpx.Limits(max_connections=self.args.clients * 4, max_keepalive_connections=self.args.clients * 2)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=httpx.Timeout(60), limits=limits) as http:
            self.http = http
            clients = [Client(self, index, random.Random(f"{self.args.seed}-{index}")) for index in range(self.args.clients)]
            for _ in range(self.args.shared):
                conv = await self.new_conversation(clients[0], shared=True, initial=3)
                if conv:
                    self.shared.append(conv)
            for client in clients:
                client.private = await self.new_conversation(client, shared=False, initial=client.rng.randint(0, 5))
            self.started = time.monotonic()
            self.deadline = self.started + self.args.duration
            cpu_started = time.process_time()
            tasks = [asyncio.create_task(client.loop()) for client in clients]
            _done, pending = await asyncio.wait(tasks, timeout=self.args.duration + self.args.drain_s)
            for task in pending:
                task.cancel()
            if pending:
                self.stats.fail("drain", "drain", f"{len(pending)} clients still had an operation running {self.args.drain_s} s after the load ended")
                await asyncio.gather(*pending, return_exceptions=True)
            load_seconds = time.monotonic() - self.started
            self.client_cpu_s = time.process_time() - cpu_started
            final = await self.final_checks(clients)
        return {"load_seconds": load_seconds, "final": final}

    async def final_checks(self, clients: list[Client]) -> dict:
        totals = Counter()
        checked = 0
        for conv in self.convs:
            if conv.state != "deleted":
                totals.update(await self.verify(conv, "verify at end"))
                checked += 1
        for client in clients:
            totals.update(client.retired_totals)
        semaphore = asyncio.Semaphore(16)

        async def gone(kind: str, path: str) -> None:
            async with semaphore:
                response = await self.call(kind, "GET", path, expect=(404,))
                self.check(response is not None and response.status_code == 404, kind, path)

        async def kept(stored: StoredResponse) -> None:
            async with semaphore:
                response = await self.call("verify.responses.retrieve", "GET", f"/v1/responses/{stored.id}")
                if response is not None and response.status_code == 200:
                    body = response.json()
                    self.check(body["status"] == stored.status, "kept response", f"{stored.id}: status {body['status']}, acknowledged {stored.status}")
                    self.same_output(stored, body, "kept response")

        jobs = [gone("verify.conversations.retrieve (deleted)", f"/v1/conversations/{conv.id}") for conv in self.convs if conv.state == "deleted"]
        jobs += [gone("verify.responses.retrieve (deleted)", f"/v1/responses/{rid}") for rid in self.deleted_responses + self.unstored_responses]
        for conv in self.convs:
            if conv.state != "deleted":
                jobs += [
                    gone("verify.items.retrieve (deleted)", f"/v1/conversations/{conv.id}/items/{item_id}")
                    for key, item_id, _ in conv.known
                    if key in conv.deleted
                ]
        jobs += [kept(stored) for stored in self.responses]
        await asyncio.gather(*jobs)
        shared = [conv for conv in self.convs if conv.shared]
        writers = [len({group.tag.split("-")[0] for group in conv.groups}) for conv in shared]
        return {
            "shared_conversations": len(shared),
            "shared_writers_median": statistics.median(writers) if writers else 0,
            "shared_writers_max": max(writers, default=0),
            "shared_most_operations_at_once": max((conv.max_inflight for conv in shared), default=0),
            "conversations_checked": checked,
            "conversations_created": len(self.convs),
            "conversations_deleted": sum(1 for conv in self.convs if conv.state == "deleted"),
            "responses_checked": len(self.responses),
            "deleted_checked": len(jobs) - len(self.responses),
            **{key: totals.get(key, 0) for key in ("items", "lost", "duplicated", "unexpected", "leaked", "resurrected", "order", "id_mismatch")},
        }


# --- a client ----------------------------------------------------------------------------------


class Client:
    def __init__(self, soak: Soak, index: int, rng: random.Random) -> None:
        self.soak = soak
        self.index = index
        self.rng = rng
        self.sequence = 0
        self.private: Conv | None = None
        self.chain_last: str | None = None
        self.chain_context: list[str] = []
        self.chain_length = 0
        self.chain_ids: set[str] = set()  # responses of the current chain: deleting one would cut it
        self.retired_totals: Counter = Counter()
        self.mine: list[StoredResponse] = []

    @property
    def stats(self) -> Stats:
        return self.soak.stats

    def tag(self) -> str:
        self.sequence += 1
        return f"c{self.index}-{self.sequence}"

    def totals(self, result: dict) -> None:
        self.retired_totals.update(result)

    def words(self, low: int = 3, high: int = 30) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(low, high)))

    def items(self, count: int) -> tuple[list[dict], list[str]]:
        """`count` input items of assorted kinds, each text tagged; and their item_texts."""
        tag = self.tag()
        items: list[dict] = []
        while len(items) < count:
            n = len(items)
            kind = self.rng.random()
            if kind < 0.15 and count - n >= 2:
                call_id = f"call_{tag}_{n}"
                items.append({"type": "function_call", "call_id": call_id, "name": "lookup", "arguments": orjson.dumps({"q": f"{tag}.{n} {self.words(1, 4)}"}).decode()})
                items.append({"type": "function_call_output", "call_id": call_id, "output": f"{tag}.{n + 1} {self.words()}"})
            elif kind < 0.5:
                items.append({"role": "user", "content": f"{tag}.{n} {self.words()}"})
            elif kind < 0.75:
                items.append({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"{tag}.{n} {self.words()}"}]})
            elif kind < 0.9:
                items.append({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": f"{tag}.{n} {self.words()}"}]})
            else:
                items.append({"type": "message", "role": "system", "content": f"{tag}.{n} {self.words()}"})
        return items, [item_text(item) for item in items]

    def script(self, tag: str, *, fail: bool = False, slow: bool = False) -> tuple[list[dict], list[str], str]:
        """Scripted steps, the keys of the output they make, and the status they end with."""
        steps: list[dict] = []
        keys: list[str] = []
        if slow:
            steps.append({"delay": round(self.rng.uniform(0.05, 0.6), 3)})
        if self.rng.random() < 0.15:
            reasoning = f"{tag} thinking {self.words(2, 10)}"
            steps.append({"reasoning": reasoning, "chunks": self.rng.randint(1, 3)})
            keys.append(f"reasoning|{reasoning}")
        text = f"{tag} answer {self.words(2, 60)}"
        chunks = self.rng.randint(1, 12)
        step = {"text": text, "chunks": chunks}
        if slow or self.rng.random() < 0.3:
            step["chunk_delay"] = round(self.rng.uniform(0.001, 0.03), 3)
        if fail:
            if self.rng.random() < 0.5:
                steps.append(step)
            steps.append({"fail": {"message": f"scripted failure {tag}", "code": "rate_limit_exceeded"}})
            return steps, [], "failed"
        steps.append(step)
        keys.append(f"message|assistant|{text}")
        status = "completed"
        if self.rng.random() < 0.1:
            call = {"name": "lookup", "arguments": orjson.dumps({"q": tag}).decode(), "call_id": f"call_{tag}_out"}
            steps.append({"tool_call": call})
            keys.append(f"function_call|{call['call_id']}|{call['name']}|{call['arguments']}")
        elif self.rng.random() < 0.07:
            steps.append({"finish": "length"})
            status = "incomplete"
        return steps, keys, status

    def response_input(self, tag: str, steps: list[dict], extra: int | None = None) -> tuple[list[dict] | str, list[str], list[str]]:
        """The request's input (sometimes a plain string), its keys and texts."""
        message = "#script " + orjson.dumps(steps).decode()
        if extra is None:
            extra = self.rng.choice((0, 0, 0, 1, 2, 3))
        if extra == 0 and self.rng.random() < 0.5:
            return message, [f"message|user|{message}"], [message]
        items, texts = self.items(extra) if extra else ([], [])
        items.append({"role": "user", "content": message} if self.rng.random() < 0.5 else {"type": "message", "role": "user", "content": [{"type": "input_text", "text": message}]})
        texts.append(message)
        return items, [item_key(item) for item in items], texts

    # -- the loop -----------------------------------------------------------------------------

    async def loop(self) -> None:
        kinds = list(MIX)
        weights = [MIX[kind] for kind in kinds]
        while time.monotonic() < self.soak.deadline:
            # Conversations that left the pool and went idle are checked by whoever sees them first.
            idle = next((conv for conv in self.soak.shared if conv.state == "retiring" and conv.inflight == 0), None)
            if idle is not None:
                self.soak.shared.remove(idle)
                replacement = await self.soak.new_conversation(self, shared=True, initial=self.rng.randint(0, 4))
                if replacement:
                    self.soak.shared.append(replacement)
                await self.soak.retire(idle, self)
                continue
            if self.private is not None and self.private.acked_items >= self.soak.args.conversation_items:
                await self.cycle_private()
                continue
            kind = self.rng.choices(kinds, weights)[0]
            self.stats.operations[kind] += 1
            try:
                await getattr(self, kind)()
            except Exception as error:  # noqa: BLE001 - a bug in the soak itself must not hide the rest
                import traceback

                self.stats.fail("soak_error", kind, "".join(traceback.format_exception(error))[-1500:])

    def conversation(self, shared_share: float = 0.7) -> Conv | None:
        if self.rng.random() < shared_share:
            conv = self.soak.pick_shared(self.rng)
            if conv is not None:
                return conv
        return self.private if self.private and self.private.state == "active" else None

    @contextlib.contextmanager
    def using(self, conv: Conv | None):
        if conv is None:
            yield
            return
        conv.inflight += 1
        conv.max_inflight = max(conv.max_inflight, conv.inflight)
        try:
            yield
        finally:
            conv.inflight -= 1
            self.soak.maybe_retire(conv)

    def keep_response(self, body: dict, input_keys: list[str]) -> None:
        stored = StoredResponse(body["id"], body["status"], [item["id"] for item in body.get("output", [])], input_keys)
        self.soak.responses.append(stored)
        self.mine.append(stored)

    def check_output(self, kind: str, body: dict, keys: list[str], status: str) -> bool:
        ok = self.soak.check(body.get("status") == status, kind, f"{body.get('id')}: status {body.get('status')} (expected {status}); error {body.get('error')}")
        got = [item_key(item) for item in body.get("output", [])]
        return self.soak.check(got == keys, kind, f"{body.get('id')}: output {got} (expected {keys})") and ok

    def check_tokens(self, kind: str, body: dict, context: list[str], instructions: str | None = None) -> None:
        want = expected_tokens(instructions, context)
        got = (body.get("usage") or {}).get("input_tokens")
        self.soak.check(got == want, kind, f"{body.get('id')}: the model saw {got} input tokens, expected {want} for {len(context)} context items")

    # -- operations: responses ------------------------------------------------------------------

    async def create_plain(self) -> None:
        tag = self.tag()
        steps, keys, status = self.script(tag)
        input_, input_keys, texts = self.response_input(tag, steps)
        store = self.rng.random() < 0.85
        instructions = f"{tag} be brief" if self.rng.random() < 0.3 else None
        body = {"model": MODEL, "input": input_, "store": store}
        if instructions:
            body["instructions"] = instructions
        response = await self.soak.call("responses.create", "POST", "/v1/responses", json=body)
        if response is None or response.status_code != 200:
            return
        data = response.json()
        self.check_output("create plain", data, keys, status)
        self.check_tokens("create plain", data, texts, instructions)
        if store:
            self.keep_response(data, input_keys)
        else:
            gone = await self.soak.call("responses.retrieve (store=false)", "GET", f"/v1/responses/{data['id']}", expect=(404,))
            self.soak.check(gone is not None and gone.status_code == 404, "store=false not kept", data["id"])
            self.soak.unstored_responses.append(data["id"])

    async def create_chain(self) -> None:
        if self.chain_length >= 6:
            self.chain_last, self.chain_context, self.chain_length = None, [], 0
            self.chain_ids = set()
        tag = self.tag()
        steps, keys, status = self.script(tag)
        input_, input_keys, texts = self.response_input(tag, steps)
        body = {"model": MODEL, "input": input_}
        if self.chain_last:
            body["previous_response_id"] = self.chain_last
        response = await self.soak.call("responses.create (chain)", "POST", "/v1/responses", json=body)
        if response is None or response.status_code != 200:
            self.chain_last, self.chain_context, self.chain_length = None, [], 0
            self.chain_ids = set()
            return
        data = response.json()
        self.check_output("create chain", data, keys, status)
        context = self.chain_context + texts
        self.check_tokens("create chain", data, context)
        self.chain_context = context + [item_text(item) for item in data["output"]]
        self.chain_last = data["id"]
        self.chain_ids.add(data["id"])
        self.chain_length += 1
        self.keep_response(data, input_keys)

    async def create_conversation(self) -> None:
        conv = self.conversation()
        if conv is None:
            return await self.create_plain()
        with self.using(conv):
            tag = self.tag()
            steps, keys, status = self.script(tag)
            input_, input_keys, texts = self.response_input(tag, steps)
            context = None if conv.shared else conv.context() + texts
            group = conv.add(Group(tag, "response", input_keys + keys, texts + [""] * len(keys), [None] * (len(input_keys) + len(keys)), time.monotonic()))
            body = {"model": MODEL, "input": input_, "conversation": conv.id if self.rng.random() < 0.7 else {"id": conv.id}}
            response = await self.soak.call("responses.create (conversation)", "POST", "/v1/responses", json=body)
            if response is None:
                group.outcome = "unknown"
                return
            if response.status_code != 200:
                conv.reject(group)
                return
            data = response.json()
            self.land(conv, group, data, input_keys, keys, status, "create in conversation", context)

    def land(self, conv: Conv, group: Group, data: dict, input_keys: list[str], keys: list[str], status: str, kind: str, context: list[str] | None) -> None:
        """A response in a conversation ended: its items must have landed if it completed."""
        self.check_output(kind, data, keys, status)
        if context is not None:
            self.check_tokens(kind, data, context)
        if data.get("status") in LANDS:
            group.texts = group.texts[: len(input_keys)] + [item_text(item) for item in data["output"]]
            group.keys = input_keys + [item_key(item) for item in data["output"]]
            for index, key in enumerate(group.keys):
                conv.by_key[key] = (group, index)
            conv.ack(group, self.index, [None] * len(input_keys) + [item["id"] for item in data["output"]], data["id"])
        else:
            conv.reject(group)
            group.response_id = data.get("id")
        self.keep_response(data, input_keys)

    async def stream(self) -> None:
        conv = self.conversation(0.6) if self.rng.random() < 0.75 else None
        with self.using(conv):
            tag = self.tag()
            steps, keys, status = self.script(tag)
            input_, input_keys, texts = self.response_input(tag, steps)
            body = {"model": MODEL, "input": input_, "stream": True}
            group = None
            context = None
            if conv is not None:
                body["conversation"] = conv.id
                context = None if conv.shared else conv.context() + texts
                group = conv.add(Group(tag, "streamed response", input_keys + keys, texts, [None] * (len(input_keys) + len(keys)), time.monotonic()))
            drop = self.rng.random() < self.soak.args.drop_share
            drop_after = self.rng.randint(1, 6) if drop else None
            kind = "responses.create (stream, dropped)" if drop else "responses.create (stream)"
            status_code, events, dropped = await self.soak.stream(kind, body, drop_after=drop_after)
            if status_code == "stalled" and events:
                dropped = True  # reported; poll the stored response as for a dropped stream
                status_code = 200
            if status_code != 200:
                if group:
                    group.outcome = "unknown" if status_code in (None, "stalled") else "rejected"
                return
            final = self.soak.check_events("stream", events, complete=not dropped)
            if dropped:
                # The response goes on without us: poll it to its end.
                response_id = events[0]["response"]["id"]
                final = await self.poll(response_id, "responses.retrieve (after drop)")
                if final is None:
                    if group:
                        group.outcome = "unknown"
                    return
                self.soak.check(final["status"] in LANDS, "dropped stream completes", f"{response_id}: {final['status']}")
            if final is None:
                if group:
                    group.outcome = "unknown"
                return
            if conv is not None:
                self.land(conv, group, final, input_keys, keys, status, "stream", context)
            else:
                self.check_output("stream", final, keys, status)
                self.check_tokens("stream", final, texts)
                self.keep_response(final, input_keys)

    async def poll(self, response_id: str, kind: str, timeout: float = 90) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = await self.soak.call(kind, "GET", f"/v1/responses/{response_id}")
            if response is None or response.status_code != 200:
                return None
            data = response.json()
            if data["status"] in TERMINAL:
                return data
            await asyncio.sleep(self.rng.uniform(0.05, 0.2))
        self.stats.fail("check", kind, f"{response_id} did not finish in {timeout} s")
        return None

    async def background(self) -> None:
        conv = self.conversation(0.6) if self.rng.random() < 0.7 else None
        with self.using(conv):
            tag = self.tag()
            steps, keys, status = self.script(tag, slow=True)
            input_, input_keys, texts = self.response_input(tag, steps)
            body = {"model": MODEL, "input": input_, "background": True}
            group = None
            context = None
            if conv is not None:
                body["conversation"] = conv.id
                context = None if conv.shared else conv.context() + texts
                group = conv.add(Group(tag, "background response", input_keys + keys, texts, [None] * (len(input_keys) + len(keys)), time.monotonic()))
            cancel = self.rng.random() < self.soak.args.cancel_share
            as_stream = self.rng.random() < 0.3
            if as_stream:
                body["stream"] = True
                final, cancelled = await self.background_stream(body, cancel)
            else:
                final, cancelled = await self.background_poll(body, cancel)
            if final is None:
                if group:
                    group.outcome = "unknown"
                return
            if cancelled:
                self.soak.check(final["status"] == "cancelled", "cancelled stays cancelled", f"{final['id']}: {final['status']} after a 200 cancel")
                if group:
                    conv.reject(group)
                    group.response_id = final["id"]
                self.keep_response(final, input_keys)
                return
            if conv is not None:
                self.land(conv, group, final, input_keys, keys, status, "background", context)
            else:
                self.check_output("background", final, keys, status)
                self.check_tokens("background", final, texts)
                self.keep_response(final, input_keys)

    async def cancel(self, response_id: str) -> bool:
        """Cancel; True if the server says it is cancelled (False: it had already finished)."""
        response = await self.soak.call("responses.cancel", "POST", f"/v1/responses/{response_id}/cancel", expect=(200, 400))
        if response is None:
            return False
        if response.status_code == 200:
            return self.soak.check(response.json()["status"] == "cancelled", "cancel", f"{response_id}: cancel answered {response.json()['status']}")
        return False

    async def background_poll(self, body: dict, cancel: bool) -> tuple[dict | None, bool]:
        response = await self.soak.call("responses.create (background)", "POST", "/v1/responses", json=body)
        if response is None or response.status_code != 200:
            return None, False
        created = response.json()
        self.soak.check(created["status"] == "queued", "background", f"{created['id']}: created as {created['status']}")
        cancelled = False
        if cancel:
            await asyncio.sleep(self.rng.uniform(0, 0.8))
            cancelled = await self.cancel(created["id"])
        final = await self.poll(created["id"], "responses.retrieve (poll)")
        return final, cancelled

    async def background_stream(self, body: dict, cancel: bool) -> tuple[dict | None, bool]:
        """Follow a background response's stream; some clients go away early and poll instead."""
        cancel_tasks: list[asyncio.Task] = []
        drop_after = self.rng.randint(1, 8) if self.rng.random() < self.soak.args.drop_share else None
        kind = "responses.create (background, stream, dropped)" if drop_after else "responses.create (background, stream)"

        def on_event(event: dict) -> None:
            if cancel and not cancel_tasks:
                delay = self.rng.uniform(0, 0.8)
                cancel_tasks.append(asyncio.create_task(self._cancel_later(event["response"]["id"], delay)))

        status, events, dropped = await self.soak.stream(kind, body, on_event=on_event, drop_after=drop_after)
        cancelled = await cancel_tasks[0] if cancel_tasks else False
        if (status == "stalled" or dropped) and events:
            # Reported as a failure; the stored response still settles the ledger.
            return await self.poll(events[0]["response"]["id"], "responses.retrieve (poll)"), cancelled
        if status != 200:
            return None, cancelled
        final = self.soak.check_events("background stream", events, complete=True)
        if final is None:
            return None, cancelled
        # The stream's last event and the stored response agree.
        stored = await self.poll(final["id"], "responses.retrieve (poll)")
        if stored is not None:
            self.soak.check(stored["status"] == final["status"], "background stream", f"{final['id']}: stream ended {final['status']}, stored {stored['status']}")
        return stored, cancelled

    async def _cancel_later(self, response_id: str, delay: float) -> bool:
        await asyncio.sleep(delay)
        return await self.cancel(response_id)

    async def failing(self) -> None:
        """The model fails: 429 (rate_limit_exceeded) or response.failed; nothing may land."""
        conv = self.conversation(0.6) if self.rng.random() < 0.8 else None
        with self.using(conv):
            tag = self.tag()
            steps, _keys, _status = self.script(tag, fail=True)
            input_, input_keys, texts = self.response_input(tag, steps)
            body = {"model": MODEL, "input": input_}
            group = None
            if conv is not None:
                body["conversation"] = conv.id
                group = conv.add(Group(tag, "failing response", input_keys, texts, [None] * len(input_keys), time.monotonic()))
            mode = self.rng.choice(("plain", "stream", "background"))
            response_id = None
            if mode == "plain":
                response = await self.soak.call("responses.create (failing)", "POST", "/v1/responses", json=body, expect=(429,))
                if response is not None and response.status_code == 429:
                    self.soak.check(response.json()["error"]["code"] == "rate_limit_exceeded", "failing", response.text[:200])
            elif mode == "stream":
                body["stream"] = True
                status_code, events, _ = await self.soak.stream("responses.create (failing, stream)", body)
                if status_code == "stalled" and events:
                    response_id = events[0]["response"]["id"]
                    await self.poll(response_id, "responses.retrieve (poll)")
                elif status_code == 200:
                    final = self.soak.check_events("failing stream", events, complete=True)
                    if final is not None:
                        self.soak.check(final["status"] == "failed", "failing stream", f"ended {final['status']}")
                        response_id = final["id"]
            else:
                body["background"] = True
                response = await self.soak.call("responses.create (failing, background)", "POST", "/v1/responses", json=body)
                if response is not None and response.status_code == 200:
                    final = await self.poll(response.json()["id"], "responses.retrieve (poll)")
                    if final is not None:
                        self.soak.check(final["status"] == "failed", "failing background", f"{final['id']} ended {final['status']}")
                        response_id = final["id"]
            if group:
                conv.reject(group)
                group.response_id = response_id

    async def idempotent(self) -> None:
        """A create with an Idempotency-Key; sometimes sent twice at once, as an SDK retry would."""
        conv = self.conversation(0.7)
        with self.using(conv):
            tag = self.tag()
            steps, keys, status = self.script(tag)
            input_, input_keys, texts = self.response_input(tag, steps)
            body = {"model": MODEL, "input": input_}
            group = None
            context = None
            if conv is not None:
                body["conversation"] = conv.id
                context = None if conv.shared else conv.context() + texts
                group = conv.add(Group(tag, "idempotent response", input_keys + keys, texts, [None] * (len(input_keys) + len(keys)), time.monotonic()))
            headers = {"Idempotency-Key": f"soak-{self.soak.args.seed}-{tag}"}
            copies = 2 if self.rng.random() < 0.5 else 1
            answers = await asyncio.gather(
                *(self.soak.call("responses.create (idempotent)", "POST", "/v1/responses", json=body, headers=headers) for _ in range(copies))
            )
            if any(answer is None or answer.status_code != 200 for answer in answers):
                if group:
                    group.outcome = "unknown"
                return
            bodies = [answer.json() for answer in answers]
            self.soak.check(len({data["id"] for data in bodies}) == 1, "idempotent", f"one key, several responses: {[data['id'] for data in bodies]}")
            data = bodies[0]
            if conv is not None:
                self.land(conv, group, data, input_keys, keys, status, "idempotent", context)
            else:
                self.check_output("idempotent", data, keys, status)
                self.keep_response(data, input_keys)

    # -- operations: conversations and items -----------------------------------------------------

    async def add_items(self) -> None:
        conv = self.conversation(0.7)
        if conv is None:
            return
        with self.using(conv):
            items, texts = self.items(self.rng.randint(1, 20))
            keys = [item_key(item) for item in items]
            group = conv.add(Group(tag_of(texts[0]), "items", keys, texts, [None] * len(items), time.monotonic()))
            response = await self.soak.call("conversations.items.create", "POST", f"/v1/conversations/{conv.id}/items", json={"items": items})
            if response is None:
                group.outcome = "unknown"
                return
            if response.status_code != 200:
                conv.reject(group)
                return
            data = response.json()["data"]
            self.soak.check([item_key(item) for item in data] == keys, "add items", f"{conv.id}: echoed items differ from those sent")
            conv.ack(group, self.index, [item["id"] for item in data])

    async def list_items(self) -> None:
        conv = self.conversation(0.8)
        if conv is None:
            return
        with self.using(conv):
            await self.soak.check_under_load(conv, self.rng)

    def own_item(self, conv: Conv) -> tuple[str, str] | None:
        candidates = [(key, item_id) for key, item_id, owner in conv.known if owner == self.index and key not in conv.deleting]
        return self.rng.choice(candidates) if candidates else None

    async def get_item(self) -> None:
        conv = self.conversation(0.6)
        if conv is None:
            return
        with self.using(conv):
            picked = self.own_item(conv)
            if picked is None:
                return
            key, item_id = picked
            response = await self.soak.call("conversations.items.retrieve", "GET", f"/v1/conversations/{conv.id}/items/{item_id}")
            if response is not None and response.status_code == 200:
                self.soak.check(item_key(response.json()) == key, "get item", f"{conv.id}/{item_id}: another item came back")
            deleted = [(key, item_id) for key, item_id, owner in conv.known if owner == self.index and key in conv.deleted]
            if deleted:
                key, item_id = self.rng.choice(deleted)
                gone = await self.soak.call("conversations.items.retrieve (deleted)", "GET", f"/v1/conversations/{conv.id}/items/{item_id}", expect=(404,))
                self.soak.check(gone is not None and gone.status_code == 404, "deleted item gone", f"{conv.id}/{item_id}")

    async def delete_item(self) -> None:
        conv = self.conversation(0.6)
        if conv is None:
            return
        with self.using(conv):
            picked = self.own_item(conv)
            if picked is None:
                return
            key, item_id = picked
            conv.deleting[key] = time.monotonic()
            response = await self.soak.call("conversations.items.delete", "DELETE", f"/v1/conversations/{conv.id}/items/{item_id}")
            if response is not None and response.status_code == 200:
                conv.deleted[key] = time.monotonic()
                self.soak.check(response.json().get("id") == conv.id, "delete item", f"answered {response.text[:200]}")

    async def get_response(self) -> None:
        if not self.mine:
            return
        stored = self.rng.choice(self.mine)
        response = await self.soak.call("responses.retrieve", "GET", f"/v1/responses/{stored.id}")
        if response is None or response.status_code != 200:
            return
        data = response.json()
        self.soak.check(data["status"] == stored.status, "get response", f"{stored.id}: {data['status']}, acknowledged {stored.status}")
        self.soak.same_output(stored, data, "get response")
        listing = await self.soak.call("responses.input_items", "GET", f"/v1/responses/{stored.id}/input_items", params={"limit": 100, "order": "asc"})
        if listing is not None and listing.status_code == 200:
            got = [item_key(item) for item in listing.json()["data"]]
            self.soak.check(got == stored.input_keys, "input items", f"{stored.id}: input items {got[:3]} != sent {stored.input_keys[:3]}")

    async def delete_response(self) -> None:
        candidates = [stored for stored in self.mine if stored.id not in self.chain_ids]
        if not candidates:
            return
        stored = self.rng.choice(candidates)
        response = await self.soak.call("responses.delete", "DELETE", f"/v1/responses/{stored.id}")
        self.mine.remove(stored)
        self.soak.responses.remove(stored)
        if response is None or response.status_code != 200:
            return
        self.soak.deleted_responses.append(stored.id)
        gone = await self.soak.call("responses.retrieve (deleted)", "GET", f"/v1/responses/{stored.id}", expect=(404,))
        self.soak.check(gone is not None and gone.status_code == 404, "deleted response gone", stored.id)

    async def cycle_private(self) -> None:
        """This client's own conversation: check it, delete it (nobody else uses it), start another."""
        conv = self.private
        if conv is not None and conv.state == "active":
            conv.state = "checking"
            self.totals(await self.soak.verify(conv, "verify at retirement"))
            await self.soak.delete_conversation(conv)
        self.private = await self.soak.new_conversation(self, shared=False, initial=self.rng.randint(0, 20))


# --- the server and its RSS --------------------------------------------------------------------


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time the process has used."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def threads(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def sample_rss(pid: int, started: float, samples: list[dict], stop: asyncio.Event) -> None:
    while not stop.is_set():
        kb = rss_kb(pid)
        if kb is not None:
            samples.append({"t": round(time.monotonic() - started, 2), "rss_mb": round(kb / 1024, 2), "fds": open_fds(pid), "threads": threads(pid), "cpu_s": cpu_seconds(pid)})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


def rss_verdict(samples: list[dict], duration: float, warmup: float, limit_mb: float, limit_pct: float) -> dict:
    """RSS levels off: over the second half of the load it grows at most max(limit_mb, limit_pct%)."""
    load = [s for s in samples if 0 <= s["t"] <= duration]
    if len(load) < 6:
        return {"pass": False, "reason": "too few samples"}

    def around(t: float) -> float:
        near = sorted(load, key=lambda s: abs(s["t"] - t))[:5]
        return statistics.median(s["rss_mb"] for s in near)

    middle = around(duration / 2)
    last = statistics.median(s["rss_mb"] for s in load[-5:])
    growth = last - middle
    allowed = max(limit_mb, middle * limit_pct / 100)
    second = [s for s in load if s["t"] >= duration / 2]
    slope = 0.0
    if len(second) >= 2:
        ts = [s["t"] for s in second]
        ys = [s["rss_mb"] for s in second]
        mean_t, mean_y = statistics.fmean(ts), statistics.fmean(ys)
        denominator = sum((t - mean_t) ** 2 for t in ts) or 1.0
        slope = sum((t - mean_t) * (y - mean_y) for t, y in zip(ts, ys)) / denominator
    after_warmup = next((s["rss_mb"] for s in load if s["t"] >= warmup), load[-1]["rss_mb"])
    return {
        "first_mb": samples[0]["rss_mb"],
        "after_warmup_mb": after_warmup,
        "warmup_s": warmup,
        "middle_mb": middle,
        "last_mb": last,
        "max_mb": max(s["rss_mb"] for s in samples),
        "second_half_growth_mb": round(growth, 2),
        "allowed_growth_mb": round(allowed, 2),
        "second_half_slope_mb_per_min": round(slope * 60, 2),
        "fds_first": load[0]["fds"],
        "fds_max": max((s["fds"] or 0) for s in load),
        "fds_last": load[-1]["fds"],
        "threads_first": load[0]["threads"],
        "threads_max": max((s["threads"] or 0) for s in load),
        "threads_last": load[-1]["threads"],
        "pass": growth <= allowed,
    }


def log_problems(path: str) -> dict:
    """Tracebacks and ERROR lines in the server's log."""
    text = Path(path).read_text(errors="replace")
    lines = text.splitlines()
    errors = [line for line in lines if line.startswith(("ERROR", "CRITICAL")) or "Traceback" in line]
    excerpts = []
    for index, line in enumerate(lines):
        if line.startswith(("ERROR", "CRITICAL")) and len(excerpts) < 5:
            excerpts.append("\n".join(lines[index : index + 40]))
    return {"log": path, "error_lines": len(errors), "tracebacks": text.count("Traceback"), "excerpts": excerpts}


def server_config(folder: Path) -> Path:
    return write_config(
        folder / "threadline.toml",
        {
            "auth": {"api_keys": [{"key": API_KEY, "project": "soak"}]},
            # A window no conversation reaches, so the full context is always sent.
            "models": [{"id": MODEL, "provider": "scripted", "context_window": 50_000_000}],
        },
    )


def soak_database(kind: str, args: argparse.Namespace) -> dict:
    with database_url(kind) as url, tempfile.TemporaryDirectory(prefix="threadline-soak-") as folder:
        server = ThreadlineServer(url, server_config(Path(folder)))
        server.start()
        try:
            samples: list[dict] = []

            async def main() -> dict:
                stop = asyncio.Event()
                soak = Soak(server.url, args)
                started = time.monotonic()
                sampler = asyncio.create_task(sample_rss(server.process.pid, started, samples, stop))
                try:
                    outcome = await soak.run()
                finally:
                    stop.set()
                    await sampler
                outcome["soak"] = soak
                outcome["sampling_offset"] = round(soak.started - started, 2)
                return outcome

            outcome = asyncio.run(main())
            alive = server.process.poll() is None
        finally:
            server.stop()
        problems = log_problems(server.log.name)
    soak: Soak = outcome["soak"]
    stats = soak.stats
    offset = outcome["sampling_offset"]
    for sample in samples:
        sample["t"] = round(sample["t"] - offset, 2)  # 0 is when the load started
    warmup = max(10.0, args.duration * 0.2)
    rss = rss_verdict(samples, args.duration, warmup, args.rss_limit_mb, args.rss_limit_pct)
    requests = sum(sum(counter.values()) for counter in stats.statuses.values())
    load_requests = sum(
        n for kind, counter in stats.statuses.items() if not kind.startswith("verify.") for n in counter.values()
    )
    final = outcome["final"]
    during = [sample for sample in samples if 0 <= sample["t"] <= outcome["load_seconds"] and sample["cpu_s"] is not None]
    server_cpu = (during[-1]["cpu_s"] - during[0]["cpu_s"]) / (during[-1]["t"] - during[0]["t"]) if len(during) >= 2 else None
    status_totals = Counter()
    for counter in stats.statuses.values():
        status_totals.update(counter)
    five_xx = sum(n for status, n in status_totals.items() if status.isdigit() and int(status) >= 500)
    verdicts = {
        "no_5xx": five_xx == 0,
        "no_unexpected_status": stats.failure_counts["unexpected_status"] == 0 and stats.failure_counts["transport"] == 0,
        "no_lost_items": final["lost"] == 0,
        "no_duplicated_items": final["duplicated"] == 0,
        "nothing_from_failed_or_cancelled": final["leaked"] == 0 and final["unexpected"] == 0,
        "deleted_stay_deleted": final["resurrected"] == 0,
        "contiguous_and_in_order": final["order"] == 0 and final["id_mismatch"] == 0,
        "all_checks_passed": all(stats.failure_counts[name] == 0 for name in ("check", "soak_error", "drain")),
        "no_stalled_streams": stats.failure_counts["stalled_stream"] == 0,
        "rss_levels_off": rss["pass"],
        "server_alive": alive,
        "server_log_clean": problems["tracebacks"] == 0 and problems["error_lines"] == 0,
    }
    return {
        "database": kind,
        "pass": all(verdicts.values()),
        "verdicts": verdicts,
        "duration_s": args.duration,
        "load_seconds": round(outcome["load_seconds"], 2),
        "clients": args.clients,
        "shared_conversations": args.shared,
        "requests": requests,
        "load_requests": load_requests,
        "throughput_rps": round(load_requests / outcome["load_seconds"], 1),
        "server_cpu_percent": round(server_cpu * 100, 1) if server_cpu is not None else None,
        "client_cpu_percent": round(soak.client_cpu_s / outcome["load_seconds"] * 100, 1),
        "status_codes": dict(sorted(status_totals.items())),
        "operations": dict(sorted(stats.operations.items())),
        "requests_by_kind": {
            kind: {"statuses": dict(sorted(stats.statuses[kind].items())), **summarize(latencies)}
            for kind, latencies in sorted(stats.latencies.items())
        },
        "checks": dict(sorted(stats.checks.items())),
        "ledger": final,
        "failures": dict(stats.failure_counts),
        "failures_by_kind": dict(stats.failure_kinds.most_common()),
        "failure_details": stats.failures,
        "warnings": dict(stats.warnings),
        "warning_details": stats.warning_details,
        "rss": rss,
        "rss_samples": samples,
        "server_log": problems,
    }


# --- report ------------------------------------------------------------------------------------


def print_report(result: dict) -> None:
    print(f"\n== {result['database']}: {result['clients']} clients, {result['load_seconds']} s of load, "
          f"{result['load_requests']} requests ({result['throughput_rps']}/s), {result['requests']} with the checks")
    print(f"   CPU: server {result['server_cpu_percent']}% of a core, soak client {result['client_cpu_percent']}%")
    print(f"   operations: {result['operations']}")
    print(f"\n   {'request kind':<44} {'n':>7} {'p50 ms':>9} {'p99 ms':>9}  statuses")
    for kind, row in result["requests_by_kind"].items():
        print(f"   {kind:<44} {row['n']:>7} {row['p50']:>9.1f} {row['p99']:>9.1f}  {row['statuses']}")
    ledger = result["ledger"]
    print(f"\n   status codes: {result['status_codes']}")
    print(f"   shared: {ledger['shared_conversations']} conversations, written by a median of {ledger['shared_writers_median']} "
          f"(max {ledger['shared_writers_max']}) clients, up to {ledger['shared_most_operations_at_once']} operations on one at once")
    print(f"   conversations: {ledger['conversations_created']} created, {ledger['conversations_deleted']} deleted, "
          f"{ledger['conversations_checked']} checked at the end ({ledger['items']} items); "
          f"{ledger['responses_checked']} kept responses and {ledger['deleted_checked']} deleted objects re-read")
    print(f"   lost {ledger['lost']}, duplicated {ledger['duplicated']}, from failed/cancelled {ledger['leaked']}, "
          f"unaccounted {ledger['unexpected']}, deleted but present {ledger['resurrected']}, "
          f"out of order {ledger['order']}, id mismatches {ledger['id_mismatch']}")
    print(f"   checks: {sum(result['checks'].values())} passed or failed across {len(result['checks'])} kinds; failures: {result['failures'] or 'none'}")
    rss = result["rss"]
    if "first_mb" in rss:
        print(f"   RSS MB: first {rss['first_mb']}, after warm-up ({rss['warmup_s']:.0f} s) {rss['after_warmup_mb']}, "
              f"middle {rss['middle_mb']}, last {rss['last_mb']}, max {rss['max_mb']}; second half "
              f"{rss['second_half_growth_mb']:+} MB (allowed {rss['allowed_growth_mb']}), slope {rss['second_half_slope_mb_per_min']:+} MB/min; "
              f"open fds {rss['fds_first']} -> {rss['fds_last']} (max {rss['fds_max']}), threads {rss['threads_first']} -> {rss['threads_last']} (max {rss['threads_max']})")
    for detail in result["warning_details"][:5]:
        print(f"   warning: {detail}")
    log = result["server_log"]
    print(f"   server log: {log['error_lines']} error lines, {log['tracebacks']} tracebacks ({log['log']})")
    shown = Counter()
    for name, count in result["failures_by_kind"].items():
        print(f"   FAILED {count} x {name}")
        for detail in result["failure_details"]:
            if f"{detail['category']}: {detail['kind']}" == name and shown[name] < 2:
                shown[name] += 1
                print(f"      e.g. {detail['detail'][:600]}")
    for excerpt in log["excerpts"][:2]:
        print("   log excerpt:\n      " + excerpt[:1500].replace("\n", "\n      "))
    print("   verdicts: " + ", ".join(f"{name}={'ok' if ok else 'FAIL'}" for name, ok in result["verdicts"].items()))
    print(f"   {'PASS' if result['pass'] else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60, help="seconds of load per database (default 60)")
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--shared", type=int, default=4, help="conversations in the shared pool at any time (default 4)")
    parser.add_argument("--conversation-items", type=int, default=300, help="a shared conversation leaves the pool at this many items")
    parser.add_argument("--seed", default="soak")
    parser.add_argument("--cancel-share", type=float, default=0.25, help="share of background responses cancelled (default 0.25)")
    parser.add_argument("--drop-share", type=float, default=0.2, help="share of streams the client drops early (default 0.2)")
    parser.add_argument("--stall-s", type=float, default=20.0, help="a stream with no event for this long is a failure (default 20)")
    parser.add_argument("--drain-s", type=float, default=60.0, help="after the load, how long running operations may take to finish (default 60)")
    parser.add_argument("--rss-limit-mb", type=float, default=10.0, help="allowed RSS growth over the second half, MB")
    parser.add_argument("--rss-limit-pct", type=float, default=5.0, help="... or this percentage of the midpoint RSS, if larger")
    parser.add_argument("--output", type=Path, default=None, help="results file (default bench/results/soak.json)")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = {"benchmark": "soak", "machine": machine(), "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "databases": {}}
    for kind in kinds:
        result = soak_database(kind, args)
        results["databases"][kind] = result
        print_report(result)
    results["pass"] = all(result["pass"] for result in results["databases"].values())
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
        path = args.output
    else:
        path = write_results("soak", results)
    print(f"\n{'PASS' if results['pass'] else 'FAIL'}; results in {path}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
