"""The run loop: call the model, run the tools it asks for, repeat until an answer.

Read :func:`execute` top to bottom. The loop only orchestrates turns; each stage is a module of its own
and one span: the model step (:mod:`._model_step`), the tool step and its pipeline (:mod:`._tool_step`,
:mod:`._tool_layers`), persistence (:mod:`._durable`) and compaction (below). The segment itself is a
:class:`Stage` too: ``on_run_start`` (or ``on_resume``) when it opens, exactly one ``on_run_end`` when it
closes, on completion, pause, error and cancellation alike. ``asyncio.CancelledError`` always propagates
after the end events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from . import _durable
from ._approval import _granted
from ._compaction import CompactionContext
from ._events import ContextCompacted, RunEnded, RunResumed, RunStarted
from ._handoff import settle
from ._messages import Message
from ._model_step import call_model
from ._output import judge
from ._result import RunResult
from ._segment import Segment
from ._span import Stage
from ._tool_step import call_tools
from .exceptions import MaxTurnsExceeded, RunError

__all__ = ["execute"]

_now_ns = time.time_ns

Output = Callable[[Segment, str, str | None], RunResult]


def _open(seg: Segment) -> Stage:
    """The segment's stage: ``RunStarted`` for a new run, ``RunResumed`` for a resume."""
    state, config, resumed = seg.state, seg.config, seg.resumed
    if resumed is not None:
        stage = Stage(seg.run_span, RunResumed, RunEnded, ok="completed", failed="failed")
        if stage.listened:
            now = _now_ns()
            waited = max(0.0, (now - (resumed.paused_at_ns or now)) / 1e9)
            # RunResumed: previous_span_id, waited_s, run_started_ns
            stage.start((), (resumed.segment_span_id, waited, state.started_ns), now)
        return stage
    state.started_ns = started = _now_ns()
    stage = Stage(seg.run_span, RunStarted, RunEnded, ok="completed", failed="failed")
    if stage.listened:
        # RunStarted: model, provider, input, metadata
        stage.start(
            (), (config.model.name, config.model.provider, tuple(state.messages), state.metadata or None), started
        )
    return stage


async def execute(seg: Segment, output_of: Output) -> RunResult:
    """Run the loop as one segment: open it, the turns, close it; returns (or attaches to the
    :class:`RunError` it raises) the run's result."""
    state = seg.state
    output: str | None = None
    stage = _open(seg)
    stage.baggage = (state.agent, state.session_id)
    # A run started inside an approved tool must not see that approval as its own tools' approval.
    granted = _granted.set(False)
    try:
        with stage:
            finishing = False
            try:
                output = await _turns(seg)
                if state.pending:
                    stage.status = "interrupted"
                    await _durable.interrupt(seg)
                else:
                    finishing = True
                    await _durable.finish(seg, "completed")
            except asyncio.CancelledError:
                await _durable.finish_quietly(seg, "cancelled")
                raise
            except BaseException:
                if not finishing:  # a store that failed to record the end is not asked again
                    await _durable.finish_quietly(seg, "failed")
                raise
            finally:
                if stage.listened:
                    # RunEnded, after duration_s: usage, turns, output, output_validation_failures
                    if seg.output is None:
                        stage.end(state.usage, state.turn, output)
                    else:
                        stage.end(state.usage, state.turn, seg.output.raw, seg.output.failures)
    except BaseException as exc:
        status = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
        if isinstance(exc, RunError) and exc.result is None:
            exc.result = output_of(seg, status, output)
        raise
    finally:
        _granted.reset(granted)
    return output_of(seg, stage.status, output)


async def _turns(seg: Segment) -> str | None:
    """The turns until an answer; None when the run pauses (``state.pending`` says for what)."""
    state, config = seg.state, seg.config
    messages = state.messages
    assert isinstance(messages, list), "a running state holds its messages in a list"
    purpose = "turn"
    while True:
        last = messages[-1]
        if last.role == "assistant" and last.tool_calls:
            # The turn in flight (new, resumed after a pause, or recovered after a crash): run the
            # calls that have no result yet, then hand every result back in the model's order.
            await call_tools(seg, [c for c in last.tool_calls if c.id not in state.turn_results])
            if seg.ctx.agent is not config:  # a transfer_to_{name} tool handed the run to another agent
                settle(seg)
                config = seg.config
            if state.pending:
                return None
            results = state.turn_results
            messages.extend(results[c.id] for c in last.tool_calls)
            results.clear()
            await _durable.step(seg)
        if state.turn >= config.max_turns:
            raise MaxTurnsExceeded(
                f"agent {config.name!r} made {state.turn} model calls (max_turns={config.max_turns}) and the "
                f"model was still calling tools; raise max_turns or change the instructions. The run's state "
                f"is in .result (run_id {state.run_id})"
            )
        if config.compaction is not None:
            await _maybe_compact(seg)
            messages = state.messages
            assert isinstance(messages, list)
        if config.prepare_tools is not None:
            await config.prepare_tools(seg.ctx)
        response = await call_model(seg, messages, purpose)
        message = response.message
        messages.append(message)
        state.turn += 1
        purpose = "turn"
        if seg.output is not None:  # structured output: valid, a correction to send, or tools to run
            verdict = judge(seg.output, state, message)
            if verdict == "done":
                return seg.output.raw
            if verdict == "retry":
                purpose = "output_retry"
                await _durable.step(seg)
                continue
        if not message.tool_calls:
            return message.content or ""
        await _durable.step(seg)


async def _maybe_compact(seg: Segment) -> None:
    """Let the agent's strategy shorten the history; fire ``on_compaction`` when it does."""
    state, strategy = seg.state, seg.config.compaction
    assert strategy is not None
    before = state.messages

    async def summarize(messages: Sequence[Message], prompt: str) -> str:
        request = (*messages, Message.user("Write the summary of the conversation above now."))
        response = await call_model(seg, request, purpose="compaction", instructions=prompt)
        return response.message.content or ""

    assert isinstance(before, list), "a running state holds its messages in a list"
    compacted = await strategy.compact(before, CompactionContext(strategy.counter, summarize))
    if compacted is None:
        return
    counter = strategy.counter
    tokens_before, tokens_after = counter.count(before), counter.count(compacted)
    state.messages = compacted
    seg.span.emit(
        ContextCompacted,
        strategy=strategy.name,
        tokens_before=tokens_before,
        tokens_after=tokens_after,
        messages_before=len(before),
        messages_after=len(compacted),
        estimated=counter.estimated,
    )
