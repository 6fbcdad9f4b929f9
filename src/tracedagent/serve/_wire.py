"""What the server sends: stream events, span events and run results as JSON, and SSE framing.

An SSE message is ``event: <type>`` and ``data: <json>``; the type is the event class in snake case
(``text_delta``, ``tool_call_started``, ``model_call_ended``, ``final_result``...). Span events carry the
ids of their span, so a client can draw the run's trace; the conversation a model call sees (``messages``,
``input``) is left out of them, because it grows with every call and the client has it already.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from pydantic_core import to_json

from .._events import ErrorInfo, Interruption
from .._messages import Message, ToolCall, Usage
from .._result import RunResult
from .._stream import FinalResult

__all__ = [
    "KEEPALIVE",
    "dumps",
    "error_json",
    "event_json",
    "event_type",
    "result_json",
    "sse",
    "traceparent_of",
    "usage_json",
]

#: An SSE comment: proxies and clients see traffic while a run is quiet.
KEEPALIVE = b": keep-alive\n\n"

_LEFT_OUT = frozenset({"messages", "input"})
_names: dict[type, str] = {}


def event_type(event: object) -> str:
    """``ToolCallStarted`` -> ``tool_call_started``."""
    cls = type(event)
    name = _names.get(cls)
    if name is None:
        name = _names[cls] = re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()
    return name


def usage_json(usage: Usage) -> dict[str, Any]:
    data = usage.to_dict()
    data["total_tokens"] = usage.total_tokens
    # Cost where the core knows it (Usage.cost_usd, from genai-prices); None when the price is unknown.
    data["cost_usd"] = getattr(usage, "cost_usd", None)
    return data


def _value(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Usage):
        return usage_json(value)
    if isinstance(value, Message | ToolCall):
        return value.to_dict()
    if isinstance(value, ErrorInfo):
        return {"type": value.type, "message": value.message}
    if isinstance(value, Interruption):
        return interruption_json(value)
    if isinstance(value, RunResult):
        return result_json(value)
    if isinstance(value, tuple | list):
        return [_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def interruption_json(call: Interruption) -> dict[str, Any]:
    return {"id": call.id, "tool": call.tool, "arguments": call.arguments, "reason": call.reason, "kind": call.kind}


def event_json(event: object) -> dict[str, Any]:
    """An event's fields as JSON values (a span event without the conversation it carries)."""
    if isinstance(event, FinalResult):
        return result_json(event.result)
    return {
        f.name: _value(getattr(event, f.name))
        for f in dataclasses.fields(event)  # type: ignore[arg-type]
        if f.name not in _LEFT_OUT
    }


def result_json(result: RunResult, error: BaseException | None = None) -> dict[str, Any]:
    """A :class:`RunResult` as the JSON a client gets (``error`` for a failed run)."""
    data: dict[str, Any] = {
        "run_id": result.run_id,
        "trace_id": result.trace_id,
        "status": result.status,
        "output": _value(result.output),
        "usage": usage_json(result.usage),
        "interruptions": [interruption_json(i) for i in result.interruptions],
        "turns": result.turns,
        "duration_s": result.duration_s,
        "messages": [m.to_dict() for m in result.messages],
    }
    if error is not None:
        data["error"] = {"type": type(error).__name__, "message": str(error)}
    return data


def error_json(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **extra}}


def sse(kind: str, data: Any) -> bytes:
    """One SSE message. JSON never holds a raw newline, so ``data`` is one line."""
    return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON (pydantic-core's encoder: a few times faster than ``json.dumps`` with
    ``ensure_ascii=False``); a value JSON has no form for is written as its ``str()``."""
    return to_json(data, fallback=str)


def traceparent_of(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"
