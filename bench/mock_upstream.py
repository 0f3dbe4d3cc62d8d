"""A mock OpenAI-compatible Chat Completions server built for load.

A lean HTTP/1.1 server on asyncio.Protocol (uvloop when installed) in its own process, so
it does not share Threadline's CPU accounting. Keep-alive, Content-Length request bodies,
chunked server-sent events for streams; one timer per open stream, so thousands of
concurrent connections cost little.

How a request is answered comes from the server's defaults (the flags below), overridden
per request by the `model` name, written as comma-separated key=value pairs:

    ttft=0.05,tps=50,n=200      first token after 50 ms, then 50 tokens/s, 200 tokens

    ttft   seconds before the first token (non-streaming: before the whole answer is due)
    tps    tokens per second after the first one; 0 sends them all at once
    n      output tokens; the request's max_tokens / max_completion_tokens caps it

A streaming answer sends its headers at once, the first chunk (role and first token) after
ttft, one chunk per token, a finish chunk, a usage chunk and `data: [DONE]`. A non-streaming
answer arrives whole after ttft + (n-1)/tps.

Routes:
    POST /v1/chat/completions      (also /chat/completions)
    GET  /v1/models                one model, "mock", with max_model_len = --context
    GET  /stats                    {"requests", "streams_open", "waiting_first_token"}
    POST /release                  answers everything that is waiting or streaming now
    anything else                  404 in OpenAI's error envelope (so /tokenize is "not served")

    python bench/mock_upstream.py [--port 0] [--ttft 0] [--tps 0] [--tokens 16] [--context 8192]

On start it prints one line, `listening http://127.0.0.1:PORT`. `MockUpstream` starts and
stops one from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson

WORDS = [" alpha", " bravo", " charlie", " delta", " echo", " foxtrot", " golf", " hotel"]
CREATED = 1_700_000_000


def chunk_frame(payload: bytes) -> bytes:
    """One piece of a chunked HTTP body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse(data: dict | str) -> bytes:
    return b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> dict:
    chunk = {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "mock",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if usage is None else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _usage(prompt_tokens: int, n: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}


# Pre-encoded stream pieces: the first chunk of each word (with the role), a token chunk of
# each word, and the finish.
FIRST_CHUNKS = [chunk_frame(sse(_chunk({"role": "assistant", "content": word}))) for word in WORDS]
TOKEN_CHUNKS = [chunk_frame(sse(_chunk({"content": word}))) for word in WORDS]
FINISH_CHUNK = chunk_frame(sse(_chunk({}, "stop")))
DONE = chunk_frame(sse("[DONE]")) + b"0\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def json_response(status: int, body: bytes, keep_alive: bool = True) -> bytes:
    reason = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 411: b"Length Required"}.get(status, b"Error")
    connection = b"" if keep_alive else b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s" % (
        status, reason, len(body), connection, body
    )


def error_response(status: int, message: str) -> bytes:
    return json_response(status, orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}))


class Settings:
    __slots__ = ("ttft", "tps", "n", "context")

    def __init__(self, ttft: float, tps: float, n: int, context: int) -> None:
        self.ttft, self.tps, self.n, self.context = ttft, tps, n, context

    def for_model(self, model: str) -> tuple[float, float, int]:
        ttft, tps, n = self.ttft, self.tps, self.n
        if "=" in model:
            for pair in model.split(","):
                key, _, value = pair.partition("=")
                key = key.strip()
                if key == "ttft":
                    ttft = float(value)
                elif key == "tps":
                    tps = float(value)
                elif key == "n":
                    n = int(value)
        return ttft, tps, n


