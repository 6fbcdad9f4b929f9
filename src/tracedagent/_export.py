"""The export pipeline: a bounded queue and a worker thread per sink, so hooks never do I/O.

A hook calls :meth:`ExportPipeline.put`, which appends to a bounded deque and returns at once; when the
queue is full the item is dropped and counted, never blocking the run. The sink's worker thread wakes
when a batch is full or the interval passes and hands batches to the sink's ``export`` function; that is
where serialisation, compression and HTTP happen. While exporting, the worker marks itself (and, when
OpenTelemetry is installed, sets its suppress-instrumentation key) so the sink's own I/O is never traced.

``tracedagent.flush(timeout)`` and ``tracedagent.shutdown(timeout)`` drain every pipeline; shutdown also
runs at interpreter exit, bounded by ``TRACEDAGENT_EXIT_TIMEOUT`` seconds (default 5). After ``fork``
each pipeline in the child starts empty with its own worker thread on first use.
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

__all__ = ["ExportPipeline", "ExportStats", "export_stats", "flush", "is_exporting", "shutdown"]

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


@dataclass(frozen=True, slots=True)
class ExportStats:
    """A pipeline's counters: items waiting, dropped (queue full), exported, and failed exports."""

    sink: str
    queue_depth: int
    dropped: int
    exported: int
    failed: int


class ExportPipeline(Generic[T]):
    """A bounded queue drained by a worker thread that exports in batches.

    ``export(batch)`` runs on the worker. It is called with at most ``max_batch`` items, when that many
    are waiting or every ``interval_s`` seconds. ``max_queue`` bounds memory; past it items are dropped
    and counted (``dropped``).
    """

    def __init__(
        self,
        name: str,
        export: Callable[[Sequence[T]], None],
        *,
        max_queue: int = 2048,
        max_batch: int = 512,
        interval_s: float = 1.0,
    ) -> None:
        if not (isinstance(max_queue, int) and max_queue > 0 and isinstance(max_batch, int) and max_batch > 0):
            raise ConfigurationError(f"sink {name!r}: max_queue and max_batch must be positive integers")
        if not interval_s > 0:
            raise ConfigurationError(f"sink {name!r}: interval_s must be positive, not {interval_s!r}")
        self.name = name
        self._export = export
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self._given_up = 0
        self._failure_logged = False
        self._reset()
        with _pipelines_lock:
            _pipelines.add(self)

    def _reset(self) -> None:
        self._queue: collections.deque[T] = collections.deque()
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

    def give_up(self, count: int) -> None:
        """Called by ``export`` (on the worker) for ``count`` items of the batch it is given that it
        drops on purpose (its backend is too far behind to take them): they are counted as ``dropped``,
        not ``exported``."""
        self._given_up += count
        self.dropped += count

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def stats(self) -> ExportStats:
        return ExportStats(self.name, len(self._queue), self.dropped, self.exported, self.failed)

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

    def _after_fork(self) -> None:
        self._reset()


def _each(action: str, timeout: float | None) -> bool:
    deadline = None if timeout is None else time.monotonic() + timeout
    with _pipelines_lock:
        pipelines = list(_pipelines)
    ok = True
    for pipeline in pipelines:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ok = getattr(pipeline, action)(left) and ok
    return ok


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


def _at_exit() -> None:
    shutdown(_exit_timeout())


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)
