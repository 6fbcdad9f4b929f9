"""Persistence: checkpoints during a run, the interrupt that pauses it, and the state a resume starts from.

Which checkpoints are written depends on ``Agent(checkpoint_every=...)``: ``"step"`` saves after every
model call and every finished tool call (so after a crash only the step in flight runs again), while
``"interrupt"`` saves only when the run pauses (and when it ends after having paused). An agent with no
store of its own uses the process's in-memory store and ``"interrupt"``, so resuming works in the same
process and a plain run writes nothing.

With a store that leases runs (:class:`~tracedagent._checkpoint.ResumeLeaser`) every segment holds the
run's lease (:func:`lease`): a resume from before it reads the checkpoint until it ends, a new run from
its first checkpoint on. So two processes never resume one run at once, a run still going in one process
cannot be resumed by another, and a process whose lease was taken over cannot write its checkpoint over
the new owner's (its save is refused with a :class:`CheckpointError`).

A checkpoint whose status is still ``running`` was left by a segment that never ended (its process
crashed or was killed): a call of its turn in flight without a result runs again only if its tool is
``idempotent``; any other gets an error result saying the call was interrupted and not retried
(:func:`restore`), so a side effect happens at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from ._approval import Approval, as_approval
from ._checkpoint import (
    LEASE_S,
    CheckpointStore,
    Fence,
    InMemoryCheckpointStore,
    ResumeLeaser,
    SQLiteCheckpointStore,
    reset_fence,
    set_fence,
)
from ._config import AgentConfig
from ._events import CheckpointSaved, RunInterrupted
from ._messages import Message
from ._segment import Segment
from ._state import RunState
from ._tools import serialize_result
from .exceptions import CheckpointError, ConfigurationError, UserError

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


async def save(seg: Segment, status: str = "running") -> None:
    """Write the run's state now, and fire ``on_checkpoint`` with its size and write time."""
    state, store = seg.state, seg.store
    state.step += 1
    # A snapshot of the state object itself: the store may encode it later, on its own thread.
    checkpoint = state.snapshot(
        status=status,
        segment_span_id=seg.span.span_id,
        parent_span_id=seg.span.parent_span_id,
        paused_at_ns=time.time_ns(),
    )
    started = time.perf_counter()
    written = await store.save(checkpoint)
    seg.span.emit(
        CheckpointSaved,
        bytes=written,
        duration_s=time.perf_counter() - started,
        store=store.name,
        step=state.step,
    )


async def step(seg: Segment) -> None:
    """A step finished: checkpoint it if the agent saves every step."""
    if seg.every_step:
        await save(seg)


async def interrupt(seg: Segment) -> None:
    """The run pauses: ``on_interrupt`` (and the stream) get the pending calls; the state is saved."""
    if seg.d.on_interrupt or seg.stream is not None:
        event = seg.span.event(RunInterrupted, interruptions=tuple(seg.state.pending))
        if seg.d.on_interrupt:
            seg.d.emit(seg.d.on_interrupt, event)
        if seg.stream is not None:
            seg.stream(event)
    await save(seg, "interrupted")


async def finish(seg: Segment, status: str) -> None:
    """The run ended (``completed``, ``failed`` or ``cancelled``): record it where a record exists or
    is wanted, so a finished run is never resumed and a failed one can be. The process's default
    in-memory store, which keeps paused runs only, forgets an ended run instead, so it does not grow."""
    state = seg.state
    if status == "completed" and state.session_id is not None:
        await seg.store.save_session(state.session_id, state.messages)
    if not (seg.every_step or state.step):
        return
    if is_default_memory(seg.store):  # it keeps paused runs only: a long-lived process must not grow
        await seg.store.delete(state.run_id)
        return
    await save(seg, status)


async def finish_quietly(seg: Segment, status: str) -> None:
    """:func:`finish` on a failing or cancelled run: never hide the run's own error or cancellation."""
    if not (seg.every_step or seg.state.step):  # nothing recorded, nothing to record: no await, no task
        return
    try:
        await asyncio.shield(finish(seg, status))
    except Exception:  # the run's own error matters more; the checkpoint stays as of the last step
        logger.exception("could not record that run %s ended %s", seg.state.run_id, status)


_leasers: dict[type, bool] = {}


def _leaser(store: CheckpointStore) -> ResumeLeaser | None:
    """``store`` if it leases runs, else None (cached per class: a protocol check costs microseconds)."""
    kind = type(store)
    known = _leasers.get(kind)
    if known is None:
        known = _leasers[kind] = isinstance(store, ResumeLeaser)
    return cast(ResumeLeaser, store) if known else None


