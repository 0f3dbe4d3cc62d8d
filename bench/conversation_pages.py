"""Benchmark: a page of a 100,000-item conversation costs no more than 1.5x a page of a 100-item one.

For each database this starts a real `threadline serve`, builds a conversation
of 100 items and one of 100,000, and times GET /v1/conversations/{id}/items?limit=20 over HTTP
(keep-alive, after warm-up) for the first page in both orders and for a page deep in the middle
(via `after`). The target is checked on the median: 100k/100 ratio <= 1.5 in every case.

It also shows why: the EXPLAIN of every query `list_items` runs (the page query must walk the
primary-key index (conversation_id, position), with no full scan, no sort and no OFFSET); and
that adding 20 items is one transaction: one BEGIN and one COMMIT around `add_items`, and a
POST whose last item is a bad item_reference stores nothing at all.

    python bench/conversation_pages.py [--database sqlite|postgresql|both] [--requests N]

Figures are printed and written to bench/results/conversation_pages.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
from pydantic import TypeAdapter
from sqlalchemy import event, select, text

from common import ThreadlineServer, database_url, machine, summarize, write_results
from threadline.api.auth import OPEN_PROJECT
from threadline.engine.new_items import normalized
from threadline.items import InputItem
from threadline.store.conversations import ConversationStore, append_items
from threadline.store.database import Database
from threadline.store.tables import conversations

SMALL, BIG = 100, 100_000
PAGE = 20
TARGET_RATIO = 1.5
# The big conversation's last items go through the API like any client's; the rest are bulk
# inserted with the store's own append_items, which is what the API calls.
THROUGH_API = 100
BULK_BATCH = 5_000

# name: (order, start after the middle item?)
CASES = {
    "first page desc": ("desc", False),
    "first page asc": ("asc", False),
    "middle page desc": ("desc", True),
    "middle page asc": ("asc", True),
}

input_item = TypeAdapter(InputItem)


@dataclass
class Conversation:
    id: str
    item_ids: list[str] = field(default_factory=list)  # oldest first

    @property
    def size(self) -> int:
        return len(self.item_ids)

    @property
    def middle_id(self) -> str:
        return self.item_ids[self.size // 2]

    def page_params(self, order: str, from_middle: bool) -> dict:
        params = {"limit": PAGE, "order": order}
        if from_middle:
            params["after"] = self.middle_id
        return params

    def expected_page(self, order: str, from_middle: bool) -> list[str]:
        ids, middle = self.item_ids, self.size // 2
        if order == "asc":
            return ids[middle + 1 : middle + 1 + PAGE] if from_middle else ids[:PAGE]
        end = middle if from_middle else self.size
        return ids[end - PAGE : end][::-1]


def sample_item(index: int) -> dict:
    """Item `index` of a tool-using chat: user, function call, its output, assistant answer."""
    turn, kind = divmod(index, 4)
    call_id = f"call_{turn:08d}"
    if kind == 0:
        return {"role": "user", "content": f"Turn {turn}: what is the weather in city {turn % 997}, and should I bring an umbrella tomorrow?"}
    if kind == 1:
        arguments = {"city": f"City {turn % 997}", "unit": "celsius", "days": 2}
        return {"type": "function_call", "call_id": call_id, "name": "get_forecast", "arguments": orjson.dumps(arguments).decode()}
    if kind == 2:
        output = {"today": {"temperature": turn % 35, "rain": 0.2}, "tomorrow": {"temperature": (turn + 3) % 35, "rain": 0.7}}
        return {"type": "function_call_output", "call_id": call_id, "output": orjson.dumps(output).decode()}
    return {
        "role": "assistant",
        "content": f"It is {turn % 35} °C in City {turn % 997} today. Tomorrow brings a 70% chance of rain, "
        "so yes: take an umbrella, and a light jacket for the evening.",
    }


def stored_items(indexes: range) -> list[dict]:
    """Items in the shape the API stores them: validated as a request body is, then prepared."""
    return normalized([input_item.validate_python(sample_item(index)) for index in indexes])


# --- Through the API --------------------------------------------------------------------------


def create_conversation(http: httpx.Client) -> Conversation:
    response = http.post("/v1/conversations", json={"metadata": {"bench": "conversation_pages"}})
    response.raise_for_status()
    return Conversation(response.json()["id"])


def post_items(http: httpx.Client, conversation: Conversation, indexes: range) -> None:
    for start in range(indexes.start, indexes.stop, PAGE):
        batch = [sample_item(index) for index in range(start, min(start + PAGE, indexes.stop))]
        response = http.post(f"/v1/conversations/{conversation.id}/items", json={"items": batch})
        response.raise_for_status()
        conversation.item_ids += [item["id"] for item in response.json()["data"]]


def list_page(http: httpx.Client, conversation: Conversation, params: dict) -> dict:
    response = http.get(f"/v1/conversations/{conversation.id}/items", params=params)
    response.raise_for_status()
    return response.json()


def all_items(http: httpx.Client, conversation: Conversation, stop: int) -> list[dict]:
    """The conversation's first `stop` items, oldest first, through the API's pagination."""
    items: list[dict] = []
    params: dict = {"limit": 100, "order": "asc"}
    while len(items) < stop:
        page = list_page(http, conversation, params)
        items += page["data"]
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    return items[:stop]


# --- In the store, from this process -------------------------------------------------------------


@contextlib.asynccontextmanager
async def opened(url: str):
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()


async def bulk_fill(url: str, conversation: Conversation, indexes: range) -> None:
    """Append items with the store's own append_items, BULK_BATCH per transaction."""
    async with opened(url) as database:
        for start in range(indexes.start, indexes.stop, BULK_BATCH):
            batch = stored_items(range(start, min(start + BULK_BATCH, indexes.stop)))
            async with database.write() as connection:
                added = await append_items(connection, OPEN_PROJECT, conversation.id, batch)
            conversation.item_ids += [item["id"] for item in added]


