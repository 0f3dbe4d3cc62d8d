"""An async load generator for /v1/responses and /v1/chat/completions, in its own process.

A raw HTTP/1.1 client on asyncio.Protocol (uvloop when installed): each of `--concurrency`
workers keeps one keep-alive connection and sends requests back to back. Several base URLs
(`--url A,B,...`) spread the workers over them round robin, which is how several server
processes are loaded without a balancer. Requests started during the warm-up are not
counted; after it, the run lasts `--duration` seconds or `--requests` requests.

Reported (as JSON with --json): latency p50/p90/p99 (ms, request sent to last byte), for
streams also time to first event (request sent to the first complete server-sent event),
time to first token (to the first text delta), stream duration and tokens received per
second; throughput (completed requests/s in the measured window); status counts; and the
generator's own CPU time per request, which shows it is not the bottleneck.

    python bench/load.py --url http://127.0.0.1:8000 --api responses --model M \\
        [--concurrency 16] [--duration 10 | --requests N] [--warmup 2] [--stream] [--input TEXT] \\
        [--body JSON] [--json]

`--open-streams N --hold S` instead opens N streaming requests at once, holds them S
seconds, and reports how many got their response headers (for memory per open stream).

As a module: `await run(LoadConfig(...))` returns the same dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import resource
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import summarize  # noqa: E402

# What one text delta looks like in each API's stream (compact JSON, and with a space).
TOKEN_MARKERS = {
    "responses": (b'"type":"response.output_text.delta"', b'"type": "response.output_text.delta"'),
    "chat": (b'"content":"', b'"content": "'),
}
PATHS = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


@dataclass
class LoadConfig:
    urls: list[str]
    api: str = "responses"  # responses | chat
    model: str = "mock"
    concurrency: int = 16
    duration: float | None = 10.0
    requests: int | None = None
    warmup: float = 2.0
    stream: bool = False
    input: str = "Say hello."
    body: dict | None = None  # the whole request body, instead of one built from the fields above
    extra: dict = field(default_factory=dict)  # fields merged into the built body (store, previous_response_id, ...)
    api_key: str | None = None
    timeout: float = 120.0
    keep_samples: bool = False  # include every latency sample in the result
    stagger: float = 0.0  # each worker starts after a random delay up to this many seconds


def request_body(config: LoadConfig) -> dict:
    if config.body is not None:
        return config.body
    if config.api == "chat":
        body = {"model": config.model, "messages": [{"role": "user", "content": config.input}]}
    else:
        body = {"model": config.model, "input": config.input}
    if config.stream:
        body["stream"] = True
    body.update(config.extra)
    return body


def raw_request(url: str, path: str, body: bytes | None, api_key: str | None, method: str = "POST") -> bytes:
    """One HTTP/1.1 request; `path` is joined to the base URL's path (a /v1 on both counts once)."""
    parts = urlsplit(url)
    base_path = parts.path.rstrip("/")
    if base_path.endswith("/v1") and path.startswith("/v1/"):
        path = path[3:]
    head = [f"{method} {base_path}{path} HTTP/1.1", f"Host: {parts.netloc}", "Accept: */*"]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    body = body or b""
    if api_key:
        head.append(f"Authorization: Bearer {api_key}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Result:
    __slots__ = ("status", "sent", "headers_at", "first_event", "first_token", "last_token", "end", "tokens", "events", "error", "size")

    def __init__(self, sent: float) -> None:
        self.sent = sent
        self.status = 0
        self.headers_at = self.first_event = self.first_token = self.last_token = self.end = None
        self.tokens = self.events = self.size = 0
        self.error: str | None = None


class HTTPConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, markers: tuple[bytes, ...], counter: list[int] | None = None) -> None:
        self.markers = markers
        self.counter = counter if counter is not None else [0]  # text deltas received, shared by a run
        self.transport = None
        self.buffer = bytearray()
        self.result: Result | None = None
        self.done: asyncio.Future | None = None
        self.closed = False
        self.clock = time.perf_counter

    # -- connection --------------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            if self.result.status and self._length is None and not self._chunked:  # body until close
                self._finish()
            else:
                self.result.error = f"connection lost: {exc}"
                self.done.set_result(self.result)

    # -- one request -------------------------------------------------------------

    def send(self, raw: bytes) -> asyncio.Future:
        self.result = Result(self.clock())
        self.done = asyncio.get_running_loop().create_future()
        self._head = True
        self._length: int | None = None
        self._chunked = False
        self._stream = False
        self._body = bytearray()  # de-chunked body (streams: the unparsed tail of events)
        self._chunk_left = 0
        self._keep_alive = True
        self.transport.write(raw)
        return self.done

    def data_received(self, data: bytes) -> None:
        if self.done is None or self.done.done():
            return
        self.buffer += data
        self.result.size += len(data)
        if self._head:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buffer[:end]).split(b"\r\n")
            del self.buffer[: end + 4]
            result = self.result
            result.status = int(lines[0].split(b" ", 2)[1])
            result.headers_at = self.clock()
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip()
                if name == b"content-length":
                    self._length = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self._chunked = True
                elif name == b"content-type" and value.startswith(b"text/event-stream"):
                    self._stream = True
                elif name == b"connection" and value.lower() == b"close":
                    self._keep_alive = False
            self._head = False
        if self._chunked:
            self._dechunk()
        elif self._length is not None:
            take = min(len(self.buffer), self._length - len(self._body))
            self._body += self.buffer[:take]
            del self.buffer[:take]
            if self._stream:
                self._events()
            if len(self._body) >= self._length or (self._stream and self._length == 0):
                self._finish()
        else:  # read until the connection closes
            self._body += self.buffer
            self.buffer.clear()
            if self._stream:
                self._events()

    def _dechunk(self) -> None:
        buffer = self.buffer
        while buffer:
            if self._chunk_left == 0:
                line_end = buffer.find(b"\r\n")
                if line_end < 0:
                    return
                size = int(bytes(buffer[:line_end]).split(b";")[0], 16)
                if size == 0:
                    if len(buffer) < line_end + 4:
                        return
                    del buffer[: line_end + 4]
                    if self._stream:
                        self._events()
                    self._finish()
                    return
                if len(buffer) < line_end + 2:
                    return
                del buffer[: line_end + 2]
                self._chunk_left = size + 2  # the data and its CRLF
            take = min(len(buffer), self._chunk_left)
            data_part = min(take, max(0, self._chunk_left - 2))
            self._body += buffer[:data_part]
            del buffer[:take]
            self._chunk_left -= take
        if self._stream:
            self._events()

    def _events(self) -> None:
        body = self._body
        now = None
        while True:
            end = body.find(b"\n\n")
            if end < 0:
                return
            event = bytes(body[: end + 2])
            del body[: end + 2]
            if not event.strip():
                continue
            now = now or self.clock()
            result = self.result
            result.events += 1
            if result.first_event is None:
                result.first_event = now
            if any(marker in event for marker in self.markers):
                result.tokens += 1
                self.counter[0] += 1
                if result.first_token is None:
                    result.first_token = now
                result.last_token = now

    def _finish(self) -> None:
        self.result.end = self.clock()
        if not self._keep_alive:
            self.transport.close()
            self.closed = True
        if not self.done.done():
            self.done.set_result(self.result)


