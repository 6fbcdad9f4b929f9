"""RedisCircuitBreaker and RedisBulkhead: one breaker and one concurrency limit per tool across processes.

A real ``redis-server`` runs on loopback for this module (skipped when it is not installed; CI installs
Debian's ``redis-server``). The worker processes run a small script that takes JSON commands on stdin
and answers one JSON line each; the test sends a command to every worker before reading any answer, so
the workers act at the same time. Breaker time comes from a file the test writes (an injected clock),
so nothing depends on how long anything takes. The timeouts are guards only, never asserted on.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tracedagent import (
    Agent,
    BackpressureRejected,
    CircuitOpen,
    CircuitStateChanged,
    Tool,
    ToolCallEnded,
    ToolDefinitionError,
)
from tracedagent import tool as make_tool
from tracedagent.exceptions import UserError
from tracedagent.resilience import Bulkhead, RedisBulkhead, RedisCircuitBreaker, reset_all
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

pytestmark = pytest.mark.integration

GUARD_S = 60.0  # only a guard, so that a regression fails instead of hanging; never asserted on

WORKER = textwrap.dedent(
    '''
    """A worker process: one RedisCircuitBreaker or RedisBulkhead, driven by JSON commands on stdin."""
    import asyncio, json, random, sys
    import redis.asyncio
    from tracedagent import BackpressureRejected
    from tracedagent.resilience import RedisBulkhead, RedisCircuitBreaker

    config = json.loads(sys.argv[1])


    def clock():
        with open(config["clock_file"]) as f:
            return float(f.read())


    def answer(data):
        print(json.dumps(data), flush=True)


    async def main():
        loop = asyncio.get_running_loop()
        if "breaker" in config:
            part = RedisCircuitBreaker(config["url"], config["key"], clock=clock, **config["breaker"])
        else:
            part = RedisBulkhead(config["url"], config["key"], **config["bulkhead"])
        counter = redis.asyncio.Redis.from_url(config["url"])
        admitted, holders, release = [], [], asyncio.Event()

        async def admit():
            admission = await part.abefore_call()
            if admission.allowed:
                admitted.append(admission)
            return admission

        async def call(failed):
            admission = await admit()
            if admission.allowed:
                admitted.remove(admission)
                return admission, await part.arecord(failed, admission.probe)
            return admission, None

        def transitions(ts):
            return [[t.old, t.new, t.reason] for t in ts if t is not None]

        stats = {"accepted": 0, "cancelled": 0, "peak": 0, "queue_full": 0, "queue_timeout": 0}

        async def guarded(hold):
            """A call: a slot, then the shared in-flight counter up for `hold` seconds, then down."""
            await part.acquire()
            stats["accepted"] += 1
            try:
                incr = asyncio.ensure_future(counter.incr(config["counter_key"]))
                try:
                    await asyncio.shield(incr)
                    await asyncio.sleep(hold)
                finally:
                    await asyncio.wait([incr])
                    stats["peak"] = max(stats["peak"], incr.result())
                    await counter.decr(config["counter_key"])
            finally:
                await part.arelease()

        async def attempt(hold, cancel_after=None):
            task = asyncio.ensure_future(guarded(hold))
            if cancel_after is not None:
                loop.call_later(cancel_after, task.cancel)
            try:
                await task
            except BackpressureRejected as exc:
                stats[exc.reason] += 1
            except asyncio.CancelledError:
                stats["cancelled"] += 1

        async def holder():
            await part.acquire()
            try:
                await release.wait()
            finally:
                await part.arelease()

        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "calls":  # n calls at once, each admitted then recorded
                done = await asyncio.gather(*(call(cmd["failed"]) for _ in range(cmd["n"])))
                ts = [a.transition for a, _ in done] + [t for _, t in done]
                answer({"allowed": sum(a.allowed for a, _ in done), "transitions": transitions(ts)})
            elif op == "admit":  # n admissions at once, held until "finish"
                done = await asyncio.gather(*(admit() for _ in range(cmd["n"])))
                answer({
                    "allowed": sum(a.allowed for a in done),
                    "probes": sum(a.probe for a in done),
                    "transitions": transitions(a.transition for a in done),
                })
            elif op == "finish":  # record the outcome of every admitted call at once
                held = list(admitted)
                admitted.clear()
                done = await asyncio.gather(*(part.arecord(cmd["failed"], a.probe) for a in held))
                answer({"transitions": transitions(done)})
            elif op == "storm":  # many calls, some cancelled at random moments
                for key in stats:
                    stats[key] = 0
                rng = random.Random(cmd["seed"])
                await asyncio.gather(*(
                    attempt(rng.uniform(0, cmd["hold"]), rng.uniform(0, 0.05) if rng.random() < cmd["cancel"] else None)
                    for _ in range(cmd["n"])
                ))
                answer(dict(stats, inflight=part.inflight, queued=part.queue_depth))
            elif op == "try":  # n calls at once, each holding its slot `hold` seconds
                for key in stats:
                    stats[key] = 0
                await asyncio.gather(*(attempt(cmd.get("hold", 0.0)) for _ in range(cmd["n"])))
                answer(dict(stats, inflight=part.inflight, queued=part.queue_depth))
            elif op == "hold":  # take n slots and keep them until "let_go"
                release.clear()
                holders = [asyncio.ensure_future(holder()) for _ in range(cmd["n"])]
                while part.inflight < cmd["n"]:
                    await asyncio.sleep(0.01)
                answer({"held": part.inflight})
            elif op == "let_go":
                release.set()
                await asyncio.gather(*holders)
                answer({"inflight": part.inflight})
            elif op == "queue_and_cancel":  # n calls that queue, then are all cancelled
                tasks = [asyncio.ensure_future(part.acquire()) for _ in range(cmd["n"])]
                while part.queue_depth < cmd["n"] and not any(t.done() for t in tasks):
                    await asyncio.sleep(0.01)
                queued = part.queue_depth
                for task in tasks:
                    task.cancel()
                results = await asyncio.gather(*tasks, return_exceptions=True)
                cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
                answer({"queued": queued, "cancelled": cancelled, "inflight": part.inflight,
                        "queued_after": part.queue_depth})
            elif op == "exit":
                break
        await part.aclose()
        await counter.aclose()
        answer({"bye": True})


    asyncio.run(main())
    '''
)


# -------------------------------------------------------------------------------------- fixtures


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """Start redis-server on loopback (no persistence) and wait until it answers."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed: apt-get install -y redis-server (CI installs it)")
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [*args, "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + GUARD_S
    try:
        while True:
            try:
                client.ping()
                return proc
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port} (exit code {proc.poll()})")
                time.sleep(0.05)
    finally:
        client.close()


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(GUARD_S)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on loopback, for this module."""
    port = free_port()
    proc = start_redis(tmp_path_factory.mktemp("redis"), port)
    yield f"redis://127.0.0.1:{port}/0"
    stop_redis(proc)


@pytest.fixture
def db(redis_url: str) -> Iterator[redis.Redis]:
    """A synchronous client, for the test to look at Redis directly."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


