"""The tool pipeline: the layers every tool call passes, outermost first.

1. **approval** (:func:`decide`): an external result, an external tool's pause, a person's decision
   given to ``resume``, a remembered approval, the ``approve_tool_call`` decider, ``needs_approval``.
   It runs before the call's span opens: a call that pauses has no span until it runs.
2. **breaker** (:func:`breaker_layer`): the tool's circuit breaker admits the call or refuses it, and
   records the outcome of the whole call (refusals and invalid arguments do not count).
3. **bulkhead** (:func:`bulkhead_layer`): a slot among ``max_concurrency``, or a place in the queue.
4. **invoke**: :meth:`Tool.invoke`, which validates the arguments and runs the function under the
   tool's ``timeout`` (over all attempts) and ``retries``.

Each layer after the approval takes the call and the next layer; :func:`run_layers` composes them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any

from ._approval import RUN, Decision, denial, edited, from_answer
from ._dispatch import DeciderFailed
from ._events import CircuitStateChanged, ErrorInfo, RetryScheduled
from ._messages import ToolCall
from ._segment import Segment
from ._span import Span
from ._tools import SlotLease, Tool, ToolCallRequest, slot_lease
from .exceptions import ApprovalRequired, BackpressureRejected, CircuitOpen, ToolArgumentsError, UserError
from .resilience import Transition

__all__ = ["Invocation", "decide", "denial", "run_layers"]


class Invocation:
    """One tool call going through the layers."""

    __slots__ = ("arguments", "seg", "span", "tool")

    def __init__(self, seg: Segment, tool: Tool, arguments: str, span: Span) -> None:
        self.seg = seg
        self.tool = tool
        self.arguments = arguments
        self.span = span


# --------------------------------------------------------------------------------------- approval


async def decide(seg: Segment, tool: Tool, call: ToolCall) -> Decision:
    """Decide a call, in this order: a result the caller gave (external tools), an external tool's pause,
    the person's decision given to ``resume``, a remembered approval, the ``approve_tool_call`` hook,
    the tool's ``needs_approval``. A decider or predicate that raises fails closed: the call pauses for
    a person, and the interruption says why."""
    state = seg.state
    if call.id in seg.external_results:
        return Decision("result", text=seg.external_results.pop(call.id))
    if tool.external:
        return Decision("pause", text=f"external tool {tool.name!r}: the caller runs it", kind="external")
    given = seg.decisions.pop(call.id, None)
    if given is not None:
        if not given.approved:
            return Decision("deny", text=given.reason or "")
        if given.remember:
            state.approved_tools.add(tool.name)  # type: ignore[union-attr]  # a live state holds a set
        return Decision("run", edited(given.arguments), granted=True)
    if tool.name in state.approved_tools:
        return Decision("run", granted=True)
    arguments: dict[str, Any] | None = None
    if seg.d.approve_tool_call or callable(tool.needs_approval):
        try:
            arguments = tool.validate(call.arguments)
        except ToolArgumentsError:
            return RUN  # the call fails its validation when it runs; nothing to approve
    if seg.d.approve_tool_call:
        assert arguments is not None
        request = ToolCallRequest(tool.name, call.id, dict(arguments), state.run_id, seg.config.name, call.arguments)
        try:
            answered = from_answer(call.id, await seg.d.decide("approve_tool_call", call=request))
        except DeciderFailed as failed:
            return Decision(
                "pause",
                text=f"{failed} ({type(failed.error).__name__}), so the call waits for a person's decision",
            )
        except UserError as exc:  # an answer we cannot read: ask a person rather than guess
            answered = Decision("pause", text=f"the approve_tool_call hook gave an unreadable answer ({exc})")
        if answered is not None:
            return answered
    needs = tool.needs_approval
    if callable(needs):
        assert arguments is not None
        try:
            needs = bool(needs(arguments))
        except Exception as exc:  # a broken predicate must not let the call through unchecked
            return Decision("pause", text=f"needs_approval of tool {tool.name!r} raised {type(exc).__name__}")
    if needs:
        return Decision("pause", text=f"tool {tool.name!r} needs approval")
    return RUN


# ---------------------------------------------------------------------------------------- breaker


async def breaker_layer(call: Invocation, next: Callable[[Invocation], Awaitable[str]]) -> str:
    breaker = call.tool.breaker
    if breaker is None:
        return await next(call)
    tool = call.tool
    admission = await breaker.abefore_call() if breaker.remote else breaker.before_call()
    if admission.transition is not None:
        _circuit_changed(call.span, tool.name, admission.transition)
    if not admission.allowed:
        when = (  # half-open with every probe slot taken: no wait to give, the probes decide
            f"is paused for {math.ceil(admission.retry_in)}s more"
            if admission.retry_in > 0
            else "is being tested by a probe call; try again shortly"
        )
        raise CircuitOpen(
            f"tool {tool.name!r} refused by its circuit breaker: it failed repeatedly and {when}; answer "
            "without it or try another tool",
            tool=tool.name,
            retry_in=admission.retry_in,
        )
    failed: bool | None = None
    try:
        content = await next(call)
        failed = False
        return content
    except (ToolArgumentsError, BackpressureRejected, ApprovalRequired):  # not the tool failing
        raise
    except Exception as exc:
        failed = True if breaker.counts(exc) else None
        raise
    finally:
        if failed is None:
            if admission.probe:
                await breaker.arelease_probe() if breaker.remote else breaker.release_probe()
        else:
            transition = (
                await breaker.arecord(failed, admission.probe)
                if breaker.remote
                else breaker.record(failed, admission.probe)
            )
            if transition is not None:
                _circuit_changed(call.span, tool.name, transition)


def _circuit_changed(span: Span, tool: str, transition: Transition) -> None:
    span.emit(CircuitStateChanged, tool=tool, old=transition.old, new=transition.new, reason=transition.reason)


# --------------------------------------------------------------------------------------- bulkhead


async def bulkhead_layer(call: Invocation, next: Callable[[Invocation], Awaitable[str]]) -> str:
    tool = call.tool
    bulkhead = tool.bulkhead
    await bulkhead.acquire()
    # A sync tool's thread that outlives the call (its timeout) keeps a local slot until it ends.
    lease = SlotLease(bulkhead) if not tool.is_async and not bulkhead.remote else None
    token = slot_lease.set(lease) if lease is not None else None
    try:
        return await next(call)
    finally:
        if token is not None:
            slot_lease.reset(token)
        if bulkhead.remote:
            await bulkhead.arelease()
        elif lease is None or not lease.kept:
            bulkhead.release()


# ----------------------------------------------------------------------------------------- invoke


async def invoke_layer(call: Invocation) -> str:
    tool, span = call.tool, call.span
    on_retry = retry_notifier(span, "tool", tool.name) if tool.retry and span.d.on_retry else None
    return await tool.invoke(call.arguments, call.seg.ctx, on_retry)


def retry_notifier(span: Span, kind: str, target: str) -> Callable[[int, float, BaseException], None]:
    """A callback that fires ``on_retry`` for a retry of the model or tool call whose span is ``span``."""

    def notify(attempt: int, delay_s: float, error: BaseException) -> None:
        span.emit(RetryScheduled, target=target, kind=kind, attempt=attempt, delay_s=delay_s, error=ErrorInfo.of(error))

    return notify


# -------------------------------------------------------------------------------------- composing


#: The bulkhead layer with the invoke layer as its next (a partial: no frame of its own).
_after_breaker = functools.partial(bulkhead_layer, next=invoke_layer)


async def run_layers(call: Invocation) -> str:
    """Pass ``call`` through the breaker, the bulkhead and the invoke layer, in that order."""
    if call.tool.breaker is None:
        return await _after_breaker(call)
    return await breaker_layer(call, _after_breaker)
