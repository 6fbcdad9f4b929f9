"""Steps of a run for an engine that drives the loop itself (a durable workflow engine such as Temporal).

``agent.run()`` runs the whole loop in one process. An engine that keeps the loop in its own code (a
Temporal workflow, which must be deterministic and is replayed from its history) instead calls these
steps, each of which is one side effect it records and never repeats on replay:

- :meth:`RunSteps.new_run` builds a run's first state (ids included) before the engine starts it;
- :meth:`RunSteps.model_step` is one model request, :meth:`RunSteps.tool_step` one tool call, each one
  span with the same hooks, layers and events as in ``agent.run()``;
- :meth:`RunSteps.segment_started`, :meth:`~RunSteps.segment_resumed`, :meth:`~RunSteps.interrupted` and
  :meth:`~RunSteps.segment_ended` fire the run's own events.

Everything that crosses the engine's boundary is JSON data: the run's state is a checkpoint *record*
(:meth:`RunSteps.record` / :meth:`RunSteps.state`, the checkpoint format), a call and a decision are
dicts. Ids come from the record and the arguments, never from the engine's clock or random source.

Tool retries: an engine that retries a call itself passes ``attempt`` (1, 2, ...) to
:meth:`RunSteps.tool_step`; the tool's own ``retries`` then never run inside a step. Instead a failed
attempt that the tool's policy would retry comes back as :attr:`ToolStep.retry` (with ``on_retry`` fired)
for the engine to schedule, and the last attempt's error is the tool message the model sees.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._approval import Approval, as_approval
from ._checkpoint import InMemoryCheckpointStore
from ._config import AgentConfig
from ._context import RunContext
from ._events import ErrorInfo, Interruption, RetryScheduled, RunEnded, RunInterrupted, RunResumed, RunStarted
from ._handoff import _reachable, active_config, settle, tools_of
from ._ids import new_span_id
from ._loop import _maybe_compact as maybe_compact
from ._messages import Message, ToolCall
from ._model_step import call_model
from ._result import RunResult
from ._segment import Segment
from ._span import Span
from ._state import RunState
from ._tool_step import call_tool
from ._tools import Tool, serialize_result
from .exceptions import UserError

if TYPE_CHECKING:
    from ._agent import Agent, Input

__all__ = ["RunSteps", "ToolStep", "new_span_id"]

T = TypeVar("T")
#: A conversation a run continues: its session id and its messages so far.
Session = tuple[str, list[Message]]


@dataclass(frozen=True, slots=True)
class ToolStep:
    """What one tool call step gave: a tool message for the model, or a pause (``interruption``), or
    (with ``attempt`` given) an error the tool's retry policy retries (``retry``, with ``retry_delay_s``)."""

    message: Message | None = None
    interruption: Interruption | None = None
    #: Tools approved for the rest of the run by this step's decision (``Approval.allow(remember=True)``).
    approved_tools: tuple[str, ...] = ()
    retry: BaseException | None = None
    retry_delay_s: float = 0.0
    #: The agent a ``transfer_to_{name}`` call handed the run to (``on_handoff`` fired): the engine sets
    #: the record's ``active_agent`` to it (None when it is the run's own agent) once the turn's calls end.
    handoff: str | None = None


