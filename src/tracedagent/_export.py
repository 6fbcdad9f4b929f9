"""The export pipeline: a bounded queue and a worker thread per sink, so hooks never do I/O.

A hook calls :meth:`ExportPipeline.put_event` (events) or :meth:`ExportPipeline.put` (anything else), which
appends to a bounded deque and returns at once, never blocking the run. The sink's worker thread wakes
when a batch is full or the interval passes and hands batches to the sink's ``export`` function; that is
where serialisation, compression and HTTP happen. While exporting, the worker marks itself (and, when
OpenTelemetry is installed, sets its suppress-instrumentation key) so the sink's own I/O is never traced.

Whole traces or nothing (``put_event``). When a run segment opens (``RunStarted``, ``RunResumed``) in a
trace this pipeline has no open segment of, the pipeline decides whether it takes the trace, from its
pressure: ``queue depth + backlog()`` (``backlog`` is what the sink's exporter still holds downstream).
With ``open`` the admitted segments still open, the trace is admitted when::

    pressure + reserve * (open + 1) <= max_queue

and shed otherwise. A segment of a trace that has a segment open (a run called from a tool shares its
parent's ``trace_id``) follows that decision; the decision is forgotten when the trace's last open segment
ends, so a resumed run decides anew. Every later event of a shed trace costs one dict lookup: it is
dropped and counted (``dropped``; ``traces_shed`` counts the traces). Events of an admitted trace are
taken up to the hard limit ``hard_limit`` (default ``2 * max_queue``), far above the admission bound:
as long as each admitted segment queues at most ``reserve`` events more than the room the hard limit
leaves, none of them is dropped. Past the hard limit (the worker stuck for long while admitted runs keep
running) an event of an admitted trace is dropped and the trace is counted in ``traces_broken`` (logged
once): never silently. Events with no open segment in this pipeline (a sink registered while runs were
already going, an event emitted outside any run) are taken while the depth is under ``max_queue``.

``tracedagent.flush(timeout)`` and ``tracedagent.shutdown(timeout)`` drain every pipeline; shutdown also
runs at interpreter exit, bounded by ``TRACEDAGENT_EXIT_TIMEOUT`` seconds (default 5) in all: it starts
before Python waits for the threads that are not daemons (an SDK's sender threads), and every sink shares
the one deadline. After ``fork`` each pipeline in the child starts empty with its own worker thread on
first use.
"""

from __future__ import annotations

import atexit
import collections
import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .exceptions import ConfigurationError

__all__ = [
    "ExportPipeline",
    "ExportStats",
    "export_stats",
    "flush",
    "is_exporting",
    "shutdown",
]

logger = logging.getLogger("tracedagent.export")

T = TypeVar("T")

_pipelines: weakref.WeakSet[ExportPipeline[Any]] = weakref.WeakSet()
_pipelines_lock = threading.Lock()
_local = threading.local()
#: The longest a thread can wait on a lock (a day, so an exit timeout stays an exit timeout).
_MAX_WAIT_S = min(threading.TIMEOUT_MAX, 86400.0)


def is_exporting() -> bool:
    """True on a sink's worker thread while it exports: instrumentation should not trace this."""
    return getattr(_local, "exporting", False)


def _suppress_otel_instrumentation() -> None:
    try:
        from opentelemetry import context as otel_context
    except ImportError:  # OpenTelemetry is optional for the core
        return
    key = getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", None)
    if key is not None:
        otel_context.attach(otel_context.set_value(key, True))


#: What a segment event does to its trace's count of open segments (``Event.hook`` of the event).
_SEGMENT_STEP = {"on_run_start": 1, "on_resume": 1, "on_run_end": -1}


