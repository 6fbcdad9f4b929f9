"""The circuit breaker: its states and timing on a fake clock, and what a run does with it."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import threading
from collections import Counter
from typing import Any

import pytest

from tracedagent import (
    Agent,
    ApprovalRequired,
    CircuitStateChanged,
    ConfigurationError,
    ModelCallStarted,
    ToolCall,
    ToolCallEnded,
    ToolDefinitionError,
    ToolTimeout,
    hookimpl,
    tool,
)
from tracedagent.resilience import CircuitBreaker, Transition, all_breakers, reset_all
from tracedagent.testing import RecordingTracer, ScriptedModel

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


class FakeClock:
    """The breaker's ``clock``: time moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def opened(breaker: CircuitBreaker) -> None:
    """Open a closed breaker by failing it ``failure_threshold`` times."""
    for _ in range(breaker.failure_threshold):
        breaker.record(True)
    assert breaker.state == "open"


# ------------------------------------------------------------------------------------- closed -> open


def test_opens_after_failure_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=clock)

    assert breaker.record(True) is None
    assert breaker.record(True) is None
    assert breaker.record(False) is None  # a success breaks the run of failures
    assert breaker.record(True) is None
    assert breaker.record(True) is None
    assert breaker.state == "closed"
    assert breaker.before_call().allowed

    transition = breaker.record(True)

    assert transition is not None
    assert (transition.old, transition.new) == ("closed", "open")
    assert "3 consecutive failures" in transition.reason
    assert breaker.state == "open"


def test_opens_when_the_failure_rate_over_the_window_is_reached_with_min_calls(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=100, failure_rate=0.5, window=10, min_calls=4, clock=clock)

    for _ in range(3):  # 100% failures, but fewer calls than min_calls
        assert breaker.record(True) is None
        clock.advance(1)
    assert breaker.state == "closed"

    transition = breaker.record(True)

    assert transition == Transition("closed", "open", "failure rate 100% over 4 calls in 10s")


def test_a_failure_rate_below_the_threshold_keeps_the_breaker_closed(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=100, failure_rate=0.5, window=10, min_calls=4, clock=clock)
    for failed in (False, True, False, False, True, False, False, True):  # 3 in 8: 37.5%
        assert breaker.record(failed) is None
    assert breaker.state == "closed"
    transition = breaker.record(True)  # 4 in 9: 44%
    assert transition is None
    transition = breaker.record(True)  # 5 in 10: 50%
    assert transition is not None
    assert "failure rate 50% over 10 calls" in transition.reason


def test_outcomes_older_than_the_window_fall_out_of_the_rate(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=100, failure_rate=0.5, window=10, min_calls=4, clock=clock)
    for _ in range(3):
        breaker.record(True)
    clock.advance(11)  # those three failures are now outside the window

    for failed in (False, False, False):
        assert breaker.record(failed) is None
    # Counting the old failures this would be 4 of 7; within the window it is 1 of 4.
    assert breaker.record(True) is None
    assert breaker.state == "closed"

    clock.advance(11)  # and now the successes are gone too: 4 failures in a row in the window
    for _ in range(3):
        assert breaker.record(True) is None
    transition = breaker.record(True)
    assert transition is not None
    assert "over 4 calls" in transition.reason


# ----------------------------------------------------------------------------------------------- open


def test_an_open_breaker_refuses_at_once_and_says_when_to_retry(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock)
    opened(breaker)

    admission = breaker.before_call()
    assert not admission.allowed
    assert admission.transition is None
    assert admission.retry_in == pytest.approx(30)

    clock.advance(12)
    admission = breaker.before_call()
    assert not admission.allowed
    assert admission.retry_in == pytest.approx(18)
    assert breaker.retry_in() == pytest.approx(18)
    assert breaker.state == "open"  # refusing changes nothing


def test_outcomes_recorded_while_open_change_nothing(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock)
    opened(breaker)
    clock.advance(10)
    assert breaker.record(True) is None  # a straggler admitted before the breaker opened
    assert breaker.record(False) is None
    assert breaker.state == "open"
    assert breaker.retry_in() == pytest.approx(20)  # the reset timeout did not restart


