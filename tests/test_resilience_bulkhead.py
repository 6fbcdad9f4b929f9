"""The bulkhead: a tool's calls in flight across the process, its queue, its refusals, and its slots."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracedagent import (
    Agent,
    BackpressureRejected,
    ConfigurationError,
    ToolCall,
    ToolCallEnded,
    ToolDefinitionError,
    ToolTimeout,
    tool,
)
from tracedagent.resilience import Bulkhead
from tracedagent.testing import RecordingTracer, ScriptedModel

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on
SHORT_GUARD_S = 0.5  # the same, for each of hypothesis's examples (which finish in microseconds)


async def until(condition: Any) -> None:
    """Yield to the event loop until ``condition()`` holds (under the caller's guard timeout)."""
    while not condition():  # noqa: ASYNC110 - bulkhead state has no event to wait on; this only yields
        await asyncio.sleep(0)


class Gauge:
    """Counts the calls inside a tool and remembers the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.entered = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Gauge:
        with self._lock:
            self.now += 1
            self.entered += 1
            self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self.now -= 1


# ------------------------------------------------------------------------------------------ limits


async def test_max_concurrency_is_respected_and_the_queue_is_observable(tracer: RecordingTracer) -> None:
    gate, gauge = asyncio.Event(), Gauge()

    @tool(max_concurrency=3)
    async def slow(n: int) -> int:
        with gauge:
            await gate.wait()
            return n

    calls = [ToolCall(f"c{i}", "slow", f'{{"n": {i}}}') for i in range(10)]
    run = asyncio.create_task(Agent("a", ScriptedModel([calls, "done"]), tools=[slow]).run("go"))
    async with asyncio.timeout(GUARD_S):
        await until(lambda: slow.bulkhead.queue_depth == 7)
        assert (slow.bulkhead.inflight, gauge.now) == (3, 3)  # mid-flight: 3 running, 7 waiting
        gate.set()
        result = await run

    assert result.status == "completed"
    assert gauge.peak == 3
    assert gauge.entered == 10
    assert [e.status for e in tracer.of_type(ToolCallEnded)].count("ok") == 10
    assert (slow.bulkhead.inflight, slow.bulkhead.queue_depth) == (0, 0)


async def test_a_full_queue_refuses_at_once_with_reason_queue_full(tracer: RecordingTracer) -> None:
    gate = asyncio.Event()
    ran: list[int] = []

    @tool(max_concurrency=1, max_queue=2)
    async def slow(n: int) -> int:
        ran.append(n)
        await gate.wait()
        return n

    calls = [ToolCall(f"c{i}", "slow", f'{{"n": {i}}}') for i in range(5)]
    model = ScriptedModel([calls, "done"])
    run = asyncio.create_task(Agent("a", model, tools=[slow]).run("go"))
    async with asyncio.timeout(GUARD_S):
        # The two calls that find the queue full end while the others are still waiting.
        await until(lambda: len(tracer.of_type(ToolCallEnded)) == 2)
        assert (slow.bulkhead.inflight, slow.bulkhead.queue_depth) == (1, 2)
        gate.set()
        await run

    ends = {e.call_id: e for e in tracer.of_type(ToolCallEnded)}
    assert {k: e.status for k, e in ends.items()} == {
        "c0": "ok",
        "c1": "ok",
        "c2": "ok",
        "c3": "rejected",
        "c4": "rejected",
    }
    assert sorted(ran) == [0, 1, 2]
    refused = ends["c3"]
    assert refused.error is not None
    assert refused.error.type == "BackpressureRejected"
    assert "backpressure" in refused.error.message
    assert "max_queue=2" in refused.error.message
    message = next(m for m in model.requests[1].messages if m.tool_call_id == "c3")
    assert message.is_error
    assert "raise the limits or lower the load" in (message.content or "")
    assert slow.bulkhead.rejected == {"queue_full": 2, "queue_timeout": 0}


async def test_the_refusal_carries_its_reason_and_layer() -> None:
    bulkhead = Bulkhead(1, max_queue=0, name="search")
    await bulkhead.acquire()

    async with asyncio.timeout(GUARD_S):
        with pytest.raises(BackpressureRejected) as refused:
            await bulkhead.acquire()

    assert refused.value.reason == "queue_full"
    assert refused.value.status == "rejected"
    assert refused.value.layer == "backpressure"
    assert refused.value.tool == "search"
    assert (bulkhead.inflight, bulkhead.queue_depth) == (1, 0)


async def test_a_call_queued_past_queue_timeout_is_refused_with_reason_queue_timeout() -> None:
    bulkhead = Bulkhead(1, max_queue=5, queue_timeout=0.01, name="search")
    await bulkhead.acquire()

    async with asyncio.timeout(GUARD_S):
        with pytest.raises(BackpressureRejected) as refused:
            await bulkhead.acquire()

    assert refused.value.reason == "queue_timeout"
    assert "queue_timeout" in str(refused.value)
    assert (bulkhead.inflight, bulkhead.queue_depth) == (1, 0)  # the slot holder is untouched
    assert bulkhead.rejected == {"queue_full": 0, "queue_timeout": 1}
    bulkhead.release()
    await bulkhead.acquire()  # and the queue works on
    assert bulkhead.inflight == 1


async def test_queue_timeout_through_a_run_ends_the_call_rejected(tracer: RecordingTracer) -> None:
    gate = asyncio.Event()

    @tool(max_concurrency=1, queue_timeout=0.01)
    async def slow() -> str:
        await gate.wait()
        return "done"

    calls = [ToolCall("first", "slow"), ToolCall("second", "slow")]
    run = asyncio.create_task(Agent("a", ScriptedModel([calls, "done"]), tools=[slow]).run("go"))
    async with asyncio.timeout(GUARD_S):
        await until(lambda: len(tracer.of_type(ToolCallEnded)) == 1)
        gate.set()
        await run

    ends = {e.call_id: e for e in tracer.of_type(ToolCallEnded)}
    assert (ends["first"].status, ends["second"].status) == ("ok", "rejected")
    assert ends["second"].error is not None
    assert "queue_timeout" in ends["second"].error.message


async def test_without_max_concurrency_calls_are_only_counted() -> None:
    bulkhead = Bulkhead(None, max_queue=0)
    for _ in range(50):
        await bulkhead.acquire()
    assert (bulkhead.inflight, bulkhead.queue_depth) == (50, 0)
    for _ in range(50):
        bulkhead.release()
    assert bulkhead.inflight == 0


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"max_concurrency": -1},
        {"max_concurrency": 1.5},
        {"max_concurrency": True},
        {"max_queue": -1},
        {"soft_limit": -1},
        {"queue_timeout": 0},
        {"queue_timeout": -1.0},
        {"queue_timeout": "1s"},
    ],
    ids=repr,
)
def test_invalid_limits_are_a_configuration_error(options: dict[str, Any]) -> None:
    name = next(iter(options))
    limit = options.pop("max_concurrency", 4)
    with pytest.raises(ConfigurationError, match=name):
        Bulkhead(limit, **options)


def test_invalid_limits_on_a_tool_are_a_definition_error() -> None:
    def f() -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match="max_concurrency"):
        tool(max_concurrency=0)(f)
    with pytest.raises(ToolDefinitionError, match="queue_timeout"):
        tool(max_concurrency=1, queue_timeout=-1)(f)


# -------------------------------------------------------------------------------------- soft limit


async def test_the_soft_limit_warns_once_and_again_after_draining(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tracedagent")
    bulkhead = Bulkhead(1, max_queue=10, soft_limit=3, name="search")
    assert Bulkhead(1, max_queue=100).soft_limit == 80  # 80% of max_queue by default

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    async def queue(n: int) -> list[asyncio.Task[None]]:
        depth = bulkhead.queue_depth + n
        tasks = [asyncio.create_task(bulkhead.acquire()) for _ in range(n)]
        await until(lambda: bulkhead.queue_depth == depth)
        return tasks

    async def drain(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            bulkhead.release()  # hands the slot on
            await task
        await until(lambda: bulkhead.queue_depth == 0)

    async with asyncio.timeout(GUARD_S):
        await bulkhead.acquire()
        tasks = await queue(2)
        assert warnings() == []  # below the soft limit
        tasks += await queue(1)
        assert len(warnings()) == 1  # the third queued call reaches it
        assert "search" in warnings()[0]
        assert "soft limit of 3" in warnings()[0]
        tasks += await queue(3)  # further above it: no more warnings
        assert len(warnings()) == 1

        await drain(tasks)  # below the soft limit again
        tasks = await queue(3)
        assert len(warnings()) == 2  # so the next crossing warns again
        await drain(tasks)
        bulkhead.release()
    assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)


# ----------------------------------------------------------------------------------- two event loops


def test_the_limit_holds_across_two_event_loops_in_two_threads() -> None:
    """Thread A holds both slots; thread B's calls queue on another event loop. A's releases wake B's
    waiters on B's loop; then both loops run calls at once, never more than the limit in flight."""
    bulkhead = Bulkhead(2, max_queue=50)
    gauge = Gauge()
    holding, let_go = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    done: Counter[str] = Counter()

    async def one(label: str) -> None:
        await bulkhead.acquire()
        try:
            with gauge:
                for _ in range(3):
                    await asyncio.sleep(0)
        finally:
            bulkhead.release()
        done[label] += 1

    async def thread_a() -> None:
        await bulkhead.acquire()
        await bulkhead.acquire()
        holding.set()
        await asyncio.to_thread(let_go.wait, GUARD_S)
        bulkhead.release()
        bulkhead.release()
        await asyncio.gather(*(one("a") for _ in range(20)))

    async def thread_b() -> None:
        await asyncio.to_thread(holding.wait, GUARD_S)
        await asyncio.gather(*(one("b") for _ in range(20)))

    def in_thread(main: Any) -> None:
        try:
            asyncio.run(asyncio.wait_for(main(), GUARD_S))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=in_thread, args=(f,)) for f in (thread_a, thread_b)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + GUARD_S
    while bulkhead.queue_depth < 20 and time.monotonic() < deadline:  # B's calls all wait for A's slots
        time.sleep(0.001)
    queued = bulkhead.queue_depth
    let_go.set()
    for thread in threads:
        thread.join(GUARD_S * 2)

    assert errors == []
    assert queued == 20
    assert done == {"a": 20, "b": 20}
    assert gauge.peak <= 2
    assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)