class Server:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.requests = 0
        self.streams: set[Stream] = set()
        self.waiting: set = set()  # streams and delayed answers before their first token
        self._completions: dict[tuple, bytes] = {}
        self.models = json_response(
            200,
            orjson.dumps({"object": "list", "data": [{"id": "mock", "object": "model", "owned_by": "bench", "max_model_len": settings.context}]}),
        )

    def completion(self, n: int, prompt_tokens: int) -> bytes:
        key = (n, prompt_tokens)
        answer = self._completions.get(key)
        if answer is None:
            text = "".join(WORDS[i % len(WORDS)] for i in range(n))
            body = {
                "id": "chatcmpl-mock",
                "object": "chat.completion",
                "created": CREATED,
                "model": "mock",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}],
                "usage": _usage(prompt_tokens, n),
            }
            answer = json_response(200, orjson.dumps(body))
            if len(self._completions) < 10_000:
                self._completions[key] = answer
        return answer

    def stats(self) -> bytes:
        return json_response(
            200,
            orjson.dumps({"requests": self.requests, "streams_open": len(self.streams), "waiting_first_token": len(self.waiting), "pid": os.getpid()}),
        )

    def release(self) -> None:
        for waiter in list(self.waiting) + list(self.streams):
            waiter.release()


class Delayed:
    """A non-streaming answer due later."""

    __slots__ = ("connection", "answer", "handle", "server")

    def __init__(self, connection: Connection, answer: bytes, delay: float) -> None:
        self.connection, self.answer, self.server = connection, answer, connection.server
        self.server.waiting.add(self)
        self.handle = asyncio.get_running_loop().call_later(delay, self.release)

    def release(self) -> None:
        self.handle.cancel()
        self.server.waiting.discard(self)
        self.connection.finish(self.answer)

    def cancel(self) -> None:
        self.handle.cancel()
        self.server.waiting.discard(self)


