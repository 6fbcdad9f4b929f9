"""``Agent``: the immutable configuration of an agent, and the entry points that run it."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal

import pluggy

from . import _dispatch
from ._checkpoint import Checkpoint, CheckpointStore, store_from
from ._compaction import CompactionStrategy
from ._context import RunContext
from ._durable import default_store, is_default_memory, restore_context
from ._events import Interruption
from ._ids import _current, new_trace_id
from ._loop import Run, execute
from ._messages import Message, Usage
from ._model import Model
from ._stream import FinalResult, StreamEvent
from ._tools import Tool
from .exceptions import ConfigurationError, PluginError, RunRejected, UserError

__all__ = ["Agent", "RunResult"]

RunStatus = Literal["completed", "interrupted", "failed", "cancelled"]


@dataclass(slots=True)
class RunResult:
    """What a run did: its ``output`` text, ``status``, ids, ``usage`` and the whole conversation."""

    output: str | None
    status: RunStatus
    run_id: str
    trace_id: str
    usage: Usage
    messages: list[Message]
    interruptions: list[Interruption] = field(default_factory=list)
    turns: int = 0
    duration_s: float = 0.0


Input = str | Message | Sequence[Message]


class Agent:
    """An agent: a name, a model, instructions and tools. Immutable once built; safe to run many times
    at once. Plugins given here see only this agent's runs, on top of the process-wide plugins.

    ``prepare_tools(ctx)`` (sync or async) is called before each model call and may change the run's
    tools with ``ctx.add_tool`` / ``ctx.remove_tool``.

    ``checkpoints`` is where run state is kept (a :class:`CheckpointStore` or a SQLite file path; without
    one, ``TRACEDAGENT_CHECKPOINTS`` names a SQLite file, else the state stays in this process's memory).
    ``checkpoint_every`` is ``"step"`` (the default with a durable store: after every model call and tool call,
    so a crashed run resumes where it was) or ``"interrupt"`` (only when the run pauses).
    """

    def __init__(
        self,
        name: str,
        model: Model,
        *,
        instructions: str | None = None,
        tools: Iterable[Tool] = (),
        max_turns: int = 20,
        compaction: CompactionStrategy | None = None,
        plugins: Iterable[object] = (),
        model_settings: dict[str, Any] | None = None,
        prepare_tools: Callable[[RunContext], Awaitable[None] | None] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        checkpoint_every: Literal["step", "interrupt"] | None = None,
        max_concurrent_runs: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"an agent needs a non-empty name, not {name!r}")
        if not isinstance(model, Model):
            raise ConfigurationError(
                f"agent {name!r}: model must implement the Model protocol (name, provider, stream()); "
                f"got {type(model).__name__}. Use tracedagent.models or tracedagent.testing.ScriptedModel"
            )
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigurationError(f"agent {name!r}: max_turns must be a positive integer, not {max_turns!r}")
        if compaction is not None and not isinstance(compaction, CompactionStrategy):
            raise ConfigurationError(
                f"agent {name!r}: compaction must be a strategy such as DropOldest(max_tokens=...) or "
                f"Summarize(max_tokens=...), not {compaction!r}"
            )
        self.name = name
        self.model = model
        self.instructions = instructions
        self.max_turns = max_turns
        self.compaction = compaction
        self.model_settings = dict(model_settings or {})
        self.tools: dict[str, Tool] = {}
        for t in tools:
            if not isinstance(t, Tool):
                raise ConfigurationError(f"agent {name!r}: {t!r} is not a tool; decorate the function with @tool")
            if t.name in self.tools:
                raise ConfigurationError(f"agent {name!r}: two tools are named {t.name!r}; give one another name")
            self.tools[t.name] = t
        self.prepare_tools = _as_async(prepare_tools) if prepare_tools is not None else None
        self.checkpoints = store_from(checkpoints)
        if checkpoint_every not in (None, "step", "interrupt"):
            raise ConfigurationError(
                f"agent {name!r}: checkpoint_every must be 'step' or 'interrupt', not {checkpoint_every!r}"
            )
        #: "step", "interrupt", or None: every step with a durable store, only at pauses in memory.
        self.checkpoint_every: str | None = checkpoint_every
        if max_concurrent_runs is not None and (
            isinstance(max_concurrent_runs, bool) or not isinstance(max_concurrent_runs, int) or max_concurrent_runs < 1
        ):
            raise ConfigurationError(
                f"agent {name!r}: max_concurrent_runs must be a whole number >= 1 or None, not {max_concurrent_runs!r}"
            )
        self.max_concurrent_runs = max_concurrent_runs
        self._active = 0
        self._active_lock = threading.Lock()
        self._pm: pluggy.PluginManager | None = None
        plugins = list(plugins)
        if plugins:
            self._pm = _dispatch.new_plugin_manager()
            for plugin in plugins:
                try:
                    _dispatch.register_checked(self._pm, plugin)
                except PluginError as exc:
                    raise PluginError(f"agent {name!r}: {exc}") from exc
        self._dispatcher: _dispatch.Dispatcher | None = None
        self._dispatcher_version = -1

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model.provider}:{self.model.name})"

    # ------------------------------------------------------------------------------------ running

    def _get_dispatcher(self) -> _dispatch.Dispatcher:
        dispatcher = _dispatch.get_dispatcher()
        if self._pm is None:
            return dispatcher
        version = _dispatch.registry_version()
        if self._dispatcher is None or self._dispatcher_version != version:
            self._dispatcher = _dispatch.Dispatcher([self._pm, _dispatch.global_plugin_manager()])
            self._dispatcher_version = version
        return self._dispatcher

    def _new_context(
        self, input: Input, messages: Sequence[Message] | None, metadata: dict[str, Any] | None, deps: Any
    ) -> RunContext:
        history = list(messages) if messages is not None else []
        if isinstance(input, str):
            history.append(Message.user(input))
        elif isinstance(input, Message):
            history.append(input)
        elif isinstance(input, Sequence) and not isinstance(input, str):
            for m in input:
                if not isinstance(m, Message):
                    raise UserError(
                        f"run() input must be a str, a Message or a list of Message, not a list holding {m!r}"
                    )
            history.extend(input)
        else:
            raise UserError(f"run() input must be a str, a Message or a list of Message, not {type(input).__name__}")
        if not history:
            raise UserError("run() needs something to answer: pass a prompt or messages")
        parent = _current.get()
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        return RunContext(self, new_trace_id(), trace_id, history, dict(self.tools), metadata, deps)

    def store(self) -> CheckpointStore:
        """Where this agent's runs and sessions are kept."""
        return self.checkpoints if self.checkpoints is not None else default_store()

    @property
    def active_runs(self) -> int:
        """Runs (and resumed runs) of this agent going on now."""
        return self._active

    async def _execute(self, run: Run) -> RunResult:
        """One segment, within ``max_concurrent_runs``: past it the run is refused before it starts."""
        limit = self.max_concurrent_runs
        with self._active_lock:
            if limit is not None and self._active >= limit:
                raise RunRejected(
                    f"agent {self.name!r} refused a new run: {self._active} runs are going "
                    f"(max_concurrent_runs={limit}); retry later or raise the limit"
                )
            self._active += 1
        try:
            return await execute(run, _result_of)
        finally:
            with self._active_lock:
                self._active -= 1

    def _segment(self, ctx: RunContext, stream: Callable[[Any], None] | None, resumed: Checkpoint | None = None) -> Run:
        store = self.store()
        every = self.checkpoint_every or ("interrupt" if is_default_memory(store) else "step")
        every_step = every == "step"
        return Run(self, ctx, self._get_dispatcher(), stream, store, every_step, resumed)

    async def _run(
        self,
        input: Input,
        messages: Sequence[Message] | None,
        metadata: dict[str, Any] | None,
        deps: Any,
        session_id: str | None,
        stream: Callable[[Any], None] | None,
    ) -> RunResult:
        if session_id is not None:
            if not isinstance(session_id, str) or not session_id:
                raise UserError(f"session_id must be a non-empty string, not {session_id!r}")
            messages = [*await self.store().load_session(session_id), *(messages or ())]
        ctx = self._new_context(input, messages, metadata, deps)
        ctx.session_id = session_id
        return await self._execute(self._segment(ctx, stream))

    async def run(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
    ) -> RunResult:
        """Run the agent on ``input`` (a prompt, a message or messages) until it answers or pauses.

        ``messages`` (for example ``result.messages`` of an earlier run) continues that conversation;
        ``session_id`` continues the conversation kept under that id in the agent's store (and saves it
        when the run completes). ``deps`` is handed to tools through ``RunContext.deps``. A run that
        needs a person returns with status ``interrupted`` and its ``interruptions``; continue it with
        :meth:`resume`. Raises a :class:`RunError` (with ``.result``) when the run fails; cancellation
        propagates as ``asyncio.CancelledError``.
        """
        return await self._run(input, messages, metadata, deps, session_id, None)

    def run_sync(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
    ) -> RunResult:
        """:meth:`run` for code without an event loop. Ctrl-C cancels the run cleanly."""
        _no_running_loop("run_sync", "run")
        return asyncio.run(self.run(input, messages=messages, metadata=metadata, deps=deps, session_id=session_id))

    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
    ) -> RunResult:
        """Continue a paused, cancelled, failed or crashed run from its last checkpoint, in this process
        or another one (with the same store): the same ``run_id`` and ``trace_id``, a new segment.

        ``approvals`` maps each pending approval's id (``result.interruptions[i].id``) to ``True``,
        ``False``, ``Approval.allow(arguments=..., remember=...)`` or ``Approval.deny(reason)``;
        ``results`` maps each pending external call's id to its result.
        """
        return await self._resume(run_id, approvals, results, deps, None)

    def resume_sync(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
    ) -> RunResult:
        """:meth:`resume` for code without an event loop."""
        _no_running_loop("resume_sync", "resume")
        return asyncio.run(self.resume(run_id, approvals, results=results, deps=deps))

    async def _resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None,
        results: Mapping[str, Any] | None,
        deps: Any,
        stream: Callable[[Any], None] | None,
    ) -> RunResult:
        store = self.store()
        checkpoint = await store.load(run_id)
        if checkpoint is None:
            raise UserError(
                f"no checkpoint of run {run_id!r} in {store!r}; resume a run with the store it ran with "
                "(Agent(checkpoints=...) or TRACEDAGENT_CHECKPOINTS)"
            )
        ctx = restore_context(self, checkpoint, approvals or {}, results or {}, deps)
        return await self._execute(self._segment(ctx, stream, checkpoint))

    async def stream(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Run the agent and yield what happens as it happens, ending with :class:`FinalResult`.

        Stopping the iteration early (``break``, ``aclose()``) cancels the run.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        task = asyncio.ensure_future(self._run(input, messages, metadata, deps, session_id, queue.put_nowait))
        task.add_done_callback(lambda _: queue.put_nowait(done))
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                yield item
            yield FinalResult(task.result())
        finally:
            if not task.done():
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass


def _result_of(run: Run, status: str, output: str | None, error: BaseException | None) -> RunResult:
    ctx = run.ctx
    return RunResult(
        output=output,
        status=status,  # type: ignore[arg-type]
        run_id=ctx.run_id,
        trace_id=ctx.trace_id,
        usage=ctx.usage,
        messages=ctx.messages,
        interruptions=list(ctx.pending),
        turns=ctx.turn,
        duration_s=perf_counter() - run.started,
    )


def _no_running_loop(name: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UserError(f"{name}() was called inside a running event loop; use `await agent.{instead}(...)` there")


def _as_async(fn: Callable[[RunContext], Awaitable[None] | None]) -> Callable[[RunContext], Awaitable[None]]:
    async def call(ctx: RunContext) -> None:
        result = fn(ctx)
        if inspect.isawaitable(result):
            await result

    return call
