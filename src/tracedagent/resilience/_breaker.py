"""The circuit breaker: stop calling a tool that keeps failing, and try it again later.

States: ``closed`` (calls go through), ``open`` (calls are refused at once) and ``half_open`` (after
``reset_timeout`` seconds, up to ``half_open_max_calls`` probe calls go through; when that many have
succeeded the breaker closes, and any failure opens it again). It opens after
``failure_threshold`` consecutive failures, or when the failure rate over the last ``window`` seconds
reaches ``failure_rate`` with at least ``min_calls`` calls in the window.

Which outcomes count is configurable: exceptions of the types in ``count`` (all by default) and
timeouts count as failures; argument validation errors, denials and backpressure refusals do not.
Time comes from ``clock`` (``time.monotonic``), so tests can drive it. The state lives in this
process; :class:`RedisCircuitBreaker` shares it between worker processes (its ``remote`` is True and
the run loop awaits its ``a*`` methods instead).

Every method is thread-safe. ``before_call`` and ``record`` return the transition they caused, if
any, so the caller fires ``on_circuit_change`` exactly once per transition.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..exceptions import ConfigurationError, ToolTimeout

__all__ = ["CircuitBreaker", "CircuitState", "Transition", "all_breakers", "reset_all"]

_breakers: weakref.WeakSet[CircuitBreaker] = weakref.WeakSet()


def all_breakers() -> list[CircuitBreaker]:
    """Every circuit breaker alive in this process."""
    return list(_breakers)


def reset_all() -> None:
    """Close every breaker in this process (the pytest plugin does this after each test, so a test's
    failures never open a breaker in the next one). Remote breakers are left alone: their state belongs
    to every worker that shares it."""
    for breaker in list(_breakers):
        if not breaker.remote:
            breaker.reset()


CircuitState = Literal["closed", "half_open", "open"]
#: The value of the ``tracedagent_circuit_state`` gauge for each state.
STATE_VALUE: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of state, and why."""

    old: CircuitState
    new: CircuitState
    reason: str


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer of :meth:`CircuitBreaker.before_call`: whether the call may go, what changed, and (when
    refused) how long until the next probe may go."""

    allowed: bool
    transition: Transition | None = None
    retry_in: float = 0.0
    probe: bool = False


_ALLOW = Admission(True)


def _check(name: str, value: float, *, minimum: float = 0.0, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or value <= minimum
    if integer and not isinstance(value, int):
        bad = True
    if bad:
        kind = "a whole number" if integer else "a number"
        raise ConfigurationError(f"CircuitBreaker {name} must be {kind} above {minimum:g}, not {value!r}")


class CircuitBreaker:
    """A circuit breaker for one tool (one instance per tool; a tool gets a default one)."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        failure_rate: float | None = None,
        window: float = 60.0,
        min_calls: int = 10,
        reset_timeout: float = 30.0,
        half_open_max_calls: int = 1,
        count: tuple[type[BaseException], ...] = (Exception,),
        hide_when_open: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check("failure_threshold", failure_threshold, integer=True)
        _check("window", window)
        _check("min_calls", min_calls, integer=True)
        _check("reset_timeout", reset_timeout)
        _check("half_open_max_calls", half_open_max_calls, integer=True)
        if failure_rate is not None and not (isinstance(failure_rate, (int, float)) and 0 < failure_rate <= 1):
            raise ConfigurationError(f"CircuitBreaker failure_rate must be in (0, 1], not {failure_rate!r}")
        if not (isinstance(count, tuple) and all(isinstance(t, type) and issubclass(t, BaseException) for t in count)):
            raise ConfigurationError(f"CircuitBreaker count must be a tuple of exception types, not {count!r}")
        self.failure_threshold = failure_threshold
        self.failure_rate = failure_rate
        self.window = float(window)
        self.min_calls = min_calls
        self.reset_timeout = float(reset_timeout)
        self.half_open_max_calls = half_open_max_calls
        self.count = count
        self.hide_when_open = hide_when_open
        self.clock = clock
        self._lock = threading.Lock()
        self.state: CircuitState = "closed"
        self.consecutive_failures = 0
        self._opened_at = 0.0
        self._probes_out = 0
        self._probe_successes = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed) within the window
        _breakers.add(self)

    # ------------------------------------------------------------------------------ the call path

    def before_call(self) -> Admission:
        """May a call go now? Moves ``open`` to ``half_open`` once the reset timeout has passed."""
        if self.state == "closed":  # the common case, without the lock
            return _ALLOW
        with self._lock:
            transition = None
            state: str = self.state  # another thread may have changed it since the check above
            if state == "open":
                waited = self.clock() - self._opened_at
                if waited < self.reset_timeout:
                    return Admission(False, None, self.reset_timeout - waited)
                state = self.state = "half_open"
                self._probes_out = self._probe_successes = 0
                transition = Transition("open", "half_open", f"reset timeout of {self.reset_timeout:g}s passed")
            if state == "half_open":
                if self._probes_out >= self.half_open_max_calls:
                    return Admission(False, transition, 0.0)
                self._probes_out += 1
                return Admission(True, transition, probe=True)
            return Admission(True, transition)

    def counts(self, error: BaseException) -> bool:
        """Whether ``error`` counts as a failure (timeouts always do)."""
        return isinstance(error, (ToolTimeout, *self.count))

    def record(self, failed: bool, probe: bool = False) -> Transition | None:
        """Record a call's outcome; returns the transition it caused, if any."""
        if not failed and not probe and self.state == "closed" and self.failure_rate is None:
            self.consecutive_failures = 0  # the common case, without the lock
            return None
        with self._lock:
            now = self.clock()
            if self.failure_rate is not None:
                outcomes = self._outcomes
                outcomes.append((now, failed))
                while outcomes and outcomes[0][0] <= now - self.window:
                    outcomes.popleft()
            if self.state == "half_open":
                if probe:
                    self._probes_out = max(0, self._probes_out - 1)
                if failed:
                    return self._open(now, "a probe call failed")
                if probe:
                    self._probe_successes += 1
                    if self._probe_successes >= self.half_open_max_calls:
                        self.state = "closed"
                        self.consecutive_failures = 0
                        self._outcomes.clear()
                        return Transition("half_open", "closed", f"{self._probe_successes} probe call(s) succeeded")
                return None
            if self.state == "open":
                return None
            if not failed:
                self.consecutive_failures = 0
                return None
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.failure_threshold:
                return self._open(now, f"{self.consecutive_failures} consecutive failures")
            if self.failure_rate is not None and len(self._outcomes) >= self.min_calls:
                failures = sum(1 for _, f in self._outcomes if f)
                rate = failures / len(self._outcomes)
                if rate >= self.failure_rate:
                    return self._open(
                        now, f"failure rate {rate:.0%} over {len(self._outcomes)} calls in {self.window:g}s"
                    )
            return None

    def release_probe(self) -> None:
        """A probe call ended without an outcome that counts (cancelled, refused by a later layer)."""
        with self._lock:
            if self.state == "half_open":
                self._probes_out = max(0, self._probes_out - 1)

    def _open(self, now: float, reason: str) -> Transition:
        old = self.state
        self.state = "open"
        self._opened_at = now
        self._probes_out = self._probe_successes = 0
        return Transition(old, "open", reason)

    def reset(self) -> Transition | None:
        """Close the breaker by hand (for operators and tests)."""
        with self._lock:
            old = self.state
            self.state = "closed"
            self.consecutive_failures = 0
            self._outcomes.clear()
            return None if old == "closed" else Transition(old, "closed", "reset by hand")

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        if self.state != "open":
            return 0.0
        return max(0.0, self.reset_timeout - (self.clock() - self._opened_at))

    # ---------------------------------------------------------------- the async face (remote state)

    #: True when the state lives elsewhere: the loop then awaits ``abefore_call`` / ``arecord``.
    remote = False

    async def abefore_call(self) -> Admission:
        return self.before_call()

    async def arecord(self, failed: bool, probe: bool = False) -> Transition | None:
        return self.record(failed, probe)

    async def arelease_probe(self) -> None:
        self.release_probe()

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failure_threshold={self.failure_threshold})"
