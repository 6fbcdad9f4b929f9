"""What each LangSmith run says: inputs, outputs, errors, metadata and events, built from events.

Pure functions, run on the export worker. Message content (the run's input and output, the messages a
model sees and its answer, tool arguments and results, the arguments and reason of an interruption) and
error *messages* (which often quote content) are included only when ``capture`` is true; everything else
(counts, statuses, token usage, error types, names, ids) always is. Messages are written in the OpenAI
chat format, one of the formats LangSmith renders as a conversation.
"""

from __future__ import annotations

import json
from typing import Any

from tracedagent import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
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
    Usage,
)

from ._ids import time_of

__all__ = [
    "error_text",
    "model_inputs",
    "model_end_metadata",
    "model_metadata",
    "model_outputs",
    "openai_message",
    "run_event",
    "run_inputs",
    "run_outputs",
    "tool_inputs",
    "tool_outputs",
    "usage_metadata",
]

JSON = dict[str, Any]

#: Statuses that mark a LangSmith run as failed (``denied`` and ``interrupted`` are decisions, not errors).
ERROR_STATUSES = frozenset({"error", "failed", "timeout", "rejected", "circuit_open", "cancelled"})


def openai_message(message: Message) -> JSON:
    """A message in the OpenAI chat format."""
    data: JSON = {"role": message.role, "content": message.content}
    if message.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        data["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        data["name"] = message.name
    if message.thinking is not None:
        data["reasoning_content"] = message.thinking
    return data


def error_text(error: ErrorInfo | None, status: str, capture: bool) -> str | None:
    """The run's ``error``: the exception's type (with its message only under capture), or the status
    for a failure without an exception (a cancellation, a refusal); None when the run did not fail."""
    if error is not None:
        return f"{error.type}: {error.message}" if capture and error.message else error.type
    return status if status in ERROR_STATUSES else None


def usage_metadata(usage: Usage) -> JSON:
    """LangSmith's ``usage_metadata`` of one model call, with its costs (``input_cost``, ``output_cost``,
    ``total_cost``, in US dollars, as the SDK's ``UsageMetadata`` has them) when the model has a price.
    LangSmith adds them up to the trace; without them it prices the tokens from its own price map."""
    metadata: JSON = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "input_token_details": {"cache_read": usage.cache_read_tokens},
        "output_token_details": {"reasoning": usage.reasoning_tokens},
    }
    if usage.cost_usd is not None:
        output_cost = usage.output_cost_usd
        if output_cost is not None:
            metadata["input_cost"] = usage.input_cost_usd
            metadata["output_cost"] = output_cost
        metadata["total_cost"] = usage.cost_usd
    return metadata


def _usage_totals(usage: Usage) -> JSON:
    totals: JSON = usage.to_dict()
    totals["total_tokens"] = usage.total_tokens
    return totals


# ------------------------------------------------------------------------------------------- the run


def run_inputs(event: RunStarted, capture: bool) -> JSON:
    inputs: JSON = {"message_count": len(event.input)}
    if capture:
        inputs["messages"] = [openai_message(m) for m in event.input]
    return inputs


def run_outputs(event: RunEnded, capture: bool) -> JSON:
    outputs: JSON = {"status": event.status, "turns": event.turns, "usage": _usage_totals(event.usage)}
    if capture and event.output is not None:
        outputs["output"] = event.output
    return outputs


# ------------------------------------------------------------------------------------------ the model


def model_inputs(event: ModelCallStarted, capture: bool) -> JSON:
    inputs: JSON = {"message_count": len(event.messages), "tools": list(event.tools)}
    if capture:
        inputs["messages"] = [openai_message(m) for m in event.messages]
    return inputs


def model_metadata(event: ModelCallStarted | ModelCallEnded) -> JSON:
    """What LangSmith needs to price and filter the call (``ls_provider``, ``ls_model_name``)."""
    metadata: JSON = {"ls_provider": event.provider, "ls_model_name": event.model, "turn": event.turn}
    if event.purpose != "turn":
        metadata["purpose"] = event.purpose
    return metadata


def model_outputs(event: ModelCallEnded, capture: bool) -> JSON:
    outputs: JSON = {"usage_metadata": usage_metadata(event.usage)}
    if event.output is not None and event.output.tool_calls:
        outputs["tool_call_count"] = len(event.output.tool_calls)
    if capture and event.output is not None:
        outputs["choices"] = [
            {"index": 0, "message": openai_message(event.output), "finish_reason": event.finish_reason}
        ]
    return outputs


