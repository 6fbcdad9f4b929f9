"""The circuit breaker shared in Redis (see :mod:`._redis` for connections, time and what happens when
Redis cannot be reached)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, cast

from ..exceptions import CircuitOpen, ConfigurationError, UserError
from ._breaker import Admission, CircuitBreaker, CircuitState, Transition, _check
from ._redis import NOW, REMOVE, Connection, Outage, text

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisCircuitBreaker"]

# KEYS: state hash, probes zset. ARGV: now, reset_timeout, half_open_max_calls, probe id, probe_lease.
# Returns {allowed, state, 'open' when it moved open -> half_open, retry_in[, 'probe']}.
_BEFORE_CALL = (
    NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= 'open' and state ~= 'half_open' then return {1, 'closed', '', '0'} end
local moved = ''
if state == 'open' then
  local waited = now - tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
  local reset = tonumber(ARGV[2])
  if waited < reset then return {0, 'open', '', tostring(reset - waited)} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'successes', 0)
  redis.call('DEL', KEYS[2])
  moved = 'open'
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {0, 'half_open', moved, '0'} end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
return {1, 'half_open', moved, '0', 'probe'}
"""
)

# KEYS: state hash, probes zset, calls zset, failures zset (the window). ARGV: now, failed (0/1),
# probe id or '', failure_threshold, failure_rate or '', window, min_calls, half_open_max_calls, call id.
# Returns {state} or, on a transition, {old, new, why, a, b} (why: probe_failed, consecutive, rate, probes_ok).
_RECORD = (
    NOW
    + """
local failed = ARGV[2] == '1'
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state ~= 'open' and state ~= 'half_open' then state = 'closed' end
local function open(why, a, b)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', tostring(now), 'successes', 0)
  redis.call('DEL', KEYS[2])
  return {state, 'open', why, tostring(a), tostring(b)}
end
if ARGV[5] ~= '' then
  local window = tonumber(ARGV[6])
  redis.call('ZADD', KEYS[3], now, ARGV[9])
  if failed then redis.call('ZADD', KEYS[4], now, ARGV[9]) end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[3], math.ceil(window * 1000) + 1000)
  redis.call('PEXPIRE', KEYS[4], math.ceil(window * 1000) + 1000)
end
if state == 'half_open' then
  if ARGV[3] ~= '' then redis.call('ZREM', KEYS[2], ARGV[3]) end
  if failed then return open('probe_failed', 0, 0) end
  if ARGV[3] ~= '' then
    local successes = redis.call('HINCRBY', KEYS[1], 'successes', 1)
    if successes >= tonumber(ARGV[8]) then
      redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0)
      redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
      return {'half_open', 'closed', 'probes_ok', tostring(successes), '0'}
    end
  end
  return {state}
end
if state == 'open' then return {state} end
if not failed then
  if (redis.call('HGET', KEYS[1], 'failures') or '0') ~= '0' then redis.call('HSET', KEYS[1], 'failures', 0) end
  return {state}
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if failures >= tonumber(ARGV[4]) then return open('consecutive', failures, 0) end
if ARGV[5] ~= '' then
  local calls = redis.call('ZCARD', KEYS[3])
  if calls >= tonumber(ARGV[7]) then
    local fails = redis.call('ZCARD', KEYS[4])
    if fails / calls >= tonumber(ARGV[5]) then return open('rate', fails, calls) end
  end
end
return {state}
"""
)

# KEYS: state hash, probes zset, calls zset, failures zset. Returns the state before.
_RESET = """
local old = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'successes', 0)
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return old
"""

_STATE = "return redis.call('HGET', KEYS[1], 'state') or 'closed'"

_SCRIPTS = {"before_call": _BEFORE_CALL, "record": _RECORD, "reset": _RESET, "state": _STATE, "remove": REMOVE}


