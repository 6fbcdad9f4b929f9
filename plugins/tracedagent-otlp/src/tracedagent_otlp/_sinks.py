"""The two ways a finished span, with the core's ids and times, leaves the export worker.

* :class:`ExporterSink`, when the plugin exports on its own: the span is a
  :class:`~opentelemetry.sdk.trace.ReadableSpan` built directly (a few microseconds; the SDK's
  ``Tracer`` costs twenty times that) and collected for the worker to hand to the span exporter as one
  batch. The resource and sampler are those of a ``TracerProvider`` made from the ``OTEL_*`` variables.
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

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Tracer
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

__all__ = ["CoreIds", "ExporterSink", "ProviderSink", "SpanSink"]

_UNSET = Status(StatusCode.UNSET)

#: A span event: name, attributes, timestamp in nanoseconds.
SpanEvent = tuple[str, Attributes, int]


class SpanSink:
    """Where the builder puts a finished span."""

    sampler: Sampler

    def emit(
        self,
        name: str,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, object],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
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
    """Builds ``ReadableSpan`` objects and keeps them until :meth:`take`; unsampled traces are dropped."""

    def __init__(self, resource: Resource, sampler: Sampler, scope: InstrumentationScope) -> None:
        self.resource = _HashedResource(resource)
        self.sampler = sampler
        self.scope = scope
        self.spans: list[ReadableSpan] = []

    def emit(
        self,
        name: str,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, object],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        if not context.trace_flags.sampled:
            return
        span = ReadableSpan(
            name,
            context,
            parent,
            self.resource,
            attributes,  # type: ignore[arg-type]  # values are str, bool, int, float or tuples of str
            tuple(Event(event_name, event_attrs, timestamp) for event_name, event_attrs, timestamp in events),
            links,
            kind,
            None,
            status or _UNSET,
            start_ns,
            end_ns,
            self.scope,
        )
        self.spans.append(span)

    def take(self) -> list[ReadableSpan]:
        spans, self.spans = self.spans, []
        return spans


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
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, object],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
    ) -> None:
        parent_context = Context()  # not the worker's context: only the core's parent
        if parent is not None:
            parent_context = trace_api.set_span_in_context(NonRecordingSpan(parent), parent_context)
        self.ids.use(context.trace_id, context.span_id)
        span = self.tracer.start_span(name, parent_context, kind, attributes, links, start_ns)  # type: ignore[arg-type]
        for event_name, event_attrs, timestamp in events:
            span.add_event(event_name, event_attrs, timestamp)
        if status is not None:
            span.set_status(status)
        span.end(end_ns)
