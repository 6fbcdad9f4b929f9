"""Events in, finished OpenTelemetry spans out: the export worker's half of the tracer.

A start event (``RunStarted``, ``RunResumed``, ``ModelCallStarted``, ``ToolCallStarted``) is kept as
pending until the end event with the same ``span_id`` arrives; events that belong to a span (interrupt,
compaction, checkpoint, breaker change, retry) are added to its pending entry. At the end event the span
is made in one go, with the core's own ids and timestamps (its trace id, its span id, its parent's span
id, start = the start event's ``timestamp_ns``, end = the end event's), and handed to a sink
(:mod:`._sinks`): straight to the exporter, or through the application's tracer provider (which is also
told when each span starts, so that it makes parents before their children). A run segment whose parent
is not a span of ours (the application's current span when the run started) gets that parent as a
remote parent: the ``invoke_agent`` span is its child, in its trace.

A start whose end never arrives stays pending; at most ``max_pending`` are kept (the oldest are dropped
and counted). An end whose start was dropped still makes its span, with the start time worked out from
``duration_s``. Spans are made when they end, so children before their parents: the sampler is asked
once per trace, as for its root, and every span of the trace follows that decision.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from tracedagent import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Event,
    HandoffOccurred,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
)

from . import _content
from . import _names as N
from ._metrics import GenAIMetrics
from ._sinks import SpanEvent, SpanSink

__all__ = ["SpanBuilder"]

logger = logging.getLogger("tracedagent.otlp")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
Attrs = dict[str, Any]

#: Tool statuses that are failures of the call (the others are ok, a person's decision or a pause).
_TOOL_FAILURES = frozenset({"error", "timeout", "rejected", "circuit_open"})


class _Open:
    """A span whose end has not arrived: its start event and the events that happened on it."""

    __slots__ = ("events", "remote", "start")

    def __init__(self, start: Event | None, remote: bool = False) -> None:
        self.start = start
        self.remote = remote  # its parent is not one of ours: the application's span, or another process's
        self.events: list[Event] = []


class SpanBuilder:
    """Turns the event stream into finished spans for ``sink``; used by the export worker only."""

    def __init__(
        self,
        sink: SpanSink,
        *,
        capture_content: bool,
        max_content: int,
        max_pending: int = 10_000,
        metrics: GenAIMetrics | None = None,
    ) -> None:
        self.sink = sink
        self.capture_content = capture_content
        self.max_content = max_content
        self.max_pending = max_pending
        self.metrics = metrics
        self._pending: OrderedDict[str, _Open] = OrderedDict()
        #: trace id -> the sampler's decision for the trace, so a trace is kept or dropped whole.
        self._sampled: OrderedDict[int, TraceFlags] = OrderedDict()
        #: run_id -> (model, provider), for the segments of a resumed run.
        self._runs: OrderedDict[str, tuple[str, str]] = OrderedDict()
        #: Pending starts dropped because more than ``max_pending`` were open.
        self.evicted = 0
        #: Span events whose span was unknown (already ended, or its start dropped).
        self.orphan_events = 0
        #: Events that could not be turned into a span (logged once).
        self.errors = 0
        self._logged = False
        self._handlers: dict[type[Event], Callable[[Any], None]] = {
            RunStarted: self._start,
            RunResumed: self._start,
            ModelCallStarted: self._start,
            ToolCallStarted: self._start,
            RunEnded: self._run_ended,
            ModelCallEnded: self._model_ended,
            ToolCallEnded: self._tool_ended,
            RunInterrupted: self._on_span,
            ContextCompacted: self._on_span,
            CheckpointSaved: self._on_span,
            CircuitStateChanged: self._on_span,
            RetryScheduled: self._on_span,
            HandoffOccurred: self._on_span,
        }

    @property
    def pending(self) -> int:
        """Spans started and not yet ended."""
        return len(self._pending)

    def handle(self, event: Event) -> None:
        """Take one event; an event that fails to convert is counted and never stops the batch."""
        handler = self._handlers.get(type(event))
        if handler is None:
            return
        try:
            handler(event)
        except Exception:
            self.errors += 1
            if not self._logged:
                self._logged = True
                logger.exception(
                    "tracedagent-otlp could not turn a %s into a span; later failures are counted", event.hook
                )

    # ------------------------------------------------------------------------------ bookkeeping

    def _start(self, event: Event) -> None:
        pending = self._pending
        if len(pending) >= self.max_pending:
            dropped, _ = pending.popitem(last=False)
            self.sink.forget(int(dropped, 16))
            self.evicted += 1
        parent = event.parent_span_id
        follows = None
        if isinstance(event, (RunStarted, RunResumed)):
            # A segment's parent is ours when it is a span of ours still open (a tool whose code runs the
            # agent); otherwise it is the application's span (or another process's): remote.
            remote = parent is not None and parent not in pending
            name, kind = N.agent_span_name(event.agent), SpanKind.INTERNAL
            if isinstance(event, RunResumed) and event.previous_span_id:
                follows = int(event.previous_span_id, 16)
        elif isinstance(event, ModelCallStarted):
            remote, name, kind = False, N.chat_span_name(event.model), SpanKind.CLIENT
        else:
            assert isinstance(event, ToolCallStarted)
            remote, name, kind = False, N.tool_span_name(event.tool), SpanKind.INTERNAL
        pending[event.span_id] = _Open(event, remote)
        self.sink.opened(
            name,
            kind,
            int(event.trace_id, 16),
            int(event.span_id, 16),
            None if parent is None else int(parent, 16),
            remote,
            event.timestamp_ns,
            follows,
        )
        if isinstance(event, RunStarted):
            runs = self._runs
            runs[event.run_id] = (event.model, event.provider)
            if len(runs) > self.max_pending:
                runs.popitem(last=False)

    def _on_span(self, event: Event) -> None:
        entry = self._pending.get(event.span_id)
        if entry is None:
            self.orphan_events += 1
            return
        entry.events.append(event)

    def _take(self, event: Event) -> _Open:
        return self._pending.pop(event.span_id, None) or _Open(None)

    # ------------------------------------------------------------------------------ the spans

    def _run_ended(self, end: RunEnded) -> None:
        entry = self._take(end)
        start = entry.start
        capture, limit = self.capture_content, self.max_content
        attrs: Attrs = {
            N.GEN_AI_OPERATION_NAME: N.OP_INVOKE_AGENT,
            N.GEN_AI_AGENT_NAME: end.agent,
            N.GEN_AI_CONVERSATION_ID: end.run_id,
            N.OPENINFERENCE_SPAN_KIND: N.KIND_AGENT,
            N.OI_SESSION_ID: end.run_id,
            N.TD_RUN_ID: end.run_id,
            N.TD_STATUS: end.status,
            N.TD_TURNS: end.turns,
        }
        model_provider = self._runs.get(end.run_id)
        if model_provider is not None:
            attrs[N.GEN_AI_REQUEST_MODEL], attrs[N.GEN_AI_PROVIDER_NAME] = model_provider
        if end.status != "interrupted":
            self._runs.pop(end.run_id, None)
        usage = end.usage
        if usage.requests or usage.input_tokens or usage.output_tokens:
            attrs[N.TD_USAGE_INPUT_TOKENS] = usage.input_tokens
            attrs[N.TD_USAGE_OUTPUT_TOKENS] = usage.output_tokens
            attrs[N.TD_USAGE_REQUESTS] = usage.requests
        links: list[Link] = []
        if isinstance(start, RunResumed):
            attrs[N.TD_RESUMED] = True
            if start.previous_span_id:
                previous = SpanContext(int(end.trace_id, 16), int(start.previous_span_id, 16), False, _SAMPLED)
                links.append(Link(previous, {N.TD_PREVIOUS_SPAN_ID: start.previous_span_id}))
            entry.events.insert(0, start)
        if capture:
            if isinstance(start, RunStarted) and start.input:
                attrs[N.GEN_AI_INPUT_MESSAGES] = _content.input_messages(start.input, limit)
                user = _content.last_user_text(start.input)
                if user is not None:
                    attrs[N.OI_INPUT_VALUE] = _content.clip(user, limit)
            if end.output is not None:
                attrs[N.GEN_AI_OUTPUT_MESSAGES] = _content.text_output(end.output, limit)
                attrs[N.OI_OUTPUT_VALUE] = _content.clip(end.output, limit)
        failed = end.status == "failed"
        self._emit(N.agent_span_name(end.agent), SpanKind.INTERNAL, start, end, entry, attrs, links, failed)

    def _model_ended(self, end: ModelCallEnded) -> None:
        entry = self._take(end)
        start = entry.start
        capture, limit = self.capture_content, self.max_content
        attrs: Attrs = {
            N.GEN_AI_OPERATION_NAME: N.OP_CHAT,
            N.GEN_AI_PROVIDER_NAME: end.provider,
            N.GEN_AI_REQUEST_MODEL: end.model,
            N.GEN_AI_CONVERSATION_ID: end.run_id,
            N.OPENINFERENCE_SPAN_KIND: N.KIND_LLM,
            N.OI_LLM_MODEL_NAME: end.response_model or end.model,
            N.OI_LLM_PROVIDER: end.provider,
            N.TD_STATUS: end.status,
            N.TD_TURN: end.turn,
        }
        if end.purpose != "turn":
            attrs[N.TD_PURPOSE] = end.purpose
        if end.response_model:
            attrs[N.GEN_AI_RESPONSE_MODEL] = end.response_model
        if end.finish_reason:
            attrs[N.GEN_AI_RESPONSE_FINISH_REASONS] = (end.finish_reason,)
        if end.time_to_first_token_s is not None:
            attrs[N.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] = end.time_to_first_token_s
        usage = end.usage
        _usage(attrs, usage)
        if usage.cost_usd is not None:
            attrs[N.GEN_AI_USAGE_COST] = usage.cost_usd
        if usage.requests or usage.input_tokens or usage.output_tokens:
            attrs[N.OI_LLM_TOKEN_COUNT_PROMPT] = usage.input_tokens
            attrs[N.OI_LLM_TOKEN_COUNT_COMPLETION] = usage.output_tokens
            attrs[N.OI_LLM_TOKEN_COUNT_TOTAL] = usage.total_tokens
        if capture:
            if isinstance(start, ModelCallStarted) and start.messages:
                attrs[N.GEN_AI_INPUT_MESSAGES] = attrs[N.OI_INPUT_VALUE] = _content.input_messages(
                    start.messages, limit
                )
                attrs[N.OI_INPUT_MIME_TYPE] = N.MIME_JSON
            if end.output is not None:
                output = _content.output_messages(end.output, end.finish_reason, limit)
                attrs[N.GEN_AI_OUTPUT_MESSAGES] = attrs[N.OI_OUTPUT_VALUE] = output
                attrs[N.OI_OUTPUT_MIME_TYPE] = N.MIME_JSON
        self._emit(N.chat_span_name(end.model), SpanKind.CLIENT, start, end, entry, attrs, (), end.status == "error")
        if self.metrics is not None:
            self.metrics.record(end)

    def _tool_ended(self, end: ToolCallEnded) -> None:
        entry = self._take(end)
        start = entry.start
        capture, limit = self.capture_content, self.max_content
        attrs: Attrs = {
            N.GEN_AI_OPERATION_NAME: N.OP_EXECUTE_TOOL,
            N.GEN_AI_TOOL_NAME: end.tool,
            N.GEN_AI_TOOL_TYPE: N.TOOL_TYPE_FUNCTION,
            N.GEN_AI_TOOL_CALL_ID: end.call_id,
            N.GEN_AI_AGENT_NAME: end.agent,
            N.GEN_AI_CONVERSATION_ID: end.run_id,
            N.OPENINFERENCE_SPAN_KIND: N.KIND_TOOL,
            N.OI_TOOL_NAME: end.tool,
            N.TD_STATUS: end.status,
        }
        if end.reason:
            attrs[N.TD_REFUSAL_REASON] = end.reason
        if capture:
            if isinstance(start, ToolCallStarted):
                attrs[N.GEN_AI_TOOL_CALL_ARGUMENTS] = attrs[N.OI_INPUT_VALUE] = _content.clip(start.arguments, limit)
            if end.result is not None:
                attrs[N.GEN_AI_TOOL_CALL_RESULT] = attrs[N.OI_OUTPUT_VALUE] = _content.clip(end.result, limit)
        failed = end.status in _TOOL_FAILURES
        if failed and end.error is None:
            attrs[N.ERROR_TYPE] = end.status
        self._emit(N.tool_span_name(end.tool), SpanKind.INTERNAL, start, end, entry, attrs, (), failed)

    def _emit(
        self,
        name: str,
        kind: SpanKind,
        start: Event | None,
        end: RunEnded | ModelCallEnded | ToolCallEnded,
        entry: _Open,
        attrs: Attrs,
        links: Any,
        failed: bool,
    ) -> None:
        trace_id = int(end.trace_id, 16)
        flags = self._trace_flags(trace_id)
        parent_id = int(end.parent_span_id, 16) if end.parent_span_id else None
        start_ns = start.timestamp_ns if start is not None else end.timestamp_ns - int(end.duration_s * 1e9)
        error = end.error
        status = None
        if failed:
            error_type = attrs.setdefault(N.ERROR_TYPE, error.type if error is not None else N.ERROR_TYPE_OTHER)
            status = Status(StatusCode.ERROR, self._description(error, error_type))
        elif end.status == "cancelled":
            attrs[N.TD_CANCELLED] = True
        events: list[SpanEvent] = []
        for event in entry.events:
            described = self._span_event(event)
            if described is not None:
                events.append((described[0], described[1], event.timestamp_ns))
        self.sink.emit(
            name,
            kind,
            trace_id,
            int(end.span_id, 16),
            parent_id,
            flags,
            attrs,
            events,
            links,
            status,
            start_ns,
            end.timestamp_ns,
            entry.remote,
        )

    def _trace_flags(self, trace_id: int) -> TraceFlags:
        """The sampler's decision for a trace, as its root would get it. Children are built before their
        parents (a span is made when it ends), so a parent-based sampler is told, for every parent, what
        the trace's root gets: a trace is kept or dropped whole."""
        flags = self._sampled.get(trace_id)
        if flags is None:
            result = self.sink.sampler.should_sample(None, trace_id, N.OP_INVOKE_AGENT)
            flags = _SAMPLED if result.decision is Decision.RECORD_AND_SAMPLE else _NOT_SAMPLED
            self._sampled[trace_id] = flags
            if len(self._sampled) > self.max_pending:
                self._sampled.popitem(last=False)
        return flags

    def _description(self, error: ErrorInfo | None, error_type: str) -> str:
        # An error message can quote what the user or the model said: only with content capture.
        if self.capture_content and error is not None and error.message:
            return _content.clip(f"{error.type}: {error.message}", self.max_content)
        return error_type

    # ------------------------------------------------------------------------------ span events

    def _span_event(self, event: Event) -> tuple[str, Attrs] | None:
        if isinstance(event, RunInterrupted):
            items = event.interruptions
            attrs: Attrs = {
                N.TD_INTERRUPTION_COUNT: len(items),
                N.TD_INTERRUPTION_IDS: tuple(i.id for i in items),
                N.TD_INTERRUPTION_TOOLS: tuple(i.tool for i in items),
                N.TD_INTERRUPTION_KINDS: tuple(i.kind for i in items),
            }
            if self.capture_content:
                attrs[N.TD_INTERRUPTION_REASONS] = tuple(_content.clip(i.reason, self.max_content) for i in items)
            return N.EVENT_INTERRUPT, attrs
        if isinstance(event, RunResumed):
            attrs = {N.TD_WAITED_S: event.waited_s}
            if event.previous_span_id:
                attrs[N.TD_PREVIOUS_SPAN_ID] = event.previous_span_id
            return N.EVENT_RESUME, attrs
        if isinstance(event, ContextCompacted):
            return N.EVENT_COMPACTION, {
                N.TD_STRATEGY: event.strategy,
                N.TD_TOKENS_BEFORE: event.tokens_before,
                N.TD_TOKENS_AFTER: event.tokens_after,
                N.TD_MESSAGES_BEFORE: event.messages_before,
                N.TD_MESSAGES_AFTER: event.messages_after,
                N.TD_COMPACTION_ESTIMATED: event.estimated,
            }
        if isinstance(event, CheckpointSaved):
            return N.EVENT_CHECKPOINT, {
                N.TD_CHECKPOINT_BYTES: event.bytes,
                N.TD_CHECKPOINT_DURATION: event.duration_s,
                N.TD_CHECKPOINT_STORE: event.store,
                N.TD_CHECKPOINT_STEP: event.step,
            }
        if isinstance(event, CircuitStateChanged):
            attrs = {N.TD_CIRCUIT_TOOL: event.tool, N.TD_CIRCUIT_OLD: event.old, N.TD_CIRCUIT_NEW: event.new}
            if event.reason:
                attrs[N.TD_CIRCUIT_REASON] = event.reason
            return N.EVENT_CIRCUIT_CHANGE, attrs
        if isinstance(event, RetryScheduled):
            attrs = {
                N.TD_RETRY_TARGET: event.target,
                N.TD_RETRY_KIND: event.kind,
                N.TD_RETRY_ATTEMPT: event.attempt,
                N.TD_RETRY_DELAY: event.delay_s,
            }
            if event.error is not None:
                attrs[N.ERROR_TYPE] = event.error.type
                if self.capture_content:
                    attrs[N.TD_ERROR_MESSAGE] = _content.clip(event.error.message, self.max_content)
            return N.EVENT_RETRY, attrs
        if isinstance(event, HandoffOccurred):
            return N.EVENT_HANDOFF, {N.TD_HANDOFF_FROM: event.from_agent, N.TD_HANDOFF_TO: event.to_agent}
        return None


def _usage(attrs: Attrs, usage: Usage) -> None:
    if not (usage.requests or usage.input_tokens or usage.output_tokens):
        return
    attrs[N.GEN_AI_USAGE_INPUT_TOKENS] = usage.input_tokens
    attrs[N.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.output_tokens
    if usage.cache_read_tokens:
        attrs[N.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        attrs[N.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = usage.reasoning_tokens
    if usage.estimated:
        attrs[N.TD_TOKENS_ESTIMATED] = True
