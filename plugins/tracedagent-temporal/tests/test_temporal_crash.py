"""A worker killed (kill -9) while a tool runs: a new worker finishes the run, the tool ran once per real
execution, and the events of both workers are one trace with no call counted twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import temporal_agents
from temporal_support import HERE, DevServer, subprocess_env
from temporalio.client import Client

from tracedagent_temporal import TemporalAgent

pytestmark = pytest.mark.integration


def _worker(server: DevServer, task_queue: str, log: Path, **env: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "temporal_worker.py"), server.address, task_queue, "charge_agent"],
        env=subprocess_env(TRACEDAGENT_PLUGINS="tracedagent.testing.event_log", TRACEDAGENT_EVENT_LOG=str(log), **env),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def _read(path: Path) -> str:
    return path.read_text()


async def _until(predicate: object, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("the condition never came true")
        await asyncio.sleep(0.05)


async def test_a_killed_worker_s_tool_runs_again_on_a_new_worker_once_per_real_execution(
    temporal_server: DevServer, client: Client, task_queue: str, side_effects: Path, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    agent = TemporalAgent(temporal_agents.charge_agent())  # the client side: it starts the run, runs nothing
    first = _worker(temporal_server, task_queue, log, TD_CHARGE_S="600")
    second: subprocess.Popen[str] | None = None
    try:
        run = asyncio.ensure_future(agent.run(client, "charge B2", id=f"run-{uuid.uuid4().hex}", task_queue=task_queue))
        await _until(lambda: "charge-start B2" in _read(side_effects))
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = _worker(temporal_server, task_queue, log, TD_CHARGE_S="0")
        result = await asyncio.wait_for(run, 120)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
    assert (result.status, result.output) == ("completed", "charged")
    assert [m.content for m in result.messages if m.role == "tool"] == ["charged B2"]
    # Two real executions of the tool (the killed one never finished), one result.
    assert _read(side_effects).splitlines() == ["charge-start B2", "charge-start B2", "charge-done B2"]
    events = [json.loads(line) for line in _read(log).splitlines()]
    by_type: dict[str, list[dict[str, object]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e)
    pids = {first.pid, second.pid if second is not None else -1}
    assert [e["pid"] for e in by_type["ToolCallStarted"]] == [first.pid, second.pid if second else -1]
    assert [(e["pid"], e["status"]) for e in by_type["ToolCallEnded"]] == [(second.pid if second else -1, "ok")]
    assert len(by_type["ModelCallStarted"]) == len(by_type["ModelCallEnded"]) == 2
    assert len(by_type["RunStarted"]) == len(by_type["RunEnded"]) == 1
    assert {e["pid"] for e in events} == pids  # both workers wrote events
    assert {e["trace_id"] for e in events} == {result.trace_id}
    assert {e["run_id"] for e in events} == {result.run_id}
    spans = [e["span_id"] for e in events if str(e["type"]).endswith("Started")]
    assert len(spans) == len(set(spans))  # no span is started twice
