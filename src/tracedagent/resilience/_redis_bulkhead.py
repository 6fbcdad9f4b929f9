"""The bulkhead shared in Redis: concurrency slots as leases (see :mod:`._redis` for connections, time and
what happens when Redis cannot be reached)."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..exceptions import BackpressureRejected, ConfigurationError, UserError
from ._bulkhead import Bulkhead
from ._redis import NOW, REMOVE, Connection, Outage, text

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBulkhead"]

logger = logging.getLogger("tracedagent")

# KEYS: slots zset. ARGV: now (always ''), max_concurrency, slot id, lease_seconds. Returns 1 when taken.
_ACQUIRE = (
    NOW
    + """
local lease = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
return 1
"""
)

# KEYS: slots zset. ARGV: now (''), lease_seconds, slot ids... Renews the live ones; returns the lost ones.
_RENEW = (
    NOW
    + """
local lease, lost = tonumber(ARGV[2]), {}
for i = 3, #ARGV do
  local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i]))
  if expiry and expiry > now then redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
  else redis.call('ZREM', KEYS[1], ARGV[i]); lost[#lost + 1] = ARGV[i] end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
return lost
"""
)

# KEYS: slots zset. Slots held now, by every worker.
_COUNT = NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')"

_SCRIPTS = {"acquire": _ACQUIRE, "renew": _RENEW, "remove": REMOVE, "count": _COUNT}


@dataclass(eq=False)
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] | None = None
    kicked: bool = False


@dataclass
class _Held:
    """The slots held on one event loop, and the task that renews their leases."""

    slots: set[str] = field(default_factory=set)
    lost: int = 0  # calls whose lease expired under them: their release gives nothing back
    renewer: asyncio.Task[None] | None = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class RedisBulkhead(Bulkhead):
    """A :class:`Bulkhead` whose ``max_concurrency`` slots are shared in Redis by every worker using ``key``.

    A slot is a lease: a member of the sorted set at ``key`` whose score is its expiry. Taking one is a
    Lua script that first drops the expired leases. While a call runs, its lease is renewed every
    ``lease_seconds / 3``, so a long call keeps its slot; a worker that dies stops renewing, and its slots
    free themselves after ``lease_seconds``. A call waits in this process's queue (at most
    ``max_queue``: past it the call is refused with reason ``queue_full``), trying again when a call of
    this process ends and otherwise every ``poll_interval`` at most (with jitter), until ``queue_timeout``
    (reason ``queue_timeout``). Waiters are served in no particular order across workers.

    :attr:`inflight` counts this process's calls in flight, :attr:`queue_depth` its waiting calls;
    :meth:`global_inflight` asks Redis for every worker's. ``remote`` is True: the run loop awaits
    :meth:`acquire` and :meth:`arelease`; :meth:`release` raises :class:`UserError`.
    """

    remote = True

    def __init__(
        self,
        url_or_client: str | Redis,
        key: str,
        max_concurrency: int,
        *,
        max_queue: int = 100,
        queue_timeout: float | None = None,
        soft_limit: int | None = None,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.1,
        name: str = "",
    ) -> None:
        if max_concurrency is None:
            raise ConfigurationError(f"RedisBulkhead {key!r}: max_concurrency must be a whole number >= 1")
        super().__init__(
            max_concurrency, max_queue=max_queue, queue_timeout=queue_timeout, soft_limit=soft_limit, name=name
        )
        for label, value in (("lease_seconds", lease_seconds), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"RedisBulkhead {key!r}: {label} must be a positive number, not {value!r}")
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"RedisBulkhead key must be a non-empty string, not {key!r}")
        self.limit: int = max_concurrency
        self.key = key
        self.lease_seconds = float(lease_seconds)
        self.poll_interval = float(poll_interval)
        self.rejected["redis_unavailable"] = 0
        self._redis = Connection(url_or_client, "RedisBulkhead", _SCRIPTS)
        self._queue: deque[_Waiter] = deque()
        self._held: dict[asyncio.AbstractEventLoop, _Held] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self._outage = Outage()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    async def global_inflight(self) -> int:
        """Slots held now by every worker (leases not yet expired)."""
        return int(await self._redis.run("count", (self.key,), ("",)))

    async def acquire(self) -> None:
        """Take a slot, waiting if need be; raises :class:`BackpressureRejected` (``reason`` queue_full,
        queue_timeout or redis_unavailable). A slot taken by a call cancelled meanwhile is given back."""
        loop = asyncio.get_running_loop()
        slot = uuid.uuid4().hex
        pending: list[asyncio.Task[Any]] = []  # the attempt in flight, if any: it may have taken the slot
        try:
            if await self._attempt(slot, pending):
                self._hold(loop, slot)
                return
            waiter = self._enqueue(loop)
            try:
                deadline = None if self.queue_timeout is None else loop.time() + self.queue_timeout
                delay = min(self.poll_interval, 0.01)
                while True:
                    wait = delay * random.uniform(0.5, 1.0)
                    if deadline is not None:
                        wait = min(wait, deadline - loop.time())
                    if wait > 0:
                        await self._sleep(waiter, wait)
                    if await self._attempt(slot, pending):
                        break
                    if deadline is not None and loop.time() >= deadline:
                        with self._lock:
                            self.rejected["queue_timeout"] += 1
                        raise self._refused(
                            "queue_timeout",
                            f"waited {self.queue_timeout:g}s in the queue (queue_timeout) for one of "
                            f"{self.limit} slots shared in Redis",
                        )
                    delay = min(delay * 2, self.poll_interval)
            finally:
                self._dequeue(waiter)
            self._hold(loop, slot)
        except BaseException:
            if pending:  # cancelled while an attempt was in flight: give back what it may have taken
                self._background(self._give_back(slot, pending[0]))
            raise

    async def _attempt(self, slot: str, pending: list[asyncio.Task[Any]]) -> bool:
        task = asyncio.ensure_future(
            self._redis.run("acquire", (self.key,), ("", self.limit, slot, self.lease_seconds))
        )
        pending[:] = [task]
        try:
            taken = await asyncio.shield(task)  # a cancelled caller still learns, in _give_back, what it did
        except self._redis.errors as exc:
            pending.clear()
            with self._lock:
                self.rejected["redis_unavailable"] += 1
            raise self._refused(
                "redis_unavailable",
                f"its concurrency limit is shared in Redis at {self._redis.where}, which cannot be reached "
                f"({type(exc).__name__}: {exc}); calls are refused until Redis answers",
                advice="check Redis",
            ) from exc
        pending.clear()
        self._outage.over()
        return int(taken) == 1

    def _refused(
        self, reason: str, why: str, advice: str = "raise the limits or lower the load"
    ) -> BackpressureRejected:
        return BackpressureRejected(
            f"tool {self.name or self.key!r} refused by backpressure: {why}; {advice}", tool=self.name, reason=reason
        )

    def _enqueue(self, loop: asyncio.AbstractEventLoop) -> _Waiter:
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self.rejected["queue_full"] += 1
                raise self._refused(
                    "queue_full",
                    f"all {self.limit} slots shared in Redis are taken (max_concurrency={self.limit}) and "
                    f"{len(self._queue)} calls of this process are queued (max_queue={self.max_queue})",
                )
            waiter = _Waiter(loop)
            self._queue.append(waiter)
            depth = len(self._queue)
            warn = depth >= self.soft_limit and not self._warned
            if warn:
                self._warned = True
        if warn:
            logger.warning(
                "tool %r: %d calls queued for %d slots shared in Redis, past the soft limit of %d (max_queue=%d): "
                "calls will soon be refused",
                self.name,
                depth,
                self.limit,
                self.soft_limit,
                self.max_queue,
            )
        return waiter

    def _dequeue(self, waiter: _Waiter) -> None:
        with self._lock:
            if waiter in self._queue:
                self._queue.remove(waiter)
            if self._warned and len(self._queue) < self.soft_limit:
                self._warned = False

    async def _sleep(self, waiter: _Waiter, seconds: float) -> None:
        """Wait ``seconds``, or less if a call of this process ends (it kicks the first waiter)."""
        future = waiter.loop.create_future()
        with self._lock:
            if waiter.kicked:
                waiter.kicked = False
                return
            waiter.future = future
        timer = waiter.loop.call_later(seconds, _wake, future)
        try:
            await future
        finally:
            timer.cancel()
            with self._lock:
                waiter.future, waiter.kicked = None, False

    def _kick(self) -> None:
        with self._lock:
            if not self._queue:
                return
            waiter = self._queue[0]
            waiter.kicked = True
            future = waiter.future
        if future is not None:
            try:
                waiter.loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # its event loop is gone
                pass

    def _hold(self, loop: asyncio.AbstractEventLoop, slot: str) -> None:
        with self._lock:
            held = self._held.get(loop)
            if held is None:
                for old in [old for old in self._held if old.is_closed()]:
                    del self._held[old]
                held = self._held[loop] = _Held()
            held.slots.add(slot)
            self.inflight += 1
            if held.renewer is None or held.renewer.done():
                held.renewer = loop.create_task(self._renew(held), name=f"tracedagent renew {self.key}")

    async def _renew(self, held: _Held) -> None:
        """Renew this loop's leases every ``lease_seconds / 3`` while it holds any."""
        try:
            await self._renewing(held)
        finally:
            with self._lock:
                if held.renewer is asyncio.current_task():
                    held.renewer = None

    async def _renewing(self, held: _Held) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            with self._lock:
                slots = list(held.slots)
            if not slots:
                return
            try:
                lost = await self._redis.run("renew", (self.key,), ("", self.lease_seconds, *slots))
            except self._redis.errors as exc:
                self._outage.warn(
                    "tool %r: cannot renew its slots in Redis at %s (%s: %s); they expire after %gs",
                    self.name,
                    self._redis.where,
                    type(exc).__name__,
                    exc,
                    self.lease_seconds,
                )
                continue
            self._outage.over()
            for slot in map(text, lost):
                with self._lock:
                    if slot not in held.slots:
                        continue  # released meanwhile
                    held.slots.discard(slot)
                    held.lost += 1
                logger.warning(
                    "tool %r lost a slot shared in Redis: its lease (lease_seconds=%g) expired before it was "
                    "renewed (was the process paused, or Redis unreachable?); until the call ends the limit of "
                    "%d may be exceeded",
                    self.name,
                    self.lease_seconds,
                    self.limit,
                )

    def release(self) -> None:
        raise UserError(f"RedisBulkhead {self.key!r} keeps its slots in Redis: await arelease() (the run loop does)")

    async def arelease(self) -> None:
        """A call of this event loop finished: give one of its slots back. Never raises: when Redis cannot
        be reached the slot expires after ``lease_seconds`` (it is no longer renewed)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            held = self._held.get(loop)
            if held is None or not (held.slots or held.lost):
                return
            self.inflight -= 1
            if held.lost:
                held.lost -= 1
                return
            slot = held.slots.pop()
            if not held.slots and held.renewer is not None:
                held.renewer.cancel()
                held.renewer = None
        # Shielded: a second cancellation of the caller must not leave the slot behind.
        await asyncio.shield(self._background(self._give_back(slot)))

    async def _give_back(self, slot: str, attempt: asyncio.Task[Any] | None = None) -> None:
        if attempt is not None:
            await asyncio.wait([attempt])  # the attempt first, so the removal comes after it in Redis
            if not attempt.cancelled():
                attempt.exception()  # retrieved: its failure, if any, is the caller's refusal already
        try:
            await self._redis.run("remove", (self.key,), (slot,))
        except self._redis.errors as exc:
            self._outage.warn(
                "tool %r: cannot give a slot back in Redis at %s (%s: %s); it expires after %gs",
                self.name,
                self._redis.where,
                type(exc).__name__,
                exc,
                self.lease_seconds,
            )
        self._kick()

    def _background(self, coroutine: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coroutine)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def aclose(self) -> None:
        """Wait for the slots being given back on the running loop, then close its Redis client."""
        loop = asyncio.get_running_loop()
        mine = [task for task in list(self._cleanups) if task.get_loop() is loop]
        if mine:
            await asyncio.wait(mine)
        await self._redis.aclose()

    def __repr__(self) -> str:
        return (
            f"RedisBulkhead({self.key!r}, max_concurrency={self.limit}, inflight={self.inflight} here, "
            f"queued={len(self._queue)} here, at {self._redis.where})"
        )
