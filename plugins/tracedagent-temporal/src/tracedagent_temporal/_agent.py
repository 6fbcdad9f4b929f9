"""``TemporalAgent``: an agent run as a Temporal workflow, its model and tool calls as activities."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from tracedagent import Agent, Message, RunError, RunResult, Tool, UserError
from tracedagent.engine import RunSteps, new_span_id

from . import _trace
from ._activities import activities
from ._workflow import RESULT_UPDATE, RESUME_SIGNAL, WORKFLOW_NAME, AgentWorkflow

Input = str | Message | Sequence[Message]

#: Model errors that another attempt cannot fix: Temporal does not retry them.
NON_RETRYABLE_MODEL_ERRORS = ("ModelBehaviorError", "UserError", "ConfigurationError", "ScriptExhausted")


#: What an agent may have that its workflow does not do yet, and what to do instead.
_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    (
        "output_type",
        "the workflow does not validate structured output; ask for JSON in the instructions and validate "
        "RunResult.output yourself, or run this agent with agent.run()",
    ),
    (
        "tool_sources",
        "the tools of MCP servers are listed as a run starts, which a workflow cannot do deterministically; "
        "give the tools as Python tools, or run this agent with agent.run()",
    ),
    (
        "max_concurrent_runs",
        "on Temporal, runs are bounded by the worker: pass max_concurrent_workflow_tasks= and "
        "max_concurrent_activities= to temporal_agent.worker(...)",
    ),
)


def unsupported(steps: RunSteps) -> None:
    """A :class:`~tracedagent.UserError` naming the first setting of the agent (or of an agent its
    handoffs reach) that a Temporal workflow does not carry out, and what to do instead; never a run that
    silently ignores it."""
    for config in steps.agent_configs():
        for name, instead in _UNSUPPORTED:
            value = getattr(config, name)
            if value is not None and value != () and not (name == "output_type" and value is str):
                raise UserError(
                    f"TemporalAgent: agent {config.name!r} has {name}={value!r}, which runs on Temporal do not "
                    f"support: {instead}"
                )


def traced(client: Client) -> Client:
    """``client``, or a client on the same connection that also carries tracedagent's trace header."""
    config = client.config()
    if _trace.has_tracing(config.get("interceptors")):
        return client
    config["interceptors"] = [*config.get("interceptors", ()), _trace.TraceInterceptor()]
    return Client(**config)


