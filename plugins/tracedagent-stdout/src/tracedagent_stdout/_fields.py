"""What one line says about one event: its name, its level and its fields, content only when asked.

:func:`describe` is pure and runs on the export worker, never in a hook. Message content (the run's input
and output, the messages a model sees and what it answers, tool arguments and results) and error
messages (which can quote content) are left out unless ``capture`` is true; error *types* always show.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracedagent import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Event,
    HandoffOccurred,
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
)

__all__ = ["describe"]

Fields = dict[str, Any]


def describe(event: Event, capture: bool) -> tuple[str, str, Fields]:
    """The line for ``event``: ``(name, level, fields)``; ids are added by the caller.

    Names: ``run.start``, ``run.end``, ``model.start``, ``model.end``, ``tool.start``, ``tool.end``,
    ``run.interrupt``, ``run.resume``, ``run.handoff``, ``context.compact``, ``checkpoint.save``, ``circuit.change``,
    and ``model.retry`` or ``tool.retry``.
    """
    fields: Fields = {}
    name, level = _DESCRIBERS.get(type(event), _unknown)(event, fields, capture)
    return name, level, fields


def _seconds(value: float) -> float:
    return round(value, 6)


def _error(fields: Fields, error: ErrorInfo | None, capture: bool) -> None:
    if error is None:
        return
    fields["error_type"] = error.type
    if capture:
        fields["error_message"] = error.message


def _usage(fields: Fields, usage: Usage) -> None:
    fields["input_tokens"] = usage.input_tokens
    fields["output_tokens"] = usage.output_tokens
    if usage.cache_read_tokens:
        fields["cache_read_tokens"] = usage.cache_read_tokens
    if usage.reasoning_tokens:
        fields["reasoning_tokens"] = usage.reasoning_tokens
    if usage.estimated:
        fields["tokens_estimated"] = True
    if usage.cost_usd is not None:
        fields["cost_usd"] = round(usage.cost_usd, 9)
        if usage.cost_partial:  # some calls had no price: the cost is a lower bound
            fields["cost_partial"] = True


def _messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    return [_message(m) for m in messages]


def _message(message: Message) -> dict[str, Any]:
    data = message.to_dict()
    if message.images:  # a tool's images are described, never logged
        data["images"] = [image.describe() for image in message.images]
    return data


def _run_start(event: RunStarted, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["model"] = event.model
    fields["provider"] = event.provider
    fields["message_count"] = len(event.input)
    if event.metadata:
        fields["metadata"] = event.metadata
    if capture:
        fields["input"] = _messages(event.input)
    return "run.start", "info"


def _run_end(event: RunEnded, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["status"] = event.status
    fields["duration_s"] = _seconds(event.duration_s)
    fields["turns"] = event.turns
    _usage(fields, event.usage)
    fields["requests"] = event.usage.requests
    _error(fields, event.error, capture)
    if capture and event.output is not None:
        fields["output"] = event.output
    level = {"failed": "error", "cancelled": "warning"}.get(event.status, "info")
    return "run.end", level


def _model_start(event: ModelCallStarted, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["model"] = event.model
    fields["provider"] = event.provider
    fields["turn"] = event.turn
    if event.purpose != "turn":
        fields["purpose"] = event.purpose
    fields["message_count"] = len(event.messages)
    if event.tools:
        fields["tools"] = list(event.tools)
    if capture:
        fields["messages"] = _messages(event.messages)
    return "model.start", "info"


def _model_end(event: ModelCallEnded, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["model"] = event.model
    fields["provider"] = event.provider
    fields["turn"] = event.turn
    if event.purpose != "turn":
        fields["purpose"] = event.purpose
    fields["status"] = event.status
    fields["duration_s"] = _seconds(event.duration_s)
    if event.time_to_first_token_s is not None:
        fields["ttft_s"] = _seconds(event.time_to_first_token_s)
    _usage(fields, event.usage)
    if event.finish_reason is not None:
        fields["finish_reason"] = event.finish_reason
    if event.response_model is not None:
        fields["response_model"] = event.response_model
    if event.output is not None and event.output.tool_calls:
        fields["tool_calls"] = len(event.output.tool_calls)
    _error(fields, event.error, capture)
    if capture and event.output is not None:
        fields["output"] = event.output.to_dict()
    level = {"error": "error", "cancelled": "warning"}.get(event.status, "info")
    return "model.end", level


def _tool_start(event: ToolCallStarted, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["tool"] = event.tool
    fields["call_id"] = event.call_id
    if capture:
        fields["arguments"] = event.arguments
    return "tool.start", "info"


def _tool_end(event: ToolCallEnded, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["tool"] = event.tool
    fields["call_id"] = event.call_id
    fields["status"] = event.status
    fields["duration_s"] = _seconds(event.duration_s)
    _error(fields, event.error, capture)
    if capture and event.result is not None:
        fields["result"] = event.result
    # A failed tool call is handed back to the model and the run goes on: a warning, not an error.
    return "tool.end", "info" if event.status == "ok" else "warning"


def _interrupt(event: RunInterrupted, fields: Fields, capture: bool) -> tuple[str, str]:
    items = []
    for interruption in event.interruptions:
        item: dict[str, Any] = {"id": interruption.id, "tool": interruption.tool, "kind": interruption.kind}
        if capture:
            item["arguments"] = interruption.arguments
            item["reason"] = interruption.reason
        items.append(item)
    fields["interruptions"] = items
    return "run.interrupt", "info"


def _resume(event: RunResumed, fields: Fields, capture: bool) -> tuple[str, str]:
    if event.previous_span_id is not None:
        fields["previous_span_id"] = event.previous_span_id
    fields["waited_s"] = _seconds(event.waited_s)
    return "run.resume", "info"


def _compaction(event: ContextCompacted, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["strategy"] = event.strategy
    fields["tokens_before"] = event.tokens_before
    fields["tokens_after"] = event.tokens_after
    fields["messages_before"] = event.messages_before
    fields["messages_after"] = event.messages_after
    if event.estimated:
        fields["tokens_estimated"] = True
    return "context.compact", "info"


def _checkpoint(event: CheckpointSaved, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["store"] = event.store
    fields["step"] = event.step
    fields["bytes"] = event.bytes
    fields["duration_s"] = _seconds(event.duration_s)
    return "checkpoint.save", "info"


def _circuit(event: CircuitStateChanged, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["tool"] = event.tool
    fields["old"] = event.old
    fields["new"] = event.new
    if event.reason:
        fields["reason"] = event.reason
    return "circuit.change", "warning" if event.new == "open" else "info"


def _retry(event: RetryScheduled, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["target"] = event.target
    fields["attempt"] = event.attempt
    fields["delay_s"] = _seconds(event.delay_s)
    _error(fields, event.error, capture)
    return f"{event.kind}.retry", "warning"


def _handoff(event: HandoffOccurred, fields: Fields, capture: bool) -> tuple[str, str]:
    fields["from_agent"] = event.from_agent
    fields["to_agent"] = event.to_agent
    return "run.handoff", "info"


def _unknown(event: Event, fields: Fields, capture: bool) -> tuple[str, str]:
    # An event class newer than this plugin: say which hook, show no field (it may be content).
    return event.hook or type(event).__name__, "info"


_DESCRIBERS: dict[type[Event], Callable[[Any, Fields, bool], tuple[str, str]]] = {
    RunStarted: _run_start,
    RunEnded: _run_end,
    ModelCallStarted: _model_start,
    ModelCallEnded: _model_end,
    ToolCallStarted: _tool_start,
    ToolCallEnded: _tool_end,
    RunInterrupted: _interrupt,
    RunResumed: _resume,
    ContextCompacted: _compaction,
    CheckpointSaved: _checkpoint,
    CircuitStateChanged: _circuit,
    RetryScheduled: _retry,
    HandoffOccurred: _handoff,
}
