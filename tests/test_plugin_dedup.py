"""A tracer given to an agent and an equal one registered process-wide (the README's
``TRACEDAGENT_STDOUT=1`` with ``plugins=[StdoutTracer()]``) print each event once; ``tracedagent
plugins`` says which one won. Tracers with other settings both get every event."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import tracedagent
from tracedagent import Agent, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step
from tracedagent_stdout import StdoutTracer


@tool
def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def agent(*plugins: object) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
    return Agent("calc", model, tools=[add], plugins=list(plugins))


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_the_same_stdout_tracer_globally_and_per_agent_prints_each_event_once(
    tracer: RecordingTracer,
) -> None:
    out = io.StringIO()
    everywhere = StdoutTracer(out, format="json")
    name = tracedagent.register(everywhere)
    mine = StdoutTracer(out, format="json")

    await agent(mine).run("1 + 2?")
    mine.flush(5)
    everywhere.flush(5)

    printed = lines(out)
    assert len(printed) == len(tracer.events) == 8
    assert mine.stats().exported == 8
    assert everywhere.stats().exported == 0
    [info] = [p for p in tracedagent.list_plugins() if p.name == name]
    assert "not used for one agent" in info.status
    assert "calc" in info.status


async def test_tracers_with_other_settings_both_print(tracer: RecordingTracer) -> None:
    one, other = io.StringIO(), io.StringIO()
    everywhere = StdoutTracer(one, format="json")
    tracedagent.register(everywhere)
    mine = StdoutTracer(other, format="json")

    await agent(mine).run("1 + 2?")
    mine.flush(5)
    everywhere.flush(5)

    assert len(lines(one)) == len(lines(other)) == 8


def test_the_readme_way_prints_each_event_once(tmp_path: Path) -> None:
    """TRACEDAGENT_STDOUT=1 and an agent with plugins=[StdoutTracer()], in a fresh process."""
    (tmp_path / "calc_app.py").write_text(
        textwrap.dedent(
            """
            from tracedagent import Agent, tool
            from tracedagent.testing import ScriptedModel, Step
            from tracedagent_stdout import StdoutTracer

            @tool
            def add(a: int, b: int) -> int:
                \"\"\"Add.\"\"\"
                return a + b

            model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
            agent = Agent("calc", model, tools=[add], plugins=[StdoutTracer()])
            print("output:", agent.run_sync("1 + 2?").output)
            """
        )
    )
    env = {**os.environ, "TRACEDAGENT_STDOUT": "1", "TRACEDAGENT_LOG_FORMAT": "json"}
    env.pop("TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD", None)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *sys.path])
    done = subprocess.run(
        [sys.executable, str(tmp_path / "calc_app.py")], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert "output: 3" in done.stdout
    assert len(events) == 8
    assert len({(e["event"], e.get("span_id")) for e in events}) == 8