class RedisCircuitBreaker(CircuitBreaker):
    """A :class:`CircuitBreaker` whose state is shared in Redis by every worker that uses ``key``.

    The options are those of :class:`CircuitBreaker`; they must be the same in every worker. State lives
    in a hash at ``key``, the probes out in a sorted set at ``key:probes`` and the failure-rate window in
    ``key:calls`` and ``key:failures``. ``clock`` is Redis's own time unless given (tests).

    A half-open probe whose worker dies before reporting no longer counts after ``probe_lease`` seconds,
    so a dead worker cannot keep the breaker half-open for ever.

    ``remote`` is True: the run loop awaits :meth:`abefore_call`, :meth:`arecord` and
    :meth:`arelease_probe`; the synchronous methods raise :class:`UserError`. :attr:`state` is the last
    state this process saw (it is what ``hide_when_open`` reads); :meth:`astate` asks Redis.
    :meth:`areset` closes the shared breaker; ``reset_all()`` (the pytest plugin) leaves it alone.
    """

    remote = True

    def __init__(
        self,
        url_or_client: str | Redis,
        key: str,
        *,
        failure_threshold: int = 5,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        count: tuple[type[BaseException], ...] = (Exception,),
        hide_when_open: bool = False,
        clock: Callable[[], float] | None = None,
        probe_lease: float = 60.0,
    ) -> None:
        super().__init__(
            failure_threshold=failure_threshold,
            failure_rate=failure_rate,
            window=window,
            min_calls=min_calls,
            reset_timeout=reset_timeout,
            half_open_max_calls=half_open_max_calls,
            count=count,
            hide_when_open=hide_when_open,
            clock=clock or time.time,
        )
        _check("probe_lease", probe_lease)
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"RedisCircuitBreaker key must be a non-empty string, not {key!r}")
        self.key = key
        self.probe_lease = float(probe_lease)
        self._server_time = clock is None
        self._keys = (key, f"{key}:probes", f"{key}:calls", f"{key}:failures")
        self._redis = Connection(url_or_client, "RedisCircuitBreaker", _SCRIPTS)
        self._probes: list[str] = []  # the probes this process holds (interchangeable)
        self._retry_at = 0.0  # time.monotonic() when the next probe may go, as last seen
        self._outage = Outage()

    def _now(self) -> str:
        return "" if self._server_time else repr(float(self.clock()))

    def _remote_only(self, method: str) -> NoReturn:
        raise UserError(
            f"RedisCircuitBreaker {self.key!r} keeps its state in Redis: await a{method}() instead of "
            f"{method}() (the run loop does)"
        )

    def before_call(self) -> Admission:
        self._remote_only("before_call")

    def record(self, failed: bool, probe: bool = False) -> Transition | None:
        self._remote_only("record")

    def release_probe(self) -> None:
        self._remote_only("release_probe")

    def reset(self) -> Transition | None:
        self._remote_only("reset")

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through, as this process last saw it."""
        return max(0.0, self._retry_at - time.monotonic()) if self.state == "open" else 0.0

    async def abefore_call(self) -> Admission:
        """May a call go now? Refuses with :class:`CircuitOpen` when Redis cannot be reached."""
        probe_id = uuid.uuid4().hex
        args = (self._now(), self.reset_timeout, self.half_open_max_calls, probe_id, self.probe_lease)
        try:
            reply = await self._redis.run("before_call", self._keys[:2], args)
        except self._redis.errors as exc:
            raise CircuitOpen(
                f"circuit breaker {self.key!r} refused the call: its shared state is in Redis at "
                f"{self._redis.where}, which cannot be reached ({type(exc).__name__}: {exc}); calls are "
                "refused until Redis answers",
            ) from exc
        self._outage.over()
        allowed, state, moved, retry_in = int(reply[0]) == 1, _state(reply[1]), text(reply[2]), float(text(reply[3]))
        self.state = state
        transition = None
        if moved:
            transition = Transition("open", "half_open", f"reset timeout of {self.reset_timeout:g}s passed")
        if not allowed:
            if state == "open":
                self._retry_at = time.monotonic() + retry_in
            return Admission(False, transition, retry_in)
        probe = len(reply) > 4
        if probe:
            with self._lock:
                self._probes.append(probe_id)
        return Admission(True, transition, probe=probe)

    async def arecord(self, failed: bool, probe: bool = False) -> Transition | None:
        """Record a call's outcome; returns the transition it caused, if any. Never raises: when Redis
        cannot be reached the outcome is lost (logged), and a probe's hold expires after ``probe_lease``."""
        probe_id = self._take_probe() if probe else ""
        rate = "" if self.failure_rate is None else repr(float(self.failure_rate))
        args = (
            self._now(),
            int(failed),
            probe_id,
            self.failure_threshold,
            rate,
            self.window,
            self.min_calls,
            self.half_open_max_calls,
            uuid.uuid4().hex,
        )
        try:
            reply = await self._redis.run("record", self._keys, args)
        except self._redis.errors as exc:
            self._outage.warn(
                "circuit breaker %r: cannot record a call's outcome in Redis at %s (%s: %s); the shared state "
                "misses it",
                self.key,
                self._redis.where,
                type(exc).__name__,
                exc,
            )
            return None
        self._outage.over()
        if len(reply) == 1:
            self.state = _state(reply[0])
            return None
        old, new, why, a, b = (text(part) for part in reply)
        self.state = _state(new)
        if new == "open":
            self._retry_at = time.monotonic() + self.reset_timeout
        reasons = {
            "probe_failed": "a probe call failed",
            "consecutive": f"{a} consecutive failures",
            "rate": f"failure rate {int(a) / max(1, int(b)):.0%} over {b} calls in {self.window:g}s",
            "probes_ok": f"{a} probe call(s) succeeded",
        }
        return Transition(_state(old), _state(new), reasons.get(why, why))

    async def arelease_probe(self) -> None:
        """A probe ended without an outcome that counts: give its place back. Never raises."""
        probe_id = self._take_probe()
        if not probe_id:
            return
        try:
            await self._redis.run("remove", self._keys[1:2], (probe_id,))
        except self._redis.errors as exc:
            self._outage.warn(
                "circuit breaker %r: cannot give a probe back in Redis at %s (%s: %s); it expires after %gs",
                self.key,
                self._redis.where,
                type(exc).__name__,
                exc,
                self.probe_lease,
            )

    async def areset(self) -> Transition | None:
        """Close the shared breaker by hand (for every worker)."""
        old = _state(await self._redis.run("reset", self._keys, ()))
        self.state = "closed"
        return None if old == "closed" else Transition(old, "closed", "reset by hand")

    async def astate(self) -> CircuitState:
        """The shared state, read from Redis (``open`` until a call after ``reset_timeout`` probes it)."""
        self.state = _state(await self._redis.run("state", self._keys[:1], ()))
        return self.state

    async def aclose(self) -> None:
        """Close the Redis client made for the running event loop."""
        await self._redis.aclose()

    def _take_probe(self) -> str:
        with self._lock:
            return self._probes.pop() if self._probes else ""

    def __repr__(self) -> str:
        return f"RedisCircuitBreaker({self.key!r}, state={self.state!r} (last seen), at {self._redis.where})"


def _state(value: Any) -> CircuitState:
    name = text(value)
    return cast(CircuitState, name) if name in ("open", "half_open") else "closed"
