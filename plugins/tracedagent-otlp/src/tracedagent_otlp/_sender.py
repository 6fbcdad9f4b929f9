"""``SpanSender``: the span exporter's own thread and bounded batch queue, so exports never hold span building.

The tracer's export worker turns events into spans and hands each batch of finished spans to
:meth:`SpanSender.submit`; the sender's thread calls ``exporter.export`` (with the exporter's own timeout
and retries). At most ``max_batches`` batches wait: when they are all taken, ``submit`` waits for room on
the export worker (never on a run's thread), which bounds memory; the worker's event queue then grows,
and the tracer's admission sheds new traces (the sender's backlog counts in its pressure, see
:attr:`SpanSender.backlog`).

After a failed export (the exporter has retried already) the sender rests for a while, 1 s doubling up to
30 s: the batches that come meanwhile are counted as failed without calling the exporter, so a dead
collector costs neither the worker nor memory, and the first success ends the rests.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["FIRST_REST_S", "MAX_REST_S", "SpanSender"]

logger = logging.getLogger("tracedagent.otlp")

#: How long the exporter rests after a failed export: doubling from the first to the longest rest.
FIRST_REST_S = 1.0
MAX_REST_S = 30.0
#: The longest a thread can wait on a lock (a day, so that a timeout stays a timeout).
_MAX_WAIT_S = min(threading.TIMEOUT_MAX, 86400.0)


def _wait_s(timeout: float | None) -> float | None:
    if timeout is None or not timeout <= _MAX_WAIT_S:
        return None if timeout is None or timeout > _MAX_WAIT_S else 0.0  # inf: no limit; nan: no wait
    return max(0.0, timeout)


class SpanSender:
    """Exports batches of spans on a daemon thread of its own, from a queue of at most ``max_batches``.

    ``clock`` is read for the rests (tests move it); ``describe`` names the destination in messages.
    Counters: ``spans_exported`` and ``spans_failed``, and the tracer events the failed batches were
    made from (``events_failed``)."""

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_batches: int = 4,
        clock: Callable[[], float] = time.monotonic,
        destination: str = "the collector",
    ) -> None:
        self.exporter = exporter
        self.max_batches = max_batches
        self.clock = clock
        self.destination = destination
        self.spans_exported = 0
        self.spans_failed = 0
        self.events_failed = 0
        self._rest_until = 0.0
        self._rest_s = 0.0
        self._final = False
        self._failure_logged = False
        #: Starts the sender's thread (the tracer's pipeline marks it as an export thread).
        self.start_thread: Callable[[Callable[[], object], str], threading.Thread] = _daemon
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._batches: collections.deque[tuple[Sequence[Any], int]] = collections.deque()
        self._queued_spans = 0
        self._inflight_spans = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def backlog(self) -> int:
        """Spans waiting for the exporter or being exported now (read without a lock: O(1))."""
        return self._queued_spans + self._inflight_spans

    # --------------------------------------------------------------------- the export worker's side

    def submit(self, spans: Sequence[Any], events: int) -> None:
        """Queue a batch of spans (made from ``events`` tracer events); waits while ``max_batches`` batches
        are waiting. After :meth:`close` the batch is counted as failed at once."""
        if self._pid != os.getpid():  # forked: the parent's thread and batches are not ours
            self._reset()
        cond = self._cond
        with cond:
            while len(self._batches) >= self.max_batches and not self._closed:
                cond.wait()
            if self._closed:
                self._failed(spans, events, "the tracer was shut down")
                return
            self._batches.append((spans, events))
            self._queued_spans += len(spans)
            if self._thread is None:
                self._thread = self.start_thread(self._work, "tracedagent-otlp-sender")
            cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every batch submitted so far was exported or failed; True if done in time."""
        if self._pid != os.getpid():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: not self._batches and not self._inflight_spans, _wait_s(timeout))

    def close(self, timeout: float | None = None) -> bool:
        """Export what is queued within ``timeout``, then stop: later batches fail at once, and the
        exporter is shut down (which also ends a retry in progress). True if all was exported in time.
        A second call (or one after :meth:`abandon`) returns at once."""
        if self._closed:
            return not self._batches and not self._inflight_spans
        self.last_attempt()
        ok = self.flush(timeout)
        dropped = self._close()
        try:
            self.exporter.shutdown()
        except Exception:
            logger.exception("tracedagent-otlp: the span exporter failed to shut down")
        return ok and not dropped

    def abandon(self) -> None:
        """At exit, past the deadline: stop at once. Queued batches fail, later ones too, and the
        exporter is shut down on a daemon thread that nobody waits for (an exporter's ``shutdown`` may
        wait for the export in flight: the stock gRPC exporter's does), which ends its retries; the
        sender's thread is a daemon, so an export still in flight holds nothing."""
        if self._closed:
            return
        self._close()
        _daemon(self._shutdown_exporter, "tracedagent-otlp-abandon")

    def last_attempt(self) -> None:
        """Shutting down: each batch left gets one try, without the rests or the exporter's backoff
        (an exporter that has ``last_attempt``, as the plugin's own has, is told so)."""
        self._final = True
        last_attempt = getattr(self.exporter, "last_attempt", None)
        if last_attempt is not None:
            try:
                last_attempt()
            except Exception:
                logger.debug("tracedagent-otlp: the span exporter's last_attempt failed", exc_info=True)

    def _close(self) -> list[tuple[Sequence[Any], int]]:
        with self._cond:
            self._closed = True
            dropped = list(self._batches)
            self._batches.clear()
            self._queued_spans = 0
            self._cond.notify_all()
        for spans, events in dropped:
            self._failed(spans, events, "the shutdown deadline passed before they were exported")
        return dropped

    def _shutdown_exporter(self) -> None:
        try:
            self.exporter.shutdown()
        except Exception:
            logger.debug("tracedagent-otlp: the span exporter failed to shut down", exc_info=True)

    # ------------------------------------------------------------------------- the sender's thread

    def _work(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._batches and not self._closed:
                    cond.wait()
                if not self._batches:
                    return
                spans, events = self._batches.popleft()
                self._queued_spans -= len(spans)
                self._inflight_spans = len(spans)
                cond.notify_all()  # room for the worker
            try:
                self._send(spans, events)
            finally:
                with cond:
                    self._inflight_spans = 0
                    cond.notify_all()

    def _send(self, spans: Sequence[Any], events: int) -> None:
        if self._closed:
            self._failed(spans, events, "the tracer was shut down")
            return
        if self._rest_until and not self._final and self.clock() < self._rest_until:
            self._failed(spans, events, f"the exporter to {self.destination} failed and rests until its next try")
            return
        try:
            result = self.exporter.export(spans)
        except Exception:
            logger.debug("tracedagent-otlp: the span exporter raised", exc_info=True)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._rest_s = min(MAX_REST_S, max(FIRST_REST_S, 2 * self._rest_s))
            self._rest_until = self.clock() + self._rest_s
            why = getattr(self.exporter, "last_error", None)
            said = f"the span exporter failed to export them to {self.destination}" + (f" ({why})" if why else "")
            self._failed(spans, events, said)
            return
        self._rest_until = self._rest_s = 0.0
        self.spans_exported += len(spans)

    def _failed(self, spans: Sequence[Any], events: int, why: str) -> None:
        self.spans_failed += len(spans)
        self.events_failed += events
        if not self._failure_logged:
            self._failure_logged = True
            logger.error(
                "tracedagent-otlp: %d spans not exported: %s; later failures are counted "
                "(OtlpTracer.spans_failed), not logged",
                len(spans),
                why,
            )


def _daemon(target: Callable[[], object], name: str) -> threading.Thread:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
