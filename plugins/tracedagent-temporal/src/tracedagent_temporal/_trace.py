"""The run's trace context in Temporal headers (the pattern of ``temporalio.contrib.opentelemetry``).

A segment's trace context is ``{"trace_id", "parent_span_id", "span_id"}``: the run's trace, the span
the run is a child of, and the segment's own span (a resume signal's is ``{"span_id"}``: the run's trace
is the workflow's). It never travels in a workflow's or an activity's
arguments; :class:`TraceInterceptor` carries it in the ``tracedagent-trace`` header:

- on the client, ``start_workflow`` and ``signal_workflow`` put the context that
  :func:`sending` set (by ``TemporalAgent.run`` and ``resume``) in the request's headers;
- in the workflow, the inbound interceptor hands the start's and each signal's header to the workflow
  (:meth:`AgentWorkflow.received_trace`), and the outbound one puts the workflow's current segment's
  context (:attr:`AgentWorkflow.trace`) on every activity and local activity it schedules;
- in the activity, the inbound interceptor makes the header :func:`current` while the activity runs, on
  whichever worker that is, so every event it fires is in the run's trace.

Headers are recorded in the workflow's history, so a replay sees the same contexts: deterministic.
This module imports nothing but the standard library and temporalio (the workflow sandbox loads it).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

import temporalio.api.common.v1
import temporalio.client
import temporalio.converter
import temporalio.worker
from temporalio import workflow

#: The header that carries a segment's trace context.
HEADER = "tracedagent-trace"

Trace = dict[str, Any]

_sending: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("tracedagent_temporal_sending", default=None)
_current: contextvars.ContextVar[Trace | None] = contextvars.ContextVar("tracedagent_temporal_trace", default=None)
_converter = temporalio.converter.PayloadConverter.default


def _to_headers(
    trace: Trace | None, headers: Mapping[str, temporalio.api.common.v1.Payload]
) -> Mapping[str, temporalio.api.common.v1.Payload]:
    if trace is None:
        return headers
    return {**headers, HEADER: _converter.to_payloads([trace])[0]}


def from_headers(headers: Mapping[str, temporalio.api.common.v1.Payload]) -> Trace | None:
    """The trace context in ``headers``, or None when they carry none."""
    payload = headers.get(HEADER)
    if payload is None:
        return None
    trace = _converter.from_payloads([payload], [dict])[0]
    return trace if isinstance(trace, dict) and isinstance(trace.get("span_id"), str) else None


@contextlib.contextmanager
def sending(trace: Trace) -> Iterator[None]:
    """Inside the block, a workflow start or signal sent by an intercepted client carries ``trace``."""
    token = _sending.set(trace)
    try:
        yield
    finally:
        _sending.reset(token)


def current() -> Trace | None:
    """The trace context of the activity running now (from its header), or None outside one."""
    return _current.get()


class TraceInterceptor(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """Carries tracedagent's trace context in Temporal headers: give it to the client that starts and
    signals runs and to the workers that run them (``TemporalAgent`` adds it to both for you)."""

    def intercept_client(self, next: temporalio.client.OutboundInterceptor) -> temporalio.client.OutboundInterceptor:
        return _ClientOutbound(next)

    def intercept_activity(
        self, next: temporalio.worker.ActivityInboundInterceptor
    ) -> temporalio.worker.ActivityInboundInterceptor:
        return _ActivityInbound(next)

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor]:
        return _WorkflowInbound


def has_tracing(interceptors: Any) -> bool:
    return any(isinstance(i, TraceInterceptor) for i in interceptors or ())


class _ClientOutbound(temporalio.client.OutboundInterceptor):
    async def start_workflow(
        self, input: temporalio.client.StartWorkflowInput
    ) -> temporalio.client.WorkflowHandle[Any, Any]:
        input.headers = _to_headers(_sending.get(), input.headers)
        return await super().start_workflow(input)

    async def signal_workflow(self, input: temporalio.client.SignalWorkflowInput) -> None:
        input.headers = _to_headers(_sending.get(), input.headers)
        await super().signal_workflow(input)


class _ActivityInbound(temporalio.worker.ActivityInboundInterceptor):
    async def execute_activity(self, input: temporalio.worker.ExecuteActivityInput) -> Any:
        token = _current.set(from_headers(input.headers))
        try:
            return await super().execute_activity(input)
        finally:
            _current.reset(token)


def _receiver() -> Any:
    """The running workflow, if it takes trace contexts (``received_trace``)."""
    instance = workflow.instance()
    return instance if hasattr(instance, "received_trace") else None


class _WorkflowInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        super().init(_WorkflowOutbound(outbound))

    async def execute_workflow(self, input: temporalio.worker.ExecuteWorkflowInput) -> Any:
        receiver = _receiver()
        if receiver is not None:
            receiver.received_trace("start", from_headers(input.headers))
        return await super().execute_workflow(input)

    async def handle_signal(self, input: temporalio.worker.HandleSignalInput) -> None:
        receiver = _receiver()
        if receiver is not None:
            receiver.received_trace(input.signal, from_headers(input.headers))
        await super().handle_signal(input)


class _WorkflowOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def _trace(self) -> Trace | None:
        trace: Trace | None = getattr(workflow.instance(), "trace", None)
        return trace

    def start_activity(self, input: temporalio.worker.StartActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _to_headers(self._trace(), input.headers)
        return super().start_activity(input)

    def start_local_activity(self, input: temporalio.worker.StartLocalActivityInput) -> workflow.ActivityHandle[Any]:
        input.headers = _to_headers(self._trace(), input.headers)
        return super().start_local_activity(input)

    def continue_as_new(self, input: temporalio.worker.ContinueAsNewInput) -> NoReturn:
        input.headers = _to_headers(self._trace(), input.headers)
        super().continue_as_new(input)
