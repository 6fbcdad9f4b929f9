"""Retries of a tool call: ``retries=N`` and :class:`RetryPolicy`, ``on_retry``, and what is never retried."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tracedagent import (
    Agent,
    ApprovalRequired,
    CircuitStateChanged,
    ConfigurationError,
    RetryScheduled,
    ToolCall,
    ToolCallEnded,
    ToolDefinitionError,
    tool,
)
from tracedagent.resilience import CircuitBreaker, RetryPolicy
from tracedagent.testing import RecordingTracer, ScriptedModel

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


def fast(attempts: int, **options: Any) -> RetryPolicy:
    """A policy whose backoff is a few milliseconds at most."""
    options.setdefault("initial_delay", 0.001)
    options.setdefault("max_delay", 0.004)
    return RetryPolicy(attempts, **options)


def flaky(failures: int, error: type[Exception] = ConnectionError, **options: Any) -> tuple[Any, list[int]]:
    """A ``fetch`` tool that fails ``failures`` times, then answers; and the list of its attempts."""
    attempts: list[int] = []

    @tool(**options)
    async def fetch() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) <= failures:
            raise error(f"attempt {len(attempts)} failed")
        return f"fetched on attempt {len(attempts)}"

    return fetch, attempts


async def run_once(tool_: Any, call_id: str = "c", arguments: str = "{}") -> ScriptedModel:
    model = ScriptedModel([ToolCall(call_id, tool_.name, arguments), "done"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[tool_]).run("go")
    return model


# ------------------------------------------------------------------------------------------- success


async def test_a_call_that_succeeds_after_failures_ends_ok(tracer: RecordingTracer) -> None:
    fetch, attempts = flaky(2, retries=fast(3))

    model = await run_once(fetch)

    assert attempts == [1, 2, 3]
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "ok"
    assert end.error is None
    assert model.requests[1].messages[-1].content == "fetched on attempt 3"
    assert not model.requests[1].messages[-1].is_error


async def test_each_retry_fires_on_retry_on_the_tool_calls_span(tracer: RecordingTracer) -> None:
    fetch, _ = flaky(2, retries=fast(3))

    await run_once(fetch, call_id="call-1")

    retries = tracer.of_type(RetryScheduled)
    (end,) = tracer.of_type(ToolCallEnded)
    assert [r.attempt for r in retries] == [1, 2]
    assert {(r.kind, r.target) for r in retries} == {("tool", "fetch")}
    assert [(r.error.type, r.error.message) for r in retries if r.error is not None] == [
        ("ConnectionError", "attempt 1 failed"),
        ("ConnectionError", "attempt 2 failed"),
    ]
    assert all(0 <= r.delay_s <= 0.004 for r in retries)
    assert {r.span_id for r in retries} == {end.span_id}
    assert {(r.run_id, r.trace_id, r.parent_span_id) for r in retries} == {
        (end.run_id, end.trace_id, end.parent_span_id)
    }
    # Between the call's start and its end.
    hooks = tracer.hooks()
    assert hooks.index("on_tool_call_start") < hooks.index("on_retry")
    assert len(hooks) - hooks[::-1].index("on_retry") - 1 < hooks.index("on_tool_call_end")


async def test_retries_n_means_up_to_n_more_attempts(tracer: RecordingTracer) -> None:
    fetch, attempts = flaky(1, retries=2)

    assert fetch.retry is not None
    assert fetch.retry.attempts == 3
    await run_once(fetch)

    assert attempts == [1, 2]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"]
    assert [r.attempt for r in tracer.of_type(RetryScheduled)] == [1]


# ------------------------------------------------------------------------------------------ failure


async def test_exhausted_retries_end_error_with_the_last_error(tracer: RecordingTracer) -> None:
    fetch, attempts = flaky(10, retries=fast(3))

    model = await run_once(fetch)

    assert attempts == [1, 2, 3]
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "error"
    assert end.error is not None
    assert (end.error.type, end.error.message) == ("ConnectionError", "attempt 3 failed")
    assert "attempt 3 failed" in (model.requests[1].messages[-1].content or "")
    assert [r.attempt for r in tracer.of_type(RetryScheduled)] == [1, 2]  # no retry after the last attempt


async def test_retry_on_chooses_which_errors_are_retried(tracer: RecordingTracer) -> None:
    policy = fast(5, retry_on=lambda error: isinstance(error, ConnectionError))
    transient, transient_attempts = flaky(2, ConnectionError, retries=policy, name="transient")
    permanent, permanent_attempts = flaky(2, ValueError, retries=policy, name="permanent")

    await run_once(transient)
    await run_once(permanent)

    assert transient_attempts == [1, 2, 3]
    assert permanent_attempts == [1]  # the predicate refused: no second attempt
    ends = tracer.of_type(ToolCallEnded)
    assert [(e.tool, e.status) for e in ends] == [("transient", "ok"), ("permanent", "error")]
    assert [r.target for r in tracer.of_type(RetryScheduled)] == ["transient", "transient"]


async def test_invalid_arguments_are_not_retried(tracer: RecordingTracer) -> None:
    attempts: list[int] = []

    @tool(retries=fast(5))
    async def square(n: int) -> int:
        attempts.append(n)
        return n * n

    await run_once(square, arguments='{"n": "seven"}')

    assert attempts == []
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "error"
    assert end.error is not None
    assert end.error.type == "ToolArgumentsError"
    assert tracer.of_type(RetryScheduled) == []


async def test_a_request_for_approval_is_neither_retried_nor_a_failure(tracer: RecordingTracer) -> None:
    attempts: list[int] = []

    @tool(retries=fast(5, retry_on=lambda error: True), breaker=CircuitBreaker(failure_threshold=1))
    async def transfer(amount: int) -> str:
        attempts.append(amount)
        raise ApprovalRequired("large transfers need a person")

    model = ScriptedModel([ToolCall("t", "transfer", '{"amount": 900}')])
    async with asyncio.timeout(GUARD_S):
        result = await Agent("bank", model, tools=[transfer]).run("go")

    assert result.status == "interrupted"
    assert attempts == [900]
    assert tracer.of_type(RetryScheduled) == []
    assert tracer.of_type(CircuitStateChanged) == []
    assert transfer.breaker is not None
    assert transfer.breaker.state == "closed"


async def test_the_breaker_counts_the_whole_call_after_its_retries(tracer: RecordingTracer) -> None:
    fetch, attempts = flaky(2, retries=fast(3), breaker=CircuitBreaker(failure_threshold=2))

    await run_once(fetch)

    assert attempts == [1, 2, 3]  # two failed attempts, one call that succeeded: not two failures
    assert tracer.of_type(CircuitStateChanged) == []
    assert fetch.breaker is not None
    assert fetch.breaker.state == "closed"


# ------------------------------------------------------------------------------------------ timeout


async def test_the_timeout_covers_all_attempts(tracer: RecordingTracer) -> None:
    attempts: list[int] = []

    # Each attempt ends well within the timeout; together they do not.
    @tool(timeout=0.1, retries=fast(50, initial_delay=0.0001, max_delay=0.0001))
    async def slow() -> str:
        attempts.append(1)
        await asyncio.sleep(0.01)
        raise ConnectionError("still down")

    await run_once(slow)

    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "timeout"
    assert end.error is not None
    assert end.error.type == "ToolTimeout"
    assert 1 < len(attempts) < 50
    # One retry before each later attempt, and maybe one more whose backoff the timeout cut short.
    assert len(tracer.of_type(RetryScheduled)) in (len(attempts) - 1, len(attempts))


async def test_a_timeout_is_never_retried_even_when_retry_on_says_yes(tracer: RecordingTracer) -> None:
    attempts: list[int] = []
    cancelled: list[int] = []

    # Two attempts, so that if the timeout's cancellation were retried, the guard's would still end it.
    @tool(timeout=0.01, retries=fast(2, retry_on=lambda error: True))
    async def stuck() -> str:
        attempts.append(1)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(1)
            raise
        return "never"

    await run_once(stuck)

    assert attempts == [1]
    assert cancelled == [1]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout"]
    assert tracer.of_type(RetryScheduled) == []


async def test_cancelling_the_run_during_a_retry_cancels_it(tracer: RecordingTracer) -> None:
    attempts: list[int] = []
    waiting = asyncio.Event()

    @tool(retries=fast(2, retry_on=lambda error: True))
    async def stuck() -> str:
        attempts.append(1)
        waiting.set()
        await asyncio.Event().wait()
        return "never"

    run = asyncio.create_task(Agent("a", ScriptedModel([ToolCall("s", "stuck"), "x"]), tools=[stuck]).run("go"))
    async with asyncio.timeout(GUARD_S):
        await waiting.wait()
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    assert attempts == [1]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["cancelled"]
    assert tracer.of_type(RetryScheduled) == []


# ------------------------------------------------------------------------------------------ policy


async def test_the_backoff_grows_exponentially_with_jitter_up_to_max_delay() -> None:
    policy = RetryPolicy(7, initial_delay=0.0001, max_delay=0.001)
    runs: list[list[tuple[int, float]]] = []

    async def always_fails() -> None:
        raise ConnectionError("down")

    for _ in range(5):
        scheduled: list[tuple[int, float]] = []

        def on_retry(attempt: int, delay: float, error: BaseException, scheduled: list[Any] = scheduled) -> None:
            scheduled.append((attempt, delay))

        with pytest.raises(ConnectionError):
            await policy.call(always_fails, on_retry)
        runs.append(scheduled)

    for scheduled in runs:
        assert [attempt for attempt, _ in scheduled] == [1, 2, 3, 4, 5, 6]
        for attempt, delay in scheduled:
            assert 0 <= delay <= min(0.001, 0.0001 * 2 ** (attempt - 1)) + 1e-12
    assert len({delay for scheduled in runs for _, delay in scheduled}) > 6  # jittered, not a fixed ladder


async def test_a_policy_returns_the_first_success_without_on_retry() -> None:
    seen: list[int] = []

    async def works() -> str:
        return "fine"

    assert await fast(3).call(works, lambda attempt, delay, error: seen.append(attempt)) == "fine"
    assert seen == []


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"attempts": True},
        {"initial_delay": 0},
        {"initial_delay": -1},
        {"max_delay": 0},
        {"retry_on": "ConnectionError"},
    ],
    ids=repr,
)
def test_invalid_policies_are_a_configuration_error(options: dict[str, Any]) -> None:
    name = next(iter(options))
    with pytest.raises(ConfigurationError, match=name):
        RetryPolicy(**options)


def test_retries_on_a_tool_is_a_number_or_a_policy() -> None:
    async def f() -> str:
        return ""

    policy = fast(2)
    assert tool(retries=policy)(f).retry is policy
    assert tool(retries=0)(f).retry is None
    assert tool(f).retry is None
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ToolDefinitionError, match="retries"):
            tool(retries=bad)(f)  # type: ignore[arg-type]