class Stream:
    """One streaming answer: a timer per token, scheduled on absolute times so it does not drift."""

    __slots__ = ("connection", "server", "n", "sent", "tps", "start", "handle", "loop", "prompt_tokens")

    def __init__(self, connection: Connection, ttft: float, tps: float, n: int, prompt_tokens: int) -> None:
        self.connection, self.server = connection, connection.server
        self.n, self.sent, self.tps, self.prompt_tokens = n, 0, tps, prompt_tokens
        self.loop = asyncio.get_running_loop()
        self.server.streams.add(self)
        self.server.waiting.add(self)
        connection.transport.write(STREAM_HEAD)
        self.start = self.loop.time() + ttft
        self.handle = None

    def begin(self) -> None:
        if self.start > self.loop.time():
            self.handle = self.loop.call_at(self.start, self.tick)
        else:
            self.tick()

    def tick(self) -> None:
        transport = self.connection.transport
        if self.sent == 0:
            self.server.waiting.discard(self)
            if self.n == 0:
                self.end()
                return
            transport.write(FIRST_CHUNKS[0])
            self.sent = 1
        if self.tps <= 0:
            pieces = [TOKEN_CHUNKS[i % len(WORDS)] for i in range(self.sent, self.n)]
            self.sent = self.n
            if pieces:
                transport.write(b"".join(pieces))
        else:
            now = self.loop.time()
            due = min(self.n, 1 + int((now - self.start) * self.tps))
            if due > self.sent:
                transport.write(b"".join(TOKEN_CHUNKS[i % len(WORDS)] for i in range(self.sent, due)))
                self.sent = due
        if self.sent >= self.n:
            self.end()
            return
        self.handle = self.loop.call_at(self.start + self.sent / self.tps, self.tick)

    def release(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.tps = 0
        self.tick()

    def end(self) -> None:
        self.server.streams.discard(self)
        self.server.waiting.discard(self)
        usage = chunk_frame(sse(_chunk({}, usage=_usage(self.prompt_tokens, self.n))))
        self.connection.finish(FINISH_CHUNK + usage + DONE)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        self.server.streams.discard(self)
        self.server.waiting.discard(self)


class Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "buffer", "busy", "keep_alive")

    def __init__(self, server: Server) -> None:
        self.server = server
        self.buffer = bytearray()
        self.busy = None  # the Stream or Delayed answer in progress; later requests wait
        self.keep_alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        if self.busy is not None:
            self.busy.cancel()
            self.busy = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.process()

    def finish(self, answer: bytes) -> None:
        """The answer in progress is complete: write its end and go on with the next request."""
        self.busy = None
        if self.transport.is_closing():
            return
        self.transport.write(answer)
        if not self.keep_alive:
            self.transport.close()
            return
        if self.buffer:
            self.process()

    def process(self) -> None:
        buffer = self.buffer
        while self.busy is None and buffer:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).split(b"\r\n")
            method, _, rest = head[0].partition(b" ")
            path = rest.partition(b" ")[0]
            length = 0
            keep_alive = not head[0].endswith(b"HTTP/1.0")
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection":
                    keep_alive = value.strip().lower() == b"keep-alive"
                elif name == b"transfer-encoding":
                    self.transport.write(error_response(411, "chunked request bodies are not supported"))
                    self.transport.close()
                    return
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            self.keep_alive = keep_alive
            self.handle(method, path, body)
            if not keep_alive and self.busy is None:
                self.transport.close()
                return

    def handle(self, method: bytes, path: bytes, body: bytes) -> None:
        server = self.server
        path = path.partition(b"?")[0]
        if method == b"POST" and path in (b"/v1/chat/completions", b"/chat/completions"):
            server.requests += 1
            try:
                request = orjson.loads(body)
                ttft, tps, n = server.settings.for_model(str(request.get("model", "")))
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                self.transport.write(error_response(400, "invalid JSON body"))
                return
            limit = request.get("max_tokens") or request.get("max_completion_tokens")
            if isinstance(limit, int) and limit < n:
                n = limit
            prompt_tokens = 1 + len(body) // 16  # a stand-in: grows with the prompt
            if request.get("stream"):
                stream = self.busy = Stream(self, ttft, tps, n, prompt_tokens)
                stream.begin()
                return
            delay = ttft + ((n - 1) / tps if tps > 0 and n > 1 else 0.0)
            answer = server.completion(n, prompt_tokens)
            if delay > 0:
                self.busy = Delayed(self, answer, delay)
            else:
                self.transport.write(answer)
        elif method == b"GET" and path in (b"/v1/models", b"/models"):
            self.transport.write(server.models)
        elif path == b"/stats":
            self.transport.write(server.stats())
        elif method == b"POST" and path == b"/release":
            server.release()
            self.transport.write(json_response(200, b'{"released":true}'))
        else:
            self.transport.write(error_response(404, f"no route for {method.decode()} {path.decode()}"))


async def serve(host: str, port: int, settings: Settings, ready=None) -> None:
    server = Server(settings)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: Connection(server), host, port, backlog=4096, reuse_address=True)
    bound = listener.sockets[0].getsockname()[1]
    print(f"listening http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tps", type=float, default=0.0, help="tokens per second after the first; 0 = all at once")
    parser.add_argument("--tokens", type=int, default=16, help="output tokens")
    parser.add_argument("--context", type=int, default=8192, help="max_model_len reported by /v1/models")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.host, args.port, Settings(args.ttft, args.tps, args.tokens, args.context)))


# --- Starting one from Python ---------------------------------------------------------------


class MockUpstream:
    """The mock in a child process: `with MockUpstream(tokens=16) as mock: mock.url` (ends in /v1)."""

    def __init__(self, *, ttft: float = 0.0, tps: float = 0.0, tokens: int = 16, context: int = 8192, port: int = 0) -> None:
        self.args = ["--ttft", str(ttft), "--tps", str(tps), "--tokens", str(tokens), "--context", str(context), "--port", str(port)]
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> MockUpstream:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *self.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the mock upstream did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        return self

    def stats(self) -> dict:
        import httpx

        return httpx.get(self.root + "/stats", timeout=5).json()

    def release(self) -> None:
        import httpx

        httpx.post(self.root + "/release", timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> MockUpstream:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


if __name__ == "__main__":
    main()
