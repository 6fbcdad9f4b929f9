"""From tracedagent events to LangSmith runs: which run each span becomes, where it hangs, what is sent.

:class:`TraceBuilder` runs on the export worker and is the only caller of the SDK's ``create_run`` and
``update_run`` (the SDK serialises a run on the calling thread, so that is where the work lands).

The shape of a trace::

    agent (chain)                  the agent run: created when it starts, patched when a segment ends
    ├── model (llm)                the first segment's model and tool calls hang from the root
    ├── tool (tool)
    └── agent (resumed) (chain)    each resumed segment: a chain of its own, under the root
        ├── tool (tool)
        └── model (llm)

A run that never pauses is the usual LangSmith shape (a chain with its calls). When a segment ends the
root is patched with the run's state so far (status, turns, total usage, output), so the root always shows
the latest state: ``interrupted`` while it waits for a person, then how the run ended. Each resumed
segment only needs the root's id and ``dotted_order``, and both derive from the trace id and the run's
start time (``RunResumed.run_started_ns``), so a segment resumed in another process joins the same tree.

Point-in-time events (interrupt, resume, compaction, checkpoint, breaker change, retry) become LangSmith
run events on the run of their span; a run's events go out with the patch that ends it.

Within :meth:`TraceBuilder.handle_batch` (what the export worker calls) the create of every run is held
back until its end, so a run that ends soon goes out as one ``create_run`` that carries its end (the SDK
serialises, encodes and compresses one operation instead of two: the SDK's work per operation is what
bounds this sink). A held run's children wait with it, so that a run still goes out before anything that
hangs from it: when the agent run's root ends, it and every call that ended under it go out together,
parents first, one ``create_run`` each. A run is held for at most ``hold_s`` seconds (then it is created as
running, so a long call shows as running meanwhile, and its end is a patch), and every held run goes out
at a flush (:meth:`TraceBuilder.release`). With ``hold_s=0`` what is still open is created at the end of
each batch. Resumed segments are never held (they join a root that may live in another process).
"""

from __future__ import annotations

import collections
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from tracedagent import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
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
)

from . import _payloads as p
from ._ids import dotted_order, nested_root_uuid, root_uuid, span_uuid, time_of, trace_uuid

__all__ = ["RunClient", "TraceBuilder"]

_ENDS = (RunEnded, ModelCallEnded, ToolCallEnded)

logger = logging.getLogger("tracedagent.langsmith")

JSON = dict[str, Any]
Kind = Literal["root", "segment", "llm", "tool"]


class RunClient(Protocol):
    """The part of :class:`langsmith.Client` the builder uses (tests pass a fake)."""

    def create_run(self, name: str, inputs: dict[str, Any], run_type: Any, **kwargs: Any) -> None: ...

    def update_run(self, run_id: Any, **kwargs: Any) -> None: ...

    def flush(self, timeout: float | None = None) -> None: ...


@dataclass(slots=True, eq=False)
class _Run:
    """A LangSmith run this process created (or, for a root made elsewhere, can address)."""

    kind: Kind
    id: uuid.UUID
    trace_id: uuid.UUID
    dotted_order: str
    parent_id: uuid.UUID | None
    start: datetime
    #: ``{"metadata": {...}}``, sent with the create and again with the patch that ends the run (the
    #: SDK adds its runtime fields to this very dict). None for a root created by another process.
    extra: JSON | None = None
    events: list[JSON] = field(default_factory=list)
    #: The agent run's root, for a resumed segment.
    root: _Run | None = None
    #: A root only: this process has patched it already (a later patch must not overtake that one).
    patched: bool = False
    #: The run it hangs from, when this process made that one (a held child waits for it).
    parent: _Run | None = None
    #: A run whose create is held back (see the module's docstring): what the create will say.
    held: _Held | None = None
    #: While held: held runs that hang from it, in start order, waiting for it to go out first.
    waiting: list[_Run] | None = None


@dataclass(slots=True, eq=False)
class _Held:
    """What a held-back ``create_run`` says, the start event it came from and when it was held; once
    the run ended, the end's fields and event too."""

    name: str
    run_type: str
    inputs: JSON
    event: Event
    since: float
    end: JSON | None = None
    end_event: Event | None = None


def _reraise(event: Event) -> None:
    raise  # only ever called in an except block: before the first batch, when no run can be held


