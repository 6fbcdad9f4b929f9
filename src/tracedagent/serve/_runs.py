"""The runs a server starts: admission, the run itself (JSON or SSE), resumes, and what it remembers.

``Runs`` drives an agent for requests. A run gets the caller's trace as its parent, a :class:`Tap` for
its span events, and a place in ``max_concurrent_runs`` (past it: :class:`Refused`, HTTP 429). Its
record (status, interruptions, usage, trace) is kept for ``GET /v1/runs/{run_id}``, the newest
``max_records`` of them; older or other runs are looked up in the agent's checkpoint store.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .._checkpoint import CheckpointStore
from .._events import Event, Interruption, RunEnded, RunInterrupted, RunResumed, RunStarted
from .._ids import SpanContext, _current
from .._messages import Message, Usage
from .._result import RunResult
from .._stream import FinalResult
from ..exceptions import RunError, RunRejected, UserError
from ._tap import Tap, close_stream, current_tap, ensure_forwarder, open_stream
from ._wire import event_json, event_type, interruption_json, result_json, sse, traceparent_of, usage_json

__all__ = ["Encoder", "Refused", "RunRecord", "Runs", "SSEEncoder", "ServedAgent", "Started", "resume_call", "run_call"]


#: What a run answered as JSON needs of its events: the record's status, interruptions and usage.
_RECORDED: tuple[type[Event], ...] = (RunStarted, RunResumed, RunInterrupted, RunEnded)


class ServedAgent(Protocol):
    """What the server needs of an agent (a :class:`tracedagent.Agent`)."""

    @property
    def name(self) -> str: ...

    def stream(
        self,
        input: str | Message | Sequence[Message],
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
    ) -> AsyncIterator[Any]: ...

    async def run(
        self,
        input: str | Message | Sequence[Message],
        *,
        messages: Sequence[Message] | None = None,
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
        session_id: str | None = None,
    ) -> RunResult: ...

    async def resume(
        self,
        run_id: str,
        approvals: Mapping[str, Any] | None = None,
        *,
        results: Mapping[str, Any] | None = None,
        deps: Any = None,
    ) -> RunResult: ...

    def store(self) -> CheckpointStore: ...


class Refused(Exception):
    """The server cannot take the request: ``status`` (429 too many runs, 404, 409, 422) and why."""

    def __init__(self, status: int, kind: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class RunRecord:
    """What ``GET /v1/runs/{run_id}`` says about a run this server ran."""

    run_id: str
    trace_id: str
    span_id: str
    agent: str
    status: str = "running"
    interruptions: list[Interruption] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    output: Any = None
    error: dict[str, str] | None = None
    updated_ns: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "agent": self.agent,
            "status": self.status,
            "trace_id": self.trace_id,
            "traceparent": traceparent_of(self.trace_id, self.span_id),
            "interruptions": [interruption_json(i) for i in self.interruptions],
            "usage": usage_json(self.usage),
            "output": self.output,
            "error": self.error,
        }


@dataclass
class Started:
    """A run that has begun: its tap (the run's first span) and, for SSE, its queue of messages."""

    tap: Tap
    task: asyncio.Future[Any]
    queue: asyncio.Queue[bytes | None] | None = None

    @property
    def headers(self) -> dict[str, str]:
        first = self.tap.first
        if first is None:
            return {}
        return {"traceparent": traceparent_of(first.trace_id, first.span_id), "x-tracedagent-run-id": first.run_id}


class Encoder(Protocol):
    """Turns a run's events into bytes of a stream: :class:`SSEEncoder` (ours) or the AG-UI one."""

    def item(self, event: object) -> bytes | None: ...

    def end(self, result: RunResult | None, error: BaseException | None) -> bytes: ...


class SSEEncoder:
    """``event: <type>`` / ``data: <json>`` for every stream and span event; ``final_result`` (or
    ``error`` when there is no result) last."""

    def item(self, event: object) -> bytes | None:
        return sse(event_type(event), event_json(event))

    def end(self, result: RunResult | None, error: BaseException | None) -> bytes:
        if result is not None:
            return sse("final_result", result_json(result, error))
        return sse("error", {"type": type(error).__name__, "message": str(error)})


class Runs:
    """Starts, resumes and remembers the runs of one agent."""

    def __init__(self, agent: ServedAgent, *, max_concurrent_runs: int | None, max_records: int = 10_000) -> None:
        self.agent = agent
        self.limit = max_concurrent_runs
        self.active = 0
        self.max_records = max_records
        self.records: OrderedDict[str, RunRecord] = OrderedDict()

    # ------------------------------------------------------------------------------- admission

    def _enter(self) -> None:
        if self.limit is not None and self.active >= self.limit:
            raise Refused(
                429,
                "too_many_runs",
                f"{self.active} runs are going on this server (max_concurrent_runs={self.limit}); retry shortly",
                retry_after=1,
            )
        self.active += 1

    def _leave(self, streamed: bool) -> None:
        self.active -= 1
        if streamed:
            close_stream()

    # --------------------------------------------------------------------------------- records

    def _observe(self, tap: Tap, event: Event) -> None:
        first = tap.first
        if first is None or event.run_id != first.run_id:
            return
        if isinstance(event, RunStarted | RunResumed):
            record = self.records.get(event.run_id)
            if record is None:
                record = RunRecord(event.run_id, event.trace_id, event.span_id, event.agent)
                self._keep(record)
            record.status, record.span_id, record.interruptions = "running", event.span_id, []
            record.updated_ns = event.timestamp_ns
        elif isinstance(event, RunInterrupted | RunEnded):
            record = self.records.get(event.run_id)
            if record is not None and isinstance(event, RunInterrupted):
                record.interruptions = list(event.interruptions)
            elif record is not None and isinstance(event, RunEnded):
                record.status, record.usage, record.updated_ns = event.status, event.usage, event.timestamp_ns

    def _keep(self, record: RunRecord) -> None:
        self.records[record.run_id] = record
        self.records.move_to_end(record.run_id)
        while len(self.records) > self.max_records:
            self.records.popitem(last=False)

    def _finish(self, result: RunResult | None, error: BaseException | None = None) -> None:
        if result is None:
            return
        record = self.records.get(result.run_id)
        if record is None:
            record = RunRecord(result.run_id, result.trace_id, "0" * 16, self.agent.name)
            self._keep(record)
        record.status, record.usage = result.status, result.usage
        record.interruptions = list(result.interruptions)
        record.output = result.output
        record.error = {"type": type(error).__name__, "message": str(error)} if error is not None else None
        record.updated_ns = time.time_ns()

    async def lookup(self, run_id: str) -> dict[str, Any]:
        record = self.records.get(run_id)
        if record is not None:
            return record.to_json()
        checkpoint = await self.agent.store().load(run_id)
        if checkpoint is None:
            raise Refused(404, "unknown_run", f"no run {run_id!r} on this server or in its store")
        span = checkpoint.segment_span_id or "0" * 16
        return {
            "run_id": checkpoint.run_id,
            "agent": checkpoint.agent,
            "status": checkpoint.status,
            "trace_id": checkpoint.trace_id,
            "traceparent": traceparent_of(checkpoint.trace_id, span),
            "interruptions": [interruption_json(i) for i in checkpoint.pending],
            "usage": usage_json(checkpoint.usage),
            "output": None,
            "error": None,
        }

    # ------------------------------------------------------------------------------------ runs

    def start(
        self,
        call: Callable[[], AsyncIterator[Any] | Awaitable[RunResult]],
        parent: SpanContext | None,
        *,
        encoder: Encoder | None,
    ) -> Started:
        """Start ``call`` (``agent.stream(...)`` or a coroutine giving a result) in a task of its own,
        under ``parent``; with an ``encoder`` its events go to ``Started.queue`` as a stream. Past
        ``max_concurrent_runs`` raise :class:`Refused` (429)."""
        self._enter()
        streams = False
        try:
            ensure_forwarder()
            if encoder is not None:
                open_stream()
                streams = True
            queue: asyncio.Queue[bytes | None] | None = asyncio.Queue() if encoder is not None else None

            def sink(event: Event) -> None:
                self._observe(tap, event)
                if queue is not None and encoder is not None:
                    chunk = encoder.item(event)
                    if chunk:
                        queue.put_nowait(chunk)

            tap = Tap(sink, streaming=True, kinds=None if encoder is not None else _RECORDED)
            task = asyncio.ensure_future(self._drive(call, parent, tap, queue, encoder))
        except BaseException:
            self._leave(streams)
            raise
        # Not a `finally` in the task: a task cancelled before its first step never runs its body.
        task.add_done_callback(lambda _: self._leave(streams))
        return Started(tap, task, queue)

    async def first_span(self, started: Started) -> None:
        """Wait until the run's first span opens; raise :class:`Refused` if it could not start."""
        tap, task = started.tap, started.task
        if tap.first is None:
            waiter = asyncio.ensure_future(tap.started.wait())
            try:
                await asyncio.wait((waiter, task), return_when=asyncio.FIRST_COMPLETED)
            except BaseException:
                task.cancel()
                raise
            finally:
                waiter.cancel()
        if tap.first is None and task.done():
            task.result()  # raises Refused when the run could not start

    async def _drive(
        self,
        call: Callable[[], AsyncIterator[Any] | Awaitable[RunResult]],
        parent: SpanContext | None,
        tap: Tap,
        queue: asyncio.Queue[bytes | None] | None,
        encoder: Encoder | None,
    ) -> tuple[RunResult | None, BaseException | None]:
        """The run's task: runs under ``parent`` with ``tap``; for SSE puts each message on ``queue``.
        Returns the result and, for a failed run, its error; a run that cannot start raises :class:`Refused`."""
        if parent is not None:
            _current.set(parent)
        current_tap.set(tap)
        put = queue.put_nowait if queue is not None and encoder is not None else None
        result: RunResult | None = None
        error: BaseException | None = None
        try:
            made = call()
            if isinstance(made, AsyncIterator):
                async for item in made:
                    if isinstance(item, FinalResult):
                        result = item.result
                    elif put is not None and encoder is not None:
                        chunk = encoder.item(item)
                        if chunk:
                            put(chunk)
            else:
                tap.streaming = False
                result = await made
        except RunRejected as exc:
            raise Refused(429, "too_many_runs", str(exc), retry_after=1) from None
        except RunError as exc:
            result, error = exc.result, exc
        except Exception as exc:
            if tap.first is None and isinstance(exc, UserError):
                raise Refused(422, "bad_request", str(exc)) from None
            error = exc
        self._finish(result, error)
        if put is not None and encoder is not None:
            # Span events are handed over after the step that fired them: let the last ones through first.
            await asyncio.sleep(0)
            put(encoder.end(result, error))
            put(None)
        return result, error


def run_call(agent: ServedAgent, body: Any, stream: bool) -> Callable[[], AsyncIterator[Any] | Awaitable[RunResult]]:
    """The call that starts a run for a :class:`RunBody`."""
    kwargs: dict[str, Any] = {"messages": body.history(), "metadata": body.metadata, "session_id": body.session_id}
    if stream:
        return lambda: agent.stream(body.run_input(), **kwargs)
    return lambda: agent.run(body.run_input(), **kwargs)


def resume_call(agent: ServedAgent, run_id: str, body: Any) -> Callable[[], Awaitable[RunResult]]:
    return lambda: agent.resume(run_id, body.decisions(), results=body.results)
