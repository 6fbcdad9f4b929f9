"""Helpers shared by the OTLP plugin's tests: finding spans and reading their ids as the core writes them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tracedagent import Message, ModelRequest, ModelResponse, ToolCall, Usage
from tracedagent_otlp import OtlpTracer

#: The ``make_tracer`` fixture: ``make_tracer(**options) -> (tracer, in-memory exporter)``.
MakeTracer = Callable[..., tuple[OtlpTracer, InMemorySpanExporter]]


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def parent_id(span: ReadableSpan) -> str | None:
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(spans: Iterable[ReadableSpan], prefix: str) -> list[ReadableSpan]:
    """Spans whose name starts with ``prefix`` (``"invoke_agent"``, ``"chat"``, ``"execute_tool"``)."""
    return [s for s in spans if s.name.startswith(prefix)]


def one(spans: Iterable[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"expected one span named {name!r}, found {[s.name for s in spans]}"
    return found[0]


def by_id(spans: Iterable[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span_id(s): s for s in spans}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


def all_strings(spans: Iterable[ReadableSpan]) -> str:
    """Every string a span carries (name, attributes, event attributes, status), for content checks."""
    parts: list[str] = []

    def add(values: Any) -> None:
        for value in (values or {}).values():
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, (tuple, list)):
                parts.extend(str(v) for v in value)
            else:
                parts.append(str(value))

    for span in spans:
        parts.append(span.name)
        add(span.attributes)
        for event in span.events:
            add(event.attributes)
        for link in span.links:
            add(link.attributes)
        parts.append(span.status.description or "")
    return "\n".join(parts)


def answer(text: str, usage: Usage | None = None, finish: str = "stop", model: str | None = None) -> ModelResponse:
    return ModelResponse(Message.assistant(text), usage or Usage(1, 1, requests=1), finish, model)


def calls(*items: tuple[str, str, dict[str, Any]]) -> ModelResponse:
    """A response asking for tool calls: ``(id, name, arguments)`` each."""
    tool_calls = [ToolCall.of(i, name, arguments) for i, name, arguments in items]
    return ModelResponse(Message.assistant(None, tool_calls), Usage(1, 1, requests=1), "tool_calls", None)


def tool_results(messages: Sequence[Message]) -> list[Message]:
    """The tool messages since the last user message."""
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    return [m for m in messages[last_user:] if m.role == "tool"]


__all__ = [
    "MakeTracer",
    "ModelRequest",
    "all_strings",
    "answer",
    "attrs",
    "by_id",
    "calls",
    "event_names",
    "named",
    "one",
    "parent_id",
    "span_id",
    "tool_results",
    "trace_id",
]
