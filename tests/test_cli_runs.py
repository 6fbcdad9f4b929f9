"""``tracedagent run`` / ``resume`` / ``runs`` as a user runs them: real subprocesses of the CLI on an
agent module written to a temporary directory, with a SQLite store, so each resume happens in a new
process. Also the stores' ``list_paused()`` behind ``runs``.

The agents that are resumed in another process use a :class:`FunctionModel` whose answer follows the
conversation it is given, so the resumed process goes on where the first one stopped whatever the
scripted model does across processes.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from tracedagent import (
    Agent,
    Checkpoint,
    CheckpointStore,
    ConfigurationError,
    InMemoryCheckpointStore,
    Message,
    SQLiteCheckpointStore,
    ToolCall,
    tool,
)
from tracedagent._checkpoint import list_paused
from tracedagent._cli import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_PAUSED, EXIT_USAGE, _parser
from tracedagent._model import ModelRequest
from tracedagent.testing import FunctionModel

GUARD_S = 120.0  # only a guard so a regression fails instead of hanging; never asserted on
SRC = Path(__file__).resolve().parents[1] / "src"
README = Path(__file__).resolve().parents[1] / "README.md"
CAPTURE = ("TRACEDAGENT_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")

APP = textwrap.dedent(
    '''
    """Agents for the CLI tests. Every tool call is logged to TOOL_LOG, so a test sees what ran."""
    import os
    from tracedagent import Agent, ToolCall, external_tool, tool
    from tracedagent.testing import FunctionModel, ScriptedModel, Step

    STORE = os.environ.get("STORE", "runs.db")


    def log(line):
        with open(os.environ["TOOL_LOG"], "a") as f:
            f.write(line + "\\n")


    @tool(needs_approval=True)
    def deploy(version: str) -> str:
        """Deploy a version of the service."""
        log(f"deploy {version}")
        return f"deployed {version}"


    def ops_brain(messages, request):
        """'deploy A B' asks to deploy A and B; once the results are in, it sums them up. It reads
        the conversation it is given, so a run resumed in another process goes on where it was."""
        prompt = [m.content for m in messages if m.role == "user"][-1]
        results = [m.content for m in messages if m.role == "tool"]
        versions = prompt.split()[1:]
        if not versions:
            return "nothing to deploy"
        if not results:
            return [ToolCall.of(f"call_{i}", "deploy", {"version": v}) for i, v in enumerate(versions, 1)]
        return "; ".join(results)


    def asker_brain(messages, request):
        results = [m.content for m in messages if m.role == "tool"]
        if not results:
            return [ToolCall.of("ask_1", "ask_human", {"question": "which colour?"})]
        return "the human said " + results[-1]


    def broken_brain(messages, request):
        raise RuntimeError("the model is down")


    ops = Agent("ops", FunctionModel(ops_brain), tools=[deploy], checkpoints=STORE)
    other = Agent("other", FunctionModel(ops_brain), tools=[deploy], checkpoints=STORE)
    scripted = Agent(
        "scripted",
        ScriptedModel([Step(tool_calls=[("deploy", {"version": "9.9"})]), "deployed 9.9"]),
        tools=[deploy],
        checkpoints=STORE,
    )
    ask_human = external_tool(
        "ask_human", "Ask the human a question.", {"type": "object", "properties": {"question": {"type": "string"}}}
    )
    asker = Agent("asker", FunctionModel(asker_brain), tools=[ask_human], checkpoints=STORE)
    broken = Agent("broken", FunctionModel(broken_brain), checkpoints=STORE)
    # no store of its own: TRACEDAGENT_CHECKPOINTS, or this process's memory
    plain = Agent("plain", FunctionModel(ops_brain), tools=[deploy])
    '''
)


@pytest.fixture
def app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def cli(where: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m tracedagent ARGS`` in ``where`` (as a user runs it next to their module)."""
    environ = {k: v for k, v in os.environ.items() if k not in (*CAPTURE, "TRACEDAGENT_CHECKPOINTS")}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    environ["TOOL_LOG"] = str(where / "tools.log")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tracedagent", *args],
        cwd=where,
        env=environ,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )


def tool_log(where: Path) -> list[str]:
    path = where / "tools.log"
    return path.read_text().splitlines() if path.exists() else []


def paused_run_id(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == EXIT_PAUSED, (proc.stdout, proc.stderr)
    match = re.search(r"^run ([0-9a-f]{32}) is paused", proc.stdout, re.M)
    assert match, proc.stdout
    return match.group(1)


# ----------------------------------------------------------------------------------------------- run


def test_a_paused_run_prints_its_run_id_and_pending_calls_and_exits_3(app: Path) -> None:
    proc = cli(app, "run", "app:scripted", "ship it")

    run_id = paused_run_id(proc)
    assert "None" not in proc.stdout
    assert re.search(r"call \S+: tool deploy, needs approval: tool 'deploy' needs approval", proc.stdout)
    assert f"tracedagent resume app:scripted {run_id} --approve " in proc.stdout
    assert tool_log(app) == []  # nothing ran without a person


def test_arguments_are_shown_only_under_content_capture(app: Path) -> None:
    hidden = cli(app, "run", "app:ops", "deploy s3cr3t-7")
    assert "s3cr3t-7" not in hidden.stdout + hidden.stderr
    assert "arguments not shown" in hidden.stdout
    assert "TRACEDAGENT_CAPTURE_CONTENT=true" in hidden.stdout
    paused_run_id(hidden)

    for variable in CAPTURE:
        shown = cli(app, "run", "app:ops", "deploy s3cr3t-7", **{variable: "true"})
        paused_run_id(shown)
        assert 'arguments: {"version": "s3cr3t-7"}' in shown.stdout
        assert "arguments not shown" not in shown.stdout


def test_a_completed_run_prints_its_output_and_exits_0(app: Path) -> None:
    proc = cli(app, "run", "app:ops", "deploy")  # no version: no tool call, an answer at once
    assert (proc.returncode, proc.stdout) == (EXIT_OK, "nothing to deploy\n"), proc.stderr


def test_a_failed_run_has_its_own_exit_code_and_says_its_run_id(app: Path) -> None:
    proc = cli(app, "run", "app:broken", "hello")
    assert proc.returncode == EXIT_FAILED
    assert re.search(r"run [0-9a-f]{32} failed: .*the model is down", proc.stderr), proc.stderr
    assert len({EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED}) == 4
    assert set(EXIT_CODES) >= {EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED}


def test_the_exit_codes_are_in_the_help(app: Path) -> None:
    for command in ("run", "resume"):
        proc = cli(app, command, "--help")
        text = " ".join(proc.stdout.split())
        assert f"{EXIT_PAUSED} the run is paused" in text
        assert f"{EXIT_FAILED} the run failed" in text


def test_a_module_that_cannot_be_loaded_is_a_usage_error_not_a_failed_run(app: Path) -> None:
    proc = cli(app, "run", "nosuchmodule:agent", "hi")
    assert proc.returncode == EXIT_USAGE
    assert "cannot import 'nosuchmodule'" in proc.stderr


# -------------------------------------------------------------------------------------------- resume


def test_resume_in_a_second_process_approves_and_denies(app: Path) -> None:
    run_id = paused_run_id(cli(app, "run", "app:ops", "deploy 1.2 1.3"))

    done = cli(app, "resume", "app:ops", run_id, "--approve", "call_1", "--deny", "call_2", "--reason", "not on friday")

    assert done.returncode == EXIT_OK, done.stderr
    assert done.stdout.startswith("deployed 1.2; ")
    assert "denied: not on friday" in done.stdout
    assert tool_log(app) == ["deploy 1.2"]  # the approved call ran once, the denied one never


def test_a_paused_run_resumed_to_completion_leaves_runs(app: Path) -> None:
    first = paused_run_id(cli(app, "run", "app:ops", "deploy 1.0"))
    second = paused_run_id(cli(app, "run", "app:ops", "deploy 2.0 2.1"))
    paused_run_id(cli(app, "run", "app:other", "deploy 3.0"))  # same store, another agent

    listed = cli(app, "runs", "app:ops")
    assert listed.returncode == EXIT_OK, listed.stderr
    assert "2 paused runs of agent 'ops'" in listed.stdout
    assert re.search(rf"^run {first}: paused since \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", listed.stdout, re.M)
    assert re.search(rf"^run {second}: paused since ", listed.stdout, re.M)
    assert listed.stdout.index(first) < listed.stdout.index(second)  # oldest pause first
    assert listed.stdout.count("call call_1: tool deploy, needs approval") == 2
    assert listed.stdout.count("call call_2: tool deploy, needs approval") == 1
    assert "3.0" not in listed.stdout
    assert "2.0" not in listed.stdout

    assert cli(app, "resume", "app:ops", first, "--approve", "call_1").returncode == EXIT_OK

    after = cli(app, "runs", "app:ops")
    assert first not in after.stdout
    assert "1 paused run of agent 'ops'" in after.stdout
    assert second in after.stdout


def test_runs_says_when_there_are_none(app: Path) -> None:
    proc = cli(app, "runs", "app:ops")
    assert (proc.returncode, proc.stdout.strip()) == (
        EXIT_OK,
        "no paused runs of agent 'ops' in SQLiteCheckpointStore('runs.db')",
    )


def test_an_unknown_run_id_is_a_clear_error(app: Path) -> None:
    proc = cli(app, "resume", "app:ops", "0" * 32, "--approve", "call_1")
    assert proc.returncode == EXIT_USAGE
    assert f"no run '{'0' * 32}' in SQLiteCheckpointStore('runs.db')" in proc.stderr
    assert "tracedagent runs app:ops" in proc.stderr


def test_a_call_that_is_not_pending_says_what_is(app: Path) -> None:
    run_id = paused_run_id(cli(app, "run", "app:ops", "deploy 1.2 1.3"))

    wrong = cli(app, "resume", "app:ops", run_id, "--approve", "call_9")
    assert wrong.returncode == EXIT_USAGE
    assert "has no pending call 'call_9'" in wrong.stderr
    assert "pending: call_1 (tool deploy, approval), call_2 (tool deploy, approval)" in wrong.stderr

    short = cli(app, "resume", "app:ops", run_id, "--approve", "call_1")
    assert short.returncode == EXIT_USAGE
    assert "also waits on call_2: add --approve call_2 or --deny call_2" in short.stderr
    assert tool_log(app) == []  # a wrong resume runs nothing

    assert cli(app, "resume", "app:ops", run_id, "--approve", "call_1", "--approve", "call_2").returncode == EXIT_OK
    again = cli(app, "resume", "app:ops", run_id, "--approve", "call_1")
    assert again.returncode == EXIT_USAGE
    assert "has already completed" in again.stderr
    assert sorted(tool_log(app)) == ["deploy 1.2", "deploy 1.3"]  # each once; the two calls run concurrently


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", "why"], "--reason explains a denial"),
        (["--approve", "call_1", "--reason", "why"], "--reason explains a denial"),
        (["--approve", "call_1", "--deny", "call_1"], "call 'call_1' is decided twice"),
        (["--result", "call_1"], "--result takes CALL_ID=VALUE"),
    ],
)
def test_resume_options_that_cannot_work_are_refused(app: Path, args: list[str], message: str) -> None:
    proc = cli(app, "resume", "app:ops", "0" * 32, *args)
    assert proc.returncode == EXIT_USAGE
    assert message in proc.stderr