def model_end_metadata(event: ModelCallEnded) -> JSON:
    metadata: JSON = {"status": event.status, "usage_metadata": usage_metadata(event.usage)}
    if event.usage.estimated:
        metadata["tokens_estimated"] = True
    if event.finish_reason is not None:
        metadata["finish_reason"] = event.finish_reason
    if event.response_model is not None:
        metadata["response_model"] = event.response_model
    if event.time_to_first_token_s is not None:
        metadata["time_to_first_token_s"] = round(event.time_to_first_token_s, 6)
    return metadata


# ------------------------------------------------------------------------------------------- a tool


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def tool_inputs(call_id: str, arguments: str | None, capture: bool) -> JSON:
    """A tool run's inputs: the call id, and the arguments (parsed when they are JSON) under capture."""
    inputs: JSON = {"call_id": call_id}
    if capture and arguments is not None:
        inputs["arguments"] = _arguments(arguments)
    return inputs


def tool_outputs(event: ToolCallEnded, capture: bool) -> JSON:
    outputs: JSON = {"status": event.status}
    if event.reason is not None:
        outputs["reason"] = event.reason
    if capture and event.result is not None:
        outputs["output"] = event.result
    return outputs


# ------------------------------------------------------------------------------------------- events


def _event(name: str, timestamp_ns: int, kwargs: JSON) -> JSON:
    return {"name": name, "time": time_of(timestamp_ns).isoformat(), "kwargs": kwargs}


def _interrupt(event: RunInterrupted, capture: bool) -> JSON:
    items = []
    for interruption in event.interruptions:
        item: JSON = {"id": interruption.id, "tool": interruption.tool, "kind": interruption.kind}
        if capture:
            item["arguments"] = interruption.arguments
            item["reason"] = interruption.reason
        items.append(item)
    return {"interruptions": items}


def _resume(event: RunResumed, capture: bool) -> JSON:
    return {"previous_span_id": event.previous_span_id, "waited_s": round(event.waited_s, 6)}


def _compaction(event: ContextCompacted, capture: bool) -> JSON:
    return {
        "strategy": event.strategy,
        "tokens_before": event.tokens_before,
        "tokens_after": event.tokens_after,
        "messages_before": event.messages_before,
        "messages_after": event.messages_after,
        "estimated": event.estimated,
    }


def _checkpoint(event: CheckpointSaved, capture: bool) -> JSON:
    return {"store": event.store, "step": event.step, "bytes": event.bytes, "duration_s": round(event.duration_s, 6)}


def _circuit(event: CircuitStateChanged, capture: bool) -> JSON:
    return {"tool": event.tool, "old": event.old, "new": event.new, "reason": event.reason}


def _retry(event: RetryScheduled, capture: bool) -> JSON:
    kwargs: JSON = {"target": event.target, "kind": event.kind, "attempt": event.attempt, "delay_s": event.delay_s}
    if event.error is not None:
        kwargs["error_type"] = event.error.type
        if capture:
            kwargs["error_message"] = event.error.message
    return kwargs


def _handoff(event: HandoffOccurred, capture: bool) -> JSON:
    return {"from_agent": event.from_agent, "to_agent": event.to_agent}


_EVENTS: dict[type, tuple[str, Any]] = {
    RunInterrupted: ("interrupt", _interrupt),
    RunResumed: ("resume", _resume),
    ContextCompacted: ("compaction", _compaction),
    CheckpointSaved: ("checkpoint", _checkpoint),
    CircuitStateChanged: ("circuit_change", _circuit),
    RetryScheduled: ("retry", _retry),
    HandoffOccurred: ("handoff", _handoff),
}


def run_event(
    event: RunInterrupted
    | RunResumed
    | ContextCompacted
    | CheckpointSaved
    | CircuitStateChanged
    | RetryScheduled
    | HandoffOccurred,
    capture: bool,
) -> JSON:
    """The LangSmith run event (``{"name", "time", "kwargs"}``) for a point-in-time tracedagent event:
    ``interrupt``, ``resume``, ``compaction``, ``checkpoint``, ``circuit_change``, ``retry`` or ``handoff``."""
    name, describe = _EVENTS[type(event)]
    return _event(name, event.timestamp_ns, describe(event, capture))
