"""The ``Model`` protocol: how the run loop talks to any model, always streaming.

A model's ``stream(request)`` is an async iterator of parts: any number of :class:`TextDelta` and
:class:`ThinkingDelta` as they arrive, then exactly one :class:`ModelResponse` (the whole assistant
message, usage, finish reason). The loop times the first part as the time to first token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ._fastinit import fast_init
from ._ids import SpanContext
from ._messages import Message, Usage
from ._tools import ToolSpec

__all__ = [
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelStreamPart",
    "OutputRequest",
    "TextDelta",
    "ThinkingDelta",
]


@fast_init
@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as the model streams it."""

    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """A piece of the model's reasoning, where the provider streams it."""

    text: str


@fast_init
@dataclass(frozen=True, slots=True)
class ModelResponse:
    """The end of a model call: the assistant message and what the provider reported.

    ``usage=None`` means the provider reported none; the loop then estimates it and marks it estimated.
    """

    message: Message
    usage: Usage | None = None
    finish_reason: str | None = None
    response_model: str | None = None


ModelStreamPart = TextDelta | ThinkingDelta | ModelResponse


@dataclass(frozen=True, slots=True)
class OutputRequest:
    """The structured output a request asks for (``ModelRequest.output``), from the run's ``output_type``.

    ``schema`` is a JSON Schema whose root is always an object (a list or scalar type is wrapped as
    ``{"response": ...}``); ``strict`` says it meets OpenAI's strict-mode rules. With ``mode="native"``
    a provider with a native mode (``native_output = True`` on the model) answers with the JSON as the
    message's text: OpenAI through ``response_format``, Anthropic by forcing a tool named ``name``
    whose input becomes the text. With ``mode="tool"`` the request's ``tools`` hold a tool ``name`` with
    this schema, and the model calls it with the output as its arguments.
    """

    name: str
    description: str
    schema: dict[str, Any]
    strict: bool = False
    mode: Literal["native", "tool"] = "native"


@fast_init
@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a model call needs. ``span`` is the model call's span: providers send it as the W3C
    ``traceparent`` header (and the run's ``tracestate``, if it has one) so a traced model server joins
    the trace. A provider that retries calls
    ``on_retry(attempt, delay_s, error)`` before each retry, which fires the ``on_retry`` hook."""

    messages: Sequence[Message]
    instructions: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    span: SpanContext | None = None
    run_id: str = ""
    agent: str = ""
    purpose: str = "turn"
    on_retry: Callable[[int, float, BaseException], None] | None = None
    #: The structured output asked for, or None for a text answer.
    output: OutputRequest | None = None


@runtime_checkable
class Model(Protocol):
    """What the agent needs from a model. ``name`` is the requested model (``gpt-4o-mini``);
    ``provider`` the GenAI provider name (``openai``, ``anthropic``, ``scripted``).

    A model may also have a ``price_as`` attribute (``"openai:gpt-4o-mini"``): its usage is then priced
    as that model's instead of by its own provider and name (``Usage.cost_usd``)."""

    @property
    def name(self) -> str: ...

    @property
    def provider(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
        """Stream the answer to ``request``: deltas, then one :class:`ModelResponse`."""
        ...
