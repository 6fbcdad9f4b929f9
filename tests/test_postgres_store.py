"""PostgresCheckpointStore against a real PostgreSQL (a throwaway cluster on loopback, see
postgres_server.py), and the resume lease of both durable stores: two processes resuming one paused run
at the same moment make one winner, and the approved tool runs once."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tracedagent import (
    Agent,
    CheckpointError,
    ConfigurationError,
    Message,
    PostgresCheckpointStore,
    SQLiteCheckpointStore,
    tool,
)
from tracedagent._checkpoint import ResumeLeaser, list_paused
from tracedagent.testing import ScriptedModel, Step

GUARD_S = 60.0  # only a guard against a hang; never asserted on
TRIALS = 20


def deploy_agent(store: Any, ran: list[str], answer: str = "deployed") -> Agent:
    @tool(needs_approval=True)
    def deploy(version: str) -> str:
        """Deploy a version."""
        ran.append(version)
        return "deployed " + version

    script = [Step(tool_calls=[("deploy", {"version": "1.2"})]), answer]
    return Agent("ops", ScriptedModel(script), tools=[deploy], checkpoints=store)


# ------------------------------------------------------------------------------------- the store itself


async def test_checkpoints_sessions_and_paused_runs_round_trip(postgres_dsn: str) -> None:
    store = PostgresCheckpointStore(postgres_dsn)
    assert isinstance(store, ResumeLeaser)
    ran: list[str] = []
    paused = await deploy_agent(store, ran).run("go")
    assert paused.status == "interrupted"
    assert [c.run_id for c in await list_paused(store)] == [paused.run_id]
    assert await list_paused(store, "someone-else") == []

    resumed = await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert (resumed.status, resumed.output, ran) == ("completed", "deployed", ["1.2"])
    done = await store.load(paused.run_id)
    assert done is not None
    assert done.status == "completed"
    assert await list_paused(store) == []

    await store.save_session("s1", [Message.user("hi"), Message.assistant("hello")])
    assert [m.content for m in await store.load_session("s1")] == ["hi", "hello"]
    assert await store.load_session("nobody") == []
    await store.delete(paused.run_id)
    assert await store.load(paused.run_id) is None
    with psycopg.connect(postgres_dsn) as db:
        assert db.execute("SELECT id, version FROM tracedagent_schema").fetchall() == [(1, 1)]
    store.close()


async def test_a_session_continues_across_stores(postgres_dsn: str) -> None:
    first = Agent("chat", ScriptedModel(["hello"]), checkpoints=PostgresCheckpointStore(postgres_dsn))
    await first.run("hi", session_id="conversation")
    model = ScriptedModel(["again"])
    second = Agent("chat", model, checkpoints=PostgresCheckpointStore(postgres_dsn))
    result = await second.run("and now?", session_id="conversation")
    assert [m.content for m in result.messages] == ["hi", "hello", "and now?", "again"]


async def test_resuming_a_completed_run_is_a_checkpoint_error(postgres_dsn: str, tmp_path: Path) -> None:
    for store in (PostgresCheckpointStore(postgres_dsn), SQLiteCheckpointStore(tmp_path / "runs.db")):
        ran: list[str] = []
        paused = await deploy_agent(store, ran).run("go")
        await deploy_agent(store, ran).resume(paused.run_id, {paused.interruptions[0].id: True})
        with pytest.raises(CheckpointError, match="has already completed") as caught:
            await deploy_agent(store, ran).resume(paused.run_id, {paused.interruptions[0].id: True})
        assert caught.value.run_id == paused.run_id
        assert ran == ["1.2"]


async def test_a_lease_held_elsewhere_refuses_and_an_expired_one_is_taken_over(
    postgres_dsn: str, tmp_path: Path
) -> None:
    """A holder that died leaves its lease; past its deadline another resume takes it over."""
    for store in (PostgresCheckpointStore(postgres_dsn), SQLiteCheckpointStore(tmp_path / "runs.db")):
        paused = await deploy_agent(store, []).run("go")
        assert await store.acquire_lease("no-such-run", "me") is None
        assert await store.acquire_lease(paused.run_id, "dead-process") == store.lease_s
        with pytest.raises(CheckpointError, match="is being resumed elsewhere"):
            await deploy_agent(store, []).resume(paused.run_id, {paused.interruptions[0].id: True})
        if isinstance(store, PostgresCheckpointStore):
            with psycopg.connect(postgres_dsn, autocommit=True) as db:
                db.execute("UPDATE tracedagent_checkpoints SET lease_until = now() - interval '1 second'")
        else:
            with sqlite3.connect(tmp_path / "runs.db") as db:
                db.execute("UPDATE leases SET until_ns = 0")
        assert not await store.renew_lease(paused.run_id, "someone-else")
        ran: list[str] = []
        done = await deploy_agent(store, ran).resume(paused.run_id, {paused.interruptions[0].id: True})
        assert (done.status, ran) == ("completed", ["1.2"])
        assert await store.acquire_lease(paused.run_id, "next") == store.lease_s  # released at the end


def blocking_agent(store: Any, ran: list[str], entered: asyncio.Event, go_on: asyncio.Event, answer: str) -> Agent:
    """An agent whose approved ``deploy`` tool says it was entered, then waits for ``go_on``."""

    @tool(needs_approval=True)
    async def deploy(version: str) -> str:
        """Deploy a version."""
        ran.append(answer)
        entered.set()
        await go_on.wait()
        return "deployed " + version

    return Agent("ops", ScriptedModel([answer]), tools=[deploy], checkpoints=store)


def _expire_leases(kind: str, where: str) -> None:
    """What a process whose renewals stopped reaching the store (paused, partitioned) leaves behind."""
    if kind == "postgres":
        with psycopg.connect(where, autocommit=True) as db:
            db.execute("UPDATE tracedagent_checkpoints SET lease_until = now() - interval '1 second'")
    else:
        with sqlite3.connect(where) as db:
            db.execute("UPDATE leases SET until_ns = 0")


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_a_writer_whose_lease_was_taken_over_is_refused_and_nothing_is_lost(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A resume whose lease expired (its renewals stalled) while its tool ran, and was taken over by
    another resume that completed the run, gets a CheckpointError from its next save: the new owner's
    completed checkpoint stays as it was."""
    where = request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "runs.db")

    def new_store() -> Any:
        return PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)

    paused = await deploy_agent(new_store(), []).run("go")
    call_id = paused.interruptions[0].id
    ran: list[str] = []
    stale_in, stale_go = asyncio.Event(), asyncio.Event()
    stale = asyncio.ensure_future(
        blocking_agent(new_store(), ran, stale_in, stale_go, "stale answer").resume(paused.run_id, {call_id: True})
    )
    await asyncio.wait_for(stale_in.wait(), GUARD_S)
    _expire_leases(kind, where)
    owner_go = asyncio.Event()
    owner_go.set()
    owner = blocking_agent(new_store(), ran, asyncio.Event(), owner_go, "owner answer")
    done = await owner.resume(paused.run_id, {call_id: True})
    assert (done.status, done.output) == ("completed", "owner answer")
    stale_go.set()
    with pytest.raises(CheckpointError, match="lost its lease") as caught:
        await asyncio.wait_for(stale, GUARD_S)
    assert caught.value.run_id == paused.run_id
    kept = await new_store().load(paused.run_id)
    assert kept is not None
    assert kept.status == "completed"
    assert kept.messages[-1].content == "owner answer"
    assert ran == ["stale answer", "owner answer"]


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
async def test_a_run_going_in_its_first_segment_cannot_be_resumed_elsewhere(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A new run holds its lease from its first checkpoint: while it is inside a tool (its checkpoint
    says ``running``, as a crashed run's would), a resume from another store is refused, and the tool
    runs once."""
    where = request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "runs.db")

    def new_store() -> Any:
        return PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)

    ran: list[str] = []
    entered, go_on = asyncio.Event(), asyncio.Event()

    @tool
    async def migrate(version: str) -> str:
        """Migrate a database."""
        ran.append(version)
        entered.set()
        await go_on.wait()
        return "migrated " + version

    script = [Step(tool_calls=[("migrate", {"version": "7"})]), "migrated"]
    agent = Agent("ops", ScriptedModel(script), tools=[migrate], checkpoints=new_store())
    running = asyncio.ensure_future(agent.run("go"))
    await asyncio.wait_for(entered.wait(), GUARD_S)
    (checkpoint,) = [c for c in [await new_store().load(r) for r in await _run_ids(kind, where)] if c is not None]
    assert checkpoint.status == "running"
    other = Agent("ops", ScriptedModel(["again"]), tools=[migrate], checkpoints=new_store())
    with pytest.raises(CheckpointError, match="is being resumed elsewhere"):
        await other.resume(checkpoint.run_id)
    go_on.set()
    result = await asyncio.wait_for(running, GUARD_S)
    assert (result.status, result.output, ran) == ("completed", "migrated", ["7"])
    assert await new_store().acquire_lease(result.run_id, "next") is not None  # released at the end


async def _run_ids(kind: str, where: str) -> list[str]:
    if kind == "postgres":
        with psycopg.connect(where) as db:
            return [r[0] for r in db.execute("SELECT run_id FROM tracedagent_checkpoints").fetchall()]
    with sqlite3.connect(where) as db:
        return [r[0] for r in db.execute("SELECT run_id FROM checkpoints").fetchall()]


async def test_100_concurrent_runs_and_resumes(postgres_dsn: str) -> None:
    store = PostgresCheckpointStore(postgres_dsn, max_connections=8)
    ran: list[str] = []
    agents = [deploy_agent(store, ran, answer=f"deployed {i}") for i in range(100)]
    paused = await asyncio.gather(*(agent.run("go") for agent in agents))
    assert {r.status for r in paused} == {"interrupted"}
    assert len(await list_paused(store)) == 100
    done = await asyncio.gather(
        *(agent.resume(r.run_id, {r.interruptions[0].id: True}) for agent, r in zip(agents, paused, strict=True))
    )
    assert [r.output for r in done] == [f"deployed {i}" for i in range(100)]
    assert ran == ["1.2"] * 100
    with psycopg.connect(postgres_dsn) as db:
        rows = db.execute("SELECT status, lease_holder FROM tracedagent_checkpoints").fetchall()
    assert rows == [("completed", None)] * 100
    store.close()


# ------------------------------------------------------------------------------------ clear errors


def test_a_bad_dsn_is_a_configuration_error_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match="the DSN cannot be parsed") as caught:
        PostgresCheckpointStore("host=127.0.0.1 password=s3cret dbname")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="max_connections"):
        PostgresCheckpointStore("postgresql://127.0.0.1/x", max_connections=0)


async def test_an_unreachable_database_is_a_clear_error_and_loses_nothing(postgres_dsn: str) -> None:
    ran: list[str] = []
    paused = await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).run("go")
    closed = socket_nobody_listens_on()
    unreachable = PostgresCheckpointStore(f"postgresql://tracedagent:s3cret@127.0.0.1:{closed}/postgres")
    assert repr(unreachable) == f"PostgresCheckpointStore('postgresql://tracedagent@127.0.0.1:{closed}/postgres')"
    with pytest.raises(CheckpointError, match="cannot connect to PostgreSQL") as caught:
        await deploy_agent(unreachable, ran).resume(paused.run_id, {paused.interruptions[0].id: True})
    assert "s3cret" not in str(caught.value)
    assert "check the DSN and that the server is running" in str(caught.value)
    with pytest.raises(CheckpointError, match="cannot connect"):
        await deploy_agent(unreachable, ran).run("go")
    assert ran == []
    done = await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert (done.status, ran) == ("completed", ["1.2"])


async def test_a_schema_from_a_newer_version_is_refused_and_left_as_it_is(postgres_dsn: str) -> None:
    ran: list[str] = []
    paused = await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).run("go")
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE tracedagent_schema SET version = 99")
        before = db.execute("SELECT run_id, status, data FROM tracedagent_checkpoints").fetchall()
    with pytest.raises(CheckpointError, match="schema is version 99, newer than this tracedagent knows"):
        await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).resume(
            paused.run_id, {paused.interruptions[0].id: True}
        )
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        assert db.execute("SELECT run_id, status, data FROM tracedagent_checkpoints").fetchall() == before
        db.execute("UPDATE tracedagent_schema SET version = 1")
    assert ran == []
    done = await deploy_agent(PostgresCheckpointStore(postgres_dsn), ran).resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert (done.status, ran) == ("completed", ["1.2"])


def socket_nobody_listens_on() -> int:
    from postgres_server import free_port

    return free_port()


# ------------------------------------------------------------------------- two processes, one run

WORKER = textwrap.dedent(
    '''
    """Resumes runs named on stdin: "resume RUN_ID CALL_ID" answers one JSON line. The approved tool
    logs the run, says so on stdout, and holds until "release" arrives, so the other process tries to
    resume the same run while this one is inside the tool."""
    import asyncio, json, os, sys, threading
    from tracedagent import Agent, CheckpointError, PostgresCheckpointStore, SQLiteCheckpointStore, tool
    from tracedagent.testing import ScriptedModel

    kind, where, log_path = sys.argv[1], sys.argv[2], sys.argv[3]
    store = PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)


    def say(data):
        print(json.dumps(data), flush=True)


    async def main():
        loop = asyncio.get_running_loop()
        commands = asyncio.Queue()
        threading.Thread(
            target=lambda: [loop.call_soon_threadsafe(commands.put_nowait, line.split()) for line in sys.stdin],
            daemon=True,
        ).start()
        release = asyncio.Event()

        @tool(needs_approval=True)
        async def deploy(version: str) -> str:
            """Deploy a version."""
            with open(log_path, "a") as f:
                f.write(f"{current} {os.getpid()}\\n")
            say({"in_tool": current})
            await release.wait()
            return "deployed " + version

        await store.load("warm-up")  # connected, schema checked: ready to race
        say({"ready": True})
        tasks = set()
        while True:
            command = await commands.get()
            if command[0] == "release":
                release.set()
                continue
            release.clear()
            current = command[1]

            async def resume(run_id, call_id):
                agent = Agent("ops", ScriptedModel(["deployed"]), tools=[deploy], checkpoints=store)
                try:
                    result = await agent.resume(run_id, {call_id: True})
                    say({"run": run_id, "status": result.status})
                except CheckpointError as exc:
                    say({"run": run_id, "error": str(exc)})

            task = asyncio.ensure_future(resume(command[1], command[2]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


    asyncio.run(main())
    '''
)


class Resumer:
    def __init__(self, script: Path, kind: str, where: str, log: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), kind, where, str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        line = self.lines.get(timeout=GUARD_S)
        assert line, f"the resuming process exited (code {self.proc.poll()})"
        data: dict[str, Any] = json.loads(line)
        return data

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.kill()
        self.proc.wait(GUARD_S)


@pytest.mark.parametrize("kind", ["postgres", "sqlite"])
def test_two_processes_resuming_one_run_at_once_make_one_winner(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    where = request.getfixturevalue("postgres_dsn") if kind == "postgres" else str(tmp_path / "runs.db")
    store = PostgresCheckpointStore(where) if kind == "postgres" else SQLiteCheckpointStore(where)
    script, log = tmp_path / "resumer.py", tmp_path / "tools.log"
    script.write_text(WORKER)
    paused = [asyncio.run(deploy_agent(store, []).run("go")) for _ in range(TRIALS)]
    workers = [Resumer(script, kind, where, log) for _ in range(2)]
    try:
        assert [w.answer() for w in workers] == [{"ready": True}] * 2
        for run in paused:
            for w in workers:  # both before either answers: the same moment
                w.send(f"resume {run.run_id} {run.interruptions[0].id}")
            first = [w.lines.get(timeout=GUARD_S) for w in workers]
            answers = [json.loads(line) for line in first]
            inside = [a for a in answers if a.get("in_tool") == run.run_id]
            refused = [a for a in answers if "error" in a]
            # One is inside the tool (and holds the lease); the other was refused meanwhile.
            assert (len(inside), len(refused)) == (1, 1), answers
            assert "is being resumed elsewhere" in refused[0]["error"]
            winner = workers[answers.index(inside[0])]
            winner.send("release")
            assert winner.answer() == {"run": run.run_id, "status": "completed"}
    finally:
        for w in workers:
            w.stop()
    lines = log.read_text().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(r.run_id for r in paused)  # each tool ran once
    for run in paused:
        checkpoint = asyncio.run(store.load(run.run_id))
        assert checkpoint is not None
        assert checkpoint.status == "completed"
