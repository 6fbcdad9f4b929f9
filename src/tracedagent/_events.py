"""The typed events a run emits, one class per hook.

Every event is a frozen, slotted dataclass with the ids of its span: ``run_id`` (the same across
interrupt and resume), ``trace_id`` (32 hex), ``span_id`` (16 hex) and ``parent_span_id``, the ``agent``
name and a wall-clock ``timestamp_ns``. A start event and its end event share ``span_id``; end events
carry ``duration_s``, ``status`` and ``error``.

Content fields (``input``, ``messages``, ``output``, ``arguments``, ``result``) hold what the user and the
model said. Sinks must not export them unless content capture is on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from ._fastinit import fast_init
from ._messages import Message, Usage
from ._text import MAX_ERROR_CHARS, bounded, safe_str

__all__ = [
    "CheckpointSaved",
    "CircuitStateChanged",
    "ContextCompacted",
    "ErrorInfo",
    "Event",
    "HandoffOccurred",
    "Interruption",
    "ModelCallEnded",
    "ModelCallStarted",
    "RetryScheduled",
    "RunEnded",
    "RunInterrupted",
    "RunResumed",
    "RunStarted",
    "ToolCallEnded",
    "ToolCallStarted",
]

_NO_USAGE = Usage()  # immutable, so one shared default is safe

RunStatus = Literal["completed", "interrupted", "failed", "cancelled"]
ModelCallStatus = Literal["ok", "error", "cancelled"]
ToolCallStatus = Literal["ok", "error", "timeout", "rejected", "circuit_open", "denied", "cancelled", "interrupted"]


@fast_init
@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What went wrong: the exception's type name and its message."""

    type: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """The type and message of ``exc`` (at most ``MAX_ERROR_CHARS``), even if its ``__str__`` raises."""
        return cls(type(exc).__name__, bounded(safe_str(exc), MAX_ERROR_CHARS, "error message"))


@fast_init
@dataclass(frozen=True, slots=True)
class Interruption:
    """A tool call waiting for a person (approval) or for the caller (an external tool's result)."""

    id: str
    tool: str
    arguments: str
    reason: str
    kind: Literal["approval", "external"] = "approval"


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Fields every event carries."""

    run_id: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    agent: str
    timestamp_ns: int

    #: The hook that delivers this event (a class attribute, not a field).
    hook: ClassVar[str] = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    """A run begins (not on resume). ``span_id`` is the first segment's span."""

    hook: ClassVar[str] = "on_run_start"
    model: str = ""
    provider: str = ""
    input: tuple[Message, ...] = ()
    metadata: dict[str, Any] | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnded(Event):
    """A run segment ends, whatever the reason; ``status`` is ``interrupted`` if it pauses."""

    hook: ClassVar[str] = "on_run_end"
    status: RunStatus = "completed"
    error: ErrorInfo | None = None
    duration_s: float = 0.0
    usage: Usage = _NO_USAGE
    turns: int = 0
    output: str | None = None
    #: Answers in this segment that did not validate against the run's ``output_type``.
    output_validation_failures: int = 0


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCallStarted(Event):
    """A model request is about to be sent. ``messages`` is what the model will see."""

    hook: ClassVar[str] = "on_model_call_start"
    model: str = ""
    provider: str = ""
    turn: int = 0
    purpose: Literal["turn", "compaction", "output_retry"] = "turn"
    messages: tuple[Message, ...] = ()
    tools: tuple[str, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ModelCallEnded(Event):
    """A model request finished: usage, finish reason, response model and time to first token."""

    hook: ClassVar[str] = "on_model_call_end"
    model: str = ""
    provider: str = ""
    turn: int = 0
    purpose: Literal["turn", "compaction", "output_retry"] = "turn"
    status: ModelCallStatus = "ok"
    error: ErrorInfo | None = None
    duration_s: float = 0.0
    usage: Usage = _NO_USAGE
    finish_reason: str | None = None
    response_model: str | None = None
    time_to_first_token_s: float | None = None
    output: Message | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted(Event):
    """A tool call begins. ``arguments`` is the JSON text the model sent."""

    hook: ClassVar[str] = "on_tool_call_start"
    tool: str = ""
    call_id: str = ""
    arguments: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallEnded(Event):
    """A tool call ends: ``ok``, ``error``, ``timeout``, ``rejected``, ``circuit_open``, ``denied``,
    ``cancelled``, or ``interrupted`` (the tool raised ``ApprovalRequired``; it runs again on resume).
    ``result`` is the text the model gets back."""

    hook: ClassVar[str] = "on_tool_call_end"
    tool: str = ""
    call_id: str = ""
    status: ToolCallStatus = "ok"
    error: ErrorInfo | None = None
    duration_s: float = 0.0
    result: str | None = None
    #: Why a refusal happened: ``circuit_open``, ``queue_full``, ``queue_timeout`` (None otherwise).
    reason: str | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RunInterrupted(Event):
    """A run pauses for approval or for an external tool's result."""

    hook: ClassVar[str] = "on_interrupt"
    interruptions: tuple[Interruption, ...] = ()


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RunResumed(Event):
    """A paused run goes on, maybe in another process. ``span_id`` is the new segment's span;
    ``previous_span_id`` the segment that paused; ``waited_s`` how long the run was paused;
    ``run_started_ns`` when the run began (its ``RunStarted`` timestamp; None if unknown)."""

    hook: ClassVar[str] = "on_resume"
    previous_span_id: str | None = None
    waited_s: float = 0.0
    run_started_ns: int | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ContextCompacted(Event):
    """The context was compacted before a model call."""

    hook: ClassVar[str] = "on_compaction"
    strategy: str = ""
    tokens_before: int = 0
    tokens_after: int = 0
    messages_before: int = 0
    messages_after: int = 0
    estimated: bool = True


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointSaved(Event):
    """The run's state was persisted."""

    hook: ClassVar[str] = "on_checkpoint"
    bytes: int = 0
    duration_s: float = 0.0
    store: str = ""
    step: int = 0


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(Event):
    """A tool's circuit breaker changed state (``closed``, ``half_open``, ``open``)."""

    hook: ClassVar[str] = "on_circuit_change"
    tool: str = ""
    old: str = ""
    new: str = ""
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RetryScheduled(Event):
    """A model or tool call failed and will be tried again after ``delay_s``."""

    hook: ClassVar[str] = "on_retry"
    target: str = ""
    kind: Literal["model", "tool"] = "model"
    attempt: int = 0
    delay_s: float = 0.0
    error: ErrorInfo | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffOccurred(Event):
    """The run passed from ``from_agent`` to ``to_agent`` (a ``transfer_to_{name}`` tool call), and goes on
    with the other agent's instructions, tools and model: the same run, trace and segment. ``span_id`` is
    the segment's span; ``agent`` is the agent handing off (``from_agent``)."""

    hook: ClassVar[str] = "on_handoff"
    from_agent: str = ""
    to_agent: str = ""
