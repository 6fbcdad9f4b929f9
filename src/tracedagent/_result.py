"""``RunResult``: what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Literal

from typing_extensions import TypeVar

from ._events import Interruption
from ._messages import Message, Usage

__all__ = ["OutputT", "RunResult", "RunStatus"]

RunStatus = Literal["completed", "interrupted", "failed", "cancelled"]

#: The type of a run's output: ``str`` for an agent without ``output_type``, else that type. A bare
#: ``RunResult`` or ``Agent`` annotation means any output (``Any``), as before they were generic.
OutputT = TypeVar("OutputT", default=Any)


@dataclass(slots=True)
class RunResult(Generic[OutputT]):
    """What a run did: its ``output`` (the text, or the validated ``output_type`` value; None when the
    run did not complete), ``status``, ids, ``usage`` and the whole conversation.

    Type checkers see ``RunResult[str]`` from an agent without ``output_type`` and ``RunResult[T]`` from
    ``Agent(..., output_type=T)`` or ``run(..., output_type=T)``."""

    output: OutputT | None
    status: RunStatus
    run_id: str
    trace_id: str
    usage: Usage
    messages: list[Message]
    interruptions: list[Interruption] = field(default_factory=list)
    turns: int = 0
    duration_s: float = 0.0