# ------------------------------------------------------------------------------------------ half-open


def test_after_the_reset_timeout_k_probes_go_and_the_next_one_is_refused(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, half_open_max_calls=3, clock=clock)
    opened(breaker)
    clock.advance(29.9)
    assert not breaker.before_call().allowed
    clock.advance(0.1)

    probes = [breaker.before_call() for _ in range(3)]

    assert [p.allowed for p in probes] == [True, True, True]
    assert [p.probe for p in probes] == [True, True, True]
    assert probes[0].transition == Transition("open", "half_open", "reset timeout of 30s passed")
    assert [p.transition for p in probes[1:]] == [None, None]
    assert breaker.state == "half_open"
    assert breaker.retry_in() == 0.0
    refused = breaker.before_call()  # the K+1th concurrent probe
    assert not refused.allowed
    assert refused.transition is None
    assert refused.retry_in == 0.0


def test_all_k_probes_succeeding_close_the_breaker(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, half_open_max_calls=2, clock=clock)
    opened(breaker)
    clock.advance(30)
    first, second = breaker.before_call(), breaker.before_call()

    assert breaker.record(False, first.probe) is None
    assert breaker.state == "half_open"  # one success of two is not enough
    transition = breaker.record(False, second.probe)

    assert transition is not None
    assert (transition.old, transition.new) == ("half_open", "closed")
    assert "2 probe call(s) succeeded" in transition.reason
    assert breaker.state == "closed"
    assert breaker.before_call().allowed
    breaker.record(True)  # one failure of two: the count started again from zero
    assert breaker.state == "closed"


def test_a_failing_probe_opens_the_breaker_again_for_a_new_reset_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, half_open_max_calls=2, clock=clock)
    opened(breaker)
    clock.advance(30)
    first, second = breaker.before_call(), breaker.before_call()
    assert breaker.record(False, first.probe) is None

    transition = breaker.record(True, second.probe)

    assert transition == Transition("half_open", "open", "a probe call failed")
    admission = breaker.before_call()
    assert not admission.allowed
    assert admission.retry_in == pytest.approx(30)


def test_a_probe_without_a_counted_outcome_gives_its_place_back(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, half_open_max_calls=1, clock=clock)
    opened(breaker)
    clock.advance(30)
    probe = breaker.before_call()
    assert probe.allowed
    assert probe.probe
    assert not breaker.before_call().allowed

    breaker.release_probe()  # cancelled, or refused by a later layer

    assert breaker.state == "half_open"
    again = breaker.before_call()
    assert again.allowed
    assert again.probe
    assert again.transition is None
    assert breaker.record(False, again.probe) == Transition("half_open", "closed", "1 probe call(s) succeeded")


# ------------------------------------------------------------------------------------ what counts


def test_count_chooses_which_exceptions_are_failures() -> None:
    class Flaky(Exception):
        pass

    breaker = CircuitBreaker(count=(Flaky, ConnectionError))

    assert breaker.counts(Flaky())
    assert breaker.counts(ConnectionResetError())  # subclasses too
    assert not breaker.counts(ValueError())
    assert not breaker.counts(KeyError())
    assert breaker.counts(ToolTimeout("slow", tool="t"))  # timeouts always count
    assert CircuitBreaker().counts(ValueError())  # by default every exception counts