class TemporalAgent:
    """Runs ``agent`` durably on Temporal: the run's loop is a workflow (its id is the run id), each model
    call and each tool call an activity, and an approval pause waits for the ``resume`` signal.

    Retries are Temporal's, never stacked on the tool's own: inside a workflow a tool's ``retries``
    (its :class:`~tracedagent.resilience.RetryPolicy`: attempts, delays, which errors) are carried out as
    activity attempts, one tool call per attempt; the last attempt's error is the tool message the model
    sees. An attempt lost with its worker (or past its timeout) is retried too, up to
    ``activity_attempts`` attempts in all (or the tool's attempts, if more); ``activity_attempts=1``
    never runs a tool call twice.

    A tool's ``timeout`` stays the call's own timeout (the model gets a ``timeout`` result) and, plus
    ``timeout_grace`` seconds, is its activity's start-to-close timeout; a tool with none gets
    ``tool_timeout``. Activities heartbeat every third of ``heartbeat_timeout``, so the call of a worker
    that died is retried on another within that time.

    Compaction runs in the model call's activity, before the request, as in ``agent.run()``; a handoff is a
    tool call's activity (``on_handoff`` fires there), after which the workflow goes on with the target
    agent's model and tools (of two transfers in one turn, the first in the model's order wins). An agent
    with a setting the workflow does not carry out (``output_type``,
    MCP ``tool_sources``, ``max_concurrent_runs``) is refused here with a :class:`~tracedagent.UserError`
    that names it and says what to do. ``run(session_id=...)`` continues a conversation kept in the
    agent's store. Runs take no ``deps`` and have no stream (there are no such parameters: tools run on
    workers, where the caller's objects are not); the agent's store keeps no checkpoints of these runs
    (the workflow's history is the run's durable state).
    """

    def __init__(
        self,
        agent: Agent,
        *,
        model_timeout: float = 300.0,
        model_attempts: int = 3,
        tool_timeout: float = 600.0,
        timeout_grace: float = 1.0,
        activity_attempts: int = 3,
        heartbeat_timeout: float | None = 30.0,
        event_timeout: float = 10.0,
    ) -> None:
        if not isinstance(agent, Agent):
            raise UserError(f"TemporalAgent takes an Agent, not {agent!r}")
        for label, value in (("model_attempts", model_attempts), ("activity_attempts", activity_attempts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"TemporalAgent {label} must be a whole number >= 1, not {value!r}")
        self.agent = agent
        self.steps = RunSteps(agent)
        unsupported(self.steps)
        self.heartbeat_timeout = heartbeat_timeout
        tools = {  # the tools of the agents handoffs can pass the run to as well
            name: self._tool_options(t, tool_timeout, timeout_grace, activity_attempts)
            for name, t in self.steps.reachable_tools().items()
        }
        self._options: dict[str, Any] = {
            "agent": agent.name,
            "max_turns": agent.max_turns,
            "model": {
                "start_to_close_s": model_timeout,
                "heartbeat_s": heartbeat_timeout,
                "attempts": model_attempts,
                "non_retryable": list(NON_RETRYABLE_MODEL_ERRORS),
            },
            "tools": tools,
            "default_tool": {  # a tool the model made up: the call fails at once, never retried
                "start_to_close_s": tool_timeout,
                "heartbeat_s": heartbeat_timeout,
                "attempts": 1,
                "initial_s": 1.0,
                "max_s": 1.0,
            },
            "events": {"start_to_close_s": event_timeout},
        }

    def _tool_options(self, tool: Tool, default: float, grace: float, attempts: int) -> dict[str, Any]:
        policy = tool.retry
        return {
            "start_to_close_s": (tool.timeout + grace) if tool.timeout is not None else default,
            "heartbeat_s": self.heartbeat_timeout,
            "attempts": max(attempts, policy.attempts if policy is not None else 1),
            "initial_s": policy.initial_delay if policy is not None else 1.0,
            "max_s": policy.max_delay if policy is not None else 10.0,
        }

    @property
    def name(self) -> str:
        return self.agent.name

    def __repr__(self) -> str:
        return f"TemporalAgent({self.agent!r})"

    # ------------------------------------------------------------------------------------- worker

    def worker(self, client: Client, *, task_queue: str, **options: Any) -> Worker:
        """A worker that runs this agent's workflows and activities on ``task_queue`` (``options`` go to
        :class:`temporalio.worker.Worker`). Run it with ``async with worker:`` or ``await worker.run()``.
        It carries the run's trace context from the headers of the workflow's start, signals and
        activities (:class:`~tracedagent_temporal.TraceInterceptor`, added unless the client has it)."""
        options.setdefault(
            "workflow_runner",
            SandboxedWorkflowRunner(
                restrictions=SandboxRestrictions.default.with_passthrough_modules("tracedagent", "tracedagent_temporal")
            ),
        )
        if not _trace.has_tracing(client.config().get("interceptors")):  # else the Worker takes the client's
            options["interceptors"] = [_trace.TraceInterceptor(), *options.get("interceptors", ())]
        return Worker(
            client,
            task_queue=task_queue,
            workflows=[AgentWorkflow],
            activities=activities(self.steps, self.heartbeat_timeout),
            **options,
        )

    # -------------------------------------------------------------------------------------- runs

    async def run(
        self,
        client: Client,
        input: Input,
        *,
        id: str,
        task_queue: str,
        metadata: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> RunResult:
        """Start the run as workflow ``id`` (its run id) on ``task_queue`` and wait for it to complete or
        pause. A paused run returns with status ``interrupted``; continue it with :meth:`resume`. A run
        that fails raises :class:`~tracedagent.RunError` with ``.result``.

        ``session_id`` continues the conversation kept under that id in the agent's store, as
        ``agent.run(session_id=...)`` does: read here, before the workflow starts (its input), and saved
        by the worker when the run completes. Across processes the store must be one they share
        (``PostgresCheckpointStore``, or a SQLite file on one host)."""
        started = time.perf_counter()
        session = await self.steps.load_session(session_id) if session_id is not None else None
        state = self.steps.new_run(input, run_id=id, metadata=metadata, session=session)
        span_id = new_span_id()
        trace = {"trace_id": state.trace_id, "parent_span_id": state.parent_span_id, "span_id": span_id}
        record = {**self.steps.record(state), "trace_id": "", "parent_span_id": None}  # the trace: in headers
        payload = {**self._options, "record": record}
        with _trace.sending(trace):
            handle = await traced(client).start_workflow(WORKFLOW_NAME, payload, id=id, task_queue=task_queue)
        return self._result(await self._segment(handle, span_id), started)

    async def resume(
        self,
        client: Client,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Decide the paused run's calls (``approvals``: call id to ``True``, ``False`` or an
        :class:`~tracedagent.Approval`; ``results``: an external tool's result) and send them to its
        workflow as the ``resume`` signal; wait for the run to complete or pause again."""
        started = time.perf_counter()
        approvals, results = dict(approvals or {}), dict(results or {})
        handle = traced(client).get_workflow_handle(run_id)
        span_id = new_span_id()
        signal = {
            "approvals": {k: self.steps.decision_record(k, v) for k, v in approvals.items()},
            "results": results,
        }
        try:
            with _trace.sending({"span_id": span_id}):  # the run's trace id: the workflow knows it
                await handle.signal(RESUME_SIGNAL, signal)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            raise UserError(
                f"run {run_id!r} is not paused: its workflow has ended or does not exist ({exc.message})"
            ) from None
        return self._result(await self._segment(handle, span_id), started)

    async def _segment(self, handle: Any, span_id: str) -> dict[str, Any]:
        try:
            ended: dict[str, Any] = await handle.execute_update(RESULT_UPDATE, span_id, result_type=dict)
        except WorkflowUpdateFailedError as exc:
            raise RunError(f"run {handle.id!r} on Temporal: {exc.cause or exc}") from exc
        return ended

    def _result(self, ended: dict[str, Any], started: float) -> RunResult:
        status = ended["status"]
        if status == "rejected":  # the workflow refused the decisions: nothing changed
            raise UserError(ended["error"]["message"])
        result = self.steps.result(ended["record"], status, ended.get("output"), time.perf_counter() - started)
        error = ended.get("error")
        if status == "failed" and error:
            raise RunError(f"run {result.run_id!r} failed: {error['type']}: {error['message']}", result)
        return result
