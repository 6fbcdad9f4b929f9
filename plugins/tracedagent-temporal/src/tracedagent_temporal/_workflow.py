"""The workflow: an agent run's loop as deterministic Temporal workflow code.

It holds the run's state as data (the checkpoint record: messages, usage, turn, pending calls) and does
nothing but decide what comes next; every side effect is an activity, fired once per real execution and
read back from the history on replay:

- ``tracedagent.<agent>.model``: one model request (``on_model_call_start`` / ``_end`` fire inside it);
- ``tracedagent.<agent>.tool``: one tool call through the approval layer and the tool pipeline;
- ``tracedagent.<agent>.segment``: the run's own events (start, interrupt, resume, end), a local activity.

Why this is deterministic: the workflow reads no clock, draws no random number and generates no id. The
run id is the workflow id; the trace id, the run's parent span and each segment's span id come in the
``tracedagent-trace`` header of the workflow's start (or of the resume signal), made by the client, and
go on in the header of every activity the workflow schedules (see ``_trace``), never in arguments: the
run's record travels without its trace id, which the activities take from their header and the
workflow puts back only into the results it gives the client. The timestamps are taken inside
activities. Tool calls of one turn run concurrently and their results are put back in the order
the model asked for them. This module imports nothing but the standard library and temporalio, so
Temporal's sandbox re-imports it as it is.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

WORKFLOW_NAME = "tracedagent.AgentRun"
RESUME_SIGNAL = "resume"
RESULT_UPDATE = "segment_result"
PENDING_QUERY = "pending"


def activity_name(agent: str, step: str) -> str:
    """The name of an agent's activity: ``tracedagent.<agent>.<step>`` (model, tool or segment)."""
    return f"tracedagent.{agent}.{step}"


class _Failed(Exception):
    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


def _seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def _cause(error: BaseException) -> tuple[str, str]:
    """The error an activity failed with (type and message), from Temporal's wrapping."""
    cause = error.__cause__ if isinstance(error, ActivityError) and error.__cause__ is not None else error
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    return type(cause).__name__, str(cause)


def _legacy_trace(input: dict[str, Any]) -> dict[str, Any] | None:
    """The trace context of a run started before it travelled in headers (its ids in the input), so that
    such a run, in flight when its workers are upgraded, goes on in its trace; None for any other input."""
    record, span_id = input.get("record") or {}, input.get("span_id")
    if not (isinstance(span_id, str) and record.get("trace_id")):
        return None
    input["record"] = {**record, "trace_id": "", "parent_span_id": None}  # from here on: in headers
    return {"trace_id": record["trace_id"], "parent_span_id": record.get("parent_span_id"), "span_id": span_id}