async def test_exceptions_outside_count_never_open_the_breaker(tracer: RecordingTracer) -> None:
    ran: list[str] = []

    @tool(breaker=CircuitBreaker(failure_threshold=1, count=(ConnectionError,)))
    def lookup(kind: str) -> str:
        ran.append(kind)
        if kind == "value":
            raise ValueError("bad input")
        raise ConnectionError("backend down")

    calls = [ToolCall(f"v{i}", "lookup", '{"kind": "value"}') for i in range(3)]
    model = ScriptedModel([calls, ToolCall("c", "lookup", '{"kind": "conn"}'), ToolCall("after", "lookup", "{}"), "ok"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[lookup]).run("go")

    statuses = {e.call_id: e.status for e in tracer.of_type(ToolCallEnded)}
    assert statuses == {"v0": "error", "v1": "error", "v2": "error", "c": "error", "after": "circuit_open"}
    assert ran == ["value", "value", "value", "conn"]
    assert [(e.old, e.new) for e in tracer.of_type(CircuitStateChanged)] == [("closed", "open")]


async def test_timeouts_count_as_failures(tracer: RecordingTracer) -> None:
    @tool(timeout=0.01, breaker=CircuitBreaker(failure_threshold=2, count=(KeyError,)))
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([ToolCall("t1", "stuck"), ToolCall("t2", "stuck"), ToolCall("t3", "stuck"), "done"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[stuck]).run("go")

    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout", "timeout", "circuit_open"]
    (change,) = tracer.of_type(CircuitStateChanged)
    assert (change.old, change.new, change.reason) == ("closed", "open", "2 consecutive failures")


# ------------------------------------------------------------------------------------------ threads


def test_each_change_of_state_is_reported_exactly_once_under_many_threads() -> None:
    """Threads hammer one breaker. Every transition returned must be a real change: into and out of
    each state they balance, so that only the final state has one more arrival than departures (and
    ``closed``, the first state, one more departure)."""
    ticks = itertools.count()
    breaker = CircuitBreaker(
        failure_threshold=3,
        failure_rate=0.6,
        window=0.2,
        min_calls=5,
        reset_timeout=0.05,
        half_open_max_calls=2,
        clock=lambda: next(ticks) * 0.001,  # every reading of the clock moves it on a millisecond
    )
    transitions: list[Transition] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait(GUARD_S)
            for _ in range(3000):
                admission = breaker.before_call()
                if admission.transition is not None:
                    transitions.append(admission.transition)
                if not admission.allowed:
                    continue
                roll = rng.random()
                if roll < 0.1:
                    if admission.probe:
                        breaker.release_probe()
                    continue
                transition = breaker.record(roll < 0.55, admission.probe)
                if transition is not None:
                    transitions.append(transition)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD_S * 4)
    finally:
        sys.setswitchinterval(interval)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(transitions) > 50  # the breaker really went round many times
    edges = Counter((t.old, t.new) for t in transitions)
    assert set(edges) <= {("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("half_open", "closed")}
    assert set(edges) == {("closed", "open"), ("open", "half_open"), ("half_open", "open"), ("half_open", "closed")}
    for state in ("closed", "open", "half_open"):
        arrivals = sum(1 for t in transitions if t.new == state)
        departures = sum(1 for t in transitions if t.old == state)
        expected = (state == breaker.state) - (state == "closed")
        assert arrivals - departures == expected, state


# ------------------------------------------------------------------------------------ reset, options


def test_reset_closes_the_breaker_and_forgets_the_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(failure_threshold=2, clock=clock)
    assert breaker.reset() is None  # closed already: no change
    opened(breaker)

    assert breaker.reset() == Transition("open", "closed", "reset by hand")

    assert breaker.state == "closed"
    assert breaker.before_call().allowed
    assert breaker.record(True) is None  # one failure of two: the count started again
    assert breaker.state == "closed"


def test_reset_all_closes_every_breaker_in_the_process(clock: FakeClock) -> None:
    first = CircuitBreaker(failure_threshold=1, clock=clock)
    second = CircuitBreaker(failure_threshold=1, clock=clock)
    opened(first)
    opened(second)
    assert {id(first), id(second)} <= {id(b) for b in all_breakers()}

    reset_all()

    assert (first.state, second.state) == ("closed", "closed")


@pytest.mark.parametrize(
    "options",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -1},
        {"failure_threshold": 2.5},
        {"failure_threshold": True},
        {"failure_rate": 0},
        {"failure_rate": 1.5},
        {"failure_rate": "half"},
        {"window": 0},
        {"min_calls": 0},
        {"min_calls": 1.5},
        {"reset_timeout": 0},
        {"reset_timeout": -5},
        {"half_open_max_calls": 0},
        {"count": ValueError},
        {"count": (ValueError, int)},
    ],
    ids=repr,
)
def test_invalid_options_are_a_configuration_error(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ConfigurationError, match=name):
        CircuitBreaker(**options)


def test_a_tool_breaker_must_be_a_circuit_breaker_or_a_bool() -> None:
    def f() -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="breaker"):
        tool(breaker="yes")(f)  # type: ignore[call-overload]
    assert isinstance(tool(f).breaker, CircuitBreaker)  # each tool gets its own default breaker
    assert tool(f).breaker is not tool(f).breaker
    assert tool(breaker=False)(f).breaker is None