async def connect(url: str, markers: tuple[bytes, ...] = (), counter: list[int] | None = None) -> HTTPConnection:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: HTTPConnection(markers, counter), parts.hostname, parts.port or 80)
    return protocol


async def fetch(connection: HTTPConnection, raw: bytes, timeout: float = 120.0) -> tuple[Result, bytes]:
    """Send one request on a connection; the result and the body (streams: the unread tail)."""
    result = await asyncio.wait_for(connection.send(raw), timeout)
    return result, bytes(connection._body)


# --- A load run ----------------------------------------------------------------------------


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else (end - start) * 1000


async def run(config: LoadConfig) -> dict:
    markers = TOKEN_MARKERS[config.api]
    body = orjson.dumps(request_body(config))
    raws = [raw_request(url, PATHS[config.api], body, config.api_key) for url in config.urls]
    loop = asyncio.get_running_loop()
    clock = time.perf_counter
    started = clock()
    measure_from = started + config.warmup
    deadline = measure_from + config.duration if config.duration else None
    budget = {"left": config.requests}
    results: list[Result] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    window = {"first": None, "last": None}

    def more() -> bool:
        now = clock()
        if deadline is not None:
            return now < deadline
        if now < measure_from:
            return True
        if budget["left"] <= 0:
            return False
        budget["left"] -= 1
        return True

    counter = [0]
    in_window: dict[str, int] = {}

    async def count_tokens_in_window() -> None:
        await asyncio.sleep(max(0.0, measure_from - clock()))
        in_window["start"] = counter[0]
        if deadline is not None:
            await asyncio.sleep(max(0.0, deadline - clock()))
            in_window["end"] = counter[0]

    async def worker(index: int) -> None:
        url_index = index % len(config.urls)
        connection: HTTPConnection | None = None
        if config.stagger:
            await asyncio.sleep(random.uniform(0, config.stagger))
        while more():
            if connection is None or connection.closed:
                try:
                    connection = await connect(config.urls[url_index], markers, counter)
                except OSError as error:
                    errors[f"connect: {error}"] += 1
                    await asyncio.sleep(0.05)
                    continue
            future = connection.send(raws[url_index])
            try:
                result = await asyncio.wait_for(future, config.timeout)
            except asyncio.TimeoutError:
                result = connection.result
                result.error = "timeout"
                connection.transport.close()
                connection = None
            if result.sent >= measure_from:
                results.append(result)
                if result.error:
                    errors[result.error] += 1
                else:
                    statuses[result.status] += 1
                    if window["first"] is None or result.sent < window["first"]:
                        window["first"] = result.sent
                    window["last"] = max(window["last"] or 0, result.end)
            if result.error and connection is not None:
                connection.transport.close()
                connection = None
        if connection is not None and connection.transport is not None:
            connection.transport.close()

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    counting = asyncio.ensure_future(count_tokens_in_window())
    await asyncio.gather(*(worker(i) for i in range(config.concurrency)))
    await counting
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    del loop

    good = [r for r in results if not r.error and 200 <= r.status < 300]
    if deadline is not None:
        # Requests finished inside the window, over the window.
        finished = [r for r in good if r.end <= deadline]
        elapsed = config.duration
    else:
        finished = good
        elapsed = (window["last"] - window["first"]) if good else 0.0
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    out: dict = {
        "urls": config.urls,
        "api": config.api,
        "model": config.model,
        "stream": config.stream,
        "concurrency": config.concurrency,
        "warmup_s": config.warmup,
        "measured_s": round(elapsed, 3),
        "requests": len(results),
        "ok": len(good),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
        "throughput_rps": round(len(finished) / elapsed, 2) if elapsed else 0.0,
        "generator_cpu_s": round(cpu, 3),
        "generator_cpu_us_per_request": round(cpu / max(1, len(results)) * 1e6, 1),
    }
    if good:
        latencies = [(r.end - r.sent) * 1000 for r in good]
        out["latency_ms"] = summarize(latencies)
        if config.keep_samples:
            out["latency_samples_ms"] = [round(x, 3) for x in latencies]
        if config.stream:
            first_events = [_ms(r.sent, r.first_event) for r in good if r.first_event is not None]
            first_tokens = [_ms(r.sent, r.first_token) for r in good if r.first_token is not None]
            if first_events:
                out["first_event_ms"] = summarize(first_events)
                if config.keep_samples:
                    out["first_event_samples_ms"] = [round(x, 3) for x in first_events]
            if first_tokens:
                out["first_token_ms"] = summarize(first_tokens)
            rates = [
                (r.tokens - 1) / (r.last_token - r.first_token)
                for r in good
                if r.tokens > 1 and r.last_token > r.first_token
            ]
            if rates:
                out["stream_tokens_per_s"] = summarize(rates)
            out["tokens_per_stream"] = summarize([r.tokens for r in good])
            out["events_per_stream"] = summarize([r.events for r in good])
            # Text deltas that arrived inside the measured window, over its length.
            if "end" in in_window:
                out["tokens_received_per_s"] = round((in_window["end"] - in_window["start"]) / config.duration, 1)
            out["stream_duration_ms"] = out["latency_ms"]
    return out


