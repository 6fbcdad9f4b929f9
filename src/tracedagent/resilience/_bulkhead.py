"""The bulkhead: at most ``max_concurrency`` calls of a tool in flight across every run of the process.

Calls past the limit wait in a queue of at most ``max_queue``; a call that finds the queue full is
refused at once (``queue_full``), one that waits longer than ``queue_timeout`` seconds is refused then
(``queue_timeout``). When the queue passes ``soft_limit`` (80% of ``max_queue`` by default) a warning is
logged, once until it drains below again: the load is about to be refused. Slots are handed from a
finishing call straight to the first waiter, and a waiter that times out or is cancelled after being
handed a slot gives it back, so no slot is ever lost.

It works across event loops and threads (a lock guards the counts; waiters are woken on their own
loop). :class:`RedisBulkhead` shares the limit between worker processes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

from ..exceptions import BackpressureRejected, ConfigurationError

__all__ = ["Bulkhead"]

logger = logging.getLogger("tracedagent")


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """Limits one tool's calls in flight; ``max_concurrency=None`` only counts them."""

    remote = False

    def __init__(
        self,
        max_concurrency: int | None = None,
        *,
        max_queue: int = 100,
        queue_timeout: float | None = None,
        soft_limit: int | None = None,
        name: str = "",
    ) -> None:
        for label, value in (
            ("max_concurrency", max_concurrency),
            ("max_queue", max_queue),
            ("soft_limit", soft_limit),
        ):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigurationError(f"tool {name!r}: {label} must be a whole number >= 0, not {value!r}")
        if max_concurrency == 0:
            raise ConfigurationError(f"tool {name!r}: max_concurrency must be at least 1 (or None for no limit)")
        if queue_timeout is not None and (
            isinstance(queue_timeout, bool) or not isinstance(queue_timeout, (int, float)) or queue_timeout <= 0
        ):
            raise ConfigurationError(f"tool {name!r}: queue_timeout must be a positive number, not {queue_timeout!r}")
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout = queue_timeout
        self.soft_limit = soft_limit if soft_limit is not None else max(1, (max_queue * 4) // 5)
        self.inflight = 0
        self._waiters: deque[_Waiter] = deque()
        self._lock = threading.Lock()
        self._warned = False
        self.rejected = {"queue_full": 0, "queue_timeout": 0}

    @property
    def queue_depth(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a slot; raises :class:`BackpressureRejected` (``reason`` queue_full / queue_timeout)."""
        if self.max_concurrency is None:
            self.inflight += 1  # counted only (under the GIL), for the in-flight gauge
            return
        with self._lock:
            if self.inflight < self.max_concurrency and not self._waiters:
                self.inflight += 1
                return
            if len(self._waiters) >= self.max_queue:
                self.rejected["queue_full"] += 1
                raise BackpressureRejected(
                    f"tool {self.name!r} refused by backpressure: {self.inflight} calls in flight "
                    f"(max_concurrency={self.max_concurrency}) and {len(self._waiters)} queued "
                    f"(max_queue={self.max_queue}); raise the limits or lower the load",
                    tool=self.name,
                    reason="queue_full",
                )
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
            depth = len(self._waiters)
            warn = depth >= self.soft_limit and not self._warned
            if warn:
                self._warned = True
        if warn:
            logger.warning(
                "tool %r: %d call(s) queued behind %d in flight, past the soft limit of %d (max_queue=%d): "
                "calls will soon be refused",
                self.name,
                depth,
                self.max_concurrency,
                self.soft_limit,
                self.max_queue,
            )
        try:
            if self.queue_timeout is None:
                await waiter.future
            else:
                await asyncio.wait_for(asyncio.shield(waiter.future), self.queue_timeout)
        except BaseException as exc:
            with self._lock:
                granted = waiter.granted
                if not granted and waiter in self._waiters:
                    self._waiters.remove(waiter)
                    self._drained()
            if granted:  # the slot came at the same moment: give it back
                self.release()
            if isinstance(exc, TimeoutError):
                with self._lock:
                    self.rejected["queue_timeout"] += 1
                raise BackpressureRejected(
                    f"tool {self.name!r} refused by backpressure: waited {self.queue_timeout:g}s in the queue "
                    f"(queue_timeout) behind {self.max_concurrency} calls in flight; raise the limits or lower "
                    "the load",
                    tool=self.name,
                    reason="queue_timeout",
                ) from None
            raise

    def release(self) -> None:
        """A call finished: hand its slot to the first waiter, or free it."""
        if self.max_concurrency is None:
            self.inflight -= 1
            return
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                self._drained()
                if waiter.future.done():  # cancelled while queued; its own cleanup removes nothing
                    continue
                try:
                    waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                except RuntimeError:  # its event loop is gone: hand the slot to the next one
                    continue
                waiter.granted = True
                return
            self.inflight -= 1

    async def arelease(self) -> None:
        """:meth:`release`, awaited: the run loop awaits it when ``remote`` is True (slots kept elsewhere)."""
        self.release()

    def _drained(self) -> None:
        if self._warned and len(self._waiters) < self.soft_limit:
            self._warned = False

    def __repr__(self) -> str:
        return (
            f"Bulkhead(max_concurrency={self.max_concurrency}, max_queue={self.max_queue}, "
            f"inflight={self.inflight}, queued={len(self._waiters)})"
        )