# ---------------------------------------------------------------------------------- through a run


async def test_a_failing_tool_opens_its_breaker_and_later_calls_are_refused_unrun(
    tracer: RecordingTracer, clock: FakeClock
) -> None:
    ran: list[str] = []

    @tool(breaker=CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock))
    def fetch(url: str) -> str:
        """Fetch a page."""
        ran.append(url)
        raise ConnectionError(f"cannot reach {url}")

    model = ScriptedModel(
        [
            ToolCall("c1", "fetch", '{"url": "a"}'),
            ToolCall("c2", "fetch", '{"url": "b"}'),
            ToolCall("c3", "fetch", '{"url": "c"}'),
            [ToolCall("c4", "fetch", '{"url": "d"}'), ToolCall("c5", "fetch", '{"url": "e"}')],
            "I could not fetch anything.",
        ]
    )
    async with asyncio.timeout(GUARD_S):
        result = await Agent("crawler", model, tools=[fetch]).run("go")

    assert result.status == "completed"
    assert ran == ["a", "b"]  # the open breaker refused the rest without running the tool
    ends = {e.call_id: e for e in tracer.of_type(ToolCallEnded)}
    assert {k: e.status for k, e in ends.items()} == {
        "c1": "error",
        "c2": "error",
        "c3": "circuit_open",
        "c4": "circuit_open",
        "c5": "circuit_open",
    }
    assert ends["c3"].error is not None
    assert ends["c3"].error.type == "CircuitOpen"

    # The model is told what happened and when it may try again.
    refusal = next(m for m in model.requests[3].messages if m.role == "tool" and m.tool_call_id == "c3")
    assert refusal.is_error
    assert "circuit breaker" in (refusal.content or "")
    assert "30s" in (refusal.content or "")
    assert "without it" in (refusal.content or "")

    (change,) = tracer.of_type(CircuitStateChanged)
    assert (change.tool, change.old, change.new) == ("fetch", "closed", "open")
    assert change.reason == "2 consecutive failures"
    assert (change.run_id, change.trace_id) == (result.run_id, result.trace_id)
    assert change.span_id == ends["c2"].span_id  # the call that opened it
    assert change.parent_span_id == ends["c2"].parent_span_id
    assert change.agent == "crawler"


async def test_the_breaker_half_opens_and_closes_again_through_runs(tracer: RecordingTracer, clock: FakeClock) -> None:
    healthy = False

    @tool(breaker=CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock))
    def ping() -> str:
        if not healthy:
            raise ConnectionError("down")
        return "pong"

    agent = Agent("a", ScriptedModel([ToolCall("p1", "ping"), "x"] * 4), tools=[ping])
    async with asyncio.timeout(GUARD_S):
        await agent.run("fails and opens")
        clock.advance(10)
        await agent.run("the probe fails and opens it again")
        await agent.run("refused at once")
        clock.advance(10)
        healthy = True
        await agent.run("the probe succeeds and closes it")

    changes = tracer.of_type(CircuitStateChanged)
    assert [(c.old, c.new) for c in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert [c.reason for c in changes] == [
        "1 consecutive failures",
        "reset timeout of 10s passed",
        "a probe call failed",
        "reset timeout of 10s passed",
        "1 probe call(s) succeeded",
    ]
    ends = tracer.of_type(ToolCallEnded)
    assert [e.status for e in ends] == ["error", "error", "circuit_open", "ok"]
    # Each change carries the span of the call that caused it: the probe both half-opened and settled it.
    assert [c.span_id for c in changes] == [ends[0].span_id, ends[1].span_id, ends[1].span_id] + [ends[3].span_id] * 2
    assert ping.breaker is not None
    assert ping.breaker.state == "closed"


async def test_concurrent_probes_past_half_open_max_calls_are_refused(
    tracer: RecordingTracer, clock: FakeClock
) -> None:
    gate = asyncio.Event()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, half_open_max_calls=2, clock=clock)
    opened(breaker)
    clock.advance(5)

    @tool(breaker=breaker)
    async def probe() -> str:
        await gate.wait()
        return "fine"

    model = ScriptedModel([[ToolCall(f"p{i}", "probe") for i in range(4)], "done"])
    run = asyncio.create_task(Agent("a", model, tools=[probe]).run("go"))
    async with asyncio.timeout(GUARD_S):
        # The two refusals end at once; the loop only yields, under the guard.
        while len(tracer.of_type(ToolCallEnded)) < 2:  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0)
        gate.set()
        await run

    statuses = {e.call_id: e.status for e in tracer.of_type(ToolCallEnded)}
    assert statuses == {"p0": "ok", "p1": "ok", "p2": "circuit_open", "p3": "circuit_open"}
    refusal = next(e for e in tracer.of_type(ToolCallEnded) if e.call_id == "p2")
    assert "probe" in (refusal.result or "")  # the model is told it is being tested, not "wait 0s"
    assert [(c.old, c.new) for c in tracer.of_type(CircuitStateChanged)] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


