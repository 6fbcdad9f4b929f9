"""Shared pieces of the stdout tracer's tests: a secret that must not leak, an agent that says it
everywhere, and one event of every kind."""

from __future__ import annotations

from typing import Any

from tracedagent import (
    Agent,
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Event,
    HandoffOccurred,
    Interruption,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    tool,
)
from tracedagent.testing import ScriptedModel, Step

#: A string put in every content field (prompt, tool arguments and results, answer, error messages).
SECRET = "SECRET-7f3a9c"

#: The line name of each hook's event (``on_retry`` prints ``model.retry`` or ``tool.retry``).
LINE_NAMES = {
    "on_run_start": "run.start",
    "on_run_end": "run.end",
    "on_model_call_start": "model.start",
    "on_model_call_end": "model.end",
    "on_tool_call_start": "tool.start",
    "on_tool_call_end": "tool.end",
    "on_interrupt": "run.interrupt",
    "on_resume": "run.resume",
    "on_compaction": "context.compact",
    "on_checkpoint": "checkpoint.save",
    "on_circuit_change": "circuit.change",
    "on_retry": "model.retry",
    "on_handoff": "run.handoff",
}


def line_name(event: Event) -> str:
    if isinstance(event, RetryScheduled):
        return f"{event.kind}.retry"
    return LINE_NAMES[event.hook]


@tool
def lookup(text: str) -> str:
    """Look a text up."""
    return f"found {text}"


@tool
def explode(text: str) -> str:
    """Fail, quoting the argument as tools often do."""
    raise ValueError(f"cannot handle {text}")


def secret_agent(*plugins: object) -> Agent:
    """An agent whose run puts SECRET in every content field: prompt, both tool calls' arguments, a
    tool result, a tool error message and the answer."""
    model = ScriptedModel(
        [
            Step(tool_calls=[("lookup", {"text": SECRET}), ("explode", {"text": SECRET})]),
            Step(text=f"The answer is {SECRET}."),
        ]
    )
    return Agent("secret", model, tools=[lookup, explode], plugins=plugins)


def one_of_each() -> list[Event]:
    """One event of every kind, in hook order, with SECRET in every content field and error message."""
    ids: dict[str, Any] = {
        "run_id": "a" * 32,
        "trace_id": "b" * 32,
        "span_id": "c" * 16,
        "parent_span_id": None,
        "agent": "unit",
        "timestamp_ns": 1_700_000_000_123_456_789,
    }
    child = {**ids, "span_id": "d" * 16, "parent_span_id": "c" * 16}
    error = ErrorInfo("ValueError", f"bad {SECRET}")
    return [
        RunStarted(**ids, model="m", provider="p", input=(Message.user(SECRET),), metadata={"tenant": "t1"}),
        ModelCallStarted(**child, model="m", provider="p", messages=(Message.user(SECRET),), tools=("lookup",)),
        ModelCallEnded(
            **child,
            model="m",
            provider="p",
            status="error",
            error=error,
            usage=Usage(3, 4, cache_read_tokens=2, reasoning_tokens=1, requests=1),
            finish_reason="stop",
            response_model="m-2024",
            time_to_first_token_s=0.25,
            output=Message.assistant(SECRET),
        ),
        ToolCallStarted(**child, tool="lookup", call_id="call_9", arguments=f'{{"text": "{SECRET}"}}'),
        ToolCallEnded(**child, tool="lookup", call_id="call_9", status="timeout", error=error, result=SECRET),
        ContextCompacted(
            **ids, strategy="drop_oldest", tokens_before=900, tokens_after=300, messages_before=9, messages_after=3
        ),
        CheckpointSaved(**ids, bytes=1234, duration_s=0.002, store="memory", step=3),
        RunInterrupted(**ids, interruptions=(Interruption("i1", "lookup", f'{{"text": "{SECRET}"}}', SECRET),)),
        RunResumed(**{**ids, "span_id": "e" * 16}, previous_span_id="c" * 16, waited_s=12.5),
        CircuitStateChanged(**ids, tool="lookup", old="closed", new="open", reason="5 failures in a row"),
        RetryScheduled(**child, target="m", kind="model", attempt=2, delay_s=0.5, error=error),
        HandoffOccurred(**ids, from_agent="unit", to_agent="other"),
        RunEnded(**ids, status="failed", error=error, duration_s=1.5, usage=Usage(3, 4, requests=1), output=SECRET),
    ]
