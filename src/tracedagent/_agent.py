"""``Agent``: the immutable configuration of an agent, and the entry points that run it."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from time import perf_counter
from typing import Any, Generic, Literal, overload

import pluggy
from typing_extensions import TypeVar

from . import _plugins
from ._agent_tool import agent_tool
from ._checkpoint import CheckpointStore
from ._compaction import CompactionStrategy
from ._config import AgentConfig, configure
from ._context import RunContext
from ._dispatch import Dispatcher
from ._durable import default_store, is_default_memory, lease, leases, restore
from ._handoff import active_config
from ._ids import _current, new_trace_id
from ._loop import execute
from ._messages import Message
from ._model import Model
from ._otel import current_parent
from ._output import TEXT, OutputMode
from ._result import OutputT, RunResult
from ._segment import Segment
from ._state import RunState
from ._stream import FinalResult, StreamEvent
from ._tools import Tool
from ._toolsource import ToolSource, offer
from .exceptions import PluginError, RunRejected, UserError

__all__ = ["Agent", "RunResult"]

Input = str | Message | Sequence[Message]
T = TypeVar("T")


class Agent(Generic[OutputT]):
    """An agent: a name, a model, instructions and tools. Immutable once built; safe to run many times
    at once. Plugins given here see only this agent's runs, on top of the process-wide plugins.

    ``prepare_tools(ctx)`` (sync or async) is called before each model call and may change the run's
    tools with ``ctx.add_tool`` / ``ctx.remove_tool``.

    ``checkpoints`` is where run state is kept (a :class:`CheckpointStore` or a SQLite file path; without
    one, ``TRACEDAGENT_CHECKPOINTS`` names a SQLite file, else the state stays in this process's memory).
    ``checkpoint_every`` is ``"step"`` (the default with a durable store: after every model call and tool call,
    so a crashed run resumes where it was) or ``"interrupt"`` (only when the run pauses).

    ``output_type`` (a pydantic model, dataclass, TypedDict, ``list[...]`` or scalar type) makes every
    run's ``RunResult.output`` a validated value of that type; ``run(output_type=...)`` sets it for
    one run. An invalid answer goes back to the model as a correction up to ``output_retries`` times in
    a run, then the run fails with :class:`OutputValidationError`. ``output_mode`` is ``"native"`` (the
    provider's structured-output mode), ``"tool"`` (an output tool) or ``"auto"`` (native where the
    model has it).

    For type checkers an agent is generic in its output: ``Agent("a", model)`` is an ``Agent[str]`` whose
    runs return ``RunResult[str]``, ``Agent("a", model, output_type=Trip)`` an ``Agent[Trip]`` whose runs
    return ``RunResult[Trip]`` (``output`` is ``Trip | None``: None when the run did not complete). An
    ``output_type`` that is not a class (``int | str``, ``Annotated[...]``) gives ``Agent[Any]``.
    """

    @overload
    def __init__(
        self: Agent[str],
        name: str,
        model: Model | str,
        *,
        instructions: str | None = None,
        tools: Iterable[Tool | ToolSource] = (),
        max_turns: int = 20,
        compaction: CompactionStrategy | None = None,
        plugins: Iterable[object] = (),
        model_settings: dict[str, Any] | None = None,
        prepare_tools: Callable[[RunContext], Awaitable[None] | None] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        checkpoint_every: Literal["step", "interrupt"] | None = None,
        max_concurrent_runs: int | None = None,
        max_result_chars: int | None = None,
        output_type: None = None,
        output_retries: int = 1,
        output_mode: OutputMode = "auto",
        handoffs: Iterable[Agent[Any] | Callable[[], Agent[Any]]] = (),
    ) -> None: ...

    @overload
    def __init__(
        self: Agent[T],
        name: str,
        model: Model | str,
        *,
        instructions: str | None = None,
        tools: Iterable[Tool | ToolSource] = (),
        max_turns: int = 20,
        compaction: CompactionStrategy | None = None,
        plugins: Iterable[object] = (),
        model_settings: dict[str, Any] | None = None,
        prepare_tools: Callable[[RunContext], Awaitable[None] | None] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        checkpoint_every: Literal["step", "interrupt"] | None = None,
        max_concurrent_runs: int | None = None,
        max_result_chars: int | None = None,
        output_type: type[T],
        output_retries: int = 1,
        output_mode: OutputMode = "auto",
        handoffs: Iterable[Agent[Any] | Callable[[], Agent[Any]]] = (),
    ) -> None: ...

    @overload
    def __init__(
        self: Agent[Any],
        name: str,
        model: Model | str,
        *,
        instructions: str | None = None,
        tools: Iterable[Tool | ToolSource] = (),
        max_turns: int = 20,
        compaction: CompactionStrategy | None = None,
        plugins: Iterable[object] = (),
        model_settings: dict[str, Any] | None = None,
        prepare_tools: Callable[[RunContext], Awaitable[None] | None] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        checkpoint_every: Literal["step", "interrupt"] | None = None,
        max_concurrent_runs: int | None = None,
        max_result_chars: int | None = None,
        output_type: object,
        output_retries: int = 1,
        output_mode: OutputMode = "auto",
        handoffs: Iterable[Agent[Any] | Callable[[], Agent[Any]]] = (),
    ) -> None: ...

    def __init__(
        self,
        name: str,
        model: Model | str,
        *,
        instructions: str | None = None,
        tools: Iterable[Tool | ToolSource] = (),
        max_turns: int = 20,
        compaction: CompactionStrategy | None = None,
        plugins: Iterable[object] = (),
        model_settings: dict[str, Any] | None = None,
        prepare_tools: Callable[[RunContext], Awaitable[None] | None] | None = None,
        checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
        checkpoint_every: Literal["step", "interrupt"] | None = None,
        max_concurrent_runs: int | None = None,
        max_result_chars: int | None = None,
        output_type: Any = None,
        output_retries: int = 1,
        output_mode: OutputMode = "auto",
        handoffs: Iterable[Agent[Any] | Callable[[], Agent[Any]]] = (),
    ) -> None:
        #: The immutable configuration every run of this agent reads.
        self.config: AgentConfig = configure(
            name,
            model,
            instructions=instructions,
            tools=tools,
            max_turns=max_turns,
            compaction=compaction,
            model_settings=model_settings,
            prepare_tools=prepare_tools,
            checkpoints=checkpoints,
            checkpoint_every=checkpoint_every,
            max_concurrent_runs=max_concurrent_runs,
            max_result_chars=max_result_chars,
            output_type=output_type,
            output_retries=output_retries,
            output_mode=output_mode,
            handoffs=handoffs,
        )
        self._active = 0
        self._active_lock = threading.Lock()
        self._pm: pluggy.PluginManager | None = None
        plugins = list(plugins)
        if plugins:
            self._pm = _plugins.new_plugin_manager()
            for plugin in plugins:
                try:
                    _plugins.register_checked(self._pm, plugin)
                except PluginError as exc:
                    raise PluginError(f"agent {name!r}: {exc}") from exc
        self._dispatcher: Dispatcher | None = None
        self._dispatcher_version = -1

    # ------------------------------------------------------------------------------ configuration

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> Model:
        return self.config.model

    @property
    def instructions(self) -> str | None:
        return self.config.instructions

    @property
    def tools(self) -> Mapping[str, Tool]:
        """The agent's tools by name (read-only; a run may change its own with ``RunContext.add_tool``)."""
        return self.config.tools

    @property
    def max_turns(self) -> int:
        return self.config.max_turns

    @property
    def compaction(self) -> CompactionStrategy | None:
        return self.config.compaction

    @property
    def model_settings(self) -> Mapping[str, Any]:
        return self.config.model_settings

    @property
    def checkpoints(self) -> CheckpointStore | None:
        return self.config.checkpoints

    @property
    def checkpoint_every(self) -> str | None:
        return self.config.checkpoint_every

    @property
    def max_concurrent_runs(self) -> int | None:
        return self.config.max_concurrent_runs

    @property
    def max_result_chars(self) -> int:
        return self.config.max_result_chars

    @property
    def handoffs(self) -> tuple[Any, ...]:
        """The handoff targets: agents' configurations, or the functions given for later resolution."""
        return self.config.handoffs

    def as_tool(self, name: str | None = None, description: str | None = None) -> Tool:
        """This agent as another agent's tool: the model sends ``input``, this agent runs on it (a child
        run of the tool call's span, in the same trace) and its output is the tool's result. Its usage is
        added to the calling run's usage; a failure or a pause of this agent is a tool error the model
        sees (see the README, "Agents as tools")."""
        return agent_tool(self, name, description)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, model={self.model.provider}:{self.model.name})"

    # ------------------------------------------------------------------------------------ running

    def _get_dispatcher(self) -> Dispatcher:
        dispatcher = _plugins.get_dispatcher()
        if self._pm is None:
            return dispatcher
        version = _plugins.registry_version()
        if self._dispatcher is None or self._dispatcher_version != version:
            self._dispatcher = Dispatcher([self._pm, _plugins.global_plugin_manager()])
            self._dispatcher_version = version
            for loser, winner in self._dispatcher.shadowed:
                _plugins.note_shadowed(loser, f"agent {self.name!r} has its own {winner!r} with the same settings")
        return self._dispatcher

    def _new_state(
        self, input: Input, messages: Sequence[Message] | None, metadata: dict[str, Any] | None
    ) -> tuple[RunState, str | None]:
        """A new run's state, and the span it is a child of (the current tracedagent span, if any)."""
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
        # A run started inside another run's tool joins that trace as a child of the tool's span; one
        # started inside the application's OpenTelemetry span joins the application's trace.
        parent = _current.get() or current_parent(self.config.name)
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        state = RunState(new_trace_id(), trace_id, self.config.name, messages=history, metadata=metadata or {})
        if parent is not None:
            state.tracestate = parent.tracestate
        return state, parent.span_id if parent is not None else None

    def store(self) -> CheckpointStore:
        """Where this agent's runs and sessions are kept."""
        return self.config.checkpoints if self.config.checkpoints is not None else default_store()

    @property
    def active_runs(self) -> int:
        """Runs (and resumed runs) of this agent going on now."""
        return self._active

    async def _execute(self, seg: Segment) -> RunResult[Any]:
        """One segment, within ``max_concurrent_runs``: past it the run is refused before it starts."""
        limit = self.config.max_concurrent_runs
        with self._active_lock:
            if limit is not None and self._active >= limit:
                raise RunRejected(
                    f"agent {self.name!r} refused a new run: {self._active} runs are going "
                    f"(max_concurrent_runs={limit}); retry later or raise the limit"
                )
            self._active += 1
        try:
            if self.config.tool_sources:  # MCP servers: their tools, listed (or cached) as the run starts
                await offer(self.config.tool_sources, seg.ctx.tools)
            return await execute(seg, _result_of)
        finally:
            with self._active_lock:
                self._active -= 1

    def _segment(
        self,
        state: RunState,
        deps: Any,
        stream: Callable[[Any], None] | None,
        parent_span_id: str | None,
        resumed: RunState | None = None,
        decisions: dict[str, Any] | None = None,
        external_results: dict[str, str] | None = None,
    ) -> Segment:
        store = self.store()
        every = self.config.checkpoint_every or ("interrupt" if is_default_memory(store) else "step")
        config, tools = active_config(self.config, state, resumed.pending if resumed is not None else ())
        ctx = RunContext(config, state, tools, deps)
        return Segment(
            ctx,
            self._get_dispatcher(),
            stream,
            store,
            every == "step",
            parent_span_id,
            resumed,
            decisions,
            external_results,
        )

    async def _run(
        self,
        input: Input,
        messages: Sequence[Message] | None,
        metadata: dict[str, Any] | None,
        deps: Any,
        session_id: str | None,
        stream: Callable[[Any], None] | None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        output = self.config.output_for(output_type)  # a bad type fails before the run starts
        if session_id is not None:
            if not isinstance(session_id, str) or not session_id:
                raise UserError(f"session_id must be a non-empty string, not {session_id!r}")
            messages = [*await self.store().load_session(session_id), *(messages or ())]
        state, parent_span_id = self._new_state(input, messages, metadata)
        state.session_id = session_id
        state.output_type = output.name if output is not None else TEXT
        seg = self._segment(state, deps, stream, parent_span_id)
        seg.output = output.start() if output is not None else None
        if not leases(seg.store):  # the in-memory store: no lease, and no context manager to pay for
            return await self._execute(seg)
        async with lease(seg.store, state.run_id, new=True):  # taken with the run's first checkpoint
            return await self._execute(seg)

    @overload
    async def run(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    async def run(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: type[T],
    ) -> RunResult[T]: ...

    @overload
    async def run(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: object,
    ) -> RunResult[Any]: ...

    async def run(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        """Run the agent on ``input`` (a prompt, a message or messages) until it answers or pauses.

        ``messages`` (for example ``result.messages`` of an earlier run) continues that conversation;
        ``session_id`` continues the conversation kept under that id in the agent's store (and saves it
        when the run completes). ``deps`` is handed to tools through ``RunContext.deps``. A run that
        needs a person returns with status ``interrupted`` and its ``interruptions``; continue it with
        :meth:`resume`. ``output_type`` asks this run for structured output (see :class:`Agent`). Raises
        a :class:`RunError` (with ``.result``) when the run fails; cancellation propagates as
        ``asyncio.CancelledError``.
        """
        return await self._run(input, messages, metadata, deps, session_id, None, output_type)

    @overload
    def run_sync(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    def run_sync(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: type[T],
    ) -> RunResult[T]: ...

    @overload
    def run_sync(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: object,
    ) -> RunResult[Any]: ...

    def run_sync(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        """:meth:`run` for code without an event loop. Ctrl-C cancels the run cleanly."""
        _no_running_loop("run_sync", "run")
        return asyncio.run(
            self.run(
                input, messages=messages, metadata=metadata, deps=deps, session_id=session_id, output_type=output_type
            )
        )

    @overload
    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: type[T],
    ) -> RunResult[T]: ...

    @overload
    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: object,
    ) -> RunResult[Any]: ...

    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        """Continue a paused, cancelled, failed or crashed run from its last checkpoint, in this process
        or another one (with the same store): the same ``run_id`` and ``trace_id``, a new segment.

        ``approvals`` maps each pending approval's id (``result.interruptions[i].id``) to ``True``,
        ``False``, ``Approval.allow(arguments=..., remember=...)`` or ``Approval.deny(reason)``;
        ``results`` maps each pending external call's id to its result. A run with structured output
        resumes with ``output_type`` if given, else the agent's: a checkpoint keeps the corrections
        already used, but not the type (a type cannot be saved), so resume it with the one it ran with.
        """
        return await self._resume(run_id, approvals, results, deps, None, output_type)

    @overload
    def resume_sync(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: None = None,
    ) -> RunResult[OutputT]: ...

    @overload
    def resume_sync(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: type[T],
    ) -> RunResult[T]: ...

    @overload
    def resume_sync(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: object,
    ) -> RunResult[Any]: ...

    def resume_sync(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        """:meth:`resume` for code without an event loop."""
        _no_running_loop("resume_sync", "resume")
        return asyncio.run(self.resume(run_id, approvals, results=results, deps=deps, output_type=output_type))

    async def _resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None,
        results: Mapping[str, Any] | None,
        deps: Any,
        stream: Callable[[Any], None] | None,
        output_type: Any = None,
    ) -> RunResult[Any]:
        output = self.config.output_for(output_type)
        store = self.store()
        async with lease(store, run_id):  # read after taking the lease: another resume may just have ended
            checkpoint = await store.load(run_id)
            if checkpoint is None:
                raise UserError(
                    f"no checkpoint of run {run_id!r} in {store!r}; resume a run with the store it ran with "
                    "(Agent(checkpoints=...) or TRACEDAGENT_CHECKPOINTS)"
                )
            state, decisions, external = restore(self.config, checkpoint, approvals or {}, results or {})
            wanted = output.name if output is not None else TEXT
            if output_type is None and state.output_type not in (None, wanted):
                raise UserError(
                    f"run {run_id!r} was started with output_type={state.output_type} and would resume with "
                    f"{wanted}; pass the type it ran with: resume(..., output_type=...)"
                )
            state.output_type = wanted
            seg = self._segment(state, deps, stream, checkpoint.parent_span_id, checkpoint, decisions, external)
            seg.output = output.start() if output is not None else None
            return await self._execute(seg)

    async def stream(
        self,
        input: Input,
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
        output_type: Any = None,
    ) -> AsyncIterator[StreamEvent]:
        """Run the agent and yield what happens as it happens, ending with :class:`FinalResult`.

        With structured output, :class:`PartialOutput` events carry the output validated so far as the
        model writes it (native mode). Stopping the iteration early (``break``, ``aclose()``) cancels the run.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        task = asyncio.ensure_future(
            self._run(input, messages, metadata, deps, session_id, queue.put_nowait, output_type)
        )
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


def _result_of(seg: Segment, status: str, output: str | None) -> RunResult[Any]:
    state = seg.state
    return RunResult(
        output=output if seg.output is None else seg.output.value,
        status=status,  # type: ignore[arg-type]
        run_id=state.run_id,
        trace_id=state.trace_id,
        usage=state.usage,
        messages=state.messages,  # type: ignore[arg-type]  # a live state holds a list
        interruptions=list(state.pending),
        turns=state.turn,
        duration_s=perf_counter() - seg.started,
    )


def _no_running_loop(name: str, instead: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise UserError(f"{name}() was called inside a running event loop; use `await agent.{instead}(...)` there")
