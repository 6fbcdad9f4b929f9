"""Resume anywhere: a run paused, killed or cancelled in one process goes on in another, from the
SQLite store, as the same run (same run_id and trace_id, a new segment of the same trace).

The subprocesses run a small scenario script; a plugin named by module path in TRACEDAGENT_PLUGINS
records every event as a JSON line. The test knows where a subprocess is from a line it prints (a
pipe), never from a sleep; the timeouts are guards only. In-process cancellation is synchronised
with events set where the run waits.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tracedagent import (
    Agent,
    Checkpoint,
    CheckpointSaved,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    RunEnded,
    RunResumed,
    RunStarted,
    SQLiteCheckpointStore,
    ToolCallEnded,
    ToolCallStarted,
    hookimpl,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

GUARD_S = 60.0  # only a guard, so that a regression fails instead of hanging; never asserted on


SCENARIOS = textwrap.dedent(
    '''
    """Agents that pause, crash or are interrupted in one process and go on in the next.

    python scenarios.py SCENARIO start            run the agent (prints the result as JSON)
    python scenarios.py SCENARIO resume RUN_ID [CALL_ID]   resume it from the store
    """
    import asyncio, json, os, sys, time
    from tracedagent import Agent, CheckpointError, SQLiteCheckpointStore, ToolCall, tool
    from tracedagent.testing import ScriptedModel, Step

    scenario, phase = sys.argv[1], sys.argv[2]
    DB = os.environ["CHECKPOINT_DB"]
    TOOL_LOG = os.environ["TOOL_LOG"]


    def log(line):
        with open(TOOL_LOG, "a") as f:
            f.write(line + "\\n")


    def tell(line):
        """Tell the test where this process is (it reads our stdout)."""
        print(line, flush=True)


    def report(result):
        tell(json.dumps({"result": {
            "status": result.status, "run_id": result.run_id, "trace_id": result.trace_id,
            "output": result.output, "interruptions": [i.id for i in result.interruptions],
        }}))


    class Store(SQLiteCheckpointStore):
        """Knows when a checkpoint holding the result of call "c2" is on disk."""

        def __init__(self, path):
            super().__init__(path, lease_s=2.0)  # a killed process's lease outlives it by up to 2 s
            self.second_saved = asyncio.Event()

        async def save(self, checkpoint):
            written = await super().save(checkpoint)
            if "c2" in checkpoint.turn_results:
                self.second_saved.set()
            return written


    store = Store(DB)


    def blocker(name, wait_for=None, idempotent=False):
        """A tool that, in the first process, says it is running and then waits forever."""

        async def run() -> str:
            log("start " + name)
            if phase == "start":
                if wait_for is not None:
                    await wait_for.wait()
                tell("IN_TOOL " + name)
                await asyncio.Event().wait()
            log(name)
            return name + " done"

        run.__name__ = name
        run.__doc__ = "Run " + name + "."
        return tool(run, idempotent=idempotent) if idempotent else tool(run)


    def quick(name):
        def run() -> str:
            log("start " + name)
            log(name)
            return name + " done"

        run.__name__ = name
        run.__doc__ = "Run " + name + "."
        return tool(run)


    if scenario == "approval":
        @tool(needs_approval=True)
        def deploy(version: str) -> str:
            """Deploy a version."""
            log("deploy " + version)
            return "deployed " + version

        tools = [deploy]
        script = [Step(tool_calls=[("deploy", {"version": "1.2"})])]
        final = "deployed 1.2"
    elif scenario == "crash":
        # turn 1: first; turn 2: second and third at once. third waits until second's result is on
        # disk, says so, and hangs: the test kills the process there. third is idempotent, so the
        # resume runs it again (tests/test_crash_recovery.py covers the tools that are not).
        tools = [quick("first"), quick("second"), blocker("third", wait_for=store.second_saved, idempotent=True)]
        script = [
            Step(tool_calls=[ToolCall.of("c1", "first", {})]),
            Step(tool_calls=[ToolCall.of("c2", "second", {}), ToolCall.of("c3", "third", {})]),
        ]
        final = "all three done"
    elif scenario == "sigint":
        # As in a terminal: a shell that starts jobs in the background hands them SIGINT ignored,
        # and Python then never raises KeyboardInterrupt; Ctrl-C must reach this run.
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
        tools = [quick("first"), blocker("slow")]
        script = [Step(tool_calls=[("first", {})]), Step(tool_calls=[("slow", {})])]
        final = "first and slow done"
    else:
        raise SystemExit("unknown scenario " + scenario)

    model = ScriptedModel([*script, final] if phase == "start" else [final])
    agent = Agent("durable", model, tools=tools, checkpoints=store)

    if phase == "start":
        report(agent.run_sync("go"))
    else:
        run_id = sys.argv[3]
        approvals = {sys.argv[4]: True} if len(sys.argv) > 4 else None
        while True:
            try:
                result = agent.resume_sync(run_id, approvals)
                break
            except CheckpointError as exc:  # a killed first process's lease: wait it out
                if "is being resumed elsewhere" not in str(exc):
                    raise
                time.sleep(0.2)
        report(result)
    '''
)


class Scenario:
    """The scripts in a temporary folder, the store file, the tool log, one events file per process."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        (tmp_path / "scenarios.py").write_text(SCENARIOS)
        self.db = tmp_path / "runs.db"
        self.tool_log = tmp_path / "tools.log"

    def env(self, events: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.dir), os.environ.get("PYTHONPATH")])),
            "TRACEDAGENT_PLUGINS": "tracedagent.testing.event_log",
            "TRACEDAGENT_EVENT_LOG": str(self.dir / events),
            "CHECKPOINT_DB": str(self.db),
            "TOOL_LOG": str(self.tool_log),
            **extra,
        }

    def run(self, events: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run the scenario script to its end."""
        return subprocess.run(
            [sys.executable, str(self.dir / "scenarios.py"), *args],
            env=self.env(events, **extra),
            capture_output=True,
            text=True,
            timeout=GUARD_S,
        )

    def start(self, events: str, *args: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
        """Start the scenario script; its stdout lines arrive on the queue as it prints them."""
        stderr = open(self.dir / f"{events}.stderr", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, str(self.dir / "scenarios.py"), *args],
            env=self.env(events),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        stderr.close()
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)

        threading.Thread(target=read, daemon=True).start()
        return proc, lines

    def stderr(self, events: str) -> str:
        return (self.dir / f"{events}.stderr").read_text()

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.dir / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def tool_lines(self) -> list[str]:
        return self.tool_log.read_text().splitlines() if self.tool_log.exists() else []

    def stored(self, run_id: str) -> Checkpoint:
        with sqlite3.connect(self.db) as db:
            row = db.execute("SELECT data FROM checkpoints WHERE run_id = ?", (run_id,)).fetchone()
        assert row is not None, f"no checkpoint of run {run_id} in {self.db}"
        return Checkpoint.decode(run_id, bytes(row[0]))


def wait_for_line(proc: subprocess.Popen[str], lines: queue.Queue[str], prefix: str) -> str:
    """The first line the process prints that starts with ``prefix`` (blocks; the timeout is a guard)."""
    while True:
        try:
            line = lines.get(timeout=GUARD_S)
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"the process never printed {prefix!r}") from None
        if line.startswith(prefix):
            return line.strip()


def result_of(stdout: str) -> dict[str, Any]:
    (line,) = [line for line in stdout.splitlines() if line.startswith('{"result"')]
    result: dict[str, Any] = json.loads(line)["result"]
    return result


def assert_one_end_per_start(events: list[dict[str, Any]]) -> None:
    starts = Counter(
        e["span_id"] for e in events if e["hook"] in ("on_run_start", "on_resume") or e["hook"].endswith("call_start")
    )
    ends = Counter(e["span_id"] for e in events if e["hook"].endswith("_end"))
    assert starts == ends
    assert set(ends.values()) == {1}


def segment(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The one run-segment opener (on_run_start or on_resume) of a process's events."""
    (opener,) = [e for e in events if e["hook"] in ("on_run_start", "on_resume")]
    return opener


def assert_continues(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> dict[str, Any]:
    """The second process's events continue the first's run: same ids, a new segment after the old one,
    every span inside it; returns its on_resume event."""
    started = segment(first)
    assert started["hook"] == "on_run_start"
    resumed = segment(second)
    assert resumed["hook"] == "on_resume"
    assert not [e for e in second if e["hook"] == "on_run_start"]
    assert {(e["run_id"], e["trace_id"]) for e in first + second} == {(started["run_id"], started["trace_id"])}
    assert resumed["span_id"] != started["span_id"]
    assert resumed["previous_span_id"] == started["span_id"]
    assert resumed["parent_span_id"] == started["parent_span_id"]
    assert resumed["waited_s"] > 0
    assert resumed["run_started_ns"] == started["timestamp_ns"]
    for event in second:
        if event["hook"] in ("on_run_end", "on_resume", "on_checkpoint", "on_interrupt"):
            assert event["span_id"] == resumed["span_id"]
        else:  # model and tool calls are children of the new segment
            assert event["parent_span_id"] == resumed["span_id"], event
    assert_one_end_per_start(second)
    assert len({e["pid"] for e in first} | {e["pid"] for e in second}) == 2
    return resumed


# ------------------------------------------------------------------------------------- two processes


def test_a_run_paused_in_one_process_is_resumed_in_another(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    first = scenario.run("events1.jsonl", "approval", "start")
    assert first.returncode == 0, first.stderr
    paused = result_of(first.stdout)
    assert paused["status"] == "interrupted"
    assert scenario.tool_lines() == []  # nothing deployed without approval
    events1 = scenario.events("events1.jsonl")
    assert [e["status"] for e in events1 if e["hook"] == "on_run_end"] == ["interrupted"]
    assert_one_end_per_start(events1)

    second = scenario.run("events2.jsonl", "approval", "resume", paused["run_id"], paused["interruptions"][0])
    assert second.returncode == 0, second.stderr
    done = result_of(second.stdout)
    events2 = scenario.events("events2.jsonl")

    assert (done["status"], done["output"]) == ("completed", "deployed 1.2")
    assert (done["run_id"], done["trace_id"]) == (paused["run_id"], paused["trace_id"])
    assert segment(events1)["run_id"] == paused["run_id"]
    assert_continues(events1, events2)
    assert [e["status"] for e in events2 if e["hook"] == "on_tool_call_end"] == ["ok"]
    assert [e["status"] for e in events2 if e["hook"] == "on_run_end"] == ["completed"]
    assert scenario.tool_lines() == ["deploy 1.2"]
    assert scenario.stored(paused["run_id"]).status == "completed"


def test_a_killed_run_resumes_without_repeating_finished_tool_calls(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    proc, lines = scenario.start("events1.jsonl", "crash", "start")
    try:
        assert wait_for_line(proc, lines, "IN_TOOL") == "IN_TOOL third"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(GUARD_S)
    assert proc.returncode == -signal.SIGKILL
    events1 = scenario.events("events1.jsonl")
    run_id = segment(events1)["run_id"]
    assert sorted(scenario.tool_lines()) == sorted(["start first", "first", "start second", "second", "start third"])
    crashed = scenario.stored(run_id)
    assert crashed.status == "running"  # the last step's checkpoint: the process had no chance to say more
    assert "c2" in crashed.turn_results
    assert "c3" not in crashed.turn_results

    second = scenario.run("events2.jsonl", "crash", "resume", run_id)
    assert second.returncode == 0, second.stderr
    done = result_of(second.stdout)
    events2 = scenario.events("events2.jsonl")

    assert (done["status"], done["output"], done["run_id"]) == ("completed", "all three done", run_id)
    assert done["trace_id"] == segment(events1)["trace_id"]
    assert_continues(events1, events2)
    finished = [line for line in scenario.tool_lines() if not line.startswith("start ")]
    assert Counter(finished) == {"first": 1, "second": 1, "third": 1}  # finished calls ran once
    assert scenario.tool_lines().count("start third") == 2  # the call in flight ran again
    assert [e["call_id"] for e in events2 if e["hook"] == "on_tool_call_start"] == ["c3"]
    assert [e["status"] for e in events2 if e["hook"] == "on_run_end"] == ["completed"]
    final = scenario.stored(run_id)
    assert final.status == "completed"
    answered = [m.tool_call_id for m in final.messages if m.role == "tool"]
    assert answered == ["c1", "c2", "c3"]


def test_ctrl_c_in_run_sync_cancels_the_run_and_another_process_resumes_it(tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    proc, lines = scenario.start("events1.jsonl", "sigint", "start")
    try:
        assert wait_for_line(proc, lines, "IN_TOOL") == "IN_TOOL slow"
        proc.send_signal(signal.SIGINT)
        proc.wait(GUARD_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in scenario.stderr("events1.jsonl")
    events1 = scenario.events("events1.jsonl")
    assert_one_end_per_start(events1)
    ends = {e["span_id"]: e["status"] for e in events1 if e["hook"].endswith("_end")}
    starts = {e["span_id"]: e for e in events1 if e["hook"] in ("on_run_start", "on_tool_call_start")}
    slow_span = next(s for s, e in starts.items() if e.get("tool") == "slow")
    run_span = segment(events1)["span_id"]
    assert (ends[slow_span], ends[run_span]) == ("cancelled", "cancelled")
    run_id = segment(events1)["run_id"]
    cancelled = scenario.stored(run_id)
    assert cancelled.status == "cancelled"
    assert cancelled.messages[-1].tool_calls[0].name == "slow"
    assert cancelled.turn_results == {}

    second = scenario.run("events2.jsonl", "sigint", "resume", run_id)
    assert second.returncode == 0, second.stderr
    done = result_of(second.stdout)

    assert (done["status"], done["run_id"]) == ("completed", run_id)
    assert_continues(events1, scenario.events("events2.jsonl"))
    assert scenario.tool_lines() == ["start first", "first", "start slow", "start slow", "slow"]


def test_the_stdout_tracer_shows_the_resumed_run_as_the_same_run(tmp_path: Path) -> None:
    if importlib.util.find_spec("tracedagent_stdout") is None:
        pytest.skip("tracedagent-stdout is not installed")
    scenario = Scenario(tmp_path)
    stdout_on = {
        "TRACEDAGENT_STDOUT": "1",
        "TRACEDAGENT_LOG_FORMAT": "json",
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "0",
    }
    first = scenario.run("events1.jsonl", "approval", "start", **stdout_on)
    assert first.returncode == 0, first.stderr
    paused = result_of(first.stdout)

    second = scenario.run(
        "events2.jsonl", "approval", "resume", paused["run_id"], paused["interruptions"][0], **stdout_on
    )
    assert second.returncode == 0, second.stderr

    def lines(stdout: str) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        return [line for line in parsed if "event" in line]

    (start,) = [line for line in lines(first.stdout) if line["event"] == "run.start"]
    (resume,) = [line for line in lines(second.stdout) if line["event"] == "run.resume"]
    assert (start["run_id"], start["trace_id"]) == (paused["run_id"], paused["trace_id"])
    assert (resume["run_id"], resume["trace_id"]) == (paused["run_id"], paused["trace_id"])
    assert resume["previous_span_id"] == start["span_id"]
    assert not [line for line in lines(second.stdout) if line["event"] == "run.start"]
    (end,) = [line for line in lines(second.stdout) if line["event"] == "run.end"]
    assert (end["run_id"], end["span_id"], end["status"]) == (paused["run_id"], resume["span_id"], "completed")


# -------------------------------------------------------------------------- cancellation in process


def assert_pairs(tracer: RecordingTracer) -> None:
    assert tracer.unmatched() == []
    starts = Counter(
        e.span_id for e in tracer.events if isinstance(e, (RunStarted, RunResumed, ModelCallStarted, ToolCallStarted))
    )
    ends = Counter(e.span_id for e in tracer.events if isinstance(e, (RunEnded, ModelCallEnded, ToolCallEnded)))
    assert starts == ends
    assert set(ends.values()) == {1}


async def cancel_when(task: asyncio.Task[Any], reached: asyncio.Event) -> None:
    async with asyncio.timeout(GUARD_S):
        await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_cancelled_during_a_tool_call_the_run_is_saved_and_resumes(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    ran: list[str] = []
    entered = asyncio.Event()
    block = True

    @tool
    async def first() -> str:
        """The first step."""
        ran.append("first")
        return "first done"

    @tool
    async def slow() -> str:
        """A slow step."""
        ran.append("start slow")
        if block:
            entered.set()
            await asyncio.Event().wait()
        ran.append("slow")
        return "slow done"

    script: list[Any] = [Step(tool_calls=[("first", {})]), Step(tool_calls=[("slow", {})]), "never"]
    agent = Agent("durable", ScriptedModel(script), tools=[first, slow], checkpoints=store)
    task = asyncio.create_task(agent.run("go"))
    await cancel_when(task, entered)

    (started,) = tracer.of_type(RunStarted)
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok", "cancelled"]
    assert [e.status for e in tracer.of_type(RunEnded)] == ["cancelled"]
    assert_pairs(tracer)
    cancelled = await store.load(started.run_id)
    assert cancelled is not None
    assert cancelled.status == "cancelled"
    assert cancelled.step == tracer.of_type(CheckpointSaved)[-1].step
    # the last finished step: the model asked for slow; first's result is in the history
    assert [m.role for m in cancelled.messages] == ["user", "assistant", "tool", "assistant"]
    assert cancelled.messages[2].content == "first done"
    assert [c.name for c in cancelled.messages[-1].tool_calls] == ["slow"]
    assert cancelled.turn_results == {}

    block = False
    tracer.clear()
    resumer = Agent("durable", ScriptedModel(["first and slow done"]), tools=[first, slow], checkpoints=store)
    done = await resumer.resume(started.run_id)

    assert (done.status, done.output, done.run_id, done.trace_id) == (
        "completed",
        "first and slow done",
        started.run_id,
        started.trace_id,
    )
    assert ran == ["first", "start slow", "start slow", "slow"]
    (resumed,) = tracer.of_type(RunResumed)
    assert resumed.previous_span_id == started.span_id
    assert [e.tool for e in tracer.of_type(ToolCallStarted)] == ["slow"]
    assert_pairs(tracer)


async def test_cancelled_during_a_model_stream_the_run_is_saved_and_resumes(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    ran: list[str] = []
    second_call = asyncio.Event()

    class Watch:
        @hookimpl
        def on_model_call_start(self, event: ModelCallStarted) -> None:
            if event.turn == 1:
                second_call.set()

    @tool
    def first() -> str:
        """The first step."""
        ran.append("first")
        return "first done"

    # the second model call takes an hour; the run is cancelled while it streams
    script = [Step(tool_calls=[("first", {})]), Step(text="late", delay=3600)]
    agent = Agent("durable", ScriptedModel(script), tools=[first], checkpoints=store, plugins=[Watch()])
    task = asyncio.create_task(agent.run("go"))
    await cancel_when(task, second_call)

    (started,) = tracer.of_type(RunStarted)
    assert [e.status for e in tracer.of_type(ModelCallEnded)] == ["ok", "cancelled"]
    assert [e.status for e in tracer.of_type(RunEnded)] == ["cancelled"]
    assert_pairs(tracer)
    cancelled = await store.load(started.run_id)
    assert cancelled is not None
    assert (cancelled.status, cancelled.turn) == ("cancelled", 1)
    assert cancelled.messages[-1] == Message.tool(cancelled.messages[1].tool_calls[0].id, "first", "first done")
    assert cancelled.turn_results == {}

    tracer.clear()
    model = ScriptedModel(["first done, then answered"])
    done = await Agent("durable", model, tools=[first], checkpoints=store).resume(started.run_id)

    assert (done.status, done.output, done.run_id) == ("completed", "first done, then answered", started.run_id)
    assert ran == ["first"]
    assert list(model.requests[0].messages) == list(cancelled.messages)
    assert tracer.of_type(ToolCallStarted) == []
    assert_pairs(tracer)
