"""The run loop: call the model, run the tools it asks for, repeat until an answer.

Read :func:`execute` top to bottom. Each stage (:func:`_call_model`, :func:`_call_tools`,
:func:`_maybe_compact`) takes the run and returns a typed result; telemetry wraps each stage in one
place: a start event, the work, and exactly one end event in a ``finally``, so errors, timeouts and
cancellation all end their span. ``asyncio.CancelledError`` always propagates after the end events.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _durable
from ._approval import Decision, _granted, decide, denial
from ._checkpoint import Checkpoint, CheckpointStore
from ._compaction import CharEstimate, CompactionContext
from ._context import RunContext
from ._dispatch import Dispatcher
from ._events import (
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Interruption,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
)
from ._ids import SpanContext, _current, new_span_id
from ._messages import Message, ToolCall, Usage
from ._model import ModelRequest, ModelResponse
from ._stream import UsageUpdated
from ._tools import SlotLease, Tool, slot_lease
from .exceptions import (
    ApprovalRequired,
    BackpressureRejected,
    CircuitOpen,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelError,
    RunError,
    ToolArgumentsError,
    ToolError,
    TracedAgentError,
    UnknownToolError,
)
from .resilience import Transition

if TYPE_CHECKING:
    from ._agent import Agent, RunResult

_perf = time.perf_counter
_now_ns = time.time_ns
_ESTIMATE = CharEstimate()


class Run:
    """Per-call context of one run segment: the agent, its state, the dispatcher and the span ids."""

    __slots__ = (
        "agent",
        "ctx",
        "d",
        "every_step",
        "parent_span_id",
        "resumed",
        "span_id",
        "started",
        "store",
        "stream",
    )

    def __init__(
        self,
        agent: Agent,
        ctx: RunContext,
        dispatcher: Dispatcher,
        stream: Callable[[Any], None] | None,
        store: CheckpointStore,
        every_step: bool,
        resumed: Checkpoint | None = None,
    ) -> None:
        self.agent = agent
        self.ctx = ctx
        self.d = dispatcher
        self.stream = stream
        self.store = store
        self.every_step = every_step
        #: The checkpoint this segment resumes from (None for a new run).
        self.resumed = resumed
        if resumed is not None:
            self.parent_span_id = resumed.parent_span_id
        else:
            parent = _current.get()
            # A run started inside another run's tool joins that trace as a child of the tool's span.
            self.parent_span_id = parent.span_id if parent is not None and parent.trace_id == ctx.trace_id else None
        self.span_id = new_span_id()
        self.started = _perf()


async def execute(run: Run, output_of: Callable[[Run, str, str | None, BaseException | None], RunResult]) -> RunResult:
    """Run the loop as one segment: ``on_run_start`` (unless resuming), the turns, ``on_run_end``."""
    ctx, d, agent = run.ctx, run.d, run.agent
    if run.resumed is not None:
        _emit_resumed(run, run.resumed)
    else:
        ctx.started_ns = started_ns = _now_ns()
        if d.on_run_start:
            d.emit(
                d.on_run_start,
                RunStarted(
                    run_id=ctx.run_id,
                    trace_id=ctx.trace_id,
                    span_id=run.span_id,
                    parent_span_id=run.parent_span_id,
                    agent=agent.name,
                    timestamp_ns=started_ns,
                    model=agent.model.name,
                    provider=agent.model.provider,
                    input=tuple(ctx.messages),
                    metadata=ctx.metadata or None,
                ),
            )
    token = _current.set(SpanContext(ctx.trace_id, run.span_id))
    # A run started inside an approved tool must not see that approval as its own tools' approval.
    granted = _granted.set(False)
    status = "failed"
    error: BaseException | None = None
    output: str | None = None
    try:
        output = await _turns(run)
        if ctx.pending:
            status = "interrupted"
            await _durable.interrupt(run)
        else:
            status = "completed"
            await _durable.finish(run, status)
    except asyncio.CancelledError:
        status = "cancelled"
        await _durable.finish_quietly(run, status)
        raise
    except BaseException as exc:
        error = exc
        if status != "completed":
            try:
                await _durable.finish_quietly(run, "failed")
            except asyncio.CancelledError:  # cancelled while recording its failure: the caller sees that
                status, error = "cancelled", None
                raise
        raise
    finally:
        _current.reset(token)
        _granted.reset(granted)
        result = output_of(run, status, output, error)
        if isinstance(error, RunError) and error.result is None:
            error.result = result
        if d.on_run_end:
            d.emit(
                d.on_run_end,
                RunEnded(
                    run_id=ctx.run_id,
                    trace_id=ctx.trace_id,
                    span_id=run.span_id,
                    parent_span_id=run.parent_span_id,
                    agent=agent.name,
                    timestamp_ns=_now_ns(),
                    status=result.status,
                    error=ErrorInfo.of(error) if error is not None else None,
                    duration_s=_perf() - run.started,
                    usage=ctx.usage,
                    turns=ctx.turn,
                    output=output,
                ),
            )
    return result


def _emit_resumed(run: Run, checkpoint: Checkpoint) -> None:
    d, ctx = run.d, run.ctx
    if d.on_resume:
        now = _now_ns()
        d.emit(
            d.on_resume,
            RunResumed(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=run.span_id,
                parent_span_id=run.parent_span_id,
                agent=run.agent.name,
                timestamp_ns=now,
                previous_span_id=checkpoint.segment_span_id,
                waited_s=max(0.0, (now - (checkpoint.paused_at_ns or now)) / 1e9),
                run_started_ns=ctx.started_ns,
            ),
        )


async def _turns(run: Run) -> str | None:
    """The turns until an answer; None when the run pauses (``ctx.pending`` says for what)."""
    ctx, agent = run.ctx, run.agent
    while True:
        last = ctx.messages[-1]
        if last.role == "assistant" and last.tool_calls:
            # The turn in flight (new, resumed after a pause, or recovered after a crash): run the
            # calls that have no result yet, then hand every result back in the model's order.
            await _call_tools(run, [c for c in last.tool_calls if c.id not in ctx.turn_results])
            if ctx.pending:
                return None
            results = ctx.turn_results
            ctx.messages.extend(results[c.id] for c in last.tool_calls)
            results.clear()
            await _durable.step(run)
        if ctx.turn >= agent.max_turns:
            raise MaxTurnsExceeded(
                f"agent {agent.name!r} made {ctx.turn} model calls (max_turns={agent.max_turns}) and the model "
                f"was still calling tools; raise max_turns or change the instructions. The run's state is in "
                f".result (run_id {ctx.run_id})"
            )
        if agent.compaction is not None:
            await _maybe_compact(run)
        if agent.prepare_tools is not None:
            await agent.prepare_tools(ctx)
        response = await _call_model(run, ctx.messages)
        message = response.message
        ctx.messages.append(message)
        ctx.turn += 1
        if not message.tool_calls:
            return message.content or ""
        await _durable.step(run)


# ------------------------------------------------------------------------------------------- model


async def _call_model(
    run: Run, messages: Sequence[Message], purpose: str = "turn", instructions: str | None = None
) -> ModelResponse:
    """One model request as a span: stream it, collect the response, sum the usage."""
    ctx, d, model = run.ctx, run.d, run.agent.model
    # A snapshot: the run goes on appending to its history, and the request must not change under the model.
    messages = tuple(messages)
    span_id = new_span_id()
    tools = (
        tuple(
            t.spec
            for t in ctx.tools.values()
            # hidden while open, shown again once a probe may go (else nothing would ever call it again)
            if not (t.breaker and t.breaker.hide_when_open and t.breaker.state == "open" and t.breaker.retry_in() > 0)
        )
        if purpose == "turn"
        else ()
    )
    if d.on_model_call_start:
        d.emit(
            d.on_model_call_start,
            ModelCallStarted(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=span_id,
                parent_span_id=run.span_id,
                agent=run.agent.name,
                timestamp_ns=_now_ns(),
                model=model.name,
                provider=model.provider,
                turn=ctx.turn,
                purpose=purpose,  # type: ignore[arg-type]
                messages=messages,
                tools=tuple(spec.name for spec in tools),
            ),
        )
    span = SpanContext(ctx.trace_id, span_id)
    request = ModelRequest(
        messages,
        run.agent.instructions if instructions is None else instructions,
        tools,
        run.agent.model_settings,
        span,
        ctx.run_id,
        run.agent.name,
        purpose,
        _retry_notifier(run, span_id, "model", model.name) if d.on_retry else None,
    )
    token = _current.set(span)
    started = _perf()
    first: float | None = None
    raw: ModelResponse | None = None
    response: ModelResponse | None = None
    status = "error"
    error: BaseException | None = None
    stream = run.stream
    try:
        # contextlib.aclosing by hand: the same aclose() on every exit, two coroutines fewer per call.
        parts = model.stream(request)
        try:
            async for part in parts:
                if first is None:
                    first = _perf() - started
                if type(part) is ModelResponse:
                    raw = part
                elif stream is not None:
                    stream(part)
        finally:
            await parts.aclose()  # type: ignore[attr-defined]
        if raw is None:
            raise ModelBehaviorError(
                f"model {model.provider}:{model.name} ended its stream without a response; check the provider"
            )
        message = raw.message
        if not (
            type(message) is Message
            and (message.content is None or type(message.content) is str)
            and (raw.usage is None or type(raw.usage) is Usage)
            and (not message.tool_calls or _calls_ok(message.tool_calls))
        ):
            raw = _repaired(raw, f"{model.provider}:{model.name}")
        response = raw if raw.usage is not None else _with_estimated_usage(raw, messages)
        status = "ok"
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except TracedAgentError as exc:
        error = exc
        raise
    except Exception as exc:
        error = ModelError(f"model call to {model.provider}:{model.name} failed: {type(exc).__name__}: {exc}")
        raise error from exc
    finally:
        _current.reset(token)
        usage = response.usage if response is not None and response.usage is not None else Usage()
        ctx.usage = ctx.usage + usage
        if d.on_model_call_end:
            d.emit(
                d.on_model_call_end,
                ModelCallEnded(
                    run_id=ctx.run_id,
                    trace_id=ctx.trace_id,
                    span_id=span_id,
                    parent_span_id=run.span_id,
                    agent=run.agent.name,
                    timestamp_ns=_now_ns(),
                    model=model.name,
                    provider=model.provider,
                    turn=ctx.turn,
                    purpose=purpose,  # type: ignore[arg-type]
                    status=status,  # type: ignore[arg-type]
                    error=ErrorInfo.of(error) if error is not None else None,
                    duration_s=_perf() - started,
                    usage=usage,
                    finish_reason=response.finish_reason if response is not None else None,
                    response_model=response.response_model if response is not None else None,
                    time_to_first_token_s=first,
                    output=response.message if response is not None else None,
                ),
            )
        if stream is not None and response is not None:
            stream(UsageUpdated(usage, ctx.usage))
    return response


def _retry_notifier(run: Run, span_id: str, kind: str, target: str) -> Callable[[int, float, BaseException], None]:
    """A callback that fires ``on_retry`` for a retry of the model or tool call whose span is ``span_id``."""
    ctx, d = run.ctx, run.d

    def notify(attempt: int, delay_s: float, error: BaseException) -> None:
        d.emit(
            d.on_retry,
            RetryScheduled(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=span_id,
                parent_span_id=run.span_id,
                agent=run.agent.name,
                timestamp_ns=_now_ns(),
                target=target,
                kind=kind,  # type: ignore[arg-type]
                attempt=attempt,
                delay_s=delay_s,
                error=ErrorInfo.of(error),
            ),
        )

    return notify


def _calls_ok(calls: Sequence[ToolCall]) -> bool:
    """Whether the tool calls of an answer can run as they are: ToolCall objects with a name, JSON text
    arguments and ids that are set and distinct (each call's result answers its id)."""
    if type(calls) is not tuple:
        return False
    if len(calls) == 1:
        call = calls[0]
        return (
            type(call) is ToolCall
            and type(call.id) is str
            and bool(call.id)
            and type(call.name) is str
            and bool(call.name)
            and type(call.arguments) is str
        )
    seen: set[str] = set()
    for call in calls:
        if not _calls_ok((call,)) or call.id in seen:
            return False
        seen.add(call.id)
    return True


def _repaired(response: ModelResponse, label: str) -> ModelResponse:
    """The answer of a model that broke the protocol, fixed where nothing is lost (arguments not yet JSON
    text, missing or repeated call ids, a list of calls) or a :class:`ModelBehaviorError` saying what."""
    message = response.message
    if not isinstance(message, Message):
        raise ModelBehaviorError(
            f"model {label} answered with a {type(message).__name__} where a Message belongs; fix its stream()"
        )
    if message.content is not None and not isinstance(message.content, str):
        raise ModelBehaviorError(
            f"model {label} answered with content of type {type(message.content).__name__}; it must be text or None"
        )
    if response.usage is not None and not isinstance(response.usage, Usage):
        raise ModelBehaviorError(
            f"model {label} reported usage as a {type(response.usage).__name__}; it must be a Usage or None"
        )
    try:
        given = list(message.tool_calls or ())
    except TypeError:
        raise ModelBehaviorError(f"model {label} answered with tool_calls that are not a list of ToolCall") from None
    calls: list[ToolCall] = []
    ids: set[str] = set()
    for number, call in enumerate(given, 1):
        if not isinstance(call, ToolCall):
            raise ModelBehaviorError(f"model {label}: tool call #{number} is a {type(call).__name__}, not a ToolCall")
        if not isinstance(call.name, str) or not call.name:
            raise ModelBehaviorError(f"model {label}: tool call #{number} has no tool name ({call.name!r})")
        arguments: Any = call.arguments  # typed str, but a model's own code may give anything
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (TypeError, ValueError) as exc:
                raise ModelBehaviorError(
                    f"model {label}: the arguments of tool call #{number} ({call.name}) are not JSON: {exc}"
                ) from None
        call_id = call.id if isinstance(call.id, str) and call.id and call.id not in ids else ""
        while not call_id or call_id in ids:  # a call without an id, or with another call's id
            call_id = f"call_{uuid.uuid4().hex[:24]}"
        ids.add(call_id)
        calls.append(ToolCall(call_id, call.name, arguments))
    fixed = dataclasses.replace(message, tool_calls=tuple(calls))
    return ModelResponse(fixed, response.usage, response.finish_reason, response.response_model)


def _with_estimated_usage(response: ModelResponse, messages: Sequence[Message]) -> ModelResponse:
    usage = Usage(
        input_tokens=_ESTIMATE.count(messages),
        output_tokens=_ESTIMATE.count((response.message,)),
        requests=1,
        estimated=True,
    )
    return ModelResponse(response.message, usage, response.finish_reason, response.response_model)


# ------------------------------------------------------------------------------------------- tools


async def _call_tools(run: Run, calls: Sequence[ToolCall]) -> None:
    """Run tool calls concurrently; each result lands in ``ctx.turn_results`` (or the call pauses)."""
    if len(calls) == 1:
        await _call_tool(run, calls[0])
    elif calls:
        await asyncio.gather(*(_call_tool(run, call) for call in calls))


async def _call_tool(run: Run, call: ToolCall) -> None:
    """One tool call as a span. Errors become a tool message the model can act on; a call that needs a
    person (or the caller) is added to ``ctx.pending`` instead."""
    ctx, d = run.ctx, run.d
    tool = ctx.tools.get(call.name)
    decision: Decision | None = None
    if tool is not None and (
        not tool.plain or d.approve_tool_call or ctx.decisions or ctx.external_results or ctx.approved_tools
    ):
        decision = await decide(ctx, d, tool, call)
        if decision.action == "pause":
            ctx.pending.append(Interruption(call.id, call.name, call.arguments, decision.text, decision.kind))  # type: ignore[arg-type]
            return
    arguments = decision.arguments if decision is not None and decision.arguments is not None else call.arguments
    span_id = new_span_id()
    stream = run.stream
    if d.on_tool_call_start or stream is not None:
        started_event = ToolCallStarted(
            run_id=ctx.run_id,
            trace_id=ctx.trace_id,
            span_id=span_id,
            parent_span_id=run.span_id,
            agent=run.agent.name,
            timestamp_ns=_now_ns(),
            tool=call.name,
            call_id=call.id,
            arguments=arguments,
        )
        if d.on_tool_call_start:
            d.emit(d.on_tool_call_start, started_event)
        if stream is not None:
            stream(started_event)
    token = _current.set(SpanContext(ctx.trace_id, span_id))
    started = _perf()
    status = "error"
    error: BaseException | None = None
    content = ""
    reason: str | None = None
    try:
        if tool is None:
            raise UnknownToolError(
                f"there is no tool {call.name!r}; the tools are: {', '.join(ctx.tools) or 'none'}",
                tool=call.name,
            )
        if decision is None:
            content = await _guarded(run, tool, arguments, span_id)
            status = "ok"
        elif decision.action == "deny":
            content, status = denial(call.name, decision.text), "denied"
        elif decision.action == "result":
            content, status = decision.text, "ok"
        else:
            granted = _granted.set(decision.granted)
            try:
                content = await _guarded(run, tool, arguments, span_id)
            finally:
                _granted.reset(granted)
            status = "ok"
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except ApprovalRequired as exc:
        if decision is not None and decision.granted:  # approved already: asking again would never end
            error = exc
            content = f"tool {call.name!r} asked for approval again after it was approved: {exc.reason}"
        else:
            status, content = "interrupted", exc.reason
            ctx.pending.append(Interruption(call.id, call.name, call.arguments, exc.reason, "approval"))
    except ToolError as exc:
        status, error, content = exc.status, exc, str(exc)
        reason = getattr(exc, "reason", None)
    except Exception as exc:
        error = exc
        content = f"tool {call.name!r} failed: {type(exc).__name__}: {exc}"
    finally:
        _current.reset(token)
        if d.on_tool_call_end or stream is not None:
            ended_event = ToolCallEnded(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=span_id,
                parent_span_id=run.span_id,
                agent=run.agent.name,
                timestamp_ns=_now_ns(),
                tool=call.name,
                call_id=call.id,
                status=status,  # type: ignore[arg-type]
                error=ErrorInfo.of(error) if error is not None else None,
                duration_s=_perf() - started,
                result=content,
                reason=reason,
            )
            if d.on_tool_call_end:
                d.emit(d.on_tool_call_end, ended_event)
            if stream is not None:
                stream(ended_event)
    if status == "interrupted":
        return
    ctx.turn_results[call.id] = Message.tool(call.id, call.name, content, is_error=status != "ok")
    await _durable.step(run)


async def _guarded(run: Run, tool: Tool, arguments: str, span_id: str) -> str:
    """The breaker layer around the bulkhead layer around the call (timeout and retries are the tool's).
    The breaker records the outcome of the whole call; refusals and invalid arguments do not count."""
    breaker = tool.breaker
    if breaker is None:
        return await _bulkheaded(run, tool, arguments, span_id)
    admission = await breaker.abefore_call() if breaker.remote else breaker.before_call()
    if admission.transition is not None:
        _circuit_changed(run, tool.name, admission.transition, span_id)
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
        content = await _bulkheaded(run, tool, arguments, span_id)
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
                _circuit_changed(run, tool.name, transition, span_id)


async def _bulkheaded(run: Run, tool: Tool, arguments: str, span_id: str) -> str:
    bulkhead = tool.bulkhead
    await bulkhead.acquire()
    # A sync tool's thread that outlives the call (its timeout) keeps a local slot until it ends.
    lease = SlotLease(bulkhead) if not tool.is_async and not bulkhead.remote else None
    token = slot_lease.set(lease) if lease is not None else None
    try:
        on_retry = _retry_notifier(run, span_id, "tool", tool.name) if tool.retry and run.d.on_retry else None
        return await tool.invoke(arguments, run.ctx, on_retry)
    finally:
        if token is not None:
            slot_lease.reset(token)
        if bulkhead.remote:
            await bulkhead.arelease()
        elif lease is None or not lease.kept:
            bulkhead.release()


def _circuit_changed(run: Run, tool: str, transition: Transition, span_id: str) -> None:
    d, ctx = run.d, run.ctx
    if d.on_circuit_change:
        d.emit(
            d.on_circuit_change,
            CircuitStateChanged(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=span_id,
                parent_span_id=run.span_id,
                agent=run.agent.name,
                timestamp_ns=_now_ns(),
                tool=tool,
                old=transition.old,
                new=transition.new,
                reason=transition.reason,
            ),
        )


# -------------------------------------------------------------------------------------- compaction


async def _maybe_compact(run: Run) -> None:
    """Let the agent's strategy shorten the history; fire ``on_compaction`` when it does."""
    ctx, d, strategy = run.ctx, run.d, run.agent.compaction
    assert strategy is not None
    before = ctx.messages

    async def summarize(messages: Sequence[Message], prompt: str) -> str:
        request = (*messages, Message.user("Write the summary of the conversation above now."))
        response = await _call_model(run, request, purpose="compaction", instructions=prompt)
        return response.message.content or ""

    compacted = await strategy.compact(before, CompactionContext(strategy.counter, summarize))
    if compacted is None:
        return
    counter = strategy.counter
    tokens_before, tokens_after = counter.count(before), counter.count(compacted)
    ctx.messages = compacted
    if d.on_compaction:
        d.emit(
            d.on_compaction,
            ContextCompacted(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=run.span_id,
                parent_span_id=run.parent_span_id,
                agent=run.agent.name,
                timestamp_ns=_now_ns(),
                strategy=strategy.name,
                tokens_before=tokens_before,
                tokens_after=tokens_after,
                messages_before=len(before),
                messages_after=len(compacted),
                estimated=counter.estimated,
            ),
        )
