"""Checkpoints during a run, the interrupt that pauses it, and the context a resume starts from.

Which checkpoints are written depends on ``Agent(checkpoint_every=...)``: ``"step"`` saves after every
model call and every finished tool call (so after a crash only the step in flight runs again), while
``"interrupt"`` saves only when the run pauses (and when it ends after having paused). An agent with no
store of its own uses the process's in-memory store and ``"interrupt"``, so resuming works in the same
process and a plain run writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._approval import as_approval
from ._checkpoint import Checkpoint, CheckpointStore, InMemoryCheckpointStore, SQLiteCheckpointStore
from ._context import RunContext
from ._events import CheckpointSaved, RunInterrupted
from ._tools import serialize_result
from .exceptions import ConfigurationError, UserError

if TYPE_CHECKING:
    from ._agent import Agent
    from ._loop import Run

ENV_CHECKPOINTS = "TRACEDAGENT_CHECKPOINTS"
logger = logging.getLogger("tracedagent")

_default_memory = InMemoryCheckpointStore()
_sqlite_by_path: dict[str, SQLiteCheckpointStore] = {}


def default_store() -> CheckpointStore:
    """The store of agents that name none: a SQLite file when ``TRACEDAGENT_CHECKPOINTS`` is set, else
    this process's memory."""
    path = os.environ.get(ENV_CHECKPOINTS, "").strip()
    if not path:
        return _default_memory
    store = _sqlite_by_path.get(path)
    if store is None:
        try:
            store = _sqlite_by_path[path] = SQLiteCheckpointStore(path)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{ENV_CHECKPOINTS}={path!r}: {exc}") from None
    return store


def is_default_memory(store: CheckpointStore) -> bool:
    return store is _default_memory


async def save(run: Run, status: str = "running") -> None:
    """Write the run's state now, and fire ``on_checkpoint`` with its size and write time."""
    ctx, d, store = run.ctx, run.d, run.store
    ctx.step += 1
    checkpoint = Checkpoint(
        run_id=ctx.run_id,
        trace_id=ctx.trace_id,
        agent=run.agent.name,
        status=status,
        messages=tuple(ctx.messages),
        turn=ctx.turn,
        usage=ctx.usage,
        turn_results=dict(ctx.turn_results),
        pending=tuple(ctx.pending),
        approved_tools=tuple(sorted(ctx.approved_tools)),
        metadata=dict(ctx.metadata),  # a snapshot: the store may encode it later, on its thread
        session_id=ctx.session_id,
        segment_span_id=run.span_id,
        parent_span_id=run.parent_span_id,
        paused_at_ns=time.time_ns(),
        step=ctx.step,
        started_ns=ctx.started_ns,
    )
    started = time.perf_counter()
    written = await store.save(checkpoint)
    if d.on_checkpoint:
        d.emit(
            d.on_checkpoint,
            CheckpointSaved(
                run_id=ctx.run_id,
                trace_id=ctx.trace_id,
                span_id=run.span_id,
                parent_span_id=run.parent_span_id,
                agent=run.agent.name,
                timestamp_ns=time.time_ns(),
                bytes=written,
                duration_s=time.perf_counter() - started,
                store=store.name,
                step=ctx.step,
            ),
        )


async def step(run: Run) -> None:
    """A step finished: checkpoint it if the agent saves every step."""
    if run.every_step:
        await save(run)


async def interrupt(run: Run) -> None:
    """The run pauses: ``on_interrupt`` (and the stream) get the pending calls; the state is saved."""
    ctx, d = run.ctx, run.d
    if d.on_interrupt or run.stream is not None:
        event = RunInterrupted(
            run_id=ctx.run_id,
            trace_id=ctx.trace_id,
            span_id=run.span_id,
            parent_span_id=run.parent_span_id,
            agent=run.agent.name,
            timestamp_ns=time.time_ns(),
            interruptions=tuple(ctx.pending),
        )
        if d.on_interrupt:
            d.emit(d.on_interrupt, event)
        if run.stream is not None:
            run.stream(event)
    await save(run, "interrupted")


async def finish(run: Run, status: str) -> None:
    """The run ended (``completed``, ``failed`` or ``cancelled``): record it where a record exists or
    is wanted, so a finished run is never resumed and a failed one can be. The process's default
    in-memory store, which keeps paused runs only, forgets an ended run instead, so it does not grow."""
    ctx = run.ctx
    if status == "completed" and ctx.session_id is not None:
        await run.store.save_session(ctx.session_id, ctx.messages)
    if not (run.every_step or ctx.step):
        return
    if is_default_memory(run.store):  # it keeps paused runs only: a long-lived process must not grow
        await run.store.delete(ctx.run_id)
        return
    await save(run, status)


async def finish_quietly(run: Run, status: str) -> None:
    """:func:`finish` on a failing or cancelled run: never hide the run's own error or cancellation."""
    if not (run.every_step or run.ctx.step):  # nothing recorded, nothing to record: no await, no task
        return
    try:
        await asyncio.shield(finish(run, status))
    except Exception:  # the run's own error matters more; the checkpoint stays as of the last step
        logger.exception("could not record that run %s ended %s", run.ctx.run_id, status)


def restore_context(
    agent: Agent, checkpoint: Checkpoint, approvals: Mapping[str, Any], results: Mapping[str, Any], deps: Any
) -> RunContext:
    """The run's state from its checkpoint, with the decisions for its pending calls. Every problem is
    a :class:`UserError` raised before anything runs, so a wrong resume loses nothing."""
    run_id = checkpoint.run_id
    if checkpoint.agent != agent.name:
        raise UserError(f"run {run_id!r} belongs to agent {checkpoint.agent!r}, not {agent.name!r}")
    if checkpoint.status == "completed":
        raise UserError(
            f"run {run_id!r} has already completed; start a new run (continue its conversation with "
            "messages=result.messages or session_id=...)"
        )
    pending = {p.id: p for p in checkpoint.pending}
    listing = ", ".join(f"{p.id} ({p.tool}, {p.kind})" for p in checkpoint.pending) or "none"
    for call_id in [*approvals, *results]:
        if call_id not in pending:
            raise UserError(f"run {run_id!r} has no pending call {call_id!r}; pending: {listing}")
    for call_id in approvals:
        if pending[call_id].kind != "approval":
            raise UserError(f"call {call_id!r} of run {run_id!r} is an external tool call: pass its result in results=")
    for call_id in results:
        if pending[call_id].kind != "external":
            raise UserError(f"call {call_id!r} of run {run_id!r} waits for approval: decide it in approvals=")
    missing = [p.id for p in checkpoint.pending if p.id not in approvals and p.id not in results]
    if missing:
        raise UserError(
            f"run {run_id!r} is waiting on {', '.join(missing)}: pass approvals={{call_id: True or False}} for "
            f"approvals and results={{call_id: value}} for external tools (pending: {listing})"
        )
    ctx = RunContext(
        agent,
        run_id,
        checkpoint.trace_id,
        list(checkpoint.messages),
        dict(agent.tools),
        dict(checkpoint.metadata),
        deps,
    )
    ctx.usage = checkpoint.usage
    ctx.turn = checkpoint.turn
    ctx.turn_results = dict(checkpoint.turn_results)
    ctx.approved_tools = set(checkpoint.approved_tools)
    ctx.session_id = checkpoint.session_id
    ctx.step = checkpoint.step
    ctx.started_ns = checkpoint.started_ns
    ctx.decisions = {call_id: as_approval(call_id, value) for call_id, value in approvals.items()}
    ctx.external_results = {call_id: serialize_result(value) for call_id, value in results.items()}
    return ctx
