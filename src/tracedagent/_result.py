"""``RunResult``: what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._events import Interruption
from ._messages import Message, Usage

__all__ = ["RunResult", "RunStatus"]

RunStatus = Literal["completed", "interrupted", "failed", "cancelled"]


@dataclass(slots=True)
class RunResult:
    """What a run did: its ``output`` text, ``status``, ids, ``usage`` and the whole conversation."""

    output: str | None
    status: RunStatus
    run_id: str
    trace_id: str
    usage: Usage
    messages: list[Message]
    interruptions: list[Interruption] = field(default_factory=list)
    turns: int = 0
    duration_s: float = 0.0
