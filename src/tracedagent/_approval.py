"""Approvals: the decisions on tool calls that need a person, and how they are given back.

How a call is decided is the approval layer of the tool pipeline (:mod:`._tool_layers`).

A call pauses the run when its tool is external (the caller runs it), when the person's decision is
still needed (``needs_approval``, the ``approve_tool_call`` decider answering ``interrupt``), or when the
tool raises :class:`ApprovalRequired`. ``agent.resume(run_id, approvals={call_id: ...})`` gives the
decision: ``True`` / ``Approval.allow(arguments=..., remember=...)`` or ``False`` /
``Approval.deny(reason)``. ``remember=True`` approves the tool for the rest of the run.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .exceptions import UserError

__all__ = ["RUN", "Approval", "Decision", "approval_granted", "as_approval", "denial", "edited", "from_answer"]

_granted: ContextVar[bool] = ContextVar("tracedagent_approval_granted", default=False)


def approval_granted() -> bool:
    """Inside a tool: True when a person (or a decider, or a remembered approval) approved this call."""
    return _granted.get()


@dataclass(frozen=True, slots=True)
class Approval:
    """A decision on an interrupted tool call."""

    approved: bool
    arguments: dict[str, Any] | str | None = None
    reason: str | None = None
    remember: bool = False

    @classmethod
    def allow(cls, arguments: dict[str, Any] | str | None = None, *, remember: bool = False) -> Approval:
        """Approve the call, optionally with edited ``arguments``; ``remember`` approves this tool for the
        rest of the run."""
        return cls(True, arguments, None, remember)

    @classmethod
    def deny(cls, reason: str | None = None) -> Approval:
        """Deny the call; the model is told (with ``reason``) and the call ends with status ``denied``."""
        return cls(False, None, reason)


def as_approval(call_id: str, value: Any) -> Approval:
    """A decision from what the caller passed: an :class:`Approval`, a bool, or ``"allow"``/``"deny"``."""
    if isinstance(value, Approval):
        return value
    if value is True or value in ("allow", "approve", "approved"):
        return Approval(True)
    if value is False or value in ("deny", "denied", "reject"):
        return Approval(False)
    raise UserError(
        f"the decision for call {call_id!r} must be True, False, 'allow', 'deny', Approval.allow(...) or "
        f"Approval.deny(...), not {value!r}"
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with one tool call: ``run`` it (maybe with edited ``arguments``), ``deny`` it,
    ``pause`` the run for it, or answer it with an external ``result``."""

    action: str
    arguments: str | None = None
    granted: bool = False
    text: str = ""
    kind: str = "approval"


RUN = Decision("run")


def edited(arguments: dict[str, Any] | str | None) -> str | None:
    if arguments is None or isinstance(arguments, str):
        return arguments
    return json.dumps(arguments)


def from_answer(call_id: str, answer: Any) -> Decision | None:
    """Map a decider's answer; None lets the next rule decide."""
    if answer is None:
        return None
    if isinstance(answer, str) and answer in ("interrupt", "ask"):
        return Decision("pause", text="the approve_tool_call hook asked for a person's decision")
    approval = as_approval(call_id, answer)
    if approval.approved:
        return Decision("run", edited(approval.arguments), granted=True)
    return Decision("deny", text=approval.reason or "")


def denial(tool: str, reason: str) -> str:
    """What the model is told about a denied call."""
    because = f": {reason}" if reason else ""
    return (
        f"This call to tool {tool!r} was denied{because}. Do not call it again with the same arguments; "
        "continue without it or ask the user."
    )
