"""The served run's span events, forwarded to the request that started it, and the caller's trace.

The stream of ``agent.stream()`` has text, tool calls and usage, but not the spans of model calls or of
the run segment, which the page's waterfall draws. Process-wide plugins hand each event to the
:class:`Tap` of the request whose run (or sub-run) fires it: :data:`FORWARDER` the runs' starts and ends,
always, and :data:`SPAN_FORWARDER` the model and tool calls while a stream is open. The tap lives in a
context variable set for the run's task, so runs that no request started cost one lookup per event.

An incoming ``traceparent`` becomes the run's parent: the run's task starts with it as the current
tracedagent span, so the run joins the caller's trace (:func:`parent_from`); a valid ``tracestate`` beside
it is kept for the run and sent on with its requests.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from .. import _plugins
from .._events import (
    ContextCompacted,
    Event,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
)
from .._ids import SpanContext
from ..hookspecs import hookimpl

__all__ = [
    "FORWARDER",
    "SPAN_FORWARDER",
    "Tap",
    "close_stream",
    "current_tap",
    "ensure_forwarder",
    "open_stream",
    "parent_from",
    "tracestate_from",
]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
# W3C trace context, tracestate list-member: a key (simple, or tenant@system) "=" a value.
_TRACESTATE_MEMBER = re.compile(
    r"^(?:[a-z0-9][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$"
)
_MAX_TRACESTATE_MEMBERS = 32
_STREAMED = (ToolCallStarted, ToolCallEnded, RunInterrupted)


def parent_from(header: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The caller's span from a W3C ``traceparent`` header, with its ``tracestate`` header (the values of
    all of them, joined by commas) when that is valid; None when ``traceparent`` is missing, invalid
    (version ``ff``, all-zero ids) or unsampled, as for an application's OpenTelemetry span."""
    if not header:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16 or not int(flags, 16) & 1:
        return None
    return SpanContext(trace_id, span_id, tracestate_from(tracestate))


def tracestate_from(header: str | None) -> str | None:
    """A W3C ``tracestate`` header value as it is sent on (its members, empty ones left out), or None when
    it is missing, empty or invalid: a tracestate that does not parse is not propagated (W3C trace context)."""
    if not header:
        return None
    members = [m.strip(" \t") for m in header.split(",")]
    members = [m for m in members if m]
    if not members or len(members) > _MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        if _TRACESTATE_MEMBER.match(member) is None:
            return None
        key = member.split("=", 1)[0]
        if key in keys:
            return None
        keys.add(key)
    return ",".join(members)


class Tap:
    """Where one request's span events go. ``sink`` is called on the request's event loop, after the
    run's current step (so span events keep their order with the stream's events); ``streaming`` says the
    top run's tool calls and interruption come through ``agent.stream()`` already. ``first`` is the top
    run's first event (``RunStarted``, or ``RunResumed`` for a resume): its span is the response's
    ``traceparent``. With ``kinds``, only events of those types reach ``sink`` (an answer as JSON needs
    the run's start and end, not each span)."""

    __slots__ = ("first", "kinds", "loop", "sink", "started", "streaming", "thread")

    def __init__(
        self,
        sink: Callable[[Event], None],
        *,
        streaming: bool,
        kinds: tuple[type[Event], ...] | None = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.sink = sink
        self.streaming = streaming
        self.kinds = kinds
        self.first: RunStarted | RunResumed | None = None
        self.started = asyncio.Event()

    def deliver(self, event: Event) -> None:
        first = self.first
        if first is None and isinstance(event, RunStarted | RunResumed):
            self.first = first = event
            if self.kinds is None:  # a stream waits for it (Runs.first_span)
                self._call(self.started.set)
        if self.kinds is not None:  # no stream to keep in order: on the loop's thread, at once
            if isinstance(event, self.kinds):
                if threading.get_ident() == self.thread:
                    self.sink(event)
                else:
                    self._call(self.sink, event)
            return
        if self.streaming and first is not None and event.run_id == first.run_id and isinstance(event, _STREAMED):
            return
        self._call(self.sink, event)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        if threading.get_ident() == self.thread:
            self.loop.call_soon(function, *args)
        else:  # a hook fired on a worker thread (a sync tool that runs an agent of its own)
            try:
                self.loop.call_soon_threadsafe(function, *args)
            except RuntimeError:  # the request's loop is closed: nobody is listening any more
                pass


_tap: ContextVar[Tap | None] = ContextVar("tracedagent_serve_tap", default=None)
current_tap = _tap


def _forward(event: Event) -> None:
    tap = _tap.get()
    if tap is not None:
        tap.deliver(event)


class _RunForwarder:
    """The process-wide plugin that hands the start, pause and end of each served run to its request's
    tap: every request needs them (the response's ``traceparent``, ``GET /v1/runs/{run_id}``)."""

    name = "tracedagent-serve"

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        _forward(event)

    @hookimpl
    def on_resume(self, event: RunResumed) -> None:
        _forward(event)

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        _forward(event)

    @hookimpl
    def on_interrupt(self, event: RunInterrupted) -> None:
        _forward(event)


class _SpanForwarder:
    """The plugin that hands the model and tool calls (and retries, compactions) of served runs to their
    taps, for the streams that draw them. It is registered only while a stream is open: with a plugin on
    a hook every run of the process builds and dispatches that hook's events, which a run answered as
    JSON does not need (about a third of a small run's cost)."""

    name = "tracedagent-serve-spans"

    @hookimpl
    def on_model_call_start(self, event: ModelCallStarted) -> None:
        _forward(event)

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        _forward(event)

    @hookimpl
    def on_tool_call_start(self, event: ToolCallStarted) -> None:
        _forward(event)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        _forward(event)

    @hookimpl
    def on_retry(self, event: RetryScheduled) -> None:
        _forward(event)

    @hookimpl
    def on_compaction(self, event: ContextCompacted) -> None:
        _forward(event)


FORWARDER = _RunForwarder()
SPAN_FORWARDER = _SpanForwarder()
_lock = threading.Lock()
_streams = 0


_checked: tuple[object, int] | None = None  # (plugin manager, version) where FORWARDER was last seen


def ensure_forwarder() -> None:
    """Register :data:`FORWARDER` process-wide, once (again if the registry was replaced or it was
    unregistered): a look at the registry's version per request, not a search of its plugins."""
    global _checked
    pm = _plugins.global_plugin_manager()
    checked = _checked
    if checked is not None and checked[0] is pm and checked[1] == _plugins.registry_version():
        return
    with _lock:
        if not pm.is_registered(FORWARDER):
            _plugins.register(FORWARDER, _RunForwarder.name)
        _checked = (pm, _plugins.registry_version())


def open_stream() -> None:
    """A stream of span events opens: :data:`SPAN_FORWARDER` is registered while any is open. Call it
    before the run starts (a run takes the plugins as they are when it starts) and
    :func:`close_stream` once the run is over."""
    global _streams
    with _lock:
        _streams += 1
        if not _plugins.global_plugin_manager().is_registered(SPAN_FORWARDER):
            _plugins.register(SPAN_FORWARDER, _SpanForwarder.name)


def close_stream() -> None:
    global _streams
    with _lock:
        _streams -= 1
        if _streams == 0 and _plugins.global_plugin_manager().is_registered(SPAN_FORWARDER):
            _plugins.unregister(SPAN_FORWARDER)
