"""PostgresCheckpointStore.save of a 50-message run against a bare psycopg INSERT of the same bytes.

    python benchmarks/postgres_store.py [--rounds 20] [--per-round 25] [--runs 100]

Starts a throwaway PostgreSQL cluster on loopback (tests/postgres_server.py; the server's defaults, so
each commit is flushed) unless ``TRACEDAGENT_BENCH_PG_DSN`` names a database. Both sides run in this
process against the same server, interleaved round by round (A B B A ...):

* ``store``: ``await store.save(checkpoint)`` as a run makes it, under the run's lease: encoding the
  checkpoint, the hop to the store's thread, the upsert fenced by the lease holder, which also renews
  the lease (one statement, one autocommit transaction);
* ``bare``: ``connection.execute("INSERT ...", (run_id, data))`` on an autocommit connection, with the
  checkpoint's bytes encoded beforehand.

Prints the median per-save time of each and their ratio (the target: the store within 2x of bare).
Then ``--runs`` agents (100) run at once on one store, each pausing for an approval after a checkpointed
tool call, and are resumed at once: every run must complete, and the wall time of each phase is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

from tracedagent import Agent, Checkpoint, Message, PostgresCheckpointStore, ToolCall, tool
from tracedagent._checkpoint import Fence, set_fence
from tracedagent.testing import ScriptedModel, Step

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def checkpoint_of_50_messages() -> Checkpoint:
    messages = [Message.user("Plan the release of version 1.2 and check every service first.")]
    for i in range(24):
        call = ToolCall.of(f"call_{i}", "check_service", {"service": f"service-{i}", "region": "eu-west-1"})
        messages.append(Message.assistant(f"Checking service {i} before the release.", tool_calls=[call]))
        messages.append(Message.tool(call.id, call.name, f"service-{i}: healthy, 3 replicas, p99 41 ms " * 4))
    messages.append(Message.assistant("Every service is healthy; the release can go ahead."))
    assert len(messages) == 50
    return Checkpoint("run-bench", "trace-bench", "releaser", messages=tuple(messages), turn=25)


@contextlib.contextmanager
def database() -> Iterator[str]:
    named = os.environ.get("TRACEDAGENT_BENCH_PG_DSN")
    if named:
        yield named
        return
    from postgres_server import postgres_cluster

    with postgres_cluster(durable=True) as dsn:
        yield dsn


async def concurrent_runs(dsn: str, runs: int) -> None:
    store = PostgresCheckpointStore(dsn, max_connections=8)

    @tool
    def check(service: str) -> str:
        """Check a service."""
        return service + ": healthy"

    @tool(needs_approval=True)
    def deploy(version: str) -> str:
        """Deploy a version."""
        return "deployed " + version

    def agent(i: int) -> Agent:
        script = [Step(tool_calls=[("check", {"service": f"s{i}"})]), Step(tool_calls=[("deploy", {"version": "1"})])]
        return Agent("bench", ScriptedModel([*script, f"done {i}"]), tools=[check, deploy], checkpoints=store)

    agents = [agent(i) for i in range(runs)]
    t = time.perf_counter()
    paused = await asyncio.gather(*(a.run("go") for a in agents))
    ran = time.perf_counter() - t
    assert {r.status for r in paused} == {"interrupted"}, {r.status for r in paused}
    t = time.perf_counter()
    done = await asyncio.gather(
        *(a.resume(r.run_id, {r.interruptions[0].id: True}) for a, r in zip(agents, paused, strict=True))
    )
    resumed = time.perf_counter() - t
    assert [r.output for r in done] == [f"done {i}" for i in range(runs)]
    store.close()
    print(f"{runs} concurrent runs on one store (max_connections=8), checkpointing every step:")
    print(
        f"  run until paused {ran * 1e3:8.1f} ms wall; resume to completed {resumed * 1e3:8.1f} ms wall; all completed"
    )


async def main(rounds: int, per_round: int, runs: int) -> None:
    checkpoint = checkpoint_of_50_messages()
    data = checkpoint.encode()
    with database() as dsn:
        store = PostgresCheckpointStore(dsn, max_connections=1)
        set_fence(Fence(checkpoint.run_id, "bench-holder", held=False))  # as a run saves: under its lease
        await store.save(checkpoint)  # the schema, the connection, the row, the lease
        bare = psycopg.connect(dsn, autocommit=True)
        bare.execute("CREATE TABLE IF NOT EXISTS bench_bare (run_id text PRIMARY KEY, data bytea NOT NULL)")
        times: dict[str, list[float]] = {"store": [], "bare": []}
        counter = 0

        async def store_side() -> None:
            for _ in range(per_round):
                started = time.perf_counter()
                await store.save(checkpoint)
                times["store"].append(time.perf_counter() - started)

        def bare_side() -> None:
            nonlocal counter
            for _ in range(per_round):
                counter += 1
                started = time.perf_counter()
                bare.execute("INSERT INTO bench_bare (run_id, data) VALUES (%s, %s)", (f"run-{counter}", data))
                times["bare"].append(time.perf_counter() - started)

        for i in range(rounds):
            if i % 2:
                bare_side()
                await store_side()
            else:
                await store_side()
                bare_side()
        bare.close()
        store.close()
        store_ms = statistics.median(times["store"]) * 1e3
        bare_ms = statistics.median(times["bare"]) * 1e3
        print(f"checkpoint of a 50-message run: {len(data):,} bytes; {rounds * per_round} saves each, interleaved")
        print(
            f"  PostgresCheckpointStore.save   median {store_ms:7.3f} ms   (under the run's lease: fenced, renewing it)"
        )
        print(f"  bare psycopg INSERT            median {bare_ms:7.3f} ms")
        print(f"  ratio store / bare             {store_ms / bare_ms:7.2f}x   (target <= 2x)")
        await concurrent_runs(dsn, runs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=25)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.per_round, args.runs))
