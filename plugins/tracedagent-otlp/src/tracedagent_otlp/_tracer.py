"""``OtlpTracer``: OpenTelemetry spans and GenAI metrics of every run, built off the hot path.

The hooks do two cheap things: put the event on the tracer's :class:`tracedagent.ExportPipeline` (a
bounded queue that takes or sheds whole traces, decided when a run starts or resumes, from its depth and
the sender's backlog) and, for spans that start or end, attach or detach the OpenTelemetry context that
makes the core's span current (see :mod:`._context`). The pipeline's worker thread turns events into
finished spans (:mod:`._spans`) and records the metrics. With its own exporter, the worker hands each
batch of spans to a :class:`~._sender.SpanSender`, whose thread exports them (retries and a slow
collector never hold span building); with the application's tracer provider, the spans go through that
provider's processors like any other span.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from tracedagent import (
    ConfigurationError,
    Event,
    ExportPipeline,
    ExportStats,
    ModelCallStarted,
    QueueingTracer,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    hookimpl,
    use_otel_spans,
)

from . import _names as N
from . import _providers, _settings
from ._metrics import GenAIMetrics
from ._sender import SpanSender
from ._sinks import ExporterSink, ProviderSink, SpanSink
from ._spans import SpanBuilder

__all__ = ["OtlpTracer", "SpanExportFailed"]

logger = logging.getLogger("tracedagent.otlp")


class SpanExportFailed(Exception):
    """The span exporter reported a failure (the collector is down, slow or refused the batch). Kept for
    code that catches it: the sender counts failures (``OtlpTracer.spans_failed``) instead of raising."""


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Pipeline(ExportPipeline[Event]):
    """The tracer's pipeline. Flushing it also waits for the sender, within the same timeout; shutting it
    down (``tracedagent.shutdown``) also stops the sender and the exporters, so a collector that does not
    answer cannot keep a retry going after the deadline. Its stats count the events whose spans the sender
    failed to export as failed."""

    def __init__(
        self,
        export: Callable[[Sequence[Event]], None],
        on_stop: Callable[[float | None], None],
        sender: SpanSender | None,
        **options: Any,
    ) -> None:
        super().__init__("otlp", export, backlog=None if sender is None else lambda: sender.backlog, **options)
        self._on_stop = on_stop
        self.sender = sender

    def flush(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        sender = self.sender
        if sender is not None and not threading.main_thread().is_alive():
            # The drain at exit (the main thread is done): what is left gets one try, without backoff.
            sender.last_attempt()
        ok = super().flush(timeout)
        return (sender is None or sender.flush(_left(deadline))) and ok

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = super().shutdown(timeout)
        self._on_stop(_left(deadline))
        return ok

    def abandon(self) -> None:
        """At exit, past the exit timeout: give up the sender's batches and end the exporter's retries,
        without waiting (the sender's thread is a daemon; see :meth:`SpanSender.abandon`)."""
        sender = self.sender
        if sender is not None:
            sender.abandon()

    def stats(self) -> ExportStats:
        stats = super().stats()
        sender = self.sender
        if sender is None or not sender.events_failed:
            return stats
        failed = min(sender.events_failed, stats.exported)
        return ExportStats(
            stats.sink,
            stats.queue_depth,
            stats.dropped,
            stats.exported - failed,
            stats.failed + failed,
            stats.traces_admitted,
            stats.traces_shed,
            stats.traces_broken,
        )


class OtlpTracer(QueueingTracer):
    """A tracer that exports every run as OpenTelemetry spans (GenAI conventions) and GenAI metrics.

    Where spans go, first match wins: ``span_exporter`` (exported in batches by the tracer's worker, with
    a resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``); ``tracer_provider`` (an SDK
    ``TracerProvider``: its sampler and processors apply); the application's global SDK provider, if one
    is set; otherwise an OTLP exporter built from the ``OTEL_EXPORTER_OTLP_*`` variables.

    Metrics go to ``meter_provider``, else the application's global one, else one built from ``OTEL_*``
    when ``OTEL_METRICS_EXPORTER=otlp``; ``metrics=False`` turns them off.

    ``capture_content`` puts messages, tool arguments and results on the spans (default: from
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``), each text cut to ``max_content`` characters
    (default: ``TRACEDAGENT_OTLP_MAX_CONTENT`` or 8192). (Inside model and tool calls the core makes the
    stage's span OpenTelemetry's current span, with or without this tracer.) ``max_queue`` is the admission bound: a run
    that starts while the events waiting and the spans the sender holds, plus the room kept for the runs
    already admitted, would pass it is shed whole (counted); admitted runs' events are held up to twice
    that. ``max_batches`` bounds the batches of spans waiting for the exporter's thread, ``max_pending``
    the spans started and not yet ended.
    With ``OTEL_SDK_DISABLED=true`` the tracer does nothing.
    """

    name = "otlp-tracer"

    def __init__(
        self,
        *,
        span_exporter: SpanExporter | None = None,
        tracer_provider: TracerProvider | None = None,
        meter_provider: ApiMeterProvider | None = None,
        metrics: bool = True,
        capture_content: bool | None = None,
        max_content: int | None = None,
        max_queue: int = 65_536,
        max_batch: int = 512,
        interval_s: float = 1.0,
        max_pending: int = 10_000,
        max_batches: int = 4,
    ) -> None:
        environ = os.environ
        if span_exporter is not None and tracer_provider is not None:
            raise ConfigurationError("OtlpTracer takes span_exporter or tracer_provider, not both")
        self.enabled = not _settings.sdk_disabled(environ)
        self.capture_content = _settings.capture_from_env(environ) if capture_content is None else bool(capture_content)
        self.max_content = _settings.max_content_from_env(environ) if max_content is None else max_content
        if isinstance(self.max_content, bool) or not isinstance(self.max_content, int) or self.max_content < 1:
            raise ConfigurationError(f"max_content must be a positive number of characters, not {max_content!r}")
        if not (isinstance(max_pending, int) and max_pending > 0):
            raise ConfigurationError(f"max_pending must be a positive integer, not {max_pending!r}")
        if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
            raise ConfigurationError(f"max_batches must be a positive integer, not {max_batches!r}")
        self.max_batches = max_batches
        self._sender: SpanSender | None = None
        self._exporter: SpanExporter | None = None
        self._collector: ExporterSink | None = None
        self._stopped = False
        self.tracer_provider: TracerProvider | None = None
        self._own_meter_provider: MeterProvider | None = None
        self.metrics: GenAIMetrics | None = None
        self.destination = "nowhere (OTEL_SDK_DISABLED is true)"
        self.metrics_destination = "off"
        # Read by the sender for its rests after a failed export (tests move it).
        self._clock: Callable[[], float] = time.monotonic
        self._builder: SpanBuilder | None = None
        self._provider_sink: ProviderSink | None = None
        if self.enabled:
            self._setup(environ, span_exporter, tracer_provider, meter_provider, metrics, max_pending)
        sender = self._made_sender()
        self._pipeline = _Pipeline(
            self._export, self._stop, sender, max_queue=max_queue, max_batch=max_batch, interval_s=interval_s
        )
        if sender is not None:
            sender.start_thread = self._pipeline.start_helper
        self._put: Callable[[Event], bool] = self._pipeline.put_event if self.enabled else _drop
        provider_sink = self._provider_sink_made()  # set by _setup, through the application's provider
        if provider_sink is not None:
            self._start_spans_as_stages_start(provider_sink)

    def _made_sender(self) -> SpanSender | None:
        return self._sender

    def _provider_sink_made(self) -> ProviderSink | None:
        return self._provider_sink

    def _setup(
        self,
        environ: Any,
        span_exporter: SpanExporter | None,
        tracer_provider: TracerProvider | None,
        meter_provider: ApiMeterProvider | None,
        metrics: bool,
        max_pending: int,
    ) -> None:
        if span_exporter is None and tracer_provider is None:
            tracer_provider = _providers.application_tracer_provider()
            if tracer_provider is None:
                span_exporter = _providers.span_exporter_from_env(environ)
                endpoint = _settings.endpoint_from_env(environ) or "http://localhost:4318/v1/traces"
                self.destination = f"OTLP {_settings.protocol_from_env(environ)} to {endpoint}"
                foreign = _providers.foreign_tracer_provider()
                if foreign is not None:
                    self.destination += f" (the application's tracer provider is a {foreign}, not the SDK's)"
            else:
                self.destination = "the application's tracer provider"
        elif span_exporter is not None:
            self.destination = f"span exporter {type(span_exporter).__name__}"
        else:
            self.destination = f"tracer provider {tracer_provider!r}"
        sink: SpanSink
        if span_exporter is not None:
            self._exporter = span_exporter
            self._sender = SpanSender(
                span_exporter,
                max_batches=self.max_batches,
                clock=lambda: self._clock(),
                destination=self.destination,
            )
            # Made for its resource and sampler, read from OTEL_* as the SDK does; spans skip its tracer.
            tracer_provider = TracerProvider(shutdown_on_exit=False)
            scope = InstrumentationScope(N.SCOPE_NAME, N.SCOPE_VERSION, N.SCHEMA_URL)
            sink = self._collector = ExporterSink(
                tracer_provider.resource,
                tracer_provider.sampler,
                scope,
                exporter=span_exporter,
                fast=_settings.fast_encoder_from_env(environ),
            )
        else:
            assert tracer_provider is not None
            tracer = tracer_provider.get_tracer(N.SCOPE_NAME, N.SCOPE_VERSION, schema_url=N.SCHEMA_URL)
            if not isinstance(tracer, Tracer):  # the SDK hands out no-op tracers when it is disabled
                raise ConfigurationError(
                    f"tracer provider {tracer_provider!r} gave a {type(tracer).__name__}, not an SDK Tracer"
                )
            sink = self._provider_sink = ProviderSink(tracer)
            _flush_before_the_provider_stops(self)
        self.tracer_provider = tracer_provider
        if metrics:
            if meter_provider is None:
                meter_provider = _providers.application_meter_provider()
                if meter_provider is None:
                    own = _providers.meter_provider_from_env(environ, tracer_provider.resource)
                    if own is not None:
                        self._own_meter_provider = meter_provider = own
                        self.metrics_destination = f"OTLP {_settings.protocol_from_env(environ, 'metrics')}"
                else:
                    self.metrics_destination = "the application's meter provider"
            else:
                self.metrics_destination = f"meter provider {meter_provider!r}"
            if meter_provider is not None:
                self.metrics = GenAIMetrics(meter_provider, N.SCOPE_VERSION)
        self._builder = SpanBuilder(
            sink,
            capture_content=self.capture_content,
            max_content=self.max_content,
            max_pending=max_pending,
            metrics=self.metrics,
        )

    def __repr__(self) -> str:
        content = "with content" if self.capture_content else "no content"
        return f"<OtlpTracer spans to {self.destination}, metrics {self.metrics_destination}, {content}>"

    def tracedagent_status(self) -> str:
        """For ``tracedagent plugins``: what was exported and what failed, counted (the failures are not
        printed on stderr)."""
        stats = self.stats()
        return f"{stats.exported} events exported, {self.spans_failed} spans failed to export"

    def describe(self) -> str:
        """One line for ``tracedagent plugins``: where spans and metrics go, and whether content does."""
        content = (
            f"message content included (max {self.max_content} chars)" if self.capture_content else "no message content"
        )
        return f"spans to {self.destination}; GenAI metrics {self.metrics_destination}; {content}"

    # ------------------------------------------------------------------ hooks: O(1), no I/O

    # The core makes each stage's span OpenTelemetry's current span (tracedagent._otel), so with its own
    # exporter every hook here is the queueing base's: the event goes on the queue, and the dispatcher
    # calls put directly. Through an application's provider the start hooks also start the SDK span.

    def _start_spans_as_stages_start(self, sink: ProviderSink) -> None:
        """Through a provider whose span ids the plugin cannot choose, start each stage's SDK span on the
        run's thread as the stage starts, and have the core make it the current span of the stage
        (``tracedagent.use_otel_spans``): so a span opened inside a tool, or a run inside a tool, is the
        child of the exported span, and a run with no parent takes the trace id of its exported root.
        These hooks are instance attributes: the plugin's own exporter keeps the queueing base's."""
        put, start, shed = self._put, sink.start, sink.shed
        attach, detach, get_current = context_api.attach, context_api.detach, context_api.get_current
        set_span_in_context = trace_api.set_span_in_context

        def on_run_start(event: RunStarted) -> None:
            if put(event):
                name = N.agent_span_name(event.agent)
                start(name, SpanKind.INTERNAL, event.trace_id, event.span_id, event.parent_span_id, event.timestamp_ns)
            elif event.parent_span_id is None:  # shed: the root span started for it is let go, never exported
                shed(event.trace_id)

        def on_resume(event: RunResumed) -> None:
            if put(event):
                name = N.agent_span_name(event.agent)
                start(
                    name,
                    SpanKind.INTERNAL,
                    event.trace_id,
                    event.span_id,
                    event.parent_span_id,
                    event.timestamp_ns,
                    follows=event.previous_span_id,
                )

        def on_model_call_start(event: ModelCallStarted) -> None:
            if put(event):
                name = N.chat_span_name(event.model)
                start(name, SpanKind.CLIENT, event.trace_id, event.span_id, event.parent_span_id, event.timestamp_ns)

        attached: dict[str, tuple[Any, Any]] = {}

        def on_tool_call_start(event: ToolCallStarted) -> None:
            # A tool's stage is entered before its start event: the span is made current here, over the
            # core's, and the core's leaving the stage restores the context from before it (so the end
            # hook detaches only a context that is still current: a start hook called outside a stage).
            if put(event):
                name = N.tool_span_name(event.tool)
                span = start(
                    name,
                    SpanKind.INTERNAL,
                    event.trace_id,
                    event.span_id,
                    event.parent_span_id,
                    event.timestamp_ns,
                    enter=False,
                )
                ctx = set_span_in_context(span)
                attached[event.span_id] = (ctx, attach(ctx))
                if len(attached) > sink.max_spans:
                    attached.pop(next(iter(attached)))

        def on_tool_call_end(event: ToolCallEnded) -> None:
            put(event)
            entry = attached.pop(event.span_id, None)
            if entry is not None and get_current() is entry[0]:
                detach(entry[1])

        for hook in (on_run_start, on_resume, on_model_call_start, on_tool_call_start, on_tool_call_end):
            setattr(self, hook.__name__, hookimpl(hook))
        use_otel_spans(sink)

    # ---------------------------------------------------------------- the pipeline's controls

    def stats(self) -> ExportStats:
        """Events waiting, dropped (of traces shed, or after shutdown), handled, and in batches whose export
        failed; traces admitted, shed and broken."""
        return self._pipeline.stats()

    @property
    def dropped(self) -> int:
        """Events dropped: of traces shed because the collector could not keep up (or after shutdown)."""
        return self._pipeline.dropped

    @property
    def spans_exported(self) -> int:
        """Spans the exporter took."""
        return self._sender.spans_exported if self._sender is not None else 0

    @property
    def spans_failed(self) -> int:
        """Spans whose export failed (or that came while the exporter rested after a failure)."""
        return self._sender.spans_failed if self._sender is not None else 0

    @property
    def sender_backlog(self) -> int:
        """Spans waiting for the exporter's thread or being exported."""
        return self._sender.backlog if self._sender is not None else 0

    @property
    def pending(self) -> int:
        """Spans started whose end has not been handled yet."""
        return self._builder.pending if self._builder is not None else 0

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Export every event queued so far; True if done within ``timeout`` seconds."""
        return self._pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = 5.0) -> bool:
        """Export what is queued, then stop the worker and the exporters; later events are dropped."""
        return self._pipeline.shutdown(timeout)

    # ---------------------------------------------------------------------- the worker's side

    def _export(self, batch: Sequence[Event]) -> None:
        builder = self._builder
        if builder is None:
            return
        for event in batch:
            builder.handle(event)
        collector, sender = self._collector, self._sender
        if collector is None or sender is None:
            return
        spans = collector.take()
        if spans:
            sender.submit(spans, len(batch))  # waits while the sender's queue is full: bounded memory

    def _stop(self, timeout: float | None) -> None:
        """After the worker stopped (or the shutdown deadline passed): stop what the tracer built."""
        if self._stopped:
            return
        self._stopped = True
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._provider_sink is not None:
            current = use_otel_spans(None)
            if current is not self._provider_sink:  # another tracer's: left as it was
                use_otel_spans(current)
        sender = self._sender
        if sender is not None:
            sender.close(timeout)  # shuts the exporter down too, ending a retry in progress
        own, self._own_meter_provider = self._own_meter_provider, None
        if own is not None:
            left = _left(deadline)
            millis = 30_000.0 if left is None else left * 1000
            try:
                own.shutdown(timeout_millis=millis)
            except Exception:
                logger.exception("tracedagent-otlp: the meter provider failed to shut down")


def _drop(event: Event) -> bool:
    return False


def _flush_before_the_provider_stops(tracer: OtlpTracer) -> None:
    """Hand the last spans to a provider the application owns before it shuts down at exit. Exit
    handlers run last registered first, and this one is registered after the provider was set up."""
    ref = weakref.ref(tracer)

    def flush() -> None:
        live = ref()
        if live is not None:
            try:
                timeout = float(os.environ.get("TRACEDAGENT_EXIT_TIMEOUT") or 5)
            except ValueError:
                timeout = 5.0
            live.flush(max(0.0, timeout))

    atexit.register(flush)
