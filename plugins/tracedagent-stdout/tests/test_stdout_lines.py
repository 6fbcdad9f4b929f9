"""What the tracer prints: one line per event, with the ids, in JSON or console form."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
import structlog
from stdout_support import LINE_NAMES, line_name, one_of_each

import tracedagent
from tracedagent import Agent, ConfigurationError, ModelError, ToolCallEnded, hookspecs, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step
from tracedagent_stdout import StdoutTracer


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def calc_agent(*plugins: object) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "It is 3."])
    return Agent("calc", model, tools=[add], plugins=plugins)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_json_lines_one_per_event_with_the_ids(make_tracer):
    tracer, stream = make_tracer(format="json")
    recorder = RecordingTracer()
    result = await calc_agent(tracer, recorder).run("1 + 2?")
    assert tracedagent.flush()

    lines = json_lines(stream)
    events = recorder.events
    assert [line["event"] for line in lines] == [line_name(e) for e in events]
    assert [line["event"] for line in lines] == [
        "run.start",
        "model.start",
        "model.end",
        "tool.start",
        "tool.end",
        "model.start",
        "model.end",
        "run.end",
    ]
    for line, event in zip(lines, events, strict=True):
        assert line["run_id"] == event.run_id == result.run_id
        assert line["trace_id"] == event.trace_id == result.trace_id
        assert line["span_id"] == event.span_id
        assert line["parent_span_id"] == event.parent_span_id
        assert line["agent"] == "calc"
        assert line["level"] == "info"
        assert str(line["timestamp"]).endswith("Z")

    by_name = {line["event"]: line for line in lines}  # the last of each name
    model_end = by_name["model.end"]
    assert model_end["status"] == "ok"
    assert model_end["finish_reason"] == "stop"
    assert model_end["input_tokens"] == events[6].usage.input_tokens  # type: ignore[attr-defined]
    assert isinstance(model_end["duration_s"], float)
    assert isinstance(model_end["ttft_s"], float)
    assert by_name["tool.end"] | {"tool": "add", "status": "ok"} == by_name["tool.end"]
    run_end = by_name["run.end"]
    assert (run_end["status"], run_end["turns"], run_end["requests"]) == ("completed", 2, 2)
    assert run_end["input_tokens"] == result.usage.input_tokens
    assert run_end["output_tokens"] == result.usage.output_tokens


def test_every_observer_hook_prints_a_line(make_tracer):
    tracer, stream = make_tracer(format="json")
    events = one_of_each()
    assert sorted(e.hook for e in events) == sorted(hookspecs.OBSERVER_HOOKS) == sorted(LINE_NAMES)
    for event in events:
        getattr(tracer, event.hook)(event)
    assert tracer.flush()

    lines = {line["event"]: line for line in json_lines(stream)}
    assert list(lines) == [line_name(e) for e in events]
    assert (
        lines["model.end"]
        | {
            "status": "error",
            "error_type": "ValueError",
            "cache_read_tokens": 2,
            "reasoning_tokens": 1,
            "response_model": "m-2024",
            "ttft_s": 0.25,
        }
        == lines["model.end"]
    )
    assert lines["model.end"]["level"] == "error"
    assert lines["tool.end"]["status"] == "timeout"
    assert lines["tool.end"]["level"] == "warning"
    assert (
        lines["context.compact"] | {"tokens_before": 900, "tokens_after": 300, "messages_after": 3}
        == lines["context.compact"]
    )
    assert lines["checkpoint.save"] | {"bytes": 1234, "store": "memory", "step": 3} == lines["checkpoint.save"]
    assert lines["run.interrupt"]["interruptions"] == [{"id": "i1", "tool": "lookup", "kind": "approval"}]
    assert lines["run.resume"] | {"previous_span_id": "c" * 16, "waited_s": 12.5} == lines["run.resume"]
    assert lines["circuit.change"] | {"old": "closed", "new": "open", "level": "warning"} == lines["circuit.change"]
    assert lines["model.retry"] | {"attempt": 2, "delay_s": 0.5, "error_type": "ValueError"} == lines["model.retry"]
    assert lines["run.handoff"] | {"from_agent": "unit", "to_agent": "other", "level": "info"} == lines["run.handoff"]
    assert lines["run.start"]["metadata"] == {"tenant": "t1"}
    assert lines["run.end"] | {"status": "failed", "level": "error"} == lines["run.end"]
    assert lines["run.start"]["timestamp"] == "2023-11-14T22:13:20.123456Z"


async def test_failed_run_prints_error_type_and_level(make_tracer):
    tracer, stream = make_tracer(format="json")
    agent = Agent("broken", ScriptedModel([ModelError("provider said no")]), plugins=[tracer])
    with pytest.raises(ModelError):
        await agent.run("hi")
    assert tracedagent.flush()

    lines = {line["event"]: line for line in json_lines(stream)}
    assert lines["model.end"] | {"status": "error", "error_type": "ModelError", "level": "error"} == lines["model.end"]
    assert lines["run.end"] | {"status": "failed", "error_type": "ModelError", "level": "error"} == lines["run.end"]
    assert "error_message" not in lines["run.end"]


async def test_console_lines_are_human_readable(make_tracer):
    tracer, stream = make_tracer(format="console")
    result = await calc_agent(tracer).run("1 + 2?")
    assert tracedagent.flush()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 8
    assert "\x1b[" not in stream.getvalue()  # not a TTY: no colours
    short = result.run_id[:8]
    for line, name in zip(lines, ["run.start", "model.start", "model.end", "tool.start"], strict=False):
        assert not line.startswith("{")
        assert f" {name} " in line
        assert f"run_id={short} agent=calc " in line
        assert f"trace_id={result.trace_id}" in line
        assert "[info" in line
    tool_end = lines[4]
    assert "tool.end" in tool_end
    assert "tool=add" in tool_end
    assert "status=ok" in tool_end
    assert "duration_s=" in tool_end
    assert "status=completed" in lines[-1]
    assert "turns=2" in lines[-1]


def test_console_escapes_control_characters(make_tracer):
    tracer, stream = make_tracer(format="console", capture_content=True)
    event = one_of_each()[4]  # ToolCallEnded
    assert isinstance(event, ToolCallEnded)
    tracer.on_tool_call_end(dataclasses.replace(event, result="two\nlines \x1b[31mred"))
    assert tracer.flush()
    text = stream.getvalue()
    assert text.count("\n") == 1
    assert "\x1b" not in text
    assert r"\x1b[31mred" in text


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (False, None, "json"),
        (True, None, "console"),
        (True, "json", "json"),
        (False, "console", "console"),
        (False, "auto", "json"),
        (True, " JSON ", "json"),
    ],
)
def test_format_follows_the_stream_and_the_environment(make_tracer, monkeypatch, tty, env, expected):
    if env is not None:
        monkeypatch.setenv("TRACEDAGENT_LOG_FORMAT", env)
    tracer, _ = make_tracer(FakeTTY() if tty else io.StringIO())
    assert tracer.format == expected


def test_format_argument_overrides_the_environment(make_tracer, monkeypatch):
    monkeypatch.setenv("TRACEDAGENT_LOG_FORMAT", "console")
    tracer, _ = make_tracer(format="json")
    assert tracer.format == "json"


def test_bad_format_is_a_configuration_error(monkeypatch):
    with pytest.raises(ConfigurationError, match="xml"):
        StdoutTracer(io.StringIO(), format="xml")  # type: ignore[arg-type]
    monkeypatch.setenv("TRACEDAGENT_LOG_FORMAT", "yaml")
    with pytest.raises(ConfigurationError, match="TRACEDAGENT_LOG_FORMAT='yaml'"):
        StdoutTracer(io.StringIO())


@pytest.mark.parametrize(
    ("tty", "env", "coloured"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (False, {"FORCE_COLOR": "1"}, True),
    ],
)
def test_colours_only_on_a_tty_unless_forced(make_tracer, monkeypatch, tty, env, coloured):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracer, stream = make_tracer(FakeTTY() if tty else io.StringIO(), format="console")
    tracer.on_checkpoint(one_of_each()[6])
    assert tracer.flush()
    assert tracer.colors is coloured
    assert ("\x1b[" in stream.getvalue()) is coloured


def test_application_structlog_configuration_neither_used_nor_changed(make_tracer):
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        config = structlog.get_config()
        tracer, stream = make_tracer(format="json")
        tracer.on_checkpoint(one_of_each()[6])
        assert tracer.flush()
        assert json_lines(stream)[0]["event"] == "checkpoint.save"  # not filtered by the app's level
        assert structlog.get_config() == config
    finally:
        structlog.reset_defaults()


def test_repr_says_format_and_content(make_tracer):
    tracer, _ = make_tracer(format="json")
    assert repr(tracer).startswith("<StdoutTracer json to <_io.StringIO")
    assert repr(tracer).endswith(", no content>")


class _Custom:
    def __repr__(self) -> str:
        return "<custom>"


class _Structlogged:
    def __structlog__(self) -> str:
        return "structlogged"


@pytest.mark.parametrize("capture", [False, True])
def test_json_lines_are_the_text_structlog_renders(make_tracer, capture):
    # JSON lines take a direct path (no structlog processor chain on the worker); the text must be what
    # structlog's JSONRenderer prints, byte for byte, for every kind of event, values JSON cannot hold
    # included, and timestamps in other seconds.
    tracer, _ = make_tracer(format="json", capture_content=capture)
    events = one_of_each()
    events.append(dataclasses.replace(events[0], metadata={"tenant": _Custom(), "n": _Structlogged(), "x": 1.5e-05}))
    events += [dataclasses.replace(e, timestamp_ns=e.timestamp_ns + k * 999_999_999) for k, e in enumerate(events)]
    for event in events:
        assert tracer.render(event) == tracer._render_structlog(event)


async def test_run_end_and_model_end_show_the_cost(make_tracer):
    pytest.importorskip("genai_prices")
    tracer, stream = make_tracer(format="json")
    usage = tracedagent.Usage(1000, 200, requests=1)
    model = ScriptedModel(
        [Step(tool_calls=[("add", {"a": 1, "b": 2})], usage=usage), Step("It is 3.", usage=usage)],
        price_as="openai:gpt-4o-mini",
    )
    result = await Agent("calc", model, tools=[add], plugins=[tracer]).run("1 + 2?")
    assert tracedagent.flush()

    lines = json_lines(stream)
    calls = [line for line in lines if line["event"] == "model.end"]
    run_end = next(line for line in lines if line["event"] == "run.end")
    assert result.usage.cost_usd is not None
    assert result.usage.cost_usd > 0
    assert [line["cost_usd"] for line in calls] == [pytest.approx(result.usage.cost_usd / 2)] * 2
    assert run_end["cost_usd"] == pytest.approx(result.usage.cost_usd)
    assert "cost_partial" not in run_end


async def test_no_cost_field_for_an_unpriced_model(make_tracer):
    tracer, stream = make_tracer(format="json")
    await calc_agent(tracer).run("1 + 2?")
    assert tracedagent.flush()
    assert not [line for line in json_lines(stream) if "cost_usd" in line]