def leases(store: CheckpointStore) -> bool:
    """Whether ``store`` leases runs (so that :func:`lease` has anything to hold)."""
    return _leaser(store) is not None


@contextlib.asynccontextmanager
async def lease(store: CheckpointStore, run_id: str, *, new: bool = False) -> AsyncIterator[None]:
    """Hold ``run_id``'s lease inside the block, renewed every third of its length and released at the
    end. A resume takes it now (a :class:`CheckpointError` if another process holds it); a ``new`` run
    takes it with its first checkpoint, so a run that writes none costs the store nothing. Inside the
    block the store writes the run's checkpoints only while the lease is still this segment's (a
    :class:`~tracedagent._checkpoint.Fence`). A store that does not lease runs (or, for a resume, has no
    such run) gives nothing to hold."""
    leaser = _leaser(store)
    if leaser is None:
        yield
        return
    holder = f"{os.getpid()}-{uuid.uuid4().hex}"
    if new:
        length = float(getattr(store, "lease_s", LEASE_S))
    else:
        acquired = await leaser.acquire_lease(run_id, holder)
        if acquired is None:
            yield
            return
        length = acquired
    fence = Fence(run_id, holder, held=not new)
    token = set_fence(fence)
    renewing = asyncio.ensure_future(_renew(leaser, fence, length / 3))
    try:
        yield
    finally:
        reset_fence(token)
        renewing.cancel()
        if fence.held:
            try:
                await asyncio.shield(leaser.release_lease(run_id, holder))
            except Exception:  # it expires by itself; the run's own outcome matters more
                logger.exception("could not release the lease of run %s", run_id)


async def _renew(store: ResumeLeaser, fence: Fence, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        if not fence.held:  # a new run before its first checkpoint: nothing to renew yet
            continue
        try:
            if not await store.renew_lease(fence.run_id, fence.holder):
                logger.error(
                    "run %s: this segment lost its lease (it expired and another process took it); "
                    "its next checkpoint will be refused",
                    fence.run_id,
                )
                return
        except Exception:  # a store that failed once may answer next time, before the lease expires
            logger.exception("could not renew the lease of run %s", fence.run_id)


def _crashed_calls(agent: AgentConfig, checkpoint: RunState) -> dict[str, Message]:
    """Error results for the calls of a crashed segment's turn in flight whose tools are not idempotent:
    they may have run (in part), so they are not run again."""
    if checkpoint.status != "running" or not checkpoint.messages:
        return {}
    last = checkpoint.messages[-1]
    if last.role != "assistant" or not last.tool_calls:
        return {}
    results: dict[str, Message] = {}
    for call in last.tool_calls:
        tool = agent.tools.get(call.name)
        if call.id in checkpoint.turn_results or (tool is not None and (tool.idempotent or tool.external)):
            continue
        text = (
            f"the call of tool {call.name!r} was interrupted by a crash (the process running the run stopped "
            "while it was in flight) and was not retried, because the tool is not marked idempotent: it may "
            "or may not have taken effect. Check before calling it again."
        )
        results[call.id] = Message.tool(call.id, call.name, text, is_error=True)
    return results


def restore(
    agent: AgentConfig, checkpoint: RunState, approvals: Mapping[str, Any], results: Mapping[str, Any]
) -> tuple[RunState, dict[str, Approval], dict[str, str]]:
    """The run's state from its checkpoint, with the decisions for its pending calls. Every problem is
        a :class:`UserError` raised before anything runs, so a wrong resume loses nothing (a run that has
    already completed: a :class:`CheckpointError`, the answer a resume that lost a race gets)."""
    run_id = checkpoint.run_id
    if checkpoint.agent != agent.name:
        raise UserError(f"run {run_id!r} belongs to agent {checkpoint.agent!r}, not {agent.name!r}")
    if checkpoint.status == "completed":
        raise CheckpointError(
            f"run {run_id!r} has already completed; start a new run (continue its conversation with "
            "messages=result.messages or session_id=...)",
            run_id=run_id,
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
    decisions = {call_id: as_approval(call_id, value) for call_id, value in approvals.items()}
    external = {call_id: serialize_result(value) for call_id, value in results.items()}
    state = checkpoint.live()
    state.turn_results.update(_crashed_calls(agent, checkpoint))
    state.pending = []  # the decisions answer them; the segment asks again for what is still open
    state.status = "running"
    return state, decisions, external