async def analyze(url: str) -> None:
    """PostgreSQL's autovacuum analyzes a table after this many inserts anyway; doing it now keeps
    the planner from changing its mind halfway through the timings."""
    async with opened(url) as database:
        if not database.is_sqlite:
            async with database.write() as connection:
                await connection.execute(text("ANALYZE conversation_items"))


async def next_position(url: str, conversation: Conversation) -> int:
    async with opened(url) as database, database.read() as connection:
        query = select(conversations.c.next_position).where(conversations.c.id == conversation.id)
        return (await connection.execute(query)).scalar_one()


@contextlib.contextmanager
def recording(database: Database) -> Iterator[dict]:
    """Every statement, BEGIN, COMMIT and ROLLBACK the engine sends while the block runs."""
    record: dict = {"statements": [], "begin": 0, "commit": 0, "rollback": 0}
    engine = database.engine.sync_engine

    def on_execute(_connection, _cursor, statement, parameters, _context, executemany) -> None:
        record["statements"].append((statement, parameters, executemany))

    listeners = {
        "before_cursor_execute": on_execute,
        "begin": lambda _connection: record.__setitem__("begin", record["begin"] + 1),
        "commit": lambda _connection: record.__setitem__("commit", record["commit"] + 1),
        "rollback": lambda _connection: record.__setitem__("rollback", record["rollback"] + 1),
    }
    for name, listener in listeners.items():
        event.listen(engine, name, listener)
    try:
        yield record
    finally:
        for name, listener in listeners.items():
            event.remove(engine, name, listener)


def one_line(statement: str) -> str:
    return " ".join(statement.split())


async def append_transaction(url: str, conversation: Conversation) -> dict:
    """What ConversationStore.add_items (the POST's store call) sends for 20 items."""
    async with opened(url) as database:
        with recording(database) as record:
            added = await ConversationStore(database).add_items(OPEN_PROJECT, conversation.id, stored_items(range(PAGE)))
        conversation.item_ids += [item["id"] for item in added]
    statements = [
        (f"[{len(parameters)} rows] " if executemany else "") + one_line(statement)
        for statement, parameters, executemany in record["statements"]
    ]
    return {
        "begin": record["begin"],
        "commit": record["commit"],
        "rollback": record["rollback"],
        "statements": statements,
        "one_transaction": record["begin"] == 1 and record["commit"] == 1 and record["rollback"] == 0,
    }


async def primary_key_index(connection, is_sqlite: bool) -> str:
    if is_sqlite:
        query = "SELECT name FROM pragma_index_list('conversation_items') WHERE origin = 'pk'"
    else:
        query = "SELECT conname FROM pg_constraint WHERE conrelid = 'conversation_items'::regclass AND contype = 'p'"
    return (await connection.execute(text(query))).scalar_one()


async def explain(connection, is_sqlite: bool, statement: str, parameters) -> list[str]:
    if is_sqlite:
        rows = await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        return [row[-1] for row in rows]
    rows = await connection.exec_driver_sql("EXPLAIN " + statement, parameters)
    return [row[0] for row in rows]