async def hold_streams(config: LoadConfig, count: int, hold: float) -> dict:
    """Open `count` streaming requests at once and keep them open `hold` seconds."""
    markers = TOKEN_MARKERS[config.api]
    config.stream = True
    body = orjson.dumps(request_body(config))
    raws = [raw_request(url, PATHS[config.api], body, config.api_key) for url in config.urls]
    connections: list[HTTPConnection] = []
    futures = []
    for index in range(count):
        url_index = index % len(config.urls)
        for attempt in range(20):
            try:
                connection = await connect(config.urls[url_index], markers)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError("could not connect")
        connections.append(connection)
        futures.append(connection.send(raws[url_index]))
    print(json.dumps({"opened": len(connections)}), flush=True)
    await asyncio.sleep(hold)
    with_headers = sum(1 for c in connections if c.result.headers_at is not None)
    finished = sum(1 for f in futures if f.done())
    for connection in connections:
        connection.transport.close()
    return {"opened": len(connections), "with_headers": with_headers, "finished": finished}


# --- Shared by the benchmark modules -------------------------------------------------------


class Client:
    """One keep-alive connection of the raw client above, for sequential timed requests."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.connection = None

    async def request(self, method: str, path: str, body: dict | None = None) -> tuple[float, dict]:
        if self.connection is None or self.connection.closed:
            self.connection = await connect(self.base)
        raw = raw_request(self.base, path, orjson.dumps(body) if body is not None else None, None, method=method)
        result, data = await fetch(self.connection, raw)
        if result.error or result.status >= 300:
            raise RuntimeError(f"{method} {path}: {result.status} {result.error} {data[:300]!r}")
        return (result.end - result.sent) * 1000, orjson.loads(data)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="base URL(s), comma-separated; with or without /v1")
    parser.add_argument("--api", choices=["responses", "chat"], default="responses")
    parser.add_argument("--model", default="mock")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=None, help="seconds to measure (default 10 unless --requests)")
    parser.add_argument("--requests", type=int, default=None, help="requests to measure, instead of a duration")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up, not counted")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--input", default="Say hello.")
    parser.add_argument("--body", default=None, help="the whole JSON request body")
    parser.add_argument("--extra", default=None, help="JSON object merged into the built body, e.g. '{\"store\": false}'")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--samples", action="store_true", help="include every latency sample")
    parser.add_argument("--stagger", type=float, default=0.0, help="each worker starts after a random delay up to S seconds")
    parser.add_argument("--open-streams", type=int, default=None, help="open N streams and hold them (see --hold)")
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--output", default=None, help="write the result as JSON to this file")
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (None if args.requests else 10.0)
    config = LoadConfig(
        urls=args.url.split(","),
        api=args.api,
        model=args.model,
        concurrency=args.concurrency,
        duration=duration,
        requests=args.requests,
        warmup=args.warmup,
        stream=args.stream,
        input=args.input,
        body=json.loads(args.body) if args.body else None,
        extra=json.loads(args.extra) if args.extra else {},
        api_key=args.api_key,
        timeout=args.timeout,
        keep_samples=args.samples,
        stagger=args.stagger,
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.open_streams:
        result = asyncio.run(hold_streams(config, args.open_streams, args.hold))
    else:
        result = asyncio.run(run(config))
    if args.output:
        Path(args.output).write_text(json.dumps(result))
    if args.json:
        print(json.dumps(result), flush=True)
        return
    latency = result.get("latency_ms", {})
    print(f"{result['ok']}/{result['requests']} ok, {result['throughput_rps']} req/s, statuses {result['statuses']}, errors {result['errors']}")
    if latency:
        print(f"latency ms: p50 {latency['p50']:.2f}  p90 {latency['p90']:.2f}  p99 {latency['p99']:.2f}")
    if "first_event_ms" in result:
        fe = result["first_event_ms"]
        print(f"first event ms: p50 {fe['p50']:.2f}  p90 {fe['p90']:.2f}  p99 {fe['p99']:.2f}")
    if "tokens_received_per_s" in result:
        print(f"tokens received/s: {result['tokens_received_per_s']}")
    print(f"generator CPU: {result['generator_cpu_us_per_request']} us/request")


if __name__ == "__main__":
    main()