# ------------------------------------------------------------------------------------ cancellation


@pytest.mark.parametrize("queue_timeout", [None, 60.0])
async def test_a_call_cancelled_while_queued_leaves_the_queue(queue_timeout: float | None) -> None:
    bulkhead = Bulkhead(1, max_queue=5, queue_timeout=queue_timeout)
    await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    async with asyncio.timeout(GUARD_S):
        await until(lambda: bulkhead.queue_depth == 1)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    assert (bulkhead.inflight, bulkhead.queue_depth) == (1, 0)
    bulkhead.release()
    assert bulkhead.inflight == 0  # the slot was freed, not handed to the cancelled call


@pytest.mark.parametrize("queue_timeout", [None, 60.0])
@pytest.mark.parametrize("next_in_line", [False, True])
async def test_a_call_cancelled_as_the_slot_is_handed_to_it_gives_it_back(
    queue_timeout: float | None, next_in_line: bool
) -> None:
    bulkhead = Bulkhead(1, max_queue=5, queue_timeout=queue_timeout)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.acquire())
    second = asyncio.create_task(bulkhead.acquire()) if next_in_line else None
    async with asyncio.timeout(GUARD_S):
        await until(lambda: bulkhead.queue_depth == (2 if next_in_line else 1))
        bulkhead.release()  # hands the slot to `first`...
        first.cancel()  # ...which is cancelled before it could run on
        with pytest.raises(asyncio.CancelledError):
            await first
        if second is not None:
            await second  # the slot went on to the next in line
            assert bulkhead.inflight == 1
            bulkhead.release()

    assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)
    async with asyncio.timeout(GUARD_S):
        await bulkhead.acquire()
    assert bulkhead.inflight == 1


