"""PostgresCheckpointStore.save of a 50-message run against a bare psycopg INSERT of the same bytes.

    python benchmarks/postgres_store.py [--rounds 20] [--per-round 25]

Starts a throwaway PostgreSQL cluster on loopback (tests/postgres_server.py; the server's defaults, so
each commit is flushed) unless ``TRACEDAGENT_BENCH_PG_DSN`` names a database. Both sides run in this
process against the same server, interleaved round by round (A B B A ...):

* ``store``: ``await store.save(checkpoint)``: encoding the checkpoint, the hop to the store's thread,
  the upsert (one autocommit transaction);
* ``bare``: ``connection.execute("INSERT ...", (run_id, data))`` on an autocommit connection, with the
  checkpoint's bytes encoded beforehand.

Prints the median per-save time of each and their ratio (the target: the store within 2x of bare).
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

from tracedagent import Checkpoint, Message, PostgresCheckpointStore, ToolCall

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


async def main(rounds: int, per_round: int) -> None:
    checkpoint = checkpoint_of_50_messages()
    data = checkpoint.encode()
    with database() as dsn:
        store = PostgresCheckpointStore(dsn, max_connections=1)
        await store.save(checkpoint)  # the schema, the connection, the row
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
    print(f"  PostgresCheckpointStore.save   median {store_ms:7.3f} ms")
    print(f"  bare psycopg INSERT            median {bare_ms:7.3f} ms")
    print(f"  ratio store / bare             {store_ms / bare_ms:7.2f}x   (target <= 2x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-round", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.per_round))
