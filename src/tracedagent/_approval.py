"""Approvals: how a tool call that needs a person is decided, and how the decision is given back.

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
from typing import TYPE_CHECKING, Any

from ._tools import ToolCallRequest
from .exceptions import ToolArgumentsError, UserError

if TYPE_CHECKING:
    from ._context import RunContext
    from ._dispatch import Dispatcher
    from ._messages import ToolCall
    from ._tools import Tool

__all__ = ["Approval", "approval_granted"]

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


def _edited(arguments: dict[str, Any] | str | None) -> str | None:
    if arguments is None or isinstance(arguments, str):
        return arguments
    return json.dumps(arguments)


def _from_answer(call_id: str, answer: Any) -> Decision | None:
    """Map a decider's answer; None lets the next rule decide."""
    if answer is None:
        return None
    if isinstance(answer, str) and answer in ("interrupt", "ask"):
        return Decision("pause", text="the approve_tool_call hook asked for a person's decision")
    approval = as_approval(call_id, answer)
    if approval.approved:
        return Decision("run", _edited(approval.arguments), granted=True)
    return Decision("deny", text=approval.reason or "")


async def decide(ctx: RunContext, dispatcher: Dispatcher, tool: Tool, call: ToolCall) -> Decision:
    """Decide a call, in this order: a result the caller gave (external tools), an external tool's pause,
    the person's decision given to ``resume``, a remembered approval, the ``approve_tool_call`` hook,
    the tool's ``needs_approval``."""
    if call.id in ctx.external_results:
        return Decision("result", text=ctx.external_results.pop(call.id))
    if tool.external:
        return Decision("pause", text=f"external tool {tool.name!r}: the caller runs it", kind="external")
    decision = ctx.decisions.pop(call.id, None)
    if decision is not None:
        if not decision.approved:
            return Decision("deny", text=decision.reason or "")
        if decision.remember:
            ctx.approved_tools.add(tool.name)
        return Decision("run", _edited(decision.arguments), granted=True)
    if tool.name in ctx.approved_tools:
        return Decision("run", granted=True)
    if dispatcher.approve_tool_call:
        request = ToolCallRequest(tool.name, call.id, call.arguments, ctx.run_id, ctx.agent.name)
        try:
            answered = _from_answer(call.id, await dispatcher.decide("approve_tool_call", call=request))
        except UserError as exc:  # an answer we cannot read: ask a person rather than guess
            answered = Decision("pause", text=f"the approve_tool_call hook gave an unreadable answer ({exc})")
        if answered is not None:
            return answered
    needs = tool.needs_approval
    if callable(needs):
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentsError:
            return RUN  # the call fails its validation when it runs; nothing to approve
        try:
            needs = bool(needs(arguments))
        except Exception as exc:  # a broken predicate must not let the call through unchecked
            return Decision("pause", text=f"needs_approval of tool {tool.name!r} raised {type(exc).__name__}: {exc}")
    if needs:
        return Decision("pause", text=f"tool {tool.name!r} needs approval")
    return RUN


def denial(tool: str, reason: str) -> str:
    """What the model is told about a denied call."""
    because = f": {reason}" if reason else ""
    return (
        f"This call to tool {tool!r} was denied{because}. Do not call it again with the same arguments; "
        "continue without it or ask the user."
    )
