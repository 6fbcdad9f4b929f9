"""What ``agent.stream()`` yields, in order as the run goes.

* :class:`TextDelta` / :class:`ThinkingDelta`: pieces of the answer and of the reasoning;
* :class:`ToolCallStarted` / :class:`ToolCallEnded`: the same events the hooks get;
* :class:`UsageUpdated`: after each model call, its usage and the run's total so far;
* :class:`PartialOutput`: with structured output, the output validated so far as the model writes it;
* :class:`RunInterrupted`: the run paused for approval or external input;
* :class:`FinalResult`: last, the :class:`RunResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._events import RunInterrupted, ToolCallEnded, ToolCallStarted
from ._fastinit import fast_init
from ._messages import Usage
from ._model import TextDelta, ThinkingDelta

if TYPE_CHECKING:
    from ._result import RunResult

__all__ = ["FinalResult", "PartialOutput", "StreamEvent", "UsageUpdated"]


@fast_init
@dataclass(frozen=True, slots=True)
class UsageUpdated:
    """A model call finished: its ``usage`` and the run's ``total`` so far."""

    usage: Usage
    total: Usage


@fast_init
@dataclass(frozen=True, slots=True)
class PartialOutput:
    """The structured output so far, validated as far as it goes: a list or TypedDict grows item by item,
    a pydantic model or dataclass appears once its required fields have arrived. Only a new value is
    sent. ``FinalResult.result.output`` is the answer validated whole."""

    output: Any


@fast_init
@dataclass(frozen=True, slots=True)
class FinalResult:
    """The run is over (completed or interrupted); ``result`` is what ``run()`` would return."""

    result: RunResult


StreamEvent = (
    TextDelta
    | ThinkingDelta
    | ToolCallStarted
    | ToolCallEnded
    | UsageUpdated
    | PartialOutput
    | RunInterrupted
    | FinalResult
)
