"""The activities of one agent: its model calls, tool calls and run events, each a real side effect.

They run the core's own steps (:class:`tracedagent.engine.RunSteps`), so a model or tool call inside an
activity fires the same hooks, with the same fields, as in ``agent.run()``, once per real execution;
Temporal never runs an activity again on replay. The run's trace context comes from the activity's
``tracedagent-trace`` header (see ``_trace``), on whichever worker runs it: the record in the arguments
has no trace id, and the records given back have none either. A long call heartbeats, so the attempt of a worker that
died is retried on another worker within the heartbeat timeout (else within its start-to-close timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from tracedagent import ErrorInfo
from tracedagent.engine import RunSteps

from . import _trace
from ._workflow import activity_name


def _traced(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The record with the trace ids of the activity's header, and the segment's span id."""
    trace = _trace.current()
    if trace is None or not isinstance(trace.get("span_id"), str):
        raise ApplicationError(
            f"activity {activity.info().activity_type!r} came without tracedagent's trace header, so its events "
            "would be in no trace: run this agent's workflows on workers made by TemporalAgent.worker (or give "
            "the worker tracedagent_temporal.TraceInterceptor())",
            type="UserError",
            non_retryable=True,
        )
    return {**record, "trace_id": trace["trace_id"], "parent_span_id": trace.get("parent_span_id")}, trace["span_id"]


def _untraced(record: dict[str, Any]) -> dict[str, Any]:
    """A record to give back to the workflow: its trace and span ids stay in the headers."""
    return {**record, "trace_id": "", "parent_span_id": None, "segment_span_id": None}


@contextlib.asynccontextmanager
async def _heartbeating(every_s: float | None) -> AsyncIterator[None]:
    """Heartbeat every ``every_s`` seconds while the block runs (nothing when None)."""
    if every_s is None:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _every(heartbeat_s: float | None) -> float | None:
    return None if heartbeat_s is None else heartbeat_s / 3


def activities(steps: RunSteps, heartbeat_s: float | None) -> list[Callable[..., Any]]:
    """The model, tool and segment activities of ``steps``' agent, named after it."""
    agent = steps.config.name
    every = _every(heartbeat_s)

    @activity.defn(name=activity_name(agent, "model"))
    async def model(input: dict[str, Any]) -> dict[str, Any]:
        record, span_id = _traced(input["record"])
        async with _heartbeating(every):
            return _untraced(await steps.model_step(record, span_id))

    @activity.defn(name=activity_name(agent, "tool"))
    async def tool(input: dict[str, Any]) -> dict[str, Any]:
        record, span_id = _traced(input["record"])
        async with _heartbeating(every):
            step = await steps.tool_step(
                record,
                span_id,
                input["call"],
                decision=input.get("decision"),
                external_result=input.get("result"),
                attempt=activity.info().attempt,
            )
        if step.retry is not None:  # the tool's retry policy wants another attempt: Temporal makes it
            raise ApplicationError(
                f"tool {input['call']['name']!r} failed and will be retried: {step.retry}",
                type=type(step.retry).__name__,
                next_retry_delay=timedelta(seconds=step.retry_delay_s),
            )
        interruption = step.interruption
        return {
            "message": step.message.to_dict() if step.message is not None else None,
            "interruption": None
            if interruption is None
            else {
                "id": interruption.id,
                "tool": interruption.tool,
                "arguments": interruption.arguments,
                "reason": interruption.reason,
                "kind": interruption.kind,
            },
            "approved_tools": list(step.approved_tools),
            "handoff": step.handoff,
        }

    @activity.defn(name=activity_name(agent, "segment"))
    async def segment(input: dict[str, Any]) -> Any:
        kind = input["kind"]
        record, span_id = _traced(input["record"])
        if kind == "started":
            return _untraced(steps.segment_started(record, span_id))
        if kind == "resumed":
            steps.segment_resumed(record, span_id, input.get("previous_span_id"))
            return time.time_ns()
        if kind == "interrupted":
            return _untraced(steps.interrupted(record, span_id))
        if kind == "ended":
            if input["status"] == "completed":
                await steps.save_session(record)  # before on_run_end, as agent.run() does
            error = input.get("error")
            steps.segment_ended(
                record,
                span_id,
                input["status"],
                started_ns=input["started_ns"],
                output=input.get("output"),
                error=ErrorInfo(error["type"], error["message"]) if error else None,
            )
            return None
        raise ApplicationError(f"unknown segment event {kind!r}", non_retryable=True)

    return [model, tool, segment]
