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

A batch of events (:meth:`TraceBuilder.handle_batch`, what the export worker hands over) holds back the
create of each model and tool run until its end: when the end is in the same batch the run goes out as one
``create_run`` that carries the end too (the SDK serialises and compresses one operation instead of two);
a run still open when the batch is done is created then, so a long call shows as running meanwhile. A held
run is created before anything that hangs from it (a run started inside a tool), so a parent always goes
out before its children. The agent run's root and resumed segments are never held.
"""

from __future__ import annotations

import collections
import logging
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
from ._ids import dotted_order, root_uuid, span_uuid, time_of, trace_uuid

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
    #: A model or tool run whose create is held back until its end or the end of the batch.
    held: _Held | None = None


@dataclass(slots=True, eq=False)
class _Held:
    """What a held-back ``create_run`` of a model or tool run says, and the start event it came from."""

    name: str
    run_type: str
    inputs: JSON
    event: Event


def _reraise(event: Event) -> None:
    raise  # only ever called in an except block (outside a batch no run is held: never called at all)


class TraceBuilder:
    """Turns a stream of tracedagent events into ``create_run`` / ``update_run`` calls.

    ``client`` is read before every call, so the owner may swap it (after a fork). ``project`` is the
    LangSmith project (None: the SDK's default). ``capture`` includes message content. Memory is bounded:
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
    ) -> None:
        self.client = client
        self.project = project
        self.capture = capture
        self.max_open = max_open
        self.max_runs = max_runs
        self.barrier_timeout_s = barrier_timeout_s
        #: Events that could not be placed: their parent run is unknown here (its start was dropped by
        #: a full queue, forgotten, or it was created by another process and cannot be derived).
        self.orphaned = 0
        self._open: dict[str, _Run] = {}
        #: Inside :meth:`handle_batch`: model and tool runs whose create is held back, in start order.
        self._held: list[_Run] | None = None
        self._failed: Callable[[Event], object] = _reraise
        self._roots: collections.OrderedDict[tuple[str, str], _Run] = collections.OrderedDict()
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
        """Send what ``events`` change in LangSmith, with a model or tool run whose start and end are both
        in ``events`` sent as one ``create_run``. Runs still open at the end are created then.

        An event whose run could not be sent (the SDK raised) is passed to ``failed``, called inside the
        ``except`` block; the other events go on. A one-call run that fails counts both its events."""
        handlers = self._handlers
        held: list[_Run] = []
        self._held = held
        self._failed = failed
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
            self._held = None
            try:
                for run in held:
                    if run.held is not None:
                        self._send_held(run)
            finally:
                self._failed = _reraise

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
        if parent.held is not None:  # a run started inside a tool: the tool run goes out first
            self._send_held(parent)
        # A child never starts before its parent (clock steps would make LangSmith refuse the order).
        start = max(time_of(timestamp_ns), parent.start)
        return _Run(
            kind, run_id, parent.trace_id, dotted_order(parent.dotted_order, start, run_id), parent.id, start, extra
        )

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

    def _create_call(self, run: _Run, name: str, run_type: str, inputs: JSON, event: Event) -> None:
        """Create a model or tool run; inside a batch, hold the create back (see the module's docstring)."""
        held = self._held
        if held is None:
            self._create(run, name, run_type, inputs)
        else:
            run.held = _Held(name, run_type, inputs, event)
            held.append(run)

    def _send_held(self, run: _Run) -> None:
        """Create a held run as started (its end is not in the batch, or a child needs it now)."""
        held = run.held
        assert held is not None
        run.held = None
        try:
            self._create(run, held.name, held.run_type, held.inputs)
        except Exception:
            self._failed(held.event)

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
        if event.parent_span_id is not None:  # started inside another run's tool
            parent = self._open.get(event.parent_span_id)
            if parent is None:
                self._orphan(event)
                return
        run_id = root_uuid(event.trace_id, event.run_id, event.parent_span_id)
        metadata: JSON = dict(event.metadata or {})
        metadata.update(
            agent=event.agent,
            model=event.model,
            provider=event.provider,
            tracedagent_run_id=event.run_id,
            tracedagent_trace_id=event.trace_id,
            tracedagent_span_id=event.span_id,
        )
        if parent is None:
            start = time_of(event.timestamp_ns)
            root = _Run("root", run_id, trace_uuid(event.trace_id), dotted_order(None, start, run_id), None, start)
            root.extra = {"metadata": metadata}
        else:
            root = self._child("root", run_id, parent, event.timestamp_ns, {"metadata": metadata})
        self._remember_open(event.span_id, root)
        self._remember_root((event.trace_id, event.run_id), root)
        self._create(root, event.agent, "chain", p.run_inputs(event, self.capture))

    def _root_of(self, event: RunResumed) -> _Run | None:
        root = self._roots.get((event.trace_id, event.run_id))
        if root is None and event.parent_span_id is None and event.run_started_ns is not None:
            # Created by another process: a top-level run's root is addressable from the trace id and
            # the run's start time alone.
            run_id = trace_uuid(event.trace_id)
            start = time_of(event.run_started_ns)
            root = _Run("root", run_id, run_id, dotted_order(None, start, run_id), None, start)
            self._remember_root((event.trace_id, event.run_id), root)
        return root

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
        self._patch_root(root, event.timestamp_ns, outputs, error, full=root is run)

    def _patch_root(self, root: _Run, timestamp_ns: int, outputs: JSON, error: str | None, *, full: bool) -> None:
        """The root shows the run's latest state. Patches of one run id are not ordered by the SDK (its
        queue orders by ``dotted_order`` only, and batches go out in parallel), so before a second patch
        of the same root the SDK is flushed (bounded) and the earlier patch cannot land last."""
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
            # Started in this batch and not sent yet: one create with the end (what the patch would set).
            run.held = None
            fields: JSON = {"end_time": max(time_of(event.timestamp_ns), run.start), "outputs": outputs}
            if error is not None:
                fields["error"] = error
            if run.events:
                fields["events"] = list(run.events)
            try:
                self._create(run, held.name, held.run_type, held.inputs, **fields)
            except Exception:
                self._failed(held.event)  # the start is lost with it
                raise
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
            self._create_call(run, event.model, "llm", p.model_inputs(event, self.capture), event)

    def _model_ended(self, event: ModelCallEnded) -> None:
        end = p.model_end_metadata(event)
        end.update(p.model_metadata(event))
        self._call_ended(event, "llm", event.model, {}, p.model_outputs(event, self.capture), end)

    def _tool_started(self, event: ToolCallStarted) -> None:
        run = self._call_started(event, "tool", {"tool_call_id": event.call_id})
        if run is not None:
            self._create_call(
                run, event.tool, "tool", p.tool_inputs(event.call_id, event.arguments, self.capture), event
            )

    def _tool_ended(self, event: ToolCallEnded) -> None:
        end: JSON = {"tool_call_id": event.call_id, "status": event.status}
        inputs = p.tool_inputs(event.call_id, None, self.capture)
        self._call_ended(event, "tool", event.tool, inputs, p.tool_outputs(event, self.capture), end)

    # ---------------------------------------------------------------------------- point-in-time events

    def _point_event(
        self,
        event: RunInterrupted | ContextCompacted | CheckpointSaved | CircuitStateChanged | RetryScheduled,
    ) -> None:
        run = self._open.get(event.span_id)
        if run is None:
            self._orphan(event)
            return
        run.events.append(p.run_event(event, self.capture))