def test_an_external_call_gets_its_result_from_the_command_line(app: Path) -> None:
    proc = cli(app, "run", "app:asker", "hello")
    run_id = paused_run_id(proc)
    assert "call ask_1: tool ask_human, needs its result (an external tool)" in proc.stdout
    assert "--result ask_1=VALUE" in proc.stdout

    approve = cli(app, "resume", "app:asker", run_id, "--approve", "ask_1")
    assert approve.returncode == EXIT_USAGE
    assert "give its result with --result ask_1=VALUE" in approve.stderr

    done = cli(app, "resume", "app:asker", run_id, "--result", "ask_1=blue, a=b")
    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, "the human said blue, a=b"), done.stderr


def test_the_store_from_TRACEDAGENT_CHECKPOINTS_works_across_processes(app: Path) -> None:
    store = str(app / "shared.db")
    run_id = paused_run_id(cli(app, "run", "app:plain", "deploy 4.0", TRACEDAGENT_CHECKPOINTS=store))
    assert run_id in cli(app, "runs", "app:plain", TRACEDAGENT_CHECKPOINTS=store).stdout

    done = cli(app, "resume", "app:plain", run_id, "--approve", "call_1", TRACEDAGENT_CHECKPOINTS=store)

    assert (done.returncode, done.stdout.strip()) == (EXIT_OK, "deployed 4.0"), done.stderr
    assert "no paused runs" in cli(app, "runs", "app:plain", TRACEDAGENT_CHECKPOINTS=store).stdout