class TraceBuilder:
    """Turns a stream of tracedagent events into ``create_run`` / ``update_run`` calls.

    ``client`` is read before every call, so the owner may swap it (after a fork). ``project`` is the
    LangSmith project (None: the SDK's default). ``capture`` includes message content. ``hold_s``: how
    long a run's create may be held back in wait for its end (0: until the end of its batch); ``clock``
    tells the time for it (seconds, monotonic). Memory is bounded:
    at most ``max_open`` spans are remembered while open (the oldest is forgotten past it) and the roots of
    the last ``max_runs`` agent runs, so that a run resumed in this process finds its root.
    """

    def __init__(
        self,
        client: RunClient | None,
        *,
        project: str | None = None,
        capture: bool = False,
        max_open: int = 65_536,
        max_runs: int = 4_096,
        barrier_timeout_s: float = 2.0,
        hold_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.project = project
        self.capture = capture
        self.max_open = max_open
        self.max_runs = max_runs
        self.barrier_timeout_s = barrier_timeout_s
        self.hold_s = hold_s
        self._clock = clock
        #: Events that could not be placed: their parent run is unknown here (its start was dropped by
        #: a full queue, forgotten, or it was created by another process and cannot be derived).
        self.orphaned = 0
        self._open: dict[str, _Run] = {}
        #: True inside :meth:`handle_batch`: new runs are held back (outside it they go out at once).
        self._holding = False
        #: Runs whose create is (or was: sent ones are skipped) held back, in the order they were held.
        self._pending: collections.deque[_Run] = collections.deque()
        self._failed: Callable[[Event], object] = _reraise
        self._roots: collections.OrderedDict[tuple[str, str], _Run] = collections.OrderedDict()
        #: LangSmith runs a run was started inside (``@traceable``, ``langsmith.trace``), by the run's first
        #: segment span id: (run id, trace id, dotted order), noted on the run's thread by the tracer.
        self.outer: dict[str, tuple[uuid.UUID, uuid.UUID, str]] = {}
        self._handlers: dict[type, Callable[[Any], None]] = {
            RunStarted: self._run_started,
            RunResumed: self._run_resumed,
            RunEnded: self._run_ended,
            ModelCallStarted: self._model_started,
            ModelCallEnded: self._model_ended,
            ToolCallStarted: self._tool_started,
            ToolCallEnded: self._tool_ended,
            RunInterrupted: self._point_event,
            ContextCompacted: self._point_event,
            CheckpointSaved: self._point_event,
            CircuitStateChanged: self._point_event,
            RetryScheduled: self._point_event,
            HandoffOccurred: self._point_event,
        }

    def handle(self, event: Event) -> None:
        """Send what ``event`` changes in LangSmith (nothing for an event type this version does not know)."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def forget(self, events: Iterable[Event]) -> None:
        """Send nothing for ``events`` (the tracer gives them up: the SDK is too far behind), but keep the
        tree's memory right: a span that ends here is no longer open."""
        open_ = self._open
        for event in events:
            if type(event) in _ENDS:
                open_.pop(event.span_id, None)

    def handle_batch(self, events: Iterable[Event], failed: Callable[[Event], object]) -> None:
        """Send what ``events`` change in LangSmith, holding back each run's create in wait for its end
        (see the module's docstring); then send what has been held for ``hold_s`` (with ``hold_s=0``:
        everything still held).

        An event whose run could not be sent (the SDK raised) is passed to ``failed``, called inside the
        ``except`` block; the other events go on. A one-call run that fails counts both its events.
        ``failed`` is kept for the held runs that go out later (:meth:`release`)."""
        handlers = self._handlers
        self._failed = failed
        self._holding = True
        try:
            for event in events:
                handler = handlers.get(type(event))
                if handler is None:
                    continue
                try:
                    handler(event)
                except Exception:
                    failed(event)
        finally:
            self._holding = False
            self.release(everything=self.hold_s <= 0)

    @property
    def held(self) -> int:
        """Runs whose create is held back now, at most (O(1): read by the admission of new traces)."""
        return len(self._pending)

    def release(self, everything: bool = True) -> None:
        """Send the runs held back for ``hold_s`` or more (``everything``: every held run), as they
        stand: ended ones as one ``create_run`` with their end, open ones as running. Parents first."""
        pending = self._pending
        due = self._clock() - self.hold_s
        while pending:
            run = pending[0]
            held = run.held
            if held is not None and not everything and held.since > due:
                break
            pending.popleft()
            if held is not None:
                self._ensure_sent(run)

    # ------------------------------------------------------------------------------------ the tree

    def _orphan(self, event: Event) -> None:
        self.orphaned += 1
        if self.orphaned == 1:
            logger.warning(
                "LangSmith: %s of span %s has no known parent run (its start was dropped, or it was "
                "resumed from another process without a known root); it is left out. Later cases are "
                "counted (LangSmithTracer.orphaned), not logged",
                event.hook,
                event.span_id,
            )

    def _child(self, kind: Kind, run_id: uuid.UUID, parent: _Run, timestamp_ns: int, extra: JSON | None) -> _Run:
        # A child never starts before its parent (clock steps would make LangSmith refuse the order).
        start = max(time_of(timestamp_ns), parent.start)
        run = _Run(
            kind, run_id, parent.trace_id, dotted_order(parent.dotted_order, start, run_id), parent.id, start, extra
        )
        run.parent = parent
        return run

    def _remember_open(self, span_id: str, run: _Run) -> None:
        open_ = self._open
        open_[span_id] = run
        if len(open_) > self.max_open:  # an end that never came (dropped): forget the oldest
            del open_[next(iter(open_))]

    def _remember_root(self, key: tuple[str, str], root: _Run) -> None:
        roots = self._roots
        roots[key] = root
        roots.move_to_end(key)
        while len(roots) > self.max_runs:
            roots.popitem(last=False)

    def _client(self) -> RunClient:
        client = self.client
        if client is None:
            raise RuntimeError("TraceBuilder has no LangSmith client")
        return client

    def _create(self, run: _Run, name: str, run_type: str, inputs: JSON, **fields: Any) -> None:
        parent = run.parent
        if parent is not None and parent.held is not None:  # the run it hangs from goes out first
            self._ensure_sent(parent)
        self._client().create_run(
            name,
            inputs,
            run_type,
            id=run.id,
            trace_id=run.trace_id,
            parent_run_id=run.parent_id,
            dotted_order=run.dotted_order,
            start_time=run.start,
            extra=run.extra,
            project_name=self.project,
            **fields,
        )

    def _create_held(self, run: _Run, name: str, run_type: str, inputs: JSON, event: Event) -> None:
        """Create a run; inside a batch, hold the create back (see the module's docstring)."""
        if not self._holding:
            self._create(run, name, run_type, inputs)
            return
        run.held = _Held(name, run_type, inputs, event, self._clock())
        parent = run.parent
        if parent is not None and parent.held is not None:
            if parent.waiting is None:
                parent.waiting = [run]
            else:
                parent.waiting.append(run)
        self._pending.append(run)

    def _ended_held(self, run: _Run, end: JSON, event: Event) -> None:
        """A held run ended: it goes out now as one create with its end, unless it waits for its parent
        (then it goes out right after that one)."""
        held = run.held
        assert held is not None
        held.end = end
        held.end_event = event
        parent = run.parent
        if parent is None or parent.held is None:
            self._send_held(run)

    def _ensure_sent(self, run: _Run) -> None:
        """Send ``run``'s held create now (and first the held runs it hangs from)."""
        parent = run.parent
        if parent is not None and parent.held is not None:
            self._ensure_sent(parent)  # sends ``run`` too if it had ended
        if run.held is not None:
            self._send_held(run)

    def _send_held(self, run: _Run) -> None:
        """Create a held run as it stands (with its end, if it ended), then the held runs that waited
        for it and ended (the open ones stay held on their own). A failure counts the run's events."""
        held = run.held
        assert held is not None
        run.held = None
        try:
            self._create(run, held.name, held.run_type, held.inputs, **(held.end or {}))
        except Exception:
            self._failed(held.event)  # the start is lost with it ...
            if held.end_event is not None:
                self._failed(held.end_event)  # ... and the end it carried
        waiting = run.waiting
        if waiting is not None:
            run.waiting = None
            for child in waiting:
                if child.held is not None and child.held.end is not None:
                    self._send_held(child)

    @staticmethod
    def _end_fields(run: _Run, timestamp_ns: int, outputs: JSON, error: str | None) -> JSON:
        """What a held run's create says of its end: what :meth:`_end` would patch (nothing null)."""
        fields: JSON = {"end_time": max(time_of(timestamp_ns), run.start), "outputs": outputs}
        if error is not None:
            fields["error"] = error
        if run.events:
            fields["events"] = list(run.events)
        return fields

    def _end(self, run: _Run, timestamp_ns: int, outputs: JSON, error: str | None, *, full: bool = True) -> None:
        """Patch ``run`` as ended. ``full=False`` leaves its metadata and events as they are."""
        self._client().update_run(
            run.id,
            end_time=max(time_of(timestamp_ns), run.start),
            outputs=outputs,
            error=error,
            events=list(run.events) if full and run.events else None,
            extra=run.extra if full else None,
            trace_id=run.trace_id,
            dotted_order=run.dotted_order,
            parent_run_id=run.parent_id,
        )

    # ------------------------------------------------------------------------------- the agent run

    def _run_started(self, event: RunStarted) -> None:
        parent: _Run | None = None
        outer = self.outer.pop(event.span_id, None)
        if event.parent_span_id is not None:  # inside another run's tool, or an application's span
            parent = self._open.get(event.parent_span_id)
        if parent is None and event.parent_span_id is not None:
            # Not one of ours (an application's OpenTelemetry span: the run carries its trace id). A sink
            # takes whole traces, so a parent of ours is never missing: this run is a root of its own,
            # under the LangSmith run it was started in, if any.
            run_id = nested_root_uuid(event.trace_id, event.run_id)
            start = time_of(event.timestamp_ns)
            if outer is not None:
                outer_id, outer_trace, outer_order = outer
                root = _Run("root", run_id, outer_trace, dotted_order(outer_order, start, run_id), outer_id, start)
            else:
                root = _Run("root", run_id, run_id, dotted_order(None, start, run_id), None, start)
            root.extra = {"metadata": self._root_metadata(event)}
            self._remember_open(event.span_id, root)
            self._remember_root((event.trace_id, event.run_id), root)
            self._create_held(root, event.agent, "chain", p.run_inputs(event, self.capture), event)
            return
        run_id = root_uuid(event.trace_id, event.run_id, event.parent_span_id)
        metadata = self._root_metadata(event)
        if parent is None and outer is not None:  # inside @traceable: a child of that run, in its trace
            outer_id, outer_trace, outer_order = outer
            run_id = nested_root_uuid(event.trace_id, event.run_id)
            start = time_of(event.timestamp_ns)
            root = _Run("root", run_id, outer_trace, dotted_order(outer_order, start, run_id), outer_id, start)
            root.extra = {"metadata": metadata}
        elif parent is None:
            start = time_of(event.timestamp_ns)
            root = _Run("root", run_id, trace_uuid(event.trace_id), dotted_order(None, start, run_id), None, start)
            root.extra = {"metadata": metadata}
        else:
            root = self._child("root", run_id, parent, event.timestamp_ns, {"metadata": metadata})
        self._remember_open(event.span_id, root)
        self._remember_root((event.trace_id, event.run_id), root)
        self._create_held(root, event.agent, "chain", p.run_inputs(event, self.capture), event)

    def _root_of(self, event: RunResumed) -> _Run | None:
        root = self._roots.get((event.trace_id, event.run_id))
        if root is None and event.parent_span_id is None and event.run_started_ns is not None:
            # Created by another process: a top-level run's root is addressable from the trace id and
            # the run's start time alone. (A run with a parent, in another run's tool or in an
            # application's span, is not: its resumed segments in another process are counted orphans.)
            run_id = trace_uuid(event.trace_id)
            start = time_of(event.run_started_ns)
            root = _Run("root", run_id, run_id, dotted_order(None, start, run_id), None, start)
            self._remember_root((event.trace_id, event.run_id), root)
        return root

    @staticmethod
    def _root_metadata(event: RunStarted) -> JSON:
        metadata: JSON = dict(event.metadata or {})
        metadata.update(
            agent=event.agent,
            model=event.model,
            provider=event.provider,
            tracedagent_run_id=event.run_id,
            tracedagent_trace_id=event.trace_id,
            tracedagent_span_id=event.span_id,
        )
        return metadata

    def _run_resumed(self, event: RunResumed) -> None:
        root = self._root_of(event)
        if root is None:
            self._orphan(event)
            return
        metadata: JSON = {
            "agent": event.agent,
            "tracedagent_run_id": event.run_id,
            "tracedagent_trace_id": event.trace_id,
            "tracedagent_span_id": event.span_id,
            "previous_span_id": event.previous_span_id,
        }
        segment = self._child("segment", span_uuid(event.trace_id, event.span_id), root, event.timestamp_ns, None)
        segment.extra = {"metadata": metadata}
        segment.root = root
        segment.events.append(p.run_event(event, self.capture))
        self._remember_open(event.span_id, segment)
        self._create(
            segment,
            f"{event.agent} (resumed)",
            "chain",
            {"waited_s": round(event.waited_s, 6)},
            events=list(segment.events),
        )

    def _run_ended(self, event: RunEnded) -> None:
        run = self._open.pop(event.span_id, None)
        if run is None:
            self._orphan(event)
            return
        outputs = p.run_outputs(event, self.capture)
        error = p.error_text(event.error, event.status, self.capture)
        root = run
        if run.kind == "segment" and run.root is not None:
            self._end(run, event.timestamp_ns, outputs, error)
            root = run.root
        self._patch_root(root, event.timestamp_ns, outputs, error, full=root is run, event=event)

    def _patch_root(
        self, root: _Run, timestamp_ns: int, outputs: JSON, error: str | None, *, full: bool, event: RunEnded
    ) -> None:
        """The root shows the run's latest state. Patches of one run id are not ordered by the SDK (its
        queue orders by ``dotted_order`` only, and batches go out in parallel), so before a second patch
        of the same root the SDK is flushed (bounded) and the earlier patch cannot land last. A root still
        held goes out as one create with its end (what the patch would set)."""
        if root.held is not None:
            root.patched = True
            self._ended_held(root, self._end_fields(root, timestamp_ns, outputs, error), event)
            return
        if root.patched:
            try:
                self._client().flush(self.barrier_timeout_s)
            except Exception:  # a failing flush must not cost the patch
                logger.debug("LangSmith: flush before re-patching run %s failed", root.id, exc_info=True)
        root.patched = True
        # The root's metadata and events are sent with its first patch only, by the process that
        # created it: a later patch (maybe from another process) must not overwrite them.
        self._end(root, timestamp_ns, outputs, error, full=full and root.extra is not None)

    # ------------------------------------------------------------------------------ model and tools

    def _call_started(self, event: ModelCallStarted | ToolCallStarted, kind: Kind, metadata: JSON) -> _Run | None:
        parent = self._open.get(event.parent_span_id or "")
        if parent is None:
            self._orphan(event)
            return None
        metadata.update(agent=event.agent, tracedagent_span_id=event.span_id)
        run = self._child(kind, span_uuid(event.trace_id, event.span_id), parent, event.timestamp_ns, None)
        run.extra = {"metadata": metadata}
        self._remember_open(event.span_id, run)
        return run

    def _call_ended(
        self, event: ModelCallEnded | ToolCallEnded, kind: Kind, name: str, inputs: JSON, outputs: JSON, end: JSON
    ) -> None:
        run = self._open.pop(event.span_id, None)
        error = p.error_text(event.error, event.status, self.capture)
        if run is not None:
            if run.extra is not None:
                run.extra.setdefault("metadata", {}).update(end)
            held = run.held
            if held is None:
                self._end(run, event.timestamp_ns, outputs, error)
                return
            # Not sent yet: one create with the end (what the patch would set).
            self._ended_held(run, self._end_fields(run, event.timestamp_ns, outputs, error), event)
            return
        # The start was dropped (a full queue) or forgotten: send the whole run now, from its end.
        parent = self._open.get(event.parent_span_id or "")
        if parent is None:
            self._orphan(event)
            return
        started_ns = event.timestamp_ns - int(event.duration_s * 1e9)
        run = self._child(kind, span_uuid(event.trace_id, event.span_id), parent, started_ns, None)
        run.extra = {"metadata": {"agent": event.agent, "tracedagent_span_id": event.span_id, **end}}
        end_time = max(time_of(event.timestamp_ns), run.start)
        self._create(
            run, name, "llm" if kind == "llm" else "tool", inputs, end_time=end_time, outputs=outputs, error=error
        )

    def _model_started(self, event: ModelCallStarted) -> None:
        run = self._call_started(event, "llm", p.model_metadata(event))
        if run is not None:
            self._create_held(run, event.model, "llm", p.model_inputs(event, self.capture), event)

    def _model_ended(self, event: ModelCallEnded) -> None:
        end = p.model_end_metadata(event)
        end.update(p.model_metadata(event))
        self._call_ended(event, "llm", event.model, {}, p.model_outputs(event, self.capture), end)

    def _tool_started(self, event: ToolCallStarted) -> None:
        run = self._call_started(event, "tool", {"tool_call_id": event.call_id})
        if run is not None:
            self._create_held(
                run, event.tool, "tool", p.tool_inputs(event.call_id, event.arguments, self.capture), event
            )

    def _tool_ended(self, event: ToolCallEnded) -> None:
        end: JSON = {"tool_call_id": event.call_id, "status": event.status}
        inputs = p.tool_inputs(event.call_id, None, self.capture)
        self._call_ended(event, "tool", event.tool, inputs, p.tool_outputs(event, self.capture), end)

    # ---------------------------------------------------------------------------- point-in-time events

    def _point_event(
        self,
        event: RunInterrupted
        | ContextCompacted
        | CheckpointSaved
        | CircuitStateChanged
        | RetryScheduled
        | HandoffOccurred,
    ) -> None:
        run = self._open.get(event.span_id)
        if run is None:
            self._orphan(event)
            return
        run.events.append(p.run_event(event, self.capture))