class _OneAttempt:
    """A retry policy that makes exactly one attempt and keeps its error: the engine retries."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None

    async def call(self, function: Callable[[], Awaitable[T]], on_retry: object = None) -> T:
        try:
            return await function()
        except BaseException as exc:
            self.error = exc
            raise


class RunSteps:
    """The steps of one agent's runs, for an engine that owns the loop (see the module docstring)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.config = agent.config
        self._store = InMemoryCheckpointStore()

    # ------------------------------------------------------------------------------------- state

    def new_run(
        self, input: Input, *, run_id: str, metadata: dict[str, Any] | None = None, session: Session | None = None
    ) -> RunState:
        """A new run's state with ``run_id`` (the engine's id for it), a trace id (the current span's when
        the run starts inside one, else new) and, in ``parent_span_id``, the span it is a child of.
        ``session``: the id and the messages of the conversation it continues (:meth:`load_session`)."""
        history = session[1] if session is not None else None
        state, parent_span_id = self.agent._new_state(input, history, metadata)
        state.run_id = run_id
        state.parent_span_id = parent_span_id
        state.session_id = session[0] if session is not None else None
        return state

    async def load_session(self, session_id: str) -> Session:
        """The conversation kept under ``session_id`` in the agent's store, for :meth:`new_run`."""
        if not isinstance(session_id, str) or not session_id:
            raise UserError(f"session_id must be a non-empty string, not {session_id!r}")
        return session_id, await self.agent.store().load_session(session_id)

    async def save_session(self, record: Mapping[str, Any]) -> None:
        """A completed run's conversation, kept under its session id in the agent's store (if it has one),
        as ``agent.run(session_id=...)`` keeps it."""
        state = self.state(record)
        if state.session_id is not None:
            await self.agent.store().save_session(state.session_id, state.messages)

    @staticmethod
    def record(state: RunState) -> dict[str, Any]:
        """The state as JSON data (the checkpoint record)."""
        record: dict[str, Any] = json.loads(state.snapshot().encode())
        return record

    @staticmethod
    def state(record: Mapping[str, Any]) -> RunState:
        """A working state from its record (a :class:`~tracedagent.CheckpointError` when it is unreadable)."""
        return RunState.decode(str(record.get("run_id")), json.dumps(record).encode()).live()

    def result(self, record: Mapping[str, Any], status: str, output: str | None, duration_s: float) -> RunResult:
        state = self.state(record)
        return RunResult(
            output=output,
            status=status,  # type: ignore[arg-type]
            run_id=state.run_id,
            trace_id=state.trace_id,
            usage=state.usage,
            messages=list(state.messages),
            interruptions=list(state.pending),
            turns=state.turn,
            duration_s=duration_s,
        )

    # ------------------------------------------------------------------------------ run segments

    def _span(self, state: RunState, span_id: str) -> Span:
        return Span(
            self.agent._get_dispatcher(),
            state.run_id,
            state.trace_id,
            self.config.name,
            state.parent_span_id,
            span_id,
            state.tracestate,
        )

    def segment_started(self, record: Mapping[str, Any], span_id: str) -> dict[str, Any]:
        """Fire ``on_run_start`` for the run's first segment (span ``span_id``); returns the record with
        the run's start time."""
        state = self.state(record)
        state.started_ns = started = time.time_ns()
        span = self._span(state, span_id)
        if span.d.on_run_start:
            model = self.config.model
            fields = {"model": model.name, "provider": model.provider, "input": tuple(state.messages)}
            span.d.emit(
                span.d.on_run_start,
                span.event(RunStarted, at_ns=started, **fields, metadata=state.metadata or None),
            )
        return self.record(state)

    def segment_resumed(self, record: Mapping[str, Any], span_id: str, previous_span_id: str | None) -> None:
        """Fire ``on_resume`` for a later segment (span ``span_id``) of a paused run."""
        state = self.state(record)
        span = self._span(state, span_id)
        if span.d.on_resume:
            now = time.time_ns()
            waited = max(0.0, (now - (state.paused_at_ns or now)) / 1e9)
            event = span.event(
                RunResumed,
                at_ns=now,
                previous_span_id=previous_span_id,
                waited_s=waited,
                run_started_ns=state.started_ns,
            )
            span.d.emit(span.d.on_resume, event)

    def interrupted(self, record: Mapping[str, Any], span_id: str) -> dict[str, Any]:
        """Fire ``on_interrupt`` with the run's pending calls; returns the record with the pause time."""
        state = self.state(record)
        state.paused_at_ns = time.time_ns()
        state.segment_span_id = span_id
        span = self._span(state, span_id)
        if span.d.on_interrupt:
            span.d.emit(span.d.on_interrupt, span.event(RunInterrupted, interruptions=tuple(state.pending)))
        return self.record(state)

    def segment_ended(
        self,
        record: Mapping[str, Any],
        span_id: str,
        status: str,
        *,
        started_ns: int,
        output: str | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Fire ``on_run_end`` for the segment ``span_id`` that began at ``started_ns`` (wall clock: its
        start and end may be on different hosts)."""
        state = self.state(record)
        span = self._span(state, span_id)
        if span.d.on_run_end:
            now = time.time_ns()
            event = span.event(
                RunEnded,
                at_ns=now,
                status=status,
                error=error,
                duration_s=max(0.0, (now - started_ns) / 1e9),
                usage=state.usage,
                turns=state.turn,
                output=output,
            )
            span.d.emit(span.d.on_run_end, event)

    # ------------------------------------------------------------------------------------- steps

    def _segment(self, state: RunState, span_id: str, pending: Sequence[Interruption] = ()) -> Segment:
        """A segment of the agent the run is with now (``state.active_agent``, after a handoff), with its
        tools (and the tool of a ``pending`` call made before the handoff), as ``agent.run()`` has it."""
        config, tools = active_config(self.config, state, pending)
        ctx = RunContext(config, state, tools)
        seg = Segment(ctx, self.agent._get_dispatcher(), None, self._store, False, state.parent_span_id)
        span = seg.span = self._span(state, span_id)
        if config is not self.config:  # events between the segment's own carry the agent the run is with
            context = span.context
            seg.span = Span(
                span.d, span.run_id, span.trace_id, config.name, span.parent_span_id, span.span_id, context.tracestate
            )
        return seg

    async def model_step(self, record: Mapping[str, Any], span_id: str) -> dict[str, Any]:
        """One model request of the segment ``span_id``, after what ``agent.run()`` does before one: the
        agent's compaction (``on_compaction``, and a summary's own model call), then ``prepare_tools``.
        Returns the record with the history as compacted, the answer appended, the turn counted and the
        usage added. A failure raises (a :class:`~tracedagent.ModelError`)."""
        state = self.state(record)
        seg = self._segment(state, span_id)
        config = seg.config
        if config.compaction is not None:
            await maybe_compact(seg)
        messages = state.messages
        assert isinstance(messages, list)
        if config.prepare_tools is not None:
            await config.prepare_tools(seg.ctx)
        response = await call_model(seg, messages)
        messages.append(response.message)
        state.turn += 1
        return self.record(state)

    async def tool_step(
        self,
        record: Mapping[str, Any],
        span_id: str,
        call: Mapping[str, Any],
        *,
        decision: Any = None,
        external_result: Any = None,
        attempt: int | None = None,
    ) -> ToolStep:
        """One tool call (``{"id", "name", "arguments"}``) of the segment ``span_id``, with the tools the
        agent's ``prepare_tools`` gives the run (called on the step's state, as before a model step),
        through the approval layer (``decision``: a decision given to resume, as a bool or :meth:`decision_record` data;
        ``external_result``: an external tool's result) and the tool pipeline."""
        state = self.state(record)
        tool_call = ToolCall(str(call["id"]), str(call["name"]), str(call["arguments"]))
        answered = decision is not None or external_result is not None  # it was pending: its tool stays
        pending = [Interruption(tool_call.id, tool_call.name, tool_call.arguments, "")] if answered else []
        seg = self._segment(state, span_id, pending)
        config, tools = seg.config, seg.ctx.tools
        if config.prepare_tools is not None:  # the run's tools as the model step saw them
            await config.prepare_tools(seg.ctx)
        one: _OneAttempt | None = None
        tool = tools.get(tool_call.name)
        if attempt is not None and tool is not None and tool.retry is not None:
            one = _OneAttempt()
            tools[tool.name] = single = copy.copy(tool)
            single.retry = one  # type: ignore[assignment]  # duck-typed: the step makes one attempt
        before = set(state.approved_tools)
        if decision is not None:
            seg.decisions[tool_call.id] = self.decision(tool_call.id, decision)
        if external_result is not None:
            seg.external_results[tool_call.id] = serialize_result(external_result)
        await call_tool(seg, tool_call)
        approved = tuple(sorted(set(state.approved_tools) - before))
        handoff = None
        if seg.ctx.agent is not config:  # a transfer_to_{name} tool: on_handoff, and the run goes on there
            settle(seg)
            handoff = seg.config.name
        if state.pending:
            return ToolStep(interruption=state.pending[-1], approved_tools=approved)
        message = state.turn_results[tool_call.id]
        policy = tool.retry if tool is not None else None
        error = one.error if one is not None else None
        if (
            policy is not None
            and attempt is not None
            and error is not None
            and attempt < policy.attempts
            and isinstance(error, Exception)
            and policy._worth_a_retry(error)
        ):
            delay = min(policy.max_delay, policy.initial_delay * 2 ** (attempt - 1))
            if seg.d.on_retry:
                seg.span.emit(
                    RetryScheduled,
                    target=tool_call.name,
                    kind="tool",
                    attempt=attempt,
                    delay_s=delay,
                    error=ErrorInfo.of(error),
                )
            return ToolStep(message=message, approved_tools=approved, retry=error, retry_delay_s=delay, handoff=handoff)
        return ToolStep(message=message, approved_tools=approved, handoff=handoff)

    # ---------------------------------------------------------------------------------- decisions

    @staticmethod
    def decision(call_id: str, value: Any) -> Approval:
        """A decision from what a caller passed (``True``, ``False``, an :class:`~tracedagent.Approval`)
        or from its :meth:`decision_record`."""
        if isinstance(value, Mapping):
            return Approval(
                bool(value.get("approved")), value.get("arguments"), value.get("reason"), bool(value.get("remember"))
            )
        return as_approval(call_id, value)

    @staticmethod
    def decision_record(call_id: str, value: Any) -> dict[str, Any]:
        """A decision as JSON data (checked: a bad one is a :class:`~tracedagent.UserError` now)."""
        approval = as_approval(call_id, value)
        return {
            "approved": approval.approved,
            "arguments": approval.arguments,
            "reason": approval.reason,
            "remember": approval.remember,
        }

    def tool_names(self) -> Sequence[str]:
        return tuple(self.config.tools)

    def agent_configs(self) -> list[AgentConfig]:
        """The configurations of every agent a run can be with: this agent's, then its handoffs' agents'."""
        return list(_reachable(self.config).values())

    def reachable_tools(self) -> dict[str, Tool]:
        """The tools of every agent a run can be with (the agent's, then its handoffs' agents'), each with
        its ``transfer_to_{name}`` tools; a name two agents use is the first one's."""
        found: dict[str, Tool] = {}
        for config in self.agent_configs():
            for name, tool in tools_of(config).items():
                found.setdefault(name, tool)
        return found