def test_an_agent_without_a_durable_store_says_so(app: Path) -> None:
    paused = cli(app, "run", "app:plain", "deploy 5.0")
    paused_run_id(paused)
    assert "keeps its runs in this process's memory" in paused.stderr

    for args in (["runs", "app:plain"], ["resume", "app:plain", "0" * 32, "--approve", "call_1"]):
        proc = cli(app, *args)
        assert proc.returncode == EXIT_USAGE
        assert "TRACEDAGENT_CHECKPOINTS" in proc.stderr
        assert "checkpoints=" in proc.stderr


# ------------------------------------------------------------------------------ the README's lines


def test_the_readme_cli_lines_are_commands_the_cli_takes() -> None:
    text = README.read_text()
    section = text[text.index("## Approvals, checkpoints and resume") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [shlex.split(line) for line in lines if line.startswith("tracedagent ")]
    assert {c[1] for c in commands} >= {"run", "resume", "runs"}
    for command in commands:
        _parser().parse_args(command[1:])  # argparse exits on a line it does not take


# ------------------------------------------------------------------------------ list_paused() itself


@tool(needs_approval=True)
def approve_me(n: int) -> str:
    """Needs a person."""
    return f"ran {n}"


def _brain(messages: Sequence[Message], request: ModelRequest) -> str | list[ToolCall]:
    if not any(m.role == "tool" for m in messages):
        return [ToolCall.of("c1", "approve_me", {"n": 1})]
    return "done"


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_list_paused_lists_interrupted_runs_oldest_first(kind: str, tmp_path: Path) -> None:
    store: CheckpointStore = InMemoryCheckpointStore() if kind == "memory" else SQLiteCheckpointStore(tmp_path / "s.db")
    ops = Agent("ops", FunctionModel(_brain), tools=[approve_me], checkpoints=store)
    other = Agent("other", FunctionModel(_brain), tools=[approve_me], checkpoints=store)
    first, second, theirs = await ops.run("a"), await ops.run("b"), await other.run("c")
    done = await ops.run("d")
    await ops.resume(done.run_id, {"c1": True})

    paused = await list_paused(store, "ops")

    assert [c.run_id for c in paused] == [first.run_id, second.run_id]
    assert all(isinstance(c, Checkpoint) and c.status == "interrupted" for c in paused)
    assert [[p.id for p in c.pending] for c in paused] == [["c1"], ["c1"]]
    assert all(c.paused_at_ns for c in paused)
    everyone = {c.run_id for c in await list_paused(store)}
    assert everyone == {first.run_id, second.run_id, theirs.run_id}


async def test_a_store_without_list_paused_is_still_a_store_and_says_what_it_lacks() -> None:
    class Minimal:
        name = "minimal"

        async def save(self, checkpoint: Checkpoint) -> int:
            return 0

        async def load(self, run_id: str) -> Checkpoint | None:
            return None

        async def delete(self, run_id: str) -> None:
            return None

        async def save_session(self, session_id: str, messages: Sequence[Message]) -> None:
            return None

        async def load_session(self, session_id: str) -> list[Message]:
            return []

    store = Minimal()
    assert isinstance(store, CheckpointStore)
    with pytest.raises(ConfigurationError, match="cannot list its paused runs: give it an `async def list_paused"):
        await list_paused(store)
