"""An OpenTelemetry collector for the tests: a real OTLP/HTTP endpoint (POST /v1/traces,
protobuf) served from a thread, keeping every span it receives in memory.

    with OtlpCollector() as collector:
        ...  # point a server's [tracing] otlp_endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT) at collector.url
        spans = collector.trace_of("threadline.request_id", "req_...")   # that request's whole trace
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest, ExportTraceServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import ThreadServer

KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


@dataclass
class Span:
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start: int  # ns
    end: int
    attributes: dict
    error: bool
    service: str

    def is_child_of(self, other: Span) -> bool:
        return self.trace_id == other.trace_id and self.parent_id == other.span_id


def _value(value: AnyValue):
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


class OtlpCollector:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server = ThreadServer(Starlette(routes=[Route("/v1/traces", self._traces, methods=["POST"])]), "OTLP collector")

    async def _traces(self, request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        received = []
        for resource_spans in export.resource_spans:
            resource = {attribute.key: _value(attribute.value) for attribute in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            name=span.name,
                            kind=KINDS.get(span.kind, "UNSPECIFIED"),
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex() or None,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            attributes={attribute.key: _value(attribute.value) for attribute in span.attributes},
                            error=span.status.code == 2,
                            service=resource.get("service.name", ""),
                        )
                    )
        with self._lock:
            self.spans.extend(received)
            self.requests += 1
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def trace_of(self, attribute: str, value, *, until=lambda spans: True, timeout: float = 20) -> list[Span]:
        """Every span of the trace whose span has `attribute` = `value`, once `until(spans)` holds
        (spans arrive in batches, as they end)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            marked = [span for span in spans if span.attributes.get(attribute) == value]
            found = [span for span in spans if marked and span.trace_id == marked[0].trace_id]
            if found and until(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no complete trace with {attribute}={value!r}; received: {[(span.name, span.attributes) for span in found or spans]}")
            time.sleep(0.05)

    def __enter__(self) -> OtlpCollector:
        self.url = f"http://127.0.0.1:{self._server.start()}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.stop()