@workflow.defn(name=WORKFLOW_NAME)
class AgentWorkflow:
    """One agent run. Input: ``{"agent", "record", "max_turns", "model", "tools", "default_tool",
    "events"}`` (see ``TemporalAgent``); result: the last segment's result."""

    def __init__(self) -> None:
        #: The current segment's trace context, which the interceptor puts in every activity's header.
        self.trace: dict[str, Any] | None = None
        self._received: dict[str, dict[str, Any] | None] = {}
        self._ended: dict[str, dict[str, Any]] = {}
        self._resume: dict[str, Any] | None = None
        self._paused = False
        self._pending: list[dict[str, Any]] = []

    # ----------------------------------------------------------------------------------- handlers

    def received_trace(self, kind: str, trace: dict[str, Any] | None) -> None:
        """The trace context in the header of the workflow's start (``kind`` "start") or of a signal,
        from the interceptor, just before the workflow sees the start or the signal."""
        self._received[kind] = trace

    @workflow.signal(name=RESUME_SIGNAL)
    def resume(self, decisions: dict[str, Any]) -> None:
        """Decisions for the paused run's calls; the new segment's span id is in the signal's header. A
        signal that does not answer exactly the pending calls changes nothing; its segment ends at once
        as ``rejected``. One without the header has no segment to answer and is dropped, with a warning."""
        trace = self._received.pop(RESUME_SIGNAL, None)
        if trace is None or not isinstance(trace.get("span_id"), str):
            workflow.logger.warning(
                "run %r: a resume signal without tracedagent's trace header was ignored; send it with "
                "TemporalAgent.resume",
                workflow.info().workflow_id,
            )
            return
        span_id = trace["span_id"]
        problem = self._check(decisions) if self._paused and self._resume is None else "it is not paused"
        if problem is not None:
            error = {"type": "UserError", "message": f"run {workflow.info().workflow_id!r}: {problem}"}
            self._ended[span_id] = {"status": "rejected", "error": error}
            return
        self._resume = {**decisions, "span_id": span_id}

    def _check(self, decisions: dict[str, Any]) -> str | None:
        """What ``agent.resume`` checks: every pending call decided, nothing else, each in its kind."""
        kinds = {p["id"]: p["kind"] for p in self._pending}
        listing = ", ".join(f"{p['id']} ({p['tool']}, {p['kind']})" for p in self._pending)
        approvals, results = decisions.get("approvals") or {}, decisions.get("results") or {}
        for call_id in [*approvals, *results]:
            if call_id not in kinds:
                return f"there is no pending call {call_id!r}; pending: {listing}"
        for call_id in approvals:
            if kinds[call_id] != "approval":
                return f"call {call_id!r} is an external tool call: pass its result in results="
        for call_id in results:
            if kinds[call_id] != "external":
                return f"call {call_id!r} waits for approval: decide it in approvals="
        missing = [i for i in kinds if i not in approvals and i not in results]
        if missing:
            return f"it is waiting on {', '.join(missing)} (pending: {listing})"
        return None

    @workflow.update(name=RESULT_UPDATE)
    async def segment_result(self, span_id: str) -> dict[str, Any]:
        """Wait for the segment ``span_id`` to end (complete, pause or fail) and return its result."""
        await workflow.wait_condition(lambda: span_id in self._ended)
        return self._ended[span_id]

    @workflow.query(name=PENDING_QUERY)
    def pending(self) -> list[dict[str, Any]]:
        """The calls the paused run waits on (empty while it runs)."""
        return list(self._pending) if self._paused else []

    # -------------------------------------------------------------------------------------- the run

    @workflow.run
    async def run(self, input: dict[str, Any]) -> dict[str, Any]:
        self._input = input
        record: dict[str, Any] = input["record"]
        started = self._received.pop("start", None) or _legacy_trace(input)
        if started is None or not isinstance(started.get("trace_id"), str):
            raise ApplicationError(
                f"run {workflow.info().workflow_id!r} was started without tracedagent's trace header, so its "
                "events would have no trace: start it with TemporalAgent.run (or a client given "
                "tracedagent_temporal.TraceInterceptor()) on workers made by TemporalAgent.worker",
                type="UserError",
                non_retryable=True,
            )
        self.trace = run_trace = dict(started)
        span_id: str = run_trace["span_id"]
        record = await self._event("started", record=record)
        started_ns: int = record["started_ns"]
        decisions: dict[str, Any] = {}
        results: dict[str, Any] = {}
        while True:
            try:
                output = await self._turns(record, span_id, decisions, results)
            except _Failed as failed:
                error = {"type": failed.type, "message": failed.message}
                await self._event("ended", record=record, status="failed", started_ns=started_ns, error=error)
                result = {"status": "failed", "output": None, "record": self._traced(record), "error": error}
                break
            if output is None:  # paused: the calls in record["pending"] wait for a person
                record = await self._event("interrupted", record=record)
                await self._event("ended", record=record, status="interrupted", started_ns=started_ns)
                self._pending = list(record["pending"])
                self._ended[span_id] = {
                    "status": "interrupted",
                    "output": None,
                    "record": self._traced(record),
                    "error": None,
                }
                self._paused = True
                await workflow.wait_condition(lambda: self._resume is not None)
                given = self._resume
                assert given is not None
                self._resume, self._paused, self._pending = None, False, []
                previous, span_id = span_id, str(given["span_id"])
                self.trace = {**run_trace, "span_id": span_id}
                decisions, results = dict(given.get("approvals") or {}), dict(given.get("results") or {})
                record["pending"], record["status"] = [], "running"
                started_ns = await self._event("resumed", record=record, previous_span_id=previous)
                continue
            await self._event("ended", record=record, status="completed", started_ns=started_ns, output=output)
            result = {"status": "completed", "output": output, "record": self._traced(record), "error": None}
            break
        self._ended[span_id] = result
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    def _traced(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with the run's trace ids put back, for the client."""
        trace = self.trace or {}
        return {**record, "trace_id": trace.get("trace_id"), "parent_span_id": trace.get("parent_span_id")}

    async def _turns(
        self, record: dict[str, Any], span_id: str, decisions: dict[str, Any], results: dict[str, Any]
    ) -> str | None:
        """The turns until an answer (returned) or a pause (None; ``record["pending"]`` says for what)."""
        messages: list[dict[str, Any]] = record["messages"]
        while True:
            last = messages[-1]
            calls = last.get("tool_calls") if last.get("role") == "assistant" else None
            if calls:
                done: dict[str, Any] = record["turn_results"]
                todo = [c for c in calls if c["id"] not in done]
                steps = await asyncio.gather(
                    *(
                        self._tool(record, span_id, c, decisions.pop(c["id"], None), results.pop(c["id"], None))
                        for c in todo
                    )
                )
                handoff: str | None = None
                for call, step in zip(todo, steps, strict=True):
                    if step.get("handoff") is not None and handoff is None:  # the first transfer wins
                        handoff = step["handoff"]
                    for name in step.get("approved_tools") or ():
                        if name not in record["approved_tools"]:
                            record["approved_tools"] = sorted([*record["approved_tools"], name])
                    if step.get("interruption") is not None:
                        record["pending"].append(step["interruption"])
                    else:
                        done[call["id"]] = step["message"]
                if handoff is not None:  # the run goes on with that agent's model and tools
                    record["active_agent"] = None if handoff == record["agent"] else handoff
                if record["pending"]:
                    return None
                messages.extend(done[c["id"]] for c in calls)
                record["turn_results"] = {}
            if record["turn"] >= self._input["max_turns"]:
                raise _Failed(
                    "MaxTurnsExceeded",
                    f"agent {self._input['agent']!r} made {record['turn']} model calls "
                    f"(max_turns={self._input['max_turns']}) and the model was still calling tools; raise "
                    f"max_turns or change the instructions (run_id {record['run_id']})",
                )
            record = await self._model(record, span_id)
            messages = record["messages"]
            last = messages[-1]
            if not last.get("tool_calls"):
                return str(last.get("content") or "")

    # ----------------------------------------------------------------------------------- activities

    async def _model(self, record: dict[str, Any], span_id: str) -> dict[str, Any]:
        options = self._input["model"]
        try:
            new: dict[str, Any] = await workflow.execute_activity(
                activity_name(self._input["agent"], "model"),
                {"record": record},
                start_to_close_timeout=_seconds(options["start_to_close_s"]),
                heartbeat_timeout=_seconds(options.get("heartbeat_s")),
                retry_policy=RetryPolicy(
                    maximum_attempts=options["attempts"], non_retryable_error_types=options["non_retryable"]
                ),
                result_type=dict,
            )
        except ActivityError as exc:
            raise _Failed(*_cause(exc)) from None
        # the record object is shared with the loop: update it in place
        record.clear()
        record.update(new)
        return record

    async def _tool(
        self, record: dict[str, Any], span_id: str, call: dict[str, Any], decision: Any, result: Any
    ) -> dict[str, Any]:
        options = self._input["tools"].get(call["name"], self._input["default_tool"])
        try:
            step: dict[str, Any] = await workflow.execute_activity(
                activity_name(self._input["agent"], "tool"),
                {"record": record, "call": call, "decision": decision, "result": result},
                start_to_close_timeout=_seconds(options["start_to_close_s"]),
                heartbeat_timeout=_seconds(options.get("heartbeat_s")),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(seconds=options["initial_s"]),
                    maximum_interval=timedelta(seconds=options["max_s"]),
                    maximum_attempts=options["attempts"],
                ),
                result_type=dict,
            )
            return step
        except ActivityError as exc:  # every attempt failed (workers lost, timeouts): the model is told
            kind, message = _cause(exc)
            content = f"tool {call['name']!r} failed: its activity gave up ({kind}: {message})"
            return {
                "message": {
                    "role": "tool",
                    "content": content,
                    "tool_call_id": call["id"],
                    "name": call["name"],
                    "is_error": True,
                }
            }

    async def _event(self, kind: str, **fields: Any) -> Any:
        return await workflow.execute_local_activity(
            activity_name(self._input["agent"], "segment"),
            {"kind": kind, **fields},
            start_to_close_timeout=timedelta(seconds=self._input["events"]["start_to_close_s"]),
        )
