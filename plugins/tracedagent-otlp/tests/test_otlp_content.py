"""Message content reaches spans only when asked for, in the conventions' shape, and cut to size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from otlp_support import MakeTracer, all_strings, answer, attrs, calls, one, tool_results

from tracedagent import Agent, ConfigurationError, Message, ModelRequest, tool
from tracedagent.testing import FunctionModel
from tracedagent_otlp import OtlpTracer
from tracedagent_otlp import names as N

SENTINEL = "zebra-sentinel-4711"


@tool
def lookup(query: str) -> str:
    """Look something up."""
    return f"{SENTINEL}-result about {query[:10]} " + "x" * 300


@tool
def explode(query: str) -> str:
    """Fails, quoting its input."""
    raise RuntimeError(f"cannot look up {query}")


def sentinel_model(tool_name: str = "lookup") -> FunctionModel:
    def respond(messages: Sequence[Message], request: ModelRequest) -> Any:
        if not tool_results(messages):
            return calls(("c1", tool_name, {"query": f"{SENTINEL}-args " + "y" * 300}))
        return answer(f"{SENTINEL}-answer " + "z" * 300)

    return FunctionModel(respond, name="m", provider="p")


async def run_with(tracer: OtlpTracer, tool_name: str = "lookup") -> None:
    agent = Agent("a", sentinel_model(tool_name), tools=[lookup, explode], plugins=[tracer])
    await agent.run(f"{SENTINEL}-prompt " + "w" * 300)
    assert tracer.flush(5.0)


async def test_no_content_leaves_the_process_when_capture_is_off(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    assert tracer.capture_content is False
    await run_with(tracer)
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    assert SENTINEL not in all_strings(spans)
    for span in spans:
        for key in (N.GEN_AI_INPUT_MESSAGES, N.GEN_AI_OUTPUT_MESSAGES, N.GEN_AI_TOOL_CALL_ARGUMENTS, N.OI_INPUT_VALUE):
            assert key not in attrs(span)


async def test_error_messages_are_content_too(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    await run_with(tracer, "explode")
    spans = exporter.get_finished_spans()
    failed = one(spans, "execute_tool explode")
    assert attrs(failed)[N.ERROR_TYPE] == "RuntimeError"
    assert SENTINEL not in all_strings(spans)


async def test_content_is_on_the_spans_and_cut_to_max_content_when_capture_is_on(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(capture_content=True, max_content=60)
    await run_with(tracer)
    spans = exporter.get_finished_spans()
    text = all_strings(spans)
    for piece in ("prompt", "args", "result", "answer"):
        assert f"{SENTINEL}-{piece}" in text
    for filler in ("w", "x", "y", "z"):
        assert filler * 100 not in text  # every long text was cut

    tool_span = attrs(one(spans, "execute_tool lookup"))
    assert tool_span[N.GEN_AI_TOOL_CALL_ARGUMENTS].startswith('{"query": "zebra-sentinel-4711-args')
    assert tool_span[N.GEN_AI_TOOL_CALL_RESULT].startswith(f"{SENTINEL}-result about zebra-sent")
    assert tool_span[N.GEN_AI_TOOL_CALL_RESULT].endswith("more chars]")
    assert len(tool_span[N.GEN_AI_TOOL_CALL_RESULT]) < 100

    first_chat, second_chat = sorted((s for s in spans if s.name == "chat m"), key=lambda s: attrs(s)[N.TD_TURN])
    inputs = json.loads(attrs(first_chat)[N.GEN_AI_INPUT_MESSAGES])
    assert inputs[0]["role"] == "user"
    assert inputs[0]["parts"][0]["type"] == "text"
    assert inputs[0]["parts"][0]["content"].startswith(f"{SENTINEL}-prompt")
    outputs = json.loads(attrs(first_chat)[N.GEN_AI_OUTPUT_MESSAGES])
    assert outputs[0]["finish_reason"] == "tool_calls"
    (call,) = outputs[0]["parts"]
    assert (call["type"], call["id"], call["name"]) == ("tool_call", "c1", "lookup")
    history = json.loads(attrs(second_chat)[N.GEN_AI_INPUT_MESSAGES])
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]
    assert history[2]["parts"][0]["type"] == "tool_call_response"
    answer_messages = json.loads(attrs(second_chat)[N.GEN_AI_OUTPUT_MESSAGES])
    assert answer_messages[0]["parts"][0]["content"].startswith(f"{SENTINEL}-answer")

    run = attrs(one(spans, "invoke_agent a"))
    assert run[N.OI_INPUT_VALUE].startswith(f"{SENTINEL}-prompt")
    assert run[N.OI_OUTPUT_VALUE].startswith(f"{SENTINEL}-answer")
    assert json.loads(run[N.GEN_AI_OUTPUT_MESSAGES])[0]["role"] == "assistant"


async def test_with_capture_on_error_messages_describe_the_status(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(capture_content=True)
    await run_with(tracer, "explode")
    failed = one(exporter.get_finished_spans(), "execute_tool explode")
    assert failed.status.description is not None
    assert failed.status.description.startswith(f"RuntimeError: cannot look up {SENTINEL}")


async def test_the_standard_variable_turns_capture_on_and_the_size_comes_from_the_environment(
    make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    monkeypatch.setenv("TRACEDAGENT_OTLP_MAX_CONTENT", "40")
    tracer, exporter = make_tracer()
    assert (tracer.capture_content, tracer.max_content) == (True, 40)
    await run_with(tracer)
    result = attrs(one(exporter.get_finished_spans(), "execute_tool lookup"))[N.GEN_AI_TOOL_CALL_RESULT]
    assert result.startswith(f"{SENTINEL}-result")
    assert len(result) < 70


@pytest.mark.parametrize("value", ["false", "0", "", "EVENT_ONLY", "NO_CONTENT"])
def test_other_values_leave_capture_off(make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", value)
    tracer, _ = make_tracer()
    assert tracer.capture_content is False


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_a_bad_max_content_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TRACEDAGENT_OTLP_MAX_CONTENT", value)
    with pytest.raises(ConfigurationError, match="TRACEDAGENT_OTLP_MAX_CONTENT"):
        OtlpTracer()


def test_long_tool_arguments_stay_valid_json_in_the_messages(make_tracer: MakeTracer) -> None:
    from tracedagent_otlp._content import input_messages

    long_call = Message.assistant(None, [calls(("c", "t", {"q": "v" * 500})).message.tool_calls[0]])
    encoded = json.loads(input_messages([long_call], 50))
    arguments = encoded[0]["parts"][0]["arguments"]
    assert isinstance(arguments, str)
    assert arguments.endswith("more chars]")
