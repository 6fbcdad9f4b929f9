"""Message content and error messages appear only with content capture on."""

from __future__ import annotations

import json

import pytest
from stdout_support import SECRET, one_of_each, secret_agent

import tracedagent


@pytest.mark.parametrize("fmt", ["json", "console"])
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"TRACEDAGENT_CAPTURE_CONTENT": "false"},
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "0"},
    ],
)
async def test_content_is_absent_by_default(make_tracer, monkeypatch, fmt, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracer, stream = make_tracer(format=fmt)
    result = await secret_agent(tracer).run(f"Look up {SECRET}")
    assert SECRET in result.output  # the run did say it...
    for event in one_of_each():  # ...and so did every other kind of event
        getattr(tracer, event.hook)(event)
    assert tracedagent.flush()

    text = stream.getvalue()
    assert tracer.capture_content is False
    assert len(text.splitlines()) == 10 + len(one_of_each())
    assert SECRET not in text
    assert "error_type" in text  # the failing tool's error type still shows...
    assert "error_message" not in text  # ...its message (which quotes the arguments) does not


@pytest.mark.parametrize(
    ("env", "argument"),
    [
        ({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}, None),
        ({"TRACEDAGENT_CAPTURE_CONTENT": "TRUE"}, None),
        ({"TRACEDAGENT_CAPTURE_CONTENT": "1"}, None),
        ({}, True),
    ],
)
async def test_content_is_present_with_capture_on(make_tracer, monkeypatch, env, argument):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracer, stream = make_tracer(format="json", capture_content=argument)
    await secret_agent(tracer).run(f"Look up {SECRET}")
    assert tracedagent.flush()

    assert tracer.capture_content is True
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_name: dict[str, list[dict[str, object]]] = {}
    for line in lines:
        by_name.setdefault(str(line["event"]), []).append(line)
    assert SECRET in json.dumps(by_name["run.start"][0]["input"])
    assert SECRET in json.dumps(by_name["model.start"][0]["messages"])
    assert SECRET in json.dumps(by_name["model.end"][0]["output"])  # the tool calls' arguments
    assert all(SECRET in str(line["arguments"]) for line in by_name["tool.start"])
    ok, failed = sorted(by_name["tool.end"], key=lambda line: line["status"] != "ok")
    assert ok["result"] == f"found {SECRET}"
    assert (failed["status"], failed["error_type"]) == ("error", "ValueError")
    assert SECRET in str(failed["error_message"])
    assert SECRET in str(by_name["model.end"][1]["output"])
    assert by_name["run.end"][0]["output"] == f"The answer is {SECRET}."


def test_captured_interruptions_and_errors_of_every_kind(make_tracer):
    tracer, stream = make_tracer(format="json", capture_content=True)
    for event in one_of_each():
        getattr(tracer, event.hook)(event)
    assert tracer.flush()

    lines = {line["event"]: line for line in map(json.loads, stream.getvalue().splitlines())}
    assert lines["run.interrupt"]["interruptions"][0]["arguments"] == f'{{"text": "{SECRET}"}}'
    assert lines["run.interrupt"]["interruptions"][0]["reason"] == SECRET
    for name in ("model.end", "tool.end", "model.retry", "run.end"):
        assert lines[name]["error_message"] == f"bad {SECRET}"
