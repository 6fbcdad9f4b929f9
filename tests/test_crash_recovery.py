"""Crash recovery, proven: a run's process is killed with SIGKILL at a point drawn at random (inside one
of its tools, or in the middle of a checkpoint write, with the transaction open), then another process
resumes the run from the same store (SQLite, and a real PostgreSQL).

After each crash: the store is readable; a tool whose result was saved never runs again; the tool that
was in flight runs again only if it is ``idempotent=True``, and any other gets an error result saying the
call was interrupted by a crash and not retried (so a side effect happens at most once); and the trace of
both processes (``tracedagent.testing.event_log``) has no span started or ended twice. The killed process
held the run's lease, so the resume is refused ("being resumed elsewhere") until that lease expires.
"""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tracedagent import Checkpoint, CheckpointError, PostgresCheckpointStore, SQLiteCheckpointStore

GUARD_S = 60.0  # only a guard against a hang; never asserted on
TRIALS = 6
LEASE_S = 4.0  # the runs' lease: a resume right after the kill waits for the dead process's to expire
TOOLS = {"write_a": False, "read_b": True, "write_c": False, "read_d": True}  # name: idempotent

SCRIPT = textwrap.dedent(
    '''
    """python crashy.py KIND WHERE start|resume [RUN_ID]; KILL_AT=tool:NAME or save:N makes the
    process say where it is (stdout) and hang there, for the test to kill it."""
    import asyncio, json, os, sys, time
    from tracedagent import Agent, CheckpointError, PostgresCheckpointStore, SQLiteCheckpointStore, ToolCall, tool
    from tracedagent.testing import ScriptedModel, Step

    kind, where, phase = sys.argv[1], sys.argv[2], sys.argv[3]
    KILL_AT = os.environ.get("KILL_AT", "") if phase == "start" else ""
    TOOLS = json.loads(os.environ["TOOLS"])
    LEASE_S = float(os.environ["LEASE_S"])


    def tell(line):
        print(line, flush=True)


    def log(line):
        with open(os.environ["TOOL_LOG"], "a") as f:
            f.write(f"{line} {os.getpid()}\\n")


    Base = PostgresCheckpointStore if kind == "postgres" else SQLiteCheckpointStore


    class Store(Base):
        saves = 0

        async def save(self, checkpoint):
            Store.saves += 1
            if KILL_AT == f"save:{Store.saves}":
                await self._call(self._hang_mid_write(checkpoint), checkpoint.run_id)
            return await super().save(checkpoint)

        def _hang_mid_write(self, checkpoint):
            row = (checkpoint.run_id, checkpoint.agent, checkpoint.status, 1, checkpoint.encode())
            if kind == "postgres":
                def write(connection):
                    with connection.transaction():
                        connection.execute(
                            "INSERT INTO tracedagent_checkpoints (run_id, agent, status, version, data)"
                            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET data = EXCLUDED.data",
                            row,
                        )
                        tell("MID_WRITE")
                        time.sleep(3600)
            else:
                def write():
                    connection = self._connection()
                    connection.execute("BEGIN IMMEDIATE")
                    connection.execute(
                        "INSERT OR REPLACE INTO checkpoints (run_id, agent, status, version, updated_ns, data)"
                        " VALUES (?, ?, ?, ?, 0, ?)",
                        row,
                    )
                    tell("MID_WRITE")
                    time.sleep(3600)
            return write


    def make(name, idempotent):
        async def run() -> str:
            log("start " + name)
            if KILL_AT == "tool:" + name:
                tell("IN_TOOL " + name)
                await asyncio.Event().wait()
            log("end " + name)
            return name + " done"

        run.__name__ = name
        run.__doc__ = "Run " + name + "."
        return tool(idempotent=idempotent)(run)


    tools = [make(name, idempotent) for name, idempotent in TOOLS.items()]
    script = [Step(tool_calls=[ToolCall.of("c_" + name, name, {})]) for name in TOOLS]
    model = ScriptedModel([*script, "all done"] if phase == "start" else [*script, "all done"][-10:])
    store = Store(where, lease_s=LEASE_S)
    agent = Agent("crashy", model, tools=tools, checkpoints=store, checkpoint_every="step")
    if phase == "start":
        tell("RUN_ID " + agent.run_sync("go").run_id)
    else:
        while True:  # the killed process's lease outlives it by up to LEASE_S: until then, refused
            try:
                result = agent.resume_sync(sys.argv[4])
                break
            except CheckpointError as exc:
                if "is being resumed elsewhere" not in str(exc):
                    raise
                tell("REFUSED")
                time.sleep(0.2)
        tell(json.dumps({"status": result.status, "messages": [m.to_dict() for m in result.messages]}))
    '''
)


