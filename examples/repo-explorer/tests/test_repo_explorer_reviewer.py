"""The reviewer: an agent whose only tool is the explorer agent (``Agent.as_tool``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from repo_explorer import EXPLORER_TOOL, REVIEWER_INSTRUCTIONS, REVIEWER_NAME, build_reviewer, offline_model
from tracedagent import RunEnded, RunStarted, ToolCallEnded, ToolCallStarted, Usage
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

MakeModel = Callable[..., ScriptedModel]


def test_the_reviewer_asks_the_explorer_and_answers_from_what_it_read(
    repo: Path, recorded_events: RecordingTracer, scripted_model: MakeModel
) -> None:
    question = "Where is the VAT rate set?"
    reviewer_model = scripted_model(
        [
            Step(tool_calls=[(EXPLORER_TOOL, {"input": question})], usage=Usage(100, 10, requests=1)),
            Step(
                "The VAT rate is a constant (src/shop/pricing.py:1); fine for one country.",
                usage=Usage(150, 20, requests=1),
            ),
        ],
        name="reviewer-model",
    )
    explorer_model = scripted_model(
        [
            Step(tool_calls=[("read_file", {"path": "src/shop/pricing.py"})], usage=Usage(40, 4, requests=1)),
            Step("`VAT_RATE = 0.2` at src/shop/pricing.py:1.", usage=Usage(60, 6, requests=1)),
        ],
        name="explorer-model",
    )
    reviewer = build_reviewer(repo, reviewer_model, explorer_model=explorer_model)

    result = reviewer.run_sync("Review how VAT is handled.")

    assert result.status == "completed"
    assert result.output == "The VAT rate is a constant (src/shop/pricing.py:1); fine for one country."
    # the reviewer has no file tool: only the explorer, which got the question and read the file
    first = reviewer_model.requests[0]
    assert first.instructions == REVIEWER_INSTRUCTIONS
    assert [spec.name for spec in first.tools] == [EXPLORER_TOOL]
    assert explorer_model.requests[0].messages[-1].content == question
    ask = [m for m in result.messages if m.role == "tool"]
    assert [m.content for m in ask] == ["`VAT_RATE = 0.2` at src/shop/pricing.py:1."]
    # the explorer's tokens count once in the reviewer's usage
    assert result.usage == Usage(350, 40, requests=4)
    # one trace: the explorer's run is a child of the reviewer's tool call
    starts = {e.agent: e for e in recorded_events.of_type(RunStarted)}
    assert set(starts) == {REVIEWER_NAME, "repo-explorer"}
    (call,) = [e for e in recorded_events.of_type(ToolCallStarted) if e.tool == EXPLORER_TOOL]
    assert starts["repo-explorer"].parent_span_id == call.span_id
    assert {e.trace_id for e in recorded_events.events} == {result.trace_id}
    ends = {e.agent: e for e in recorded_events.of_type(RunEnded)}
    assert ends[REVIEWER_NAME].usage == result.usage
    assert ends["repo-explorer"].usage == Usage(100, 10, requests=2)
    assert recorded_events.format_span_tree() == (
        "run repo-reviewer [completed]\n"
        "  model scripted:reviewer-model [ok]\n"
        "  tool ask_repo_explorer [ok]\n"
        "    run repo-explorer [completed]\n"
        "      model scripted:explorer-model [ok]\n"
        "      tool read_file [ok]\n"
        "      model scripted:explorer-model [ok]\n"
        "  model scripted:reviewer-model [ok]"
    )
    assert recorded_events.unmatched() == []


def test_the_explorer_under_the_reviewer_stays_in_the_repository(
    repo: Path, secret: str, recorded_events: RecordingTracer, scripted_model: MakeModel
) -> None:
    reviewer_model = scripted_model(
        [Step(tool_calls=[(EXPLORER_TOOL, {"input": "What is in ../private.txt?"})]), "The explorer could not say."]
    )
    explorer_model = scripted_model(
        [Step(tool_calls=[("read_file", {"path": "../private.txt"})]), "I cannot read that file."]
    )
    result = build_reviewer(repo, reviewer_model, explorer_model=explorer_model).run_sync("Any secrets?")
    assert result.status == "completed"
    read = [e for e in recorded_events.of_type(ToolCallEnded) if e.tool == "read_file"]
    assert [(e.agent, e.error.type if e.error else None) for e in read] == [("repo-explorer", "PathEscapeError")]
    assert all(secret not in (m.content or "") for m in result.messages)


def test_offline_the_explorer_searches_for_the_reviewer(repo: Path, scripted_model: MakeModel) -> None:
    reviewer_model = scripted_model(
        [Step(tool_calls=[(EXPLORER_TOOL, {"input": "Where is the VAT rate defined?"})]), "Reviewed."]
    )
    result = build_reviewer(repo, reviewer_model, explorer_model=offline_model()).run_sync("Review VAT.")
    assert result.output == "Reviewed."
    (answer,) = [m.content or "" for m in result.messages if m.role == "tool"]
    assert answer.startswith("(offline: no language model is configured")
    assert "most often in src/shop/pricing.py (2)" in answer