class Worker:
    """A worker process running WORKER: ``send`` a command, then read its ``answer``."""

    def __init__(self, script: Path, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line)
        self.lines.put("")

    def send(self, op: str, **args: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        line = self.lines.get(timeout=GUARD_S)
        assert line, f"the worker exited (code {self.proc.poll()})"
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(op, **args)
        return self.answer()

    def stop(self) -> None:
        """Ask it to exit (it gives its slots back and closes its clients first), unless it is dead."""
        if self.proc.poll() is None:
            assert self.ask("exit") == {"bye": True}
        self.proc.wait(GUARD_S)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.reader.join(GUARD_S)


def all_at_once(workers: list[Worker], op: str, **args: Any) -> list[dict[str, Any]]:
    """Send the command to every worker before reading any answer, so they act at the same time."""
    for w in workers:
        w.send(op, **args)
    return [w.answer() for w in workers]


@pytest.fixture
def spawn(tmp_path: Path, redis_url: str, key: str) -> Iterator[Any]:
    """Start workers sharing ``key``; each stopped cleanly (or killed) at the end."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    clock_file = tmp_path / "clock"
    clock_file.write_text("1000.0")
    started: list[Worker] = []

    def start(count: int, **config: Any) -> list[Worker]:
        base = {"url": redis_url, "key": key, "clock_file": str(clock_file), "counter_key": f"{key}:counter"}
        workers = [Worker(script, {**base, **config}) for _ in range(count)]
        started.extend(workers)
        return workers

    start.clock_file = clock_file  # type: ignore[attr-defined]
    yield start
    for w in started:
        w.stop()


def set_clock(spawn: Any, now: float) -> None:
    spawn.clock_file.write_text(repr(now))


def transitions(answers: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((old, new) for a in answers for old, new, _ in a["transitions"])


# ------------------------------------------------------------------------------------------ breaker


def test_breaker_opens_once_after_failures_spread_over_processes(spawn: Any, db: redis.Redis, key: str) -> None:
    workers = spawn(3, breaker={"failure_threshold": 7, "reset_timeout": 30})
    first = all_at_once(workers, "calls", n=2, failed=True)  # 6 failures: one short of the threshold
    assert sum(a["allowed"] for a in first) == 6
    assert transitions(first) == []
    assert db.hget(key, "state") in (None, "closed")

    second = all_at_once(workers, "calls", n=1, failed=True)  # the 7th failure opens it, in one process
    assert transitions(second) == [("closed", "open")]
    [reason] = [r for a in second for _, _, r in a["transitions"]]
    assert reason == "7 consecutive failures"
    assert db.hget(key, "state") == "open"

    third = all_at_once(workers, "calls", n=3, failed=False)  # open everywhere: refused, nothing changes
    assert sum(a["allowed"] for a in third) == 0
    assert transitions(third) == []


def test_a_success_in_any_process_resets_the_count(spawn: Any, db: redis.Redis, key: str) -> None:
    a, b = spawn(2, breaker={"failure_threshold": 3})
    assert a.ask("calls", n=2, failed=True)["transitions"] == []
    assert b.ask("calls", n=1, failed=False)["transitions"] == []
    assert a.ask("calls", n=2, failed=True)["transitions"] == []
    assert db.hget(key, "failures") == "2"
    assert [t[:2] for t in b.ask("calls", n=1, failed=True)["transitions"]] == [["closed", "open"]]


def open_breaker(worker: Worker, failures: int) -> None:
    assert [t[:2] for t in worker.ask("calls", n=failures, failed=True)["transitions"]] == [["closed", "open"]]


def test_half_open_lets_only_k_probes_through_across_processes(spawn: Any, db: redis.Redis, key: str) -> None:
    workers = spawn(3, breaker={"failure_threshold": 2, "reset_timeout": 30, "half_open_max_calls": 2})
    open_breaker(workers[0], 2)
    set_clock(spawn, 1029.0)  # not yet
    assert sum(a["allowed"] for a in all_at_once(workers, "admit", n=4)) == 0

    set_clock(spawn, 1031.0)
    admitted = all_at_once(workers, "admit", n=4)  # 12 calls at once: 2 probes go, in total
    assert sum(a["allowed"] for a in admitted) == 2
    assert sum(a["probes"] for a in admitted) == 2
    assert transitions(admitted) == [("open", "half_open")]
    assert db.hget(key, "state") == "half_open"

    finished = all_at_once(workers, "finish", failed=False)  # both probes succeed: closed, once
    assert transitions(finished) == [("half_open", "closed")]
    assert db.hget(key, "state") == "closed"
    assert sum(a["allowed"] for a in all_at_once(workers, "calls", n=2, failed=False)) == 6


def test_a_failed_probe_opens_it_again_once(spawn: Any, db: redis.Redis, key: str) -> None:
    workers = spawn(2, breaker={"failure_threshold": 1, "reset_timeout": 10, "half_open_max_calls": 2})
    open_breaker(workers[0], 1)
    set_clock(spawn, 1011.0)
    admitted = all_at_once(workers, "admit", n=1)
    assert sum(a["probes"] for a in admitted) == 2
    assert transitions(all_at_once(workers, "finish", failed=True)) == [("half_open", "open")]
    assert db.hget(key, "state") == "open"
    assert float(db.hget(key, "opened_at") or 0) == pytest.approx(1011.0)


def test_the_probe_of_a_killed_worker_expires(spawn: Any, db: redis.Redis, key: str) -> None:
    options = {"failure_threshold": 1, "reset_timeout": 10, "half_open_max_calls": 1, "probe_lease": 5}
    doomed, other = spawn(2, breaker=options)
    open_breaker(other, 1)
    set_clock(spawn, 1011.0)
    assert doomed.ask("admit", n=1)["probes"] == 1
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(GUARD_S)

    assert other.ask("admit", n=1)["allowed"] == 0  # the dead worker's probe still counts
    set_clock(spawn, 1016.5)  # past its probe_lease
    assert other.ask("admit", n=1)["probes"] == 1
    assert transitions([other.ask("finish", failed=False)]) == [("half_open", "closed")]


def test_failure_rate_over_processes(spawn: Any, db: redis.Redis, key: str) -> None:
    workers = spawn(3, breaker={"failure_threshold": 100, "failure_rate": 0.5, "min_calls": 6, "window": 60})
    assert transitions(all_at_once(workers, "calls", n=1, failed=False)) == []
    rated = all_at_once(workers, "calls", n=1, failed=True)  # the 6th call: 3 of 6 failed
    assert transitions(rated) == [("closed", "open")]
    assert [r for a in rated for _, _, r in a["transitions"]] == ["failure rate 50% over 6 calls in 60s"]


def seen(breaker: RedisCircuitBreaker) -> str:
    """The state this process last saw (what ``hide_when_open`` reads)."""
    return breaker.state


async def test_breaker_state_is_readable_and_reset_by_hand(redis_url: str, key: str) -> None:
    now = [1000.0]
    breaker = RedisCircuitBreaker(redis_url, key, failure_threshold=1, reset_timeout=10, clock=lambda: now[0])
    other = RedisCircuitBreaker(redis_url, key, failure_threshold=1, reset_timeout=10, clock=lambda: now[0])
    try:
        assert seen(breaker) == "closed"
        transition = await breaker.arecord(True)
        assert transition is not None
        assert (transition.old, transition.new) == ("closed", "open")
        assert seen(breaker) == "open"
        assert breaker.retry_in() > 0
        assert seen(other) == "closed"  # the last state it saw...
        assert await other.astate() == "open"  # ...until it asks
        assert seen(other) == "open"
        reset = await other.areset()
        assert reset is not None
        assert (reset.old, reset.new) == ("open", "closed")
        assert await breaker.astate() == "closed"
    finally:
        await breaker.aclose()
        await other.aclose()


def test_remote_breaker_has_no_sync_face_and_survives_reset_all(redis_url: str, key: str) -> None:
    breaker = RedisCircuitBreaker(redis_url, key)
    with pytest.raises(UserError, match="await abefore_call"):
        breaker.before_call()
    with pytest.raises(UserError, match="await arecord"):
        breaker.record(True)
    reset_all()  # the pytest plugin does this after each test: remote breakers are left alone


# ---------------------------------------------------------------------------------------- bulkhead


def test_bulkhead_never_exceeds_the_limit_across_processes(spawn: Any, db: redis.Redis, key: str) -> None:
    """4 processes x 60 calls, some cancelled, some timed out, against 8 slots: never more than 8 at once,
    every call accounted for, and no slot left behind."""
    calls = 60
    workers = spawn(4, bulkhead={"max_concurrency": 8, "max_queue": 30, "queue_timeout": 0.5, "poll_interval": 0.02})
    for w, seed in zip(workers, range(4), strict=True):
        w.send("storm", n=calls, hold=0.02, cancel=0.2, seed=seed)
    answers = [w.answer() for w in workers]
    for a in answers:
        assert a["accepted"] + a["cancelled"] + a["queue_full"] + a["queue_timeout"] == calls
        assert (a["inflight"], a["queued"]) == (0, 0)
    peak = max(a["peak"] for a in answers)
    assert 1 < peak <= 8
    assert sum(a["accepted"] for a in answers) > 8
    for w in workers:
        w.stop()
    assert db.zcard(key) == 0
    assert db.get(f"{key}:counter") == "0"


def test_bulkhead_refusals_across_processes(spawn: Any, db: redis.Redis, key: str) -> None:
    options = {"max_concurrency": 3, "max_queue": 2, "queue_timeout": 0.2, "poll_interval": 0.02}
    holder, a, b = spawn(3, bulkhead=options)
    assert holder.ask("hold", n=3) == {"held": 3}
    assert db.zcard(key) == 3

    refused = all_at_once([a, b], "try", n=10)  # every slot taken elsewhere
    for r in refused:
        assert r["accepted"] == 0
        assert r["queue_full"] + r["queue_timeout"] == 10
        assert r["queue_full"] > 0
        assert r["queue_timeout"] > 0
    assert db.zcard(key) == 3

    assert holder.ask("let_go") == {"inflight": 0}
    assert db.zcard(key) == 0
    assert a.ask("try", n=3)["accepted"] == 3
    assert db.zcard(key) == 0


def test_cancelled_waiters_leave_no_slot_behind(spawn: Any, db: redis.Redis, key: str) -> None:
    options = {"max_concurrency": 2, "max_queue": 10, "poll_interval": 0.02}
    holder, waiter = spawn(2, bulkhead=options)
    assert holder.ask("hold", n=2) == {"held": 2}
    assert waiter.ask("queue_and_cancel", n=5) == {"queued": 5, "cancelled": 5, "inflight": 0, "queued_after": 0}
    assert holder.ask("let_go") == {"inflight": 0}
    assert db.zcard(key) == 0
    assert waiter.ask("try", n=4)["accepted"] == 4
    assert db.zcard(key) == 0


def test_the_slots_of_a_killed_worker_expire(spawn: Any, db: redis.Redis, key: str) -> None:
    options = {"max_concurrency": 3, "lease_seconds": 1.0, "poll_interval": 0.05, "queue_timeout": GUARD_S}
    [doomed] = spawn(1, bulkhead=options)
    assert doomed.ask("hold", n=3) == {"held": 3}
    assert db.zcard(key) == 3
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait(GUARD_S)

    [other] = spawn(1, bulkhead=options)
    taken = other.ask("try", n=3, hold=0.0)  # waits (guarded) until the dead worker's leases expire
    assert (taken["accepted"], taken["queue_timeout"]) == (3, 0)
    assert db.zcard(key) == 0


async def test_a_long_call_keeps_its_slot(redis_url: str, key: str) -> None:
    """The lease is renewed while the call runs: after several lease periods the slot is still held."""
    bulkhead = RedisBulkhead(redis_url, key, 1, lease_seconds=0.3)
    other = RedisBulkhead(redis_url, key, 1, max_queue=0)
    try:
        await bulkhead.acquire()
        await asyncio.sleep(1.2)  # four lease periods: without renewal the slot would be gone
        assert await other.global_inflight() == 1
        with pytest.raises(BackpressureRejected) as refused:
            await other.acquire()
        assert refused.value.reason == "queue_full"
        await bulkhead.arelease()
        assert await other.global_inflight() == 0
        assert bulkhead.inflight == 0
    finally:
        await bulkhead.aclose()
        await other.aclose()


def test_bulkhead_has_no_sync_release(redis_url: str, key: str) -> None:
    with pytest.raises(UserError, match="await arelease"):
        RedisBulkhead(redis_url, key, 2).release()


# --------------------------------------------------------------------------------- through the agent


async def test_circuit_state_changed_through_an_agent_run(redis_url: str, key: str, tracer: RecordingTracer) -> None:
    now = [1000.0]
    broken = [True]
    breaker = RedisCircuitBreaker(redis_url, key, failure_threshold=2, reset_timeout=10, clock=lambda: now[0])

    @make_tool(breaker=breaker)
    def lookup() -> str:
        """Look something up."""
        if broken[0]:
            raise RuntimeError("backend down")
        return "found"

    try:
        calls: list[Any] = [("lookup", {}), ("lookup", {}), ("lookup", {}), "gave up"]
        await Agent("a", ScriptedModel(calls), tools=[lookup]).run("go")
        assert [(e.tool, e.old, e.new) for e in tracer.of_type(CircuitStateChanged)] == [("lookup", "closed", "open")]
        assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["error", "error", "circuit_open"]

        tracer.clear()
        now[0] += 11
        broken[0] = False
        await Agent("a", ScriptedModel([("lookup", {}), "found it"]), tools=[lookup]).run("again")
        changes = [(e.old, e.new) for e in tracer.of_type(CircuitStateChanged)]
        assert changes == [("open", "half_open"), ("half_open", "closed")]
        assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"]
    finally:
        await breaker.aclose()


async def test_redis_bulkhead_through_an_agent_run(redis_url: str, key: str, tracer: RecordingTracer) -> None:
    bulkhead = RedisBulkhead(redis_url, key, 1, queue_timeout=GUARD_S, poll_interval=0.01)
    inside, peak = [0], [0]

    @make_tool(bulkhead=bulkhead, breaker=False)
    async def slow() -> str:
        """Slow."""
        inside[0] += 1
        peak[0] = max(peak[0], inside[0])
        await asyncio.sleep(0.02)
        inside[0] -= 1
        return "ok"

    try:
        assert slow.bulkhead is bulkhead
        assert bulkhead.name == "slow"
        model = ScriptedModel([Step(tool_calls=[("slow", {}), ("slow", {}), ("slow", {})]), "done"])
        await Agent("a", model, tools=[slow]).run("go")
        assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok", "ok", "ok"]
        assert peak[0] == 1
        assert (bulkhead.inflight, await bulkhead.global_inflight()) == (0, 0)
    finally:
        await bulkhead.aclose()


async def test_unreachable_redis_refuses_the_call_and_names_redis(tracer: RecordingTracer) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    breaker = RedisCircuitBreaker(nowhere, "b")
    bulkhead = RedisBulkhead(nowhere, "s", 2)

    @make_tool(breaker=breaker)
    def guarded() -> str:
        """Behind a breaker."""
        return "ran"

    @make_tool(breaker=False, bulkhead=bulkhead)
    def limited() -> str:
        """Behind a bulkhead."""
        return "ran"

    model = ScriptedModel([Step(tool_calls=[("guarded", {}), ("limited", {})]), "done"])
    try:
        await Agent("a", model, tools=[guarded, limited]).run("go")
        ended = {e.tool: e for e in tracer.of_type(ToolCallEnded)}
        assert ended["guarded"].status == "circuit_open"
        assert ended["limited"].status == "rejected"
        for event in ended.values():
            assert "Redis at redis://127.0.0.1" in (event.result or "")
        assert bulkhead.rejected["redis_unavailable"] == 1
        assert await breaker.arecord(True) is None  # the end of a call never raises
        await breaker.arelease_probe()
    finally:
        await breaker.aclose()
        await bulkhead.aclose()


async def test_calls_are_refused_while_redis_is_down_and_go_again_after(tmp_path: Path) -> None:
    """Fail closed, then recover: the clients reconnect, and the scripts are loaded again (a restarted
    Redis has forgotten them)."""
    port = free_port()
    server = start_redis(tmp_path, port)
    url = f"redis://127.0.0.1:{port}/0"
    breaker = RedisCircuitBreaker(url, "b", failure_threshold=1)
    bulkhead = RedisBulkhead(url, "s", 1)
    try:
        assert (await breaker.abefore_call()).allowed
        await bulkhead.acquire()
        await bulkhead.arelease()

        stop_redis(server)
        with pytest.raises(CircuitOpen, match=f"Redis at redis://127.0.0.1:{port}/0"):
            await breaker.abefore_call()
        with pytest.raises(BackpressureRejected, match="Redis") as refused:
            await bulkhead.acquire()
        assert refused.value.reason == "redis_unavailable"
        assert bulkhead.inflight == 0

        server = start_redis(tmp_path, port)
        assert (await breaker.abefore_call()).allowed
        transition = await breaker.arecord(True)
        assert transition is not None
        assert transition.new == "open"
        await bulkhead.acquire()
        assert await bulkhead.global_inflight() == 1
        await bulkhead.arelease()
    finally:
        await breaker.aclose()
        await bulkhead.aclose()
        stop_redis(server)


# ---------------------------------------------------------------------------------------- the tool


def test_tool_takes_a_prebuilt_bulkhead() -> None:
    shared = Bulkhead(2)
    first = Tool(lambda: 1, name="first", bulkhead=shared)
    second = Tool(lambda: 2, name="second", bulkhead=shared)
    assert first.bulkhead is second.bulkhead is shared
    assert shared.name == "first"
    with pytest.raises(ToolDefinitionError, match="either bulkhead= or max_concurrency"):
        Tool(lambda: 1, name="both", bulkhead=Bulkhead(2), max_concurrency=3)
    with pytest.raises(ToolDefinitionError, match="must be a Bulkhead"):
        Tool(lambda: 1, name="wrong", bulkhead=3)  # type: ignore[arg-type]


def test_importing_tracedagent_does_not_import_redis() -> None:
    code = "import sys, tracedagent, tracedagent.resilience; print('redis' in sys.modules)"
    env = {**os.environ, "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"