class _Deny:
    @hookimpl
    def approve_tool_call(self, call: Any) -> str:
        return "deny"


async def test_invalid_arguments_denials_and_approval_requests_do_not_count(tracer: RecordingTracer) -> None:
    ran: list[int] = []

    @tool(breaker=CircuitBreaker(failure_threshold=1))
    def count(n: int) -> int:
        ran.append(n)
        if n < 0:
            raise ApprovalRequired("negative numbers need a person")
        return n

    invalid = [ToolCall(f"bad{i}", "count", '{"n": "many"}') for i in range(3)]
    model = ScriptedModel([invalid, ToolCall("ok", "count", '{"n": 1}'), "done"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[count]).run("go")
        denied = ScriptedModel([[ToolCall(f"d{i}", "count", '{"n": 2}') for i in range(3)], "done"])
        await Agent("a", denied, tools=[count], plugins=[_Deny()]).run("go")
        paused = await Agent("a", ScriptedModel([ToolCall("ask", "count", '{"n": -1}')]), tools=[count]).run("go")
        after = ScriptedModel([ToolCall("after", "count", '{"n": 3}'), "done"])
        await Agent("a", after, tools=[count]).run("go")

    assert paused.status == "interrupted"
    statuses = {e.call_id: e.status for e in tracer.of_type(ToolCallEnded)}
    assert statuses == {
        "bad0": "error",
        "bad1": "error",
        "bad2": "error",
        "ok": "ok",
        "d0": "denied",
        "d1": "denied",
        "d2": "denied",
        "ask": "interrupted",
        "after": "ok",
    }
    assert ran == [1, -1, 3]
    assert tracer.of_type(CircuitStateChanged) == []
    assert count.breaker is not None
    assert count.breaker.state == "closed"


async def test_hide_when_open_removes_the_tool_from_the_request_until_a_probe_may_go(
    tracer: RecordingTracer, clock: FakeClock
) -> None:
    healthy = False

    @tool(breaker=CircuitBreaker(failure_threshold=1, reset_timeout=30, hide_when_open=True, clock=clock))
    def search(q: str) -> str:
        """Search."""
        if not healthy:
            raise ConnectionError("index down")
        return "hits"

    @tool
    def clock_time() -> str:
        """The time."""
        return "noon"

    tools = [search, clock_time]
    first = ScriptedModel([ToolCall("s1", "search", '{"q": "x"}'), "sorry"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", first, tools=tools).run("go")
    assert [t.name for t in first.requests[0].tools] == ["search", "clock_time"]
    assert [t.name for t in first.requests[1].tools] == ["clock_time"]  # open: hidden

    clock.advance(29)
    hidden = ScriptedModel(["still hidden"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", hidden, tools=tools).run("go")
    assert [t.name for t in hidden.requests[0].tools] == ["clock_time"]

    clock.advance(1)  # a probe may go: the model must see the tool again to make one
    healthy = True
    second = ScriptedModel([ToolCall("s2", "search", '{"q": "x"}'), "found"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", second, tools=tools).run("go")
    assert [t.name for t in second.requests[0].tools] == ["search", "clock_time"]
    assert [t.name for t in second.requests[1].tools] == ["search", "clock_time"]  # closed again

    assert [e.tools for e in tracer.of_type(ModelCallStarted)] == [
        ("search", "clock_time"),
        ("clock_time",),
        ("clock_time",),
        ("search", "clock_time"),
        ("search", "clock_time"),
    ]
    assert [(c.old, c.new) for c in tracer.of_type(CircuitStateChanged)] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_a_tool_hidden_while_open_comes_back_when_the_breaker_is_reset(clock: FakeClock) -> None:
    @tool(breaker=CircuitBreaker(failure_threshold=1, hide_when_open=True, clock=clock))
    def flaky() -> str:
        raise ConnectionError("down")

    model = ScriptedModel([ToolCall("f", "flaky"), "a", "b"])
    agent = Agent("a", model, tools=[flaky])
    async with asyncio.timeout(GUARD_S):
        await agent.run("go")
        assert flaky.breaker is not None
        flaky.breaker.reset()
        await agent.run("again")

    assert [[t.name for t in r.tools] for r in model.requests] == [["flaky"], [], ["flaky"]]


async def test_a_tool_without_a_breaker_never_opens(tracer: RecordingTracer) -> None:
    ran: list[int] = []

    @tool(breaker=False)
    def broken(n: int) -> str:
        ran.append(n)
        raise ConnectionError("down")

    calls = [ToolCall(f"c{i}", "broken", f'{{"n": {i}}}') for i in range(12)]
    model = ScriptedModel([calls, ToolCall("last", "broken", '{"n": 99}'), "done"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[broken]).run("go")

    assert sorted(ran) == [*range(12), 99]
    assert {e.status for e in tracer.of_type(ToolCallEnded)} == {"error"}
    assert tracer.of_type(CircuitStateChanged) == []


# ------------------------------------------------------------------------------------ pytest plugin

TWO_TESTS_ONE_TOOL = """
from tracedagent import Agent, ToolCall, ToolCallEnded, tool
from tracedagent.resilience import CircuitBreaker
from tracedagent.testing import ScriptedModel

ran = []


@tool(breaker=CircuitBreaker(failure_threshold=1))
def flaky(fail: bool) -> str:
    ran.append(fail)
    if fail:
        raise ConnectionError("down")
    return "up"


def statuses(recorded_events):
    return [e.status for e in recorded_events.of_type(ToolCallEnded)]


def test_one_failure_opens_the_breaker(recorded_events):
    model = ScriptedModel([ToolCall("a", "flaky", '{"fail": true}'), ToolCall("b", "flaky", '{"fail": false}'), "x"])
    Agent("a", model, tools=[flaky]).run_sync("go")
    assert statuses(recorded_events) == ["error", "circuit_open"]


def test_the_next_test_starts_with_a_closed_breaker(recorded_events):
    model = ScriptedModel([ToolCall("c", "flaky", '{"fail": false}'), "x"])
    Agent("a", model, tools=[flaky]).run_sync("go")
    assert statuses(recorded_events) == ["ok"]
"""


@pytest.fixture
def inner_pytest(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(
        "[pytest]\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:langsmith_plugin -p no:hypothesispytest -p no:anyio -p no:cacheprovider\n"
    )
    pytester.makepyfile(TWO_TESTS_ONE_TOOL)
    return pytester


pytest_plugins = ["pytester"]


def test_the_pytest_plugin_closes_breakers_between_tests(inner_pytest: pytest.Pytester) -> None:
    result = inner_pytest.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_without_the_reset_one_tests_failures_refuse_calls_in_the_next(inner_pytest: pytest.Pytester) -> None:
    # The same two tests with the reset fixture overridden: the second one fails, so the first test's
    # assertion really depends on the plugin's reset.
    inner_pytest.makeconftest(
        "import pytest\n\n@pytest.fixture(autouse=True)\ndef _tracedagent_close_breakers():\n    yield\n"
    )
    result = inner_pytest.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*circuit_open*"])
