"""The run's trace context travels in Temporal headers (``tracedagent-trace``), never in arguments: on the
workflow's start, on the resume signal and on every activity, so every event of a run, on every worker,
is in the run's trace."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import temporal_agents
from opentelemetry.sdk.trace import TracerProvider
from temporal_support import HERE, DevServer, subprocess_env
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tracedagent import RunResumed, RunStarted
from tracedagent.testing import capture_events
from tracedagent_temporal import HEADER, TemporalAgent
from tracedagent_temporal._workflow import WORKFLOW_NAME

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _header(fields: Any) -> dict[str, Any]:
    payload: Payload = fields[HEADER]
    decoded: dict[str, Any] = json.loads(payload.data)
    return decoded


async def test_the_trace_context_is_in_the_headers_of_the_start_the_signal_and_every_activity(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    agent = TemporalAgent(temporal_agents.refund_agent())
    run_id = f"run-{uuid.uuid4().hex}"
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            paused = await agent.run(client, "refund A1", id=run_id, task_queue=task_queue)
            done = await agent.resume(client, run_id, {paused.interruptions[0].id: True})
    assert done.status == "completed"
    trace_id = done.trace_id
    first = next(e for e in recorded.events if type(e) is RunStarted).span_id
    second = next(e for e in recorded.events if type(e) is RunResumed).span_id
    history = await client.get_workflow_handle(run_id).fetch_history()
    scheduled: list[dict[str, Any]] = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            attributes = event.workflow_execution_started_event_attributes
            assert _header(attributes.header.fields) == {"trace_id": trace_id, "parent_span_id": None, "span_id": first}
            assert trace_id.encode() not in attributes.input.SerializeToString()
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attributes = event.workflow_execution_signaled_event_attributes
            assert _header(attributes.header.fields) == {"span_id": second}
            assert second.encode() not in attributes.input.SerializeToString()
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            scheduled.append(_header(attributes.header.fields))
            arguments = attributes.input.SerializeToString()
            assert trace_id.encode() not in arguments
            assert first.encode() not in arguments
            assert second.encode() not in arguments
    # first segment: the model asks for the refund, the tool call pauses for approval; second: the
    # approved tool call, the last model call
    assert scheduled == [
        {"trace_id": trace_id, "parent_span_id": None, "span_id": span} for span in (first, first, second, second)
    ]


async def test_a_workflow_started_without_the_header_fails_with_a_clear_error(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    agent = TemporalAgent(temporal_agents.refund_agent())
    state = agent.steps.new_run("refund A1", run_id=(run_id := f"run-{uuid.uuid4().hex}"))
    payload = {**agent._options, "record": agent.steps.record(state)}
    async with agent.worker(client, task_queue=task_queue):
        handle = await client.start_workflow(WORKFLOW_NAME, payload, id=run_id, task_queue=task_queue)
        with pytest.raises(Exception) as caught:
            await handle.result()
    assert "started without tracedagent's trace header" in str(caught.value.__cause__)
    assert _lines(side_effects) == []


def _worker(server: DevServer, task_queue: str, log: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(HERE / "temporal_worker.py"), server.address, task_queue, "refund_agent"],
        env=subprocess_env(TRACEDAGENT_PLUGINS="tracedagent.testing.event_log", TRACEDAGENT_EVENT_LOG=str(log)),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


async def test_every_event_on_two_worker_processes_is_in_the_caller_s_trace(
    temporal_server: DevServer, client: Client, task_queue: str, side_effects: Path, tmp_path: Path
) -> None:
    """The run starts inside the application's OpenTelemetry span; its first segment runs on one worker
    process, which is then killed, and the resume on another: every event of both is in the caller's
    trace, the run's span a child of the caller's, each call a child of its own segment's span."""
    agent = TemporalAgent(temporal_agents.refund_agent())  # the client side: it runs nothing itself
    logs = [tmp_path / "worker1.jsonl", tmp_path / "worker2.jsonl"]
    run_id = f"run-{uuid.uuid4().hex}"
    workers = [_worker(temporal_server, task_queue, logs[0])]
    try:
        with TracerProvider().get_tracer("app").start_as_current_span("handle request") as caller:
            paused = await asyncio.wait_for(agent.run(client, "refund A1", id=run_id, task_queue=task_queue), 60)
        os.kill(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        workers.append(_worker(temporal_server, task_queue, logs[1]))
        done = await asyncio.wait_for(agent.resume(client, run_id, {paused.interruptions[0].id: True}), 60)
    finally:
        for process in workers:
            if process.poll() is None:
                process.terminate()
                process.wait(10)
    assert (paused.status, done.status, done.output) == ("interrupted", "completed", "refund done")
    context = caller.get_span_context()
    trace_id, caller_span = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    assert done.trace_id == paused.trace_id == trace_id
    events = [[json.loads(line) for line in log.read_text().splitlines()] for log in logs]
    assert all(events)  # both workers fired events
    assert {e["pid"] for e in events[0]} == {workers[0].pid}
    assert {e["pid"] for e in events[1]} == {workers[1].pid}
    everything = events[0] + events[1]
    assert {e["trace_id"] for e in everything} == {trace_id}
    assert {e["run_id"] for e in everything} == {run_id}
    (started,) = [e for e in everything if e["type"] == "RunStarted"]
    (resumed,) = [e for e in events[1] if e["type"] == "RunResumed"]
    assert started["parent_span_id"] == resumed["parent_span_id"] == caller_span
    calls = [e for e in everything if e["type"] in ("ModelCallStarted", "ToolCallStarted")]
    assert [(e["type"], e["parent_span_id"]) for e in calls] == [
        ("ModelCallStarted", started["span_id"]),
        ("ToolCallStarted", resumed["span_id"]),
        ("ModelCallStarted", resumed["span_id"]),
    ]
    assert _lines(side_effects) == ["refund A1"]


async def test_a_run_started_before_the_header_existed_goes_on_in_its_trace(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    """A workflow in flight from before the trace moved to headers (its ids in the input, as the earlier
    client sent them) is finished by an upgraded worker, in its own trace."""
    agent = TemporalAgent(temporal_agents.math_agent())
    state = agent.steps.new_run("add them up", run_id=(run_id := f"run-{uuid.uuid4().hex}"))
    payload = {**agent._options, "record": agent.steps.record(state), "span_id": "00000000000000aa"}
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            handle = await client.start_workflow(WORKFLOW_NAME, payload, id=run_id, task_queue=task_queue)
            ended = await handle.result()
    assert (ended["status"], ended["output"], ended["record"]["trace_id"]) == ("completed", "10", state.trace_id)
    assert {e.trace_id for e in recorded.events} == {state.trace_id}
    assert next(e for e in recorded.events if type(e) is RunStarted).span_id == "00000000000000aa"
    # the first turn's two calls run concurrently (their order is not fixed); the third comes after both
    lines = _lines(side_effects)
    assert sorted(lines[:2]) == ["add 1 2", "add 3 4"], lines
    assert lines[2:] == ["add 3 7"], lines
