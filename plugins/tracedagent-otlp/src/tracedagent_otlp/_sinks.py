"""The two ways a finished span, with the core's ids and times, leaves the export worker.

* :class:`ExporterSink`, when the plugin exports on its own: the spans of sampled traces are kept as
  plain tuples and handed to the span exporter as one batch. For the stock OTLP exporters (HTTP or
  gRPC, the plugin's own or one passed in) the batch's protobuf request is written by :mod:`._wire`
  straight from those tuples (the SDK's encoder builds a Python protobuf object for every span,
  attribute and value: three quarters of the worker's time); any other exporter gets
  :class:`~opentelemetry.sdk.trace.ReadableSpan` objects built directly (the SDK's ``Tracer`` costs
  twenty times that). The resource and sampler are those of a ``TracerProvider`` made from the
  ``OTEL_*`` variables.
* :class:`ProviderSink`, when the application set a tracer provider: the span is made through the SDK's
  public ``Tracer`` API, ``start_span(start_time=...)`` then ``end(end_time=...)``, so the provider's
  sampler, span limits, resource and every span processor (``on_start`` and ``on_end``) apply as to any
  span. The one thing the API cannot take is a span id; the tracer's ``IdGenerator`` (a public
  attribute of the SDK tracer) is wrapped in :class:`CoreIds`, which hands out the ids set for the span
  being built on this thread, and random ids to anyone else.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Tracer
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import Attributes

if TYPE_CHECKING:
    from ._wire import FastPath

__all__ = ["CoreIds", "ExporterSink", "ProviderSink", "SpanRecord", "SpanSink", "readable_span"]

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

#: A span event: name, attributes, timestamp in nanoseconds.
SpanEvent = tuple[str, Attributes, int]

#: A sampled span as :class:`ExporterSink` keeps it: name, kind, trace id, span id, parent's span id
#: (None: a root), attributes, events, links, status (None: unset), start and end in nanoseconds. Its
#: context and its parent's are local and sampled.
SpanRecord = tuple[
    str,
    SpanKind,
    int,
    int,
    int | None,
    dict[str, Any],
    Sequence[SpanEvent],
    Sequence[Link],
    Status | None,
    int,
    int,
]

#: The exporters whose batches :mod:`._wire` encodes (exactly these classes, not subclasses): (module,
#: class). Their module is imported by then, and with it the SDK's encoder and protobuf.
STOCK_EXPORTERS = (
    ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
)


class SpanSink:
    """Where the builder puts a finished span."""

    sampler: Sampler

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        """One span, in the core's ids (``parent_id`` None for a root; contexts are local) with the trace's
        sampling ``flags``; times in nanoseconds; ``status`` None when unset."""
        raise NotImplementedError


class _HashedResource(Resource):
    """A resource whose hash is worked out once. The OTLP encoders group spans by resource and hash the
    resource of every span, and ``Resource.__hash__`` dumps its attributes to JSON each time (a resource
    is immutable, so its hash never changes)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = hash(resource)

    def __hash__(self) -> int:
        return self._hash


class ExporterSink(SpanSink):
    """Keeps the spans of sampled traces until :meth:`take` hands them over as one batch; unsampled traces
    are dropped. For a stock OTLP exporter (``exporter``) the batch is encoded by :mod:`._wire`, which
    writes the request's protobuf bytes itself; for any other exporter it is a list of ``ReadableSpan``."""

    def __init__(
        self,
        resource: Resource,
        sampler: Sampler,
        scope: InstrumentationScope,
        exporter: SpanExporter | None = None,
        *,
        fast: bool = True,
    ) -> None:
        self.resource = _HashedResource(resource)
        self.sampler = sampler
        self.scope = scope
        self.spans: list[SpanRecord] = []
        self.fast: FastPath | None = None
        cls = type(exporter)
        if fast and exporter is not None and (cls.__module__, cls.__qualname__) in STOCK_EXPORTERS:
            from ._wire import FastPath, probe_records

            self.fast = FastPath.for_exporter(exporter, self.resource, scope, probe_records())

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        if flags.sampled:
            self.spans.append(
                (name, kind, trace_id, span_id, parent_id, attributes, events, links, status, start_ns, end_ns)
            )

    def take(self) -> Sequence[ReadableSpan]:
        """The spans made since the last call, for ``exporter.export``."""
        records, self.spans = self.spans, []
        if self.fast is not None:
            return self.fast.batch(records)
        resource, scope = self.resource, self.scope
        return [readable_span(record, resource, scope) for record in records]


def readable_span(record: SpanRecord, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The ``ReadableSpan`` of a record, as a span exporter takes it."""
    name, kind, trace_id, span_id, parent_id, attributes, events, links, status, start_ns, end_ns = record
    return ReadableSpan(
        name,
        SpanContext(trace_id, span_id, False, _SAMPLED),
        None if parent_id is None else SpanContext(trace_id, parent_id, False, _SAMPLED),
        resource,
        attributes,
        tuple(Event(event_name, event_attrs, timestamp) for event_name, event_attrs, timestamp in events),
        links,
        kind,
        None,
        status or _UNSET,
        start_ns,
        end_ns,
        scope,
    )


class CoreIds(IdGenerator):
    """An ``IdGenerator`` that returns the ids set with :meth:`use` for the next span made on this thread,
    and the wrapped generator's random ids everywhere else."""

    def __init__(self, fallback: IdGenerator) -> None:
        self.fallback = fallback
        self._local = threading.local()

    def use(self, trace_id: int, span_id: int) -> None:
        local = self._local
        local.trace_id = trace_id
        local.span_id = span_id

    def generate_span_id(self) -> int:
        local = self._local
        value: int = getattr(local, "span_id", 0)
        if value:
            local.span_id = 0
            return value
        return self.fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        local = self._local
        value: int = getattr(local, "trace_id", 0)
        if value:
            local.trace_id = 0
            return value
        return self.fallback.generate_trace_id()


class ProviderSink(SpanSink):
    """Makes each span through an SDK tracer, so the application's provider handles it like its own."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.sampler = tracer.sampler
        ids = tracer.id_generator
        self.ids = ids if isinstance(ids, CoreIds) else CoreIds(ids)
        tracer.id_generator = self.ids

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        parent_context = Context()  # not the worker's context: only the core's parent
        if parent_id is not None:
            parent = NonRecordingSpan(SpanContext(trace_id, parent_id, False, flags))
            parent_context = trace_api.set_span_in_context(parent, parent_context)
        self.ids.use(trace_id, span_id)
        span = self.tracer.start_span(name, parent_context, kind, attributes, links, start_ns)
        for event_name, event_attrs, timestamp in events:
            span.add_event(event_name, event_attrs, timestamp)
        if status is not None:
            span.set_status(status)
        span.end(end_ns)