async def explain_generic(connection, statement: str, parameters) -> list[str]:
    """PostgreSQL's generic plan: what asyncpg's cached prepared statement may run after 5 executions."""
    literals = ", ".join(str(value) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'" for value in parameters)
    await connection.exec_driver_sql(f"PREPARE bench_plan AS {statement}")
    try:
        await connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        rows = await connection.exec_driver_sql(f"EXPLAIN EXECUTE bench_plan({literals})")
        return [row[0] for row in rows]
    finally:
        await connection.exec_driver_sql("RESET plan_cache_mode")
        await connection.exec_driver_sql("DEALLOCATE bench_plan")


def judge(plan: list[str], is_sqlite: bool) -> dict:
    if is_sqlite:
        full_scan = any(line.startswith("SCAN ") for line in plan)
        sort = any("TEMP B-TREE" in line for line in plan)
    else:
        full_scan = any("Seq Scan" in line for line in plan)
        sort = any(re.search(r"\bSort\b", line) for line in plan)
    return {"full_scan": full_scan, "sort": sort}


def offset_value(statement: str, parameters) -> int:
    """The OFFSET a statement skips, bound or literal; SQLAlchemy writes `LIMIT ? OFFSET ?` with 0 on SQLite."""
    found = re.search(r"\bOFFSET\s+(\?|\$(\d+)|\d+)", statement, re.IGNORECASE)
    if found is None:
        return 0
    if found.group(1) == "?":
        return int(parameters[statement[: found.start(1)].count("?")])
    if found.group(2):
        return int(parameters[int(found.group(2)) - 1])
    return int(found.group(1))


async def query_plans(url: str, conversation: Conversation) -> dict:
    """EXPLAIN every statement list_items sends, for each case, on the given conversation."""
    plans: dict = {}
    async with opened(url) as database:
        store = ConversationStore(database)
        is_sqlite = database.is_sqlite
        for name, (order, from_middle) in CASES.items():
            after = conversation.middle_id if from_middle else None
            with recording(database) as record:
                await store.list_items(OPEN_PROJECT, conversation.id, after=after, limit=PAGE, order=order)
            async with database.read() as connection:
                index = await primary_key_index(connection, is_sqlite)
                queries = []
                for statement, parameters, _ in record["statements"]:
                    if not statement.lstrip().upper().startswith("SELECT"):
                        continue  # SQLite's BEGIN
                    plan = await explain(connection, is_sqlite, statement, parameters)
                    is_page = "ORDER BY" in statement.upper() and "conversation_items" in statement
                    queries.append(
                        {"statement": one_line(statement), "parameters": list(parameters), "plan": plan, "page_query": is_page, **judge(plan, is_sqlite)}
                    )
                    if not is_sqlite:
                        generic = await explain_generic(connection, statement, parameters)
                        queries.append(
                            {"statement": "(generic plan of the same)", "parameters": [], "plan": generic, "page_query": is_page, **judge(generic, False)}
                        )
            page = next(query for query in queries if query["page_query"])
            page["uses_primary_key"] = all(index in "\n".join(query["plan"]) for query in queries if query["page_query"])
            page["offset"] = offset_value(page["statement"], page["parameters"])
            plans[name] = {
                "primary_key_index": index,
                "queries": queries,
                "ok": page["uses_primary_key"] and not page["offset"] and not any(query["full_scan"] or query["sort"] for query in queries),
            }
    return plans


async def store_timings(url: str, small: Conversation, big: Conversation, requests: int, warmup: int) -> dict:
    """ConversationStore.list_items alone, in this process: the database's share without HTTP."""
    samples: dict = {name: {SMALL: [], BIG: []} for name in CASES}
    async with opened(url) as database:
        store = ConversationStore(database)
        for round_number in range(warmup + requests):
            for name, (order, from_middle) in CASES.items():
                for conversation in (small, big) if round_number % 2 else (big, small):
                    after = conversation.middle_id if from_middle else None
                    started = time.perf_counter()
                    await store.list_items(OPEN_PROJECT, conversation.id, after=after, limit=PAGE, order=order)
                    elapsed = (time.perf_counter() - started) * 1000
                    if round_number >= warmup:
                        samples[name][conversation.size].append(elapsed)
    return {name: compare(by_size) for name, by_size in samples.items()}


# --- Measuring ------------------------------------------------------------------------------


def compare(by_size: dict) -> dict:
    small, big = summarize(by_size[SMALL]), summarize(by_size[BIG])
    ratio = {key: round(big[key] / small[key], 3) for key in ("p50", "p90", "p99", "mean")}
    return {str(SMALL): small, str(BIG): big, "ratio": ratio, "pass": ratio["p50"] <= TARGET_RATIO}


def http_timings(http: httpx.Client, small: Conversation, big: Conversation, requests: int, warmup: int) -> dict:
    """GET a page of 20 items, both conversations and all cases interleaved so drift hits all alike."""
    for name, (order, from_middle) in CASES.items():
        for conversation in (small, big):
            page = list_page(http, conversation, conversation.page_params(order, from_middle))
            got = [item["id"] for item in page["data"]]
            if got != conversation.expected_page(order, from_middle):
                raise AssertionError(f"{name} of the {conversation.size}-item conversation returned the wrong items")
    samples: dict = {name: {SMALL: [], BIG: []} for name in CASES}
    for round_number in range(warmup + requests):
        for name, (order, from_middle) in CASES.items():
            for conversation in (small, big) if round_number % 2 else (big, small):
                params = conversation.page_params(order, from_middle)
                started = time.perf_counter()
                response = http.get(f"/v1/conversations/{conversation.id}/items", params=params)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if round_number >= warmup:
                    samples[name][conversation.size].append(elapsed)
    return {name: compare(by_size) for name, by_size in samples.items()}


def append_timings(http: httpx.Client, small: Conversation, big: Conversation, appends: int) -> dict:
    """POST 20 items at a time to each conversation (after the page timings: they grow here)."""
    samples: dict = {SMALL: [], BIG: []}
    next_index = BIG
    for round_number in range(5 + appends):
        for conversation in (small, big):
            body = {"items": [sample_item(next_index + offset) for offset in range(PAGE)]}
            next_index += PAGE
            started = time.perf_counter()
            response = http.post(f"/v1/conversations/{conversation.id}/items", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            if round_number >= 5:
                samples[SMALL if conversation is small else BIG].append(elapsed)
    return {str(SMALL): summarize(samples[SMALL]), str(BIG): summarize(samples[BIG])}


def atomicity(http: httpx.Client, url: str, conversation: Conversation) -> dict:
    """19 valid items and an item_reference to nothing, in one POST: none may be stored."""
    items_before = [item["id"] for item in all_items(http, conversation, conversation.size + 1)]
    position_before = asyncio.run(next_position(url, conversation))
    bad_reference = {"type": "item_reference", "id": "msg_" + "0" * 48}
    body = {"items": [sample_item(index) for index in range(PAGE - 1)] + [bad_reference]}
    response = http.post(f"/v1/conversations/{conversation.id}/items", json=body)
    items_after = [item["id"] for item in all_items(http, conversation, conversation.size + PAGE)]
    position_after = asyncio.run(next_position(url, conversation))
    error = response.json().get("error", {})
    return {
        "status": response.status_code,
        "param": error.get("param"),
        "items_before": len(items_before),
        "items_after": len(items_after),
        "next_position_before": position_before,
        "next_position_after": position_after,
        "pass": response.status_code == 404 and items_before == items_after and position_before == position_after,
    }


def bulk_matches_api(http: httpx.Client, small: Conversation, big: Conversation) -> bool:
    """The bulk-inserted items equal, ids aside, the same items stored through the API."""
    through_api = all_items(http, small, SMALL)
    bulk = all_items(http, big, SMALL)
    without_id = lambda item: {key: value for key, value in item.items() if key != "id"}  # noqa: E731
    return len(bulk) == SMALL and [without_id(item) for item in through_api] == [without_id(item) for item in bulk]


def run(kind: str, requests: int, warmup: int, appends: int) -> dict:
    with database_url(kind) as url, ThreadlineServer(url) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        print(f"\n== {kind} ==  (server log: {server.log.name})")
        started = time.perf_counter()
        small = create_conversation(http)
        post_items(http, small, range(SMALL))
        big = create_conversation(http)
        asyncio.run(bulk_fill(url, big, range(BIG - THROUGH_API)))
        post_items(http, big, range(BIG - THROUGH_API, BIG))
        asyncio.run(analyze(url))
        fill_seconds = time.perf_counter() - started
        same_rows = bulk_matches_api(http, small, big)
        print(
            f"filled in {fill_seconds:.1f} s: {SMALL} items through the API; {BIG:,} items = "
            f"{BIG - THROUGH_API:,} with store.append_items ({BULK_BATCH:,} per transaction) + {THROUGH_API} through the API"
        )
        print(f"bulk-inserted items equal API-stored ones (ids aside): {'yes' if same_rows else 'NO'}")

        plans = asyncio.run(query_plans(url, big))
        print_plans(plans)

        pages = http_timings(http, small, big, requests, warmup)
        print_timings(f"GET .../items?limit={PAGE} over HTTP, {requests} requests each after {warmup} warm-up rounds (ms)", pages)
        store_only = asyncio.run(store_timings(url, small, big, requests, warmup))
        print_timings("the same through ConversationStore.list_items in-process, no HTTP (ms)", store_only)

        checked = atomicity(http, url, small)
        scratch = create_conversation(http)
        transaction = asyncio.run(append_transaction(url, scratch))
        appended = append_timings(http, small, big, appends)
        print_append(transaction, checked, appended, appends)

        return {
            "fill": {"seconds": round(fill_seconds, 1), "bulk_items": BIG - THROUGH_API, "api_items": THROUGH_API, "bulk_equals_api": same_rows},
            "list_http": pages,
            "list_store": store_only,
            "plans": plans,
            "append": {"transaction": transaction, "atomicity": checked, "http_post_20_items": appended},
            "pass": all(case["pass"] for case in pages.values())
            and all(plan["ok"] for plan in plans.values())
            and transaction["one_transaction"]
            and checked["pass"]
            and same_rows,
        }


# --- Printing -------------------------------------------------------------------------------


def print_plans(plans: dict) -> None:
    print("\nQuery plans of list_items on the 100,000-item conversation:")
    for name, case in plans.items():
        print(f"  {name}:")
        for query in case["queries"]:
            print(f"    {query['statement']}")
            for line in query["plan"]:
                print(f"      | {line}")
        page = next(query for query in case["queries"] if query["page_query"])
        print(
            f"    page query uses the primary key index {case['primary_key_index']} (conversation_id, position): "
            f"{'yes' if page['uses_primary_key'] else 'NO'}; full scan: {'YES' if any(q['full_scan'] for q in case['queries']) else 'no'}; "
            f"sort: {'YES' if any(q['sort'] for q in case['queries']) else 'no'}; skips rows with OFFSET: {page['offset'] or 'no'}"
        )


def print_timings(title: str, cases: dict) -> None:
    print(f"\n{title}")
    print(f"  {'case':<18}{'items':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'mean':>9}")
    for name, case in cases.items():
        for label in (str(SMALL), str(BIG)):
            figures = case[label]
            print(f"  {name if label == str(SMALL) else '':<18}{label:>8}" + "".join(f"{figures[key]:>9.3f}" for key in ("p50", "p90", "p99", "mean")))
        ratio = case["ratio"]
        verdict = "PASS" if case["pass"] else "FAIL"
        print(f"  {'':<18}{'ratio':>8}" + "".join(f"{ratio[key]:>9.2f}" for key in ("p50", "p90", "p99", "mean")) + f"   100k/100 ratio ≤ {TARGET_RATIO} (p50): {verdict}")


def print_append(transaction: dict, checked: dict, appended: dict, appends: int) -> None:
    print("\nAdding 20 items is one transaction:")
    print("  ConversationStore.add_items runs append_items inside a single database.write() transaction;")
    print(
        f"  counted in-process for 20 items: {transaction['begin']} BEGIN, {transaction['commit']} COMMIT, "
        f"{transaction['rollback']} ROLLBACK, statements:"
    )
    for statement in transaction["statements"]:
        print(f"    {statement[:150]}{' ...' if len(statement) > 150 else ''}")
    print(
        f"  atomicity: a POST of 19 valid items + 1 unknown item_reference answered {checked['status']} "
        f"(param {checked['param']}); items {checked['items_before']} -> {checked['items_after']}, "
        f"next_position {checked['next_position_before']} -> {checked['next_position_after']}: {'PASS' if checked['pass'] else 'FAIL'}"
    )
    print(
        f"  POST 20 items over HTTP, p50 of {appends}: {appended[str(SMALL)]['p50']:.2f} ms to the {SMALL}-item conversation, "
        f"{appended[str(BIG)]['p50']:.2f} ms to the {BIG:,}-item one"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--requests", type=int, default=500, help="timed requests per case and size (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed rounds first (default 50)")
    parser.add_argument("--appends", type=int, default=100, help="timed 20-item POSTs per conversation (default 100)")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]

    results = {
        "benchmark": "conversation_pages",
        "target": f"p50 of a {PAGE}-item page: {BIG:,}-item / {SMALL}-item conversation <= {TARGET_RATIO}",
        "machine": machine(),
        "requests": args.requests,
        "warmup": args.warmup,
        "databases": {kind: run(kind, args.requests, args.warmup, args.appends) for kind in kinds},
    }
    results["pass"] = all(database["pass"] for database in results["databases"].values())
    path = write_results("conversation_pages", results)
    print(f"\n{'PASS' if results['pass'] else 'FAIL'}: results in {path}")
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
