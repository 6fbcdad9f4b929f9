"""The tool step: the calls of one turn, each as a span, through the tool pipeline.

A call is decided first (the approval layer, :func:`._tool_layers.decide`): it may pause the run (it is
added to ``state.pending`` and has no span), be denied, be answered with an external result, or run.
A call that runs is one :class:`Stage` (``on_tool_call_start``, exactly one ``on_tool_call_end``) around
the breaker, bulkhead and invoke layers. Whatever happens inside, the model gets a tool message it can
act on (an error's message included), bounded by ``max_result_chars`` (a result's text: its images go on
whole), and the run goes on; only cancellation leaves the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from . import _durable
from ._approval import Decision, _granted
from ._events import Interruption, ToolCallEnded, ToolCallStarted
from ._messages import Message, ToolCall, ToolText
from ._segment import Segment
from ._span import Stage
from ._text import bounded, describe_error, safe_str
from ._tool_layers import Invocation, decide, denial, run_layers
from .exceptions import ApprovalRequired, ToolError, UnknownToolError

__all__ = ["call_tools"]


async def call_tools(seg: Segment, calls: Sequence[ToolCall]) -> None:
    """Run tool calls concurrently; each result lands in ``state.turn_results`` (or the call pauses)."""
    if len(calls) == 1:
        await call_tool(seg, calls[0])
    elif calls:
        await asyncio.gather(*(call_tool(seg, call) for call in calls))


async def call_tool(seg: Segment, call: ToolCall) -> None:
    """One tool call. Errors become a tool message the model can act on; a call that needs a person (or
    the caller) is added to ``state.pending`` instead."""
    state, d = seg.state, seg.d
    tool = seg.ctx.tools.get(call.name)
    decision: Decision | None = None
    if tool is not None and (
        not tool.plain or d.approve_tool_call or seg.decisions or seg.external_results or state.approved_tools
    ):
        decision = await decide(seg, tool, call)
        if decision.action == "pause":
            _pause(seg, call, decision.text, decision.kind)
            return
    arguments = decision.arguments if decision is not None and decision.arguments is not None else call.arguments
    limit = tool.max_result_chars if tool is not None and tool.max_result_chars is not None else None
    if limit is None:
        limit = seg.config.max_result_chars
    span = seg.span.child()
    content = ""
    reason: str | None = None
    try:
        with Stage(span, ToolCallStarted, ToolCallEnded, observer=seg.stream) as stage:
            if stage.listened:
                stage.start((call.name, call.id), (arguments,))  # ToolCallStarted: tool, call_id; arguments
            try:
                if tool is None:
                    raise UnknownToolError(
                        f"there is no tool {call.name!r}; the tools are: {', '.join(seg.ctx.tools) or 'none'}",
                        tool=call.name,
                    )
                if decision is None or decision.action == "run":
                    granted = _granted.set(decision.granted) if decision is not None else None
                    try:
                        content = await run_layers(Invocation(seg, tool, arguments, span))
                    finally:
                        if granted is not None:
                            _granted.reset(granted)
                elif decision.action == "deny":
                    content, stage.status = denial(call.name, decision.text), "denied"
                else:  # "result": the caller ran it
                    content = decision.text
            except ApprovalRequired as exc:
                if decision is not None and decision.granted:  # approved already: asking again would never end
                    stage.error = exc
                    stage.status = "error"
                    again = safe_str(exc.reason)
                    content = f"tool {call.name!r} asked for approval again after it was approved: {again}"
                else:
                    stage.status, content = "interrupted", safe_str(exc.reason)
                    _pause(seg, call, content, "approval")
            except ToolError as exc:
                stage.status, stage.error, content = exc.status, exc, safe_str(exc)
                reason = getattr(exc, "reason", None)
            except Exception as exc:
                stage.status, stage.error = "error", exc
                content = f"tool {call.name!r} failed: {describe_error(exc)}"
            if len(content) > limit:
                what = "tool result" if stage.status == "ok" else "error message"
                # A result with images (ToolText) is cut in its text only: the images go on whole.
                content = content.bounded(limit, what) if type(content) is ToolText else bounded(content, limit, what)
            if stage.listened:
                stage.end(content, reason)  # ToolCallEnded, after duration_s: result, reason
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the telemetry of the call itself failed: the stage still ended once
        content = bounded(f"tool {call.name!r} failed: {describe_error(exc)}", limit, "error message")
        status = "error"
    else:
        status = stage.status
    if status == "interrupted":
        return
    state.turn_results[call.id] = Message.tool(call.id, call.name, content, is_error=status != "ok")
    await _durable.step(seg)


def _pause(seg: Segment, call: ToolCall, reason: str, kind: str) -> None:
    seg.state.pending.append(Interruption(call.id, call.name, call.arguments, reason, kind))  # type: ignore[arg-type, union-attr]