class Trial:
    def __init__(self, folder: Path, kind: str, where: str) -> None:
        self.folder, self.kind, self.where = folder, kind, where
        (folder / "crashy.py").write_text(SCRIPT)
        self.tool_log = folder / "tools.log"

    def env(self, events: str, kill_at: str = "") -> dict[str, str]:
        return {
            **os.environ,
            "TRACEDAGENT_PLUGINS": "tracedagent.testing.event_log",
            "TRACEDAGENT_EVENT_LOG": str(self.folder / events),
            "TOOL_LOG": str(self.tool_log),
            "TOOLS": json.dumps(TOOLS),
            "KILL_AT": kill_at,
            "LEASE_S": str(LEASE_S),
        }

    def crash(self, kill_at: str) -> None:
        """Start the run; SIGKILL it where it says it hangs."""
        args = [sys.executable, str(self.folder / "crashy.py"), self.kind, self.where, "start"]
        proc = subprocess.Popen(args, env=self.env("events1.jsonl", kill_at), stdout=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line)
            lines.put("")

        threading.Thread(target=read, daemon=True).start()
        try:
            while True:
                line = lines.get(timeout=GUARD_S)
                assert line, f"the run ended before reaching {kill_at} (code {proc.poll()})"
                if line.startswith(("IN_TOOL", "MID_WRITE")):
                    break
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(GUARD_S)
        assert proc.returncode == -signal.SIGKILL

    def resume(self, run_id: str) -> dict[str, Any]:
        args = [sys.executable, str(self.folder / "crashy.py"), self.kind, self.where, "resume", run_id]
        done = subprocess.run(args, env=self.env("events2.jsonl"), capture_output=True, text=True, timeout=GUARD_S)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return result

    def events(self, name: str) -> list[dict[str, Any]]:
        path = self.folder / name
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def tool_lines(self) -> list[tuple[str, str, int]]:
        lines = self.tool_log.read_text().splitlines() if self.tool_log.exists() else []
        return [(what, name, int(pid)) for what, name, pid in (line.split() for line in lines)]


async def stored(kind: str, where: str, run_id: str) -> Checkpoint | None:
    store = PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)
    try:
        return await store.load(run_id)
    finally:
        store.close()


async def take_lease(kind: str, where: str, run_id: str) -> None:
    store = PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)
    try:
        await store.acquire_lease(run_id, "probe")
    finally:
        store.close()


def kill_points(kind: str) -> list[str]:
    points = [f"tool:{name}" for name in TOOLS] + [f"save:{n}" for n in range(1, 12)]
    rng = random.Random(f"crash-{kind}-{os.environ.get('CRASH_SEED', '')}")
    return rng.sample(points, TRIALS)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_kill_9_at_random_points_then_recovery(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for number, kill_at in enumerate(kill_points(kind)):
        folder = tmp_path / f"trial{number}"
        folder.mkdir()
        where = request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(folder / "runs.db")
        if kind == "postgres":  # a new database per trial
            where = request.getfixturevalue("postgres_server").rsplit("/", 1)[0] + "/" + _new_database(request)
        trial = Trial(folder, kind, where)
        trial.crash(kill_at)
        await check_recovery(trial, kill_at)


def _new_database(request: pytest.FixtureRequest) -> str:
    import psycopg

    name = f"crash_{os.getpid()}_{random.randrange(10**9)}"
    with psycopg.connect(request.getfixturevalue("postgres_server"), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    return name


async def check_recovery(trial: Trial, kill_at: str) -> None:
    events1 = trial.events("events1.jsonl")
    (started,) = [e for e in events1 if e["hook"] == "on_run_start"]
    run_id = started["run_id"]
    first_pid = started["pid"]
    crashed = await stored(trial.kind, trial.where, run_id)  # the store is readable after the crash
    if crashed is None:  # killed while writing the run's first checkpoint: nothing to resume, nothing ran
        assert kill_at == "save:1"
        assert trial.tool_lines() == []
        return
    assert crashed.status == "running"
    saved = {m.name for m in crashed.messages if m.role == "tool"} | {m.name for m in crashed.turn_results.values()}
    ran_before = [name for what, name, _ in trial.tool_lines() if what == "start"]

    # the killed process held the run's lease (from its first checkpoint): it outlives it for a while
    with pytest.raises(CheckpointError, match="is being resumed elsewhere"):
        await take_lease(trial.kind, trial.where, run_id)
    result = trial.resume(run_id)  # it waits the lease out
    assert result["status"] == "completed", kill_at
    lines = trial.tool_lines()
    again = [name for what, name, pid in lines if what == "start" and pid != first_pid]
    # completed tools never run again
    assert not saved & set(again), (kill_at, saved, again)
    # the call in flight (started, result not saved) runs again only if its tool is idempotent
    in_flight = [name for name in ran_before if name not in saved]
    assert len(in_flight) <= 1, kill_at
    messages = {m["name"]: m for m in result["messages"] if m["role"] == "tool"}
    for name in in_flight:
        if TOOLS[name]:
            assert again.count(name) == 1, (kill_at, again)
        else:
            assert name not in again, (kill_at, again)
            assert messages[name]["is_error"] is True
            assert "was interrupted by a crash" in messages[name]["content"]
            assert "was not retried" in messages[name]["content"]
    # a non-idempotent tool never started twice
    starts = Counter(name for what, name, _ in lines if what == "start")
    assert all(starts[name] <= 1 for name, idempotent in TOOLS.items() if not idempotent), starts
    assert set(messages) == set(TOOLS)  # every call answered once in the final history
    # the trace: no span started or ended twice, every span the resume opened was closed
    events = events1 + trial.events("events2.jsonl")
    opened = Counter(
        e["span_id"] for e in events if e["hook"] in ("on_run_start", "on_resume") or e["hook"].endswith("call_start")
    )
    closed = Counter(e["span_id"] for e in events if e["hook"].endswith("_end"))
    assert max(opened.values()) == 1
    assert max(closed.values()) == 1
    opened2 = {
        e["span_id"] for e in trial.events("events2.jsonl") if e["hook"].endswith("_start") or e["hook"] == "on_resume"
    }
    assert opened2 <= set(closed)
    assert len({e["trace_id"] for e in events}) == 1
    tool_starts = Counter(e["call_id"] for e in events if e["hook"] == "on_tool_call_start")
    for name in TOOLS:  # one tool span per real execution
        assert tool_starts[f"c_{name}"] == starts[name], (kill_at, tool_starts, starts)
