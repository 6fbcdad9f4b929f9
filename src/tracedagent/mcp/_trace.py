"""Trace context into the server: each ``tools/call`` request carries the tool call's span.

The SDK (2.x; 1.x does not) injects OpenTelemetry's current context into ``params._meta`` itself, from inside a
client span of its own when the application has a tracer provider. What must arrive is the ``execute_tool`` span
of the call, so the session's write stream is wrapped: a request sent while :data:`outgoing` is set gets
that span's ``traceparent`` and the run's ``tracestate`` (SEP-414; none when the run has none) in ``_meta``
(whatever was injected before) and, over HTTP, as headers. The
wrapper also notes that the request was written, so a call on a session that had already closed can be
sent again on a new one (the server never saw it), while a call the server got is never repeated.

The read stream is wrapped too (:class:`WatchedReadStream`), to note a JSON-RPC error that the server
itself sent for a call: the SDK reports a closed connection with code ``-32000`` (``CONNECTION_CLOSED``),
which is also the code a server most often gives its own errors, and only the wire tells them apart.
"""

from __future__ import annotations

from contextvars import ContextVar
from types import TracebackType
from typing import Any

from ._compat import JSONRPCError, JSONRPCRequest, SessionMessage, jsonrpc, with_request

__all__ = ["OutgoingCall", "TracingWriteStream", "WatchedReadStream", "outgoing"]


class OutgoingCall:
    """One tool call on its way: the trace context it carries, and whether its request was written."""

    __slots__ = ("answered", "request_id", "traceparent", "tracestate", "written")

    def __init__(self, traceparent: str | None, tracestate: str | None = None) -> None:
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.written = False
        #: The JSON-RPC id of the request last written for it, and whether the server answered it with an error.
        self.request_id: Any = None
        self.answered = False


outgoing: ContextVar[OutgoingCall | None] = ContextVar("tracedagent_mcp_call", default=None)


class TracingWriteStream:
    """The session's write stream, stamping each ``tools/call`` with the call's trace context."""

    def __init__(self, inner: Any, *, http: bool, pending: dict[Any, OutgoingCall] | None = None) -> None:
        self._inner = inner
        self._http = http
        #: The calls on their way, by request id (shared with the session's :class:`WatchedReadStream`).
        self.pending: dict[Any, OutgoingCall] = pending if pending is not None else {}

    async def send(self, item: SessionMessage, /) -> None:
        call = outgoing.get()
        message = jsonrpc(item) if call is not None else None
        if isinstance(message, JSONRPCRequest) and message.method == "tools/call" and call is not None:
            item = self._stamped(item, message, call)
            call.request_id = message.id
            self.pending[call.request_id] = call
            call.written = True  # a write that raises may still have been delivered: it counts as sent
        await self._inner.send(item)

    def _stamped(self, item: SessionMessage, message: JSONRPCRequest, call: OutgoingCall) -> SessionMessage:
        traceparent = call.traceparent
        if traceparent is None:
            return item
        params = dict(message.params or {})
        meta = dict(params.get("_meta") or {})
        meta["traceparent"] = traceparent
        headers = {"traceparent": traceparent}
        tracestate = call.tracestate
        if tracestate:
            meta["tracestate"] = headers["tracestate"] = tracestate
        else:
            meta.pop("tracestate", None)  # one the SDK injected went with its own span context
        params["_meta"] = meta
        message = message.model_copy(update={"params": params})
        return with_request(item, message, headers if self._http else None)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> TracingWriteStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result


class WatchedReadStream:
    """The session's read stream, noting each JSON-RPC error the server sends for a pending call."""

    def __init__(self, inner: Any, pending: dict[Any, OutgoingCall]) -> None:
        self._inner = inner
        self._pending = pending

    def _seen(self, item: Any) -> Any:
        message = jsonrpc(item) if isinstance(item, SessionMessage) else None
        if isinstance(message, JSONRPCError):
            call = self._pending.get(message.id)
            if call is not None:
                call.answered = True
        return item

    async def receive(self) -> Any:
        return self._seen(await self._inner.receive())

    def __aiter__(self) -> WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        return self._seen(await self._inner.__anext__())

    def __getattr__(self, name: str) -> Any:  # last_context, statistics...: the inner stream's
        return getattr(self._inner, name)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> WatchedReadStream:
        await self._inner.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        result: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return result