@dataclass(frozen=True, slots=True)
class ExportStats:
    """A pipeline's counters: items waiting, dropped (queue full or trace shed), exported, failed
    exports; traces admitted and shed at their segments' start, and admitted traces that lost an event
    past the hard limit (``traces_broken``: zero unless the worker was stuck far past the bounds)."""

    sink: str
    queue_depth: int
    dropped: int
    exported: int
    failed: int
    traces_admitted: int = 0
    traces_shed: int = 0
    traces_broken: int = 0


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class ExportPipeline(Generic[T]):
    """A bounded queue drained by a worker thread that exports in batches.

    ``export(batch)`` runs on the worker. It is called with at most ``max_batch`` items, when that many
    are waiting or every ``interval_s`` seconds. :meth:`put` takes any item while fewer than
    ``max_queue`` wait (past it items are dropped and counted in ``dropped``); :meth:`put_event` takes
    events by whole traces (see the module's docstring): ``reserve`` is the room kept for each admitted
    segment still open, ``hard_limit`` (default ``2 * max_queue``) the most events ever held, and
    ``backlog`` a function (called at each segment start, on the run's thread: it must be O(1) and never
    block) returning how many items the sink's exporter still holds downstream.
    """

    def __init__(
        self,
        name: str,
        export: Callable[[Sequence[T]], None],
        *,
        max_queue: int = 2048,
        max_batch: int = 512,
        interval_s: float = 1.0,
        reserve: int = 12,
        hard_limit: int | None = None,
        backlog: Callable[[], int] | None = None,
    ) -> None:
        if not (_positive_int(max_queue) and _positive_int(max_batch)):
            raise ConfigurationError(f"sink {name!r}: max_queue and max_batch must be positive integers")
        if not interval_s > 0:
            raise ConfigurationError(f"sink {name!r}: interval_s must be positive, not {interval_s!r}")
        if not _positive_int(reserve):
            raise ConfigurationError(f"sink {name!r}: reserve must be a positive integer, not {reserve!r}")
        hard = 2 * max_queue if hard_limit is None else hard_limit
        if not (_positive_int(hard) and hard >= max_queue):
            raise ConfigurationError(
                f"sink {name!r}: hard_limit must be an integer >= max_queue ({max_queue}), not {hard_limit!r}"
            )
        self.name = name
        self._export = export
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.interval_s = interval_s
        #: A queue smaller than the reserve still admits one trace at a time.
        self.reserve = min(reserve, max_queue)
        self.hard_limit = hard
        self.backlog = backlog
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self.traces_admitted = 0
        self.traces_shed = 0
        self.traces_broken = 0
        self._given_up = 0
        self._failure_logged = False
        self._broken_logged = False
        self._reset()
        with _pipelines_lock:
            _pipelines.add(self)

    def _reset(self) -> None:
        self._queue: collections.deque[T] = collections.deque()
        #: trace id -> True (admitted) or False (shed), while the trace has a segment open here.
        self._decisions: dict[str, bool] = {}
        #: trace id -> its segments open here (started or resumed, not ended yet).
        self._open: dict[str, int] = {}
        #: Admitted segments still open (what ``reserve`` is kept for).
        self._admitted_open = 0
        #: Admitted traces, still open, that lost an event past the hard limit.
        self._broken: set[str] = set()
        self._traces_lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._requested = 0
        self._completed = 0
        self._stopping = False
        self._stopped = False
        self._exited = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    # ------------------------------------------------------------------------------ the hot path

    def put(self, item: T) -> bool:
        """Queue ``item`` for export; never blocks. Returns False (and counts a drop) if it was dropped."""
        queue = self._queue
        if len(queue) >= self.max_queue or self._stopped:
            self.dropped += 1
            return False
        queue.append(item)
        if self._thread is None:
            self._start()
        if len(queue) >= self.max_batch and not self._wake.is_set():  # is_set() takes no lock
            self._wake.set()
        return True

    def put_event(self, event: T) -> bool:
        """Queue an event by whole traces (see the module's docstring); never blocks. Returns False (and
        counts a drop) when the event was dropped: its trace was shed, or the pipeline is stopped."""
        step = _SEGMENT_STEP.get(event.hook)  # type: ignore[attr-defined]
        if step is not None:
            return self._segment(event, step)
        return self.put_within(event)

    def put_within(self, event: T) -> bool:
        """:meth:`put_event` for an event inside a segment (any hook but a segment's start or end): the
        dispatcher calls it directly for those hooks. :meth:`_append`, inlined: this runs for most events."""
        trace: str = event.trace_id  # type: ignore[attr-defined]
        admitted = self._decisions.get(trace)
        queue = self._queue
        if admitted is False or self._stopped:
            self.dropped += 1
            return False
        if len(queue) >= (self.hard_limit if admitted else self.max_queue):
            self.dropped += 1
            if admitted:
                self._broke(trace)
            return False
        queue.append(event)
        if self._thread is None:
            self._start()
        if len(queue) >= self.max_batch and not self._wake.is_set():
            self._wake.set()
        return True

    def put_opening(self, event: T) -> bool:
        """:meth:`put_event` for a segment's start (``on_run_start``, ``on_resume``)."""
        return self._segment(event, 1)

    def put_closing(self, event: T) -> bool:
        """:meth:`put_event` for a segment's end (``on_run_end``)."""
        return self._segment(event, -1)

    def put_for(self, hook: str) -> Callable[[T], bool]:
        """The method :meth:`put_event` amounts to for the events of ``hook`` (the dispatcher calls it)."""
        step = _SEGMENT_STEP.get(hook)
        if step is None:
            return self.put_within
        return self.put_opening if step > 0 else self.put_closing

    def _append(self, event: T, admitted: bool | None) -> bool:
        queue = self._queue
        if self._stopped:
            self.dropped += 1
            return False
        if len(queue) >= (self.hard_limit if admitted else self.max_queue):
            self.dropped += 1
            if admitted:
                self._broke(event.trace_id)  # type: ignore[attr-defined]
            return False
        queue.append(event)
        if self._thread is None:
            self._start()
        if len(queue) >= self.max_batch and not self._wake.is_set():
            self._wake.set()
        return True

    def _segment(self, event: T, step: int) -> bool:
        """A segment opens (``step`` 1) or ends (-1): decide, follow or forget its trace's decision."""
        trace: str = event.trace_id  # type: ignore[attr-defined]
        forget = False
        with self._traces_lock:
            open_ = self._open
            count = open_.get(trace, 0)
            decisions = self._decisions
            if step > 0:
                admitted = decisions.get(trace) if count else None
                if admitted is None:
                    admitted = self._admit()
                    decisions[trace] = admitted
                    if admitted:
                        self.traces_admitted += 1
                    else:
                        self.traces_shed += 1
                open_[trace] = count + 1
                if admitted:
                    self._admitted_open += 1
            elif count:
                admitted = decisions[trace]
                if count == 1:
                    del open_[trace]
                    del decisions[trace]
                    forget = True
                else:
                    open_[trace] = count - 1
                if admitted:
                    self._admitted_open -= 1
            else:  # the end of a segment this pipeline never saw start
                admitted = None
        if admitted is False:
            self.dropped += 1
            return False
        taken = self._append(event, admitted)
        if forget and self._broken:
            with self._traces_lock:
                self._broken.discard(trace)
        return taken

    def _admit(self) -> bool:
        """Whether a new trace fits: its pressure now plus the room kept for every admitted open segment
        (this one included) within ``max_queue``. Called with the traces lock held."""
        pressure = len(self._queue)
        backlog = self.backlog
        if backlog is not None:
            try:
                pressure += backlog()
            except Exception:  # a sink's broken gauge must not break the run: count it as full
                pressure = self.max_queue
        return not self._stopped and pressure + self.reserve * (self._admitted_open + 1) <= self.max_queue

    def _broke(self, trace: str) -> None:
        with self._traces_lock:
            if trace in self._broken:
                return
            self._broken.add(trace)
            self.traces_broken += 1
            first = not self._broken_logged
            self._broken_logged = True
        if first:
            logger.warning(
                "sink %r dropped an event of an admitted trace: %d events were waiting (hard_limit=%d). That "
                "trace arrives broken and is counted in traces_broken; the worker is far behind its backend. "
                "Later cases are counted, not logged",
                self.name,
                len(self._queue),
                self.hard_limit,
            )

    def give_up(self, count: int) -> None:
        """Called by ``export`` (on the worker) for ``count`` items of the batch it is given that it
        drops on purpose (its backend is too far behind to take them): they are counted as ``dropped``,
        not ``exported``."""
        self._given_up += count
        self.dropped += count

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def admitted_open(self) -> int:
        """Admitted run segments still open."""
        return self._admitted_open

    def stats(self) -> ExportStats:
        return ExportStats(
            self.name,
            len(self._queue),
            self.dropped,
            self.exported,
            self.failed,
            self.traces_admitted,
            self.traces_shed,
            self.traces_broken,
        )

    # -------------------------------------------------------------------------------- the worker

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped:
                thread = threading.Thread(target=self._work, name=f"tracedagent-export-{self.name}", daemon=True)
                self._thread = thread
                thread.start()

    def _work(self) -> None:
        _local.exporting = True
        _suppress_otel_instrumentation()
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._done:
                target = self._requested
                stopping = self._stopping
            self._drain()
            with self._done:
                self._completed = max(self._completed, target)
                if stopping:
                    # The worker ends here: release every waiter; later flushes return at once.
                    self._stopped = self._exited = True
                    self._completed = self._requested
                self._done.notify_all()
            if stopping:
                return

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            batch: list[T] = []
            popleft = queue.popleft
            try:
                while len(batch) < self.max_batch:
                    batch.append(popleft())
            except IndexError:
                pass
            self._given_up = 0
            try:
                self._export(batch)
                self.exported += len(batch) - self._given_up
            except Exception:
                self.failed += len(batch)
                if not self._failure_logged:
                    self._failure_logged = True
                    logger.exception(
                        "sink %r failed to export %d items; the items are dropped and later failures are "
                        "counted, not logged",
                        self.name,
                        len(batch),
                    )

    def _request(self, stop: bool, timeout: float | None) -> bool:
        if self._thread is None:
            if stop:
                self._stopped = True
            if not self._queue:
                return True
            self._start()
        with self._done:
            if self._exited:  # shut down: the worker has exited and nothing can be queued any more
                return True
            self._requested += 1
            target = self._requested
            if stop:
                self._stopping = True
        self._wake.set()
        if timeout is not None and not timeout <= _MAX_WAIT_S:  # more than a lock can wait (inf): no limit
            timeout = None if timeout > _MAX_WAIT_S else 0.0  # nan: do not wait
        with self._done:
            ok = self._done.wait_for(lambda: self._completed >= target, timeout)
        if stop:
            self._stopped = True
        return ok

    def flush(self, timeout: float | None = None) -> bool:
        """Export everything queued so far; True if done within ``timeout`` seconds."""
        return self._request(False, timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Export what is queued, stop the worker and drop anything put later. True if done in time."""
        if self._exited:
            return True
        return self._request(True, timeout)

    def start_helper(self, target: Callable[[], object], name: str) -> threading.Thread:
        """Start a daemon thread on the sink's export side (an exporter's own sender): like the worker,
        :func:`is_exporting` is True on it and OpenTelemetry instrumentation is suppressed there."""

        def run() -> None:
            _local.exporting = True
            _suppress_otel_instrumentation()
            target()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def abandon(self) -> None:
        """Called at exit when ``TRACEDAGENT_EXIT_TIMEOUT`` ran out before this pipeline drained: a sink
        whose backend still holds items (an SDK's own queue and threads) overrides it to give them up, so
        the process can exit. It must return at once (the exit deadline has passed) and leave no thread
        that is not a daemon waiting on the backend. The default does nothing (the worker is a daemon
        thread)."""

    def _after_fork(self) -> None:
        self._reset()


def _each(action: str, timeout: float | None) -> bool:
    """Call ``action`` (flush or shutdown) of every pipeline at once, each on a helper thread, and wait
    for them all within the one ``timeout``: a sink whose backend does not answer cannot take the time of
    the others."""
    return not _unfinished(action, timeout)


def _unfinished(action: str, timeout: float | None) -> list[ExportPipeline[Any]]:
    """:func:`_each`, returning the pipelines that did not finish in time (helper threads are daemons:
    one still waiting at the deadline is left to wait, and holds nothing)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _pipelines_lock:
        pipelines = list(_pipelines)
    if len(pipelines) <= 1:
        return [p for p in pipelines if not getattr(p, action)(timeout)]
    results: dict[int, bool] = {}

    def run(pipeline: ExportPipeline[Any]) -> None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        results[id(pipeline)] = bool(getattr(pipeline, action)(left))

    threads = [
        threading.Thread(target=run, args=(p,), name=f"tracedagent-{action}-{p.name}", daemon=True) for p in pipelines
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if left is not None and not left <= _MAX_WAIT_S:
            left = None
        thread.join(left)
    return [p for p in pipelines if not results.get(id(p), False)]


def flush(timeout: float | None = 5.0) -> bool:
    """Drain every sink's queue; True if all finished within ``timeout`` seconds (shared)."""
    return _each("flush", timeout)


def shutdown(timeout: float | None = 5.0) -> bool:
    """Drain and stop every sink; True if all finished within ``timeout`` seconds (shared)."""
    return _each("shutdown", timeout)


def export_stats() -> list[ExportStats]:
    """Queue depth, drops, exported and failed counts of every sink in this process."""
    with _pipelines_lock:
        return [p.stats() for p in _pipelines]


def _after_fork_in_child() -> None:
    global _pipelines_lock
    _pipelines_lock = threading.Lock()  # another thread may have held it at the fork
    for pipeline in list(_pipelines):
        pipeline._after_fork()


def _exit_timeout() -> float:
    raw = os.environ.get("TRACEDAGENT_EXIT_TIMEOUT", "5")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "abc", "nan", "inf": an exit must not hang or skip the drain by mistake
        logger.warning("TRACEDAGENT_EXIT_TIMEOUT=%r is not a number of seconds; using 5", raw)
        return 5.0
    return min(max(0.0, value), _MAX_WAIT_S)


#: At exit: when the drain that ran before Python waits for its threads must be done (monotonic).
_exit_deadline: float | None = None


def _before_threads_stop() -> None:
    """At exit, once the main thread is done and before Python joins the threads that are not daemons (an
    SDK's sender): drain every sink while those threads still send, all within ``TRACEDAGENT_EXIT_TIMEOUT``.
    A pipeline still busy at the deadline is told to :meth:`~ExportPipeline.abandon` what its backend
    holds, at once, so that no thread of it keeps the process alive; this thread waits for nothing more.
    (``abandon`` must not block: the exit bound is only as hard as the slowest ``abandon``.)"""
    global _exit_deadline
    timeout = _exit_timeout()
    _exit_deadline = time.monotonic() + timeout
    late = _unfinished("flush", timeout)
    if not late:
        _exit_deadline = None  # all sent: the shutdown at exit gets its own timeout for what comes later
        return
    for pipeline in late:  # only those still busy: a sink that finished keeps what it holds going
        try:
            pipeline.abandon()
        except Exception:
            logger.exception("sink %r failed to abandon its backlog at exit", pipeline.name)


def _at_exit() -> None:
    deadline = _exit_deadline
    shutdown(_exit_timeout() if deadline is None else max(0.0, deadline - time.monotonic()))


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
_register_before_threads_stop = getattr(threading, "_register_atexit", None)
if _register_before_threads_stop is not None:
    try:
        _register_before_threads_stop(_before_threads_stop)
    except RuntimeError:  # imported while the interpreter shuts down
        pass
