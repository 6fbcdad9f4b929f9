"""A ``ScriptedModel`` script written once (one module, imported by the process that starts a run and by
the one that resumes it) goes on where the conversation is: the resumed run is not asked again for what
it already did. Two real processes share a SQLite checkpoint store; in-process tests cover the same rule
with a fresh model object (as a new process has) and keep the old ways working."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tracedagent
from tracedagent import Agent, ToolCall, tool
from tracedagent.testing import ScriptedModel, Step

GUARD_S = 120.0  # a guard against a hang only; never asserted on

DESK = textwrap.dedent(
    '''
    """The user's module: one script, imported by both processes."""
    import os

    from tracedagent import Agent, tool
    from tracedagent.testing import ScriptedModel, Step


    @tool(needs_approval=True)
    def transfer(amount: int) -> str:
        """Move money."""
        with open(os.environ["TOOL_LOG"], "a") as log:
            log.write(f"transfer {amount}\\n")
        return f"moved {amount}"


    model = ScriptedModel([Step(tool_calls=[("transfer", {"amount": 5})]), "Moved 5."])
    agent = Agent("bank", model, tools=[transfer], checkpoints=os.environ["CHECKPOINTS"])
    '''
)

START = textwrap.dedent(
    """
    import json
    from desk import agent, model

    result = agent.run_sync("Pay 5")
    print(json.dumps({"status": result.status, "run_id": result.run_id,
                      "calls": [i.id for i in result.interruptions], "model_calls": model.calls}))
    """
)

RESUME = textwrap.dedent(
    """
    import json, sys
    from desk import agent, model

    run_id, call_id = sys.argv[1], sys.argv[2]
    result = agent.resume_sync(run_id, {call_id: True})
    model.assert_all_used()
    print(json.dumps({
        "status": result.status, "output": result.output, "model_calls": model.calls,
        "asked_with": [[m.role for m in r.messages] for r in model.requests],
    }))
    """
)


def python(work: Path, script: str, *args: str) -> dict[str, Any]:
    src = str(Path(tracedagent.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (str(work), src, os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        env={
            **os.environ,
            "PYTHONPATH": path,
            "CHECKPOINTS": str(work / "runs.db"),
            "TOOL_LOG": str(work / "tools.log"),
            "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        },
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_a_run_paused_in_one_process_resumes_in_another_with_the_same_script(tmp_path: Path) -> None:
    (tmp_path / "desk.py").write_text(DESK)
    (tmp_path / "start.py").write_text(START)
    (tmp_path / "resume.py").write_text(RESUME)

    first = python(tmp_path, "start.py")
    assert first["status"] == "interrupted"
    assert first["model_calls"] == 1
    assert not (tmp_path / "tools.log").exists()

    second = python(tmp_path, "resume.py", first["run_id"], first["calls"][0])
    assert second["status"] == "completed"
    assert second["output"] == "Moved 5."
    # The model is asked once, for the answer after the tool; not again for the first turn.
    assert second["model_calls"] == 1
    assert second["asked_with"] == [["user", "assistant", "tool"]]
    assert (tmp_path / "tools.log").read_text() == "transfer 5\n"


# ------------------------------------------------------------------ the same rule within one process


@tool(needs_approval=True)
def transfer(amount: int) -> str:
    """Move money."""
    return f"moved {amount}"


def script() -> list[Any]:
    return [Step(tool_calls=[("transfer", {"amount": 5})]), "Moved 5."]


@pytest.mark.parametrize("per_run", [False, True])
async def test_a_fresh_model_with_the_whole_script_goes_on_where_the_run_is(tmp_path: Path, per_run: bool) -> None:
    db = tmp_path / "runs.db"
    paused = await Agent("bank", ScriptedModel(script(), per_run=per_run), tools=[transfer], checkpoints=db).run("Pay")
    assert paused.status == "interrupted"

    fresh = ScriptedModel(script(), per_run=per_run)  # what a new process has: the script from its start
    agent = Agent("bank", fresh, tools=[transfer], checkpoints=db)
    result = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
    assert (result.status, result.output) == ("completed", "Moved 5.")
    assert fresh.calls == 1
    fresh.assert_all_used()


async def test_a_script_of_only_the_remaining_steps_still_plays_from_its_start(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    paused = await Agent("bank", ScriptedModel(script()), tools=[transfer], checkpoints=db).run("Pay")
    rest = ScriptedModel(["Moved 5."])
    result = await Agent("bank", rest, tools=[transfer], checkpoints=db).resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert result.output == "Moved 5."
    rest.assert_all_used()


async def test_a_different_first_turn_is_not_skipped(tmp_path: Path) -> None:
    """Only steps the conversation shows were played are skipped: same tool, other arguments is no match."""
    db = tmp_path / "runs.db"
    paused = await Agent("bank", ScriptedModel(script()), tools=[transfer], checkpoints=db).run("Pay")
    other = ScriptedModel([Step(tool_calls=[("transfer", {"amount": 6})]), "Moved 6."], per_run=True)
    result = await Agent("bank", other, tools=[transfer], checkpoints=db).resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert result.status == "interrupted"  # it played its own first step: another transfer, to approve
    assert other.calls == 1


async def test_resuming_with_the_same_model_object_keeps_its_position(tmp_path: Path) -> None:
    model = ScriptedModel(script())
    agent = Agent("bank", model, tools=[transfer], checkpoints=tmp_path / "runs.db")
    paused = await agent.run("Pay")
    result = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
    assert result.output == "Moved 5."
    assert model.calls == 2
    model.assert_all_used()


async def test_concurrent_runs_sharing_one_model_still_share_or_replay_the_script() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    per_run = ScriptedModel([Step(tool_calls=[ToolCall.of("c1", "add", {"a": 1, "b": 1})]), "2"], per_run=True)
    results = await asyncio.gather(*(Agent("a", per_run, tools=[add]).run(f"r{i}") for i in range(4)))
    assert [r.output for r in results] == ["2"] * 4
    per_run.assert_all_used()

    shared = ScriptedModel(["one", "two", "three"])
    outputs = await asyncio.gather(*(Agent("a", shared).run(f"r{i}") for i in range(3)))
    assert sorted(r.output for r in outputs) == ["one", "three", "two"]
    shared.assert_all_used()