async def test_a_slot_handed_over_as_the_queue_timeout_fires_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The queue timeout fires and, in the same turn of the loop before the waiter runs, a release
    hands it the slot: the waiter is refused (queue_timeout) and must give the slot back."""
    loop = asyncio.get_running_loop()
    now = [loop.time()]
    monkeypatch.setattr(loop, "time", lambda: now[0])  # the loop's clock moves only when told
    bulkhead = Bulkhead(1, max_queue=5, queue_timeout=0.01)
    await bulkhead.acquire()
    waiting = asyncio.create_task(bulkhead.acquire())
    await until(lambda: bulkhead.queue_depth == 1)  # queued, its queue timeout set for now + 0.01
    released = loop.create_future()

    def release() -> None:
        bulkhead.release()
        released.set_result(None)

    loop.call_at(now[0] + 0.02, release)
    now[0] += 1  # both are due in the next turn: the queue timeout first, then the release
    await released
    (outcome,) = await asyncio.gather(waiting, return_exceptions=True)

    assert isinstance(outcome, BackpressureRejected)
    assert outcome.reason == "queue_timeout"
    assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)
    assert bulkhead.rejected == {"queue_full": 0, "queue_timeout": 1}


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(0, 6),  # loop turns before the call arrives
            st.integers(0, 6),  # loop turns it holds its slot
            st.one_of(st.none(), st.integers(0, 20)),  # the loop turn at which it is cancelled
        ),
        min_size=1,
        max_size=30,
    ),
    limit=st.integers(1, 3),
    max_queue=st.integers(0, 6),
    queue_timeout=st.sampled_from([None, 60.0]),
)
def test_random_interleavings_of_calls_and_cancellations_never_lose_a_slot(
    plan: list[tuple[int, int, int | None]], limit: int, max_queue: int, queue_timeout: float | None
) -> None:
    async def scenario() -> None:
        bulkhead = Bulkhead(limit, max_queue=max_queue, queue_timeout=queue_timeout)
        gauge = Gauge()

        async def call(arrive: int, hold: int) -> None:
            for _ in range(arrive):
                await asyncio.sleep(0)
            await bulkhead.acquire()
            try:
                with gauge:
                    for _ in range(hold):
                        await asyncio.sleep(0)
            finally:
                bulkhead.release()

        tasks = [asyncio.create_task(call(arrive, hold)) for arrive, hold, _ in plan]
        for turn in range(21):
            for task, (_, _, cancel_at) in zip(tasks, plan, strict=True):
                if cancel_at == turn:
                    task.cancel()
            await asyncio.sleep(0)
        async with asyncio.timeout(SHORT_GUARD_S):
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)

        assert all(o is None or isinstance(o, (asyncio.CancelledError, BackpressureRejected)) for o in outcomes)
        assert gauge.peak <= limit
        assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)
        async with asyncio.timeout(SHORT_GUARD_S):  # every slot is still there
            for _ in range(limit):
                await bulkhead.acquire()
        assert bulkhead.inflight == limit

    asyncio.run(scenario())


# --------------------------------------------------------------------------------------- load test


async def test_load_10000_concurrent_calls_against_max_concurrency_8_and_max_queue_100() -> None:
    """10,000 calls through a tool's bulkhead and ``invoke``, in waves. The first wave holds every slot
    past the queue timeout (so the queue times out and fills) until the tool's timeout frees them; the
    others come faster than they are served, and some calls are cancelled wherever they are."""
    calls, wave_size, limit = 10_000, 100, 8
    gauge = Gauge()
    blockers_in, blockers_out = asyncio.Event(), asyncio.Event()
    blocked = Counter[str]()
    queued: list[int] = []  # the queue's depth, seen from inside the tool and by the driver

    @tool(max_concurrency=limit, max_queue=100, queue_timeout=0.02, timeout=0.1, breaker=False)
    async def work(hold: int, block: bool = False) -> str:
        with gauge:
            assert gauge.now <= limit, "more calls in flight than max_concurrency"
            queued.append(work.bulkhead.queue_depth)
            if block:
                blocked["in"] += 1
                if blocked["in"] == limit:
                    blockers_in.set()
                try:
                    await asyncio.Event().wait()  # until the tool's timeout
                finally:
                    blocked["out"] += 1
                    if blocked["out"] == limit:
                        blockers_out.set()
            for _ in range(hold):
                await asyncio.sleep(0)
            return "ok"

    bulkhead = work.bulkhead
    rng = random.Random(5)
    waves = [asyncio.Event() for _ in range(calls // wave_size)]
    outcomes: Counter[str] = Counter()
    accepted = 0
    running: dict[asyncio.Task[None], None] = {}  # the calls holding a slot, in order

    async def call(i: int) -> None:
        nonlocal accepted
        block = i < limit  # the first wave's first calls hold every slot
        arguments = json.dumps({"hold": rng.randint(0, 3), "block": block})
        try:
            await waves[i // wave_size].wait()
        except asyncio.CancelledError:
            outcomes["cancelled before arriving"] += 1
            raise
        try:
            await bulkhead.acquire()
        except BackpressureRejected as exc:
            outcomes[exc.reason] += 1
            queued.append(bulkhead.queue_depth)  # a full queue: exactly max_queue
            return
        except asyncio.CancelledError:
            outcomes["cancelled while queued"] += 1
            raise
        accepted += 1
        task = asyncio.current_task()
        assert task is not None
        running[task] = None
        try:
            await work.invoke(arguments)
            outcomes["ok"] += 1
        except ToolTimeout:
            outcomes["blocked timeout" if block else "timeout"] += 1
        except asyncio.CancelledError:
            outcomes["cancelled in flight"] += 1
            raise
        finally:
            del running[task]
            bulkhead.release()

    tasks = [asyncio.create_task(call(i)) for i in range(calls)]
    async with asyncio.timeout(GUARD_S * 3):
        waves[0].set()
        await blockers_in.wait()  # every slot is blocked, the rest of the first wave is queued
        waves[1].set()  # fills the queue: the rest is refused at once
        await blockers_out.wait()  # the queue timed out long before the tool's timeout freed the slots
        for n in range(2, len(waves)):
            waves[n].set()
            this_wave = tasks[n * wave_size : (n + 1) * wave_size]
            cancel_at = {rng.randrange(20): rng.choice(this_wave) for _ in range(3)}
            cancel_running_at = rng.randrange(20)
            for turn in range(20):
                if turn in cancel_at:
                    cancel_at[turn].cancel()  # wherever it is: not yet arrived, queued, running or done
                if turn == cancel_running_at and running:
                    rng.choice(list(running)).cancel()
                await asyncio.sleep(0)
                queued.append(bulkhead.queue_depth)
        results = await asyncio.gather(*tasks, return_exceptions=True)

    unexpected = [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
    assert unexpected == []
    assert gauge.peak == limit  # reached, never passed
    assert max(queued) == 100  # the same for max_queue
    assert accepted == gauge.entered  # every accepted call ran, and nothing else did
    refused = outcomes["queue_full"] + outcomes["queue_timeout"]
    cancelled_unadmitted = outcomes["cancelled before arriving"] + outcomes["cancelled while queued"]
    assert accepted + refused + cancelled_unadmitted == calls
    assert sum(outcomes.values()) == calls
    assert bulkhead.rejected == {"queue_full": outcomes["queue_full"], "queue_timeout": outcomes["queue_timeout"]}
    assert outcomes["blocked timeout"] == limit
    for outcome in ("ok", "queue_full", "queue_timeout", "cancelled while queued", "cancelled in flight"):
        assert outcomes[outcome] > 0, (outcome, outcomes)

    # No slot was lost: nothing in flight or queued, and the full limit can be taken at once.
    assert (bulkhead.inflight, bulkhead.queue_depth) == (0, 0)
    for _ in range(limit):
        await asyncio.wait_for(bulkhead.acquire(), GUARD_S)
    assert (bulkhead.inflight, bulkhead.queue_depth) == (limit, 0)
