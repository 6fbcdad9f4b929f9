"""The agent: it explores with the sandboxed file tools, read-only by default, and its runs are traced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from repo_explorer import AGENT_NAME, INSTRUCTIONS, build_agent, offline_model
from tracedagent import Approval, ToolCallEnded
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

MakeModel = Callable[..., ScriptedModel]


def tool_runs(events: RecordingTracer) -> list[tuple[str, str]]:
    return [(e.tool, e.status) for e in events.of_type(ToolCallEnded)]


def test_it_answers_from_what_it_reads(repo: Path, recorded_events: RecordingTracer, scripted_model: MakeModel) -> None:
    model = scripted_model(
        [
            Step(tool_calls=[("find_files", {"pattern": "**/pricing*.py"}), ("grep", {"pattern": "VAT"})]),
            Step(tool_calls=[("read_file", {"path": "src/shop/pricing.py"})]),
            "VAT is 20%: `VAT_RATE = 0.2` in src/shop/pricing.py:1, applied by `total()`.",
        ]
    )
    result = build_agent(repo, model).run_sync("What VAT rate does the shop charge?")
    assert result.status == "completed"
    assert result.output == "VAT is 20%: `VAT_RATE = 0.2` in src/shop/pricing.py:1, applied by `total()`."
    tool_results = [m.content for m in result.messages if m.role == "tool"]
    assert tool_results[0] == "src/shop/pricing.py"
    assert (
        tool_results[1]
        == "src/shop/pricing.py:1: VAT_RATE = 0.2\nsrc/shop/pricing.py:5:     return round(net * (1 + VAT_RATE), 2)"
    )
    assert (tool_results[2] or "").startswith("VAT_RATE = 0.2\n")
    assert recorded_events.format_span_tree() == (
        "run repo-explorer [completed]\n"
        "  model scripted:scripted [ok]\n"
        "  tool find_files [ok]\n"
        "  tool grep [ok]\n"
        "  model scripted:scripted [ok]\n"
        "  tool read_file [ok]\n"
        "  model scripted:scripted [ok]"
    )
    assert recorded_events.unmatched() == []


def test_the_model_gets_the_instructions_and_only_read_tools(repo: Path, scripted_model: MakeModel) -> None:
    model = scripted_model(["Nothing to read."])
    agent = build_agent(repo, model)
    agent.run_sync("hi")
    [request] = model.requests
    assert request.instructions == INSTRUCTIONS
    assert [spec.name for spec in request.tools] == ["read_file", "list_directory", "find_files", "grep"]
    assert agent.name == AGENT_NAME


def test_it_cannot_read_outside_the_repository(
    repo: Path, secret: str, recorded_events: RecordingTracer, scripted_model: MakeModel
) -> None:
    model = scripted_model(
        [
            Step(tool_calls=[("read_file", {"path": "../private.txt"})]),
            Step(tool_calls=[("read_file", {"path": str(repo.parent / "private.txt")})]),
            "I cannot read that file.",
        ]
    )
    result = build_agent(repo, model).run_sync("What is in ../private.txt?")
    assert result.status == "completed"
    assert [e.error.type for e in recorded_events.of_type(ToolCallEnded) if e.error] == ["PathEscapeError"] * 2
    assert all(secret not in (m.content or "") for m in result.messages)


def test_writes_need_a_persons_approval(
    repo: Path, recorded_events: RecordingTracer, scripted_model: MakeModel
) -> None:
    model = scripted_model(
        [
            Step(tool_calls=[("write_file", {"path": "NOTES.md", "content": "VAT is 20%.\n"})]),
            "Written to NOTES.md.",
        ]
    )
    agent = build_agent(repo, model, allow_write=True)
    result = agent.run_sync("Note the VAT rate in NOTES.md")
    assert result.status == "interrupted"
    assert not (repo / "NOTES.md").exists()
    result = agent.resume_sync(result.run_id, {result.interruptions[0].id: Approval.allow()})
    assert result.status == "completed"
    assert (repo / "NOTES.md").read_text() == "VAT is 20%.\n"
    assert recorded_events.format_span_tree() == (
        "run repo-explorer [interrupted] {interrupt, checkpoint}\n"
        "  model scripted:scripted [ok]\n"
        "resume repo-explorer [completed]\n"
        "  tool write_file [ok]\n"
        "  model scripted:scripted [ok]"
    )


def test_offline_it_searches_and_says_so(repo: Path, recorded_events: RecordingTracer) -> None:
    result = build_agent(repo, offline_model()).run_sync("Where is the VAT rate defined?")
    assert result.status == "completed"
    output = result.output or ""
    assert output.startswith("(offline: no language model is configured")
    assert (
        "The words VAT, rate, defined appear in 2 line(s) of 1 file(s), most often in src/shop/pricing.py (2):"
        in output
    )
    assert "      1 | VAT_RATE = 0.2" in output
    assert output.endswith("At the top of the working directory: README.md, src/, tests/")
    assert sorted(tool_runs(recorded_events)) == [("grep", "ok"), ("list_directory", "ok"), ("read_file", "ok")]
    assert recorded_events.format_span_tree() == (
        "run repo-explorer [completed]\n"
        "  model repo-explorer:offline [ok]\n"
        "  tool list_directory [ok]\n"
        "  tool grep [ok]\n"
        "  model repo-explorer:offline [ok]\n"
        "  tool read_file [ok]\n"
        "  model repo-explorer:offline [ok]"
    )


def test_offline_with_nothing_found(repo: Path, recorded_events: RecordingTracer) -> None:
    result = build_agent(repo, offline_model()).run_sync("Where is the kubernetes deployment?")
    assert "None of the words kubernetes, deployment appears in the code." in (result.output or "")
    assert sorted(tool_runs(recorded_events)) == [("grep", "ok"), ("list_directory", "ok")]
