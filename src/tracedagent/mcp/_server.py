"""MCP servers as tool sources: one lazily opened session per server, shared by every run of the process.

A session lives in a task of its own (the SDK's transports are anyio task groups, which must be entered
and left by one task): :meth:`MCPServerBase._session` starts that task and waits for the handshake, under
``connect_timeout``; calls from any run then share the session. A session that ends (the server exited or
restarted) is replaced at the next call; a call the server never got is sent again on the new session, a
call it got is not (it fails, and counts against the server's breaker). ``aclose()``, ``async with``, the
end of the event loop (``asyncio.run`` cancels the session's task) and the end of the process close it,
and the SDK's stdio transport stops the server's process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import re
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
from mcp import ClientSession

from .._ids import current_span
from .._otel import outgoing as outgoing_context
from .._tools import Tool
from ..exceptions import ConfigurationError, ToolDefinitionError, ToolTimeout, UnknownToolError
from ..resilience import Bulkhead, CircuitBreaker, RetryPolicy
from ._compat import (
    CONNECTION_CLOSED,
    REQUEST_TIMEOUT,
    SENDS_CANCELLED,
    SESSION_TERMINATED,
    CallToolResult,
    MCPError,
    PaginatedRequestParams,
    ToolDefinition,
    error_code,
    error_message,
    is_error,
    next_cursor,
    notification,
    send_cancelled,
)
from ._errors import MCPConnectionError, MCPServerError, MCPToolError
from ._results import result_text
from ._tool import MCPTool
from ._trace import OutgoingCall, TracingWriteStream, WatchedReadStream, outgoing

__all__ = ["MCPServerBase"]

logger = logging.getLogger("tracedagent.mcp")

#: The settings a server gives its tools (and ``tool_settings`` may override per tool).
TOOL_SETTINGS = frozenset(
    {
        "timeout",
        "retries",
        "breaker",
        "max_concurrency",
        "max_queue",
        "queue_timeout",
        "needs_approval",
        "max_result_chars",
        "max_image_bytes",
    }
)
#: The default bound on the images of one tool result, in bytes (decoded): they go with every later model
#: call of the run and into each of its checkpoints. Typical screenshots fit; Anthropic takes at most 5 MB
#: per image.
DEFAULT_MAX_IMAGE_BYTES = 1_000_000
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class _Connection:
    """One session and the task that owns it."""

    __slots__ = ("error", "loop", "pending", "ready", "session", "stop", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.session: ClientSession | None = None
        self.ready: asyncio.Future[ClientSession] = loop.create_future()
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None
        #: The tool calls on their way through this session, by request id.
        self.pending: dict[Any, OutgoingCall] = {}

    @property
    def alive(self) -> bool:
        return not self.stop.is_set() and self.task is not None and not self.task.done()


_servers: weakref.WeakSet[MCPServerBase] = weakref.WeakSet()
#: The cancellation notices on their way (a task must be referenced until it is done).
_telling: set[asyncio.Task[None]] = set()


class MCPServerBase:
    """What :class:`MCPServerStdio` and :class:`MCPServerHTTP` share: the session, the tool list, the calls."""

    #: Whether requests go over HTTP (and carry ``traceparent`` and ``tracestate`` headers).
    _http = False

    def __init__(
        self,
        *,
        name: str,
        tool_prefix: str | None = None,
        allowed_tools: Iterable[str] | None = None,
        timeout: float | None = 60.0,
        retries: RetryPolicy | int | None = None,
        breaker: CircuitBreaker | bool | None = True,
        max_concurrency: int | None = None,
        max_queue: int = 100,
        queue_timeout: float | None = None,
        needs_approval: bool | Any = False,
        max_result_chars: int | None = None,
        max_image_bytes: int | None = DEFAULT_MAX_IMAGE_BYTES,
        tool_settings: Mapping[str, Mapping[str, Any]] | None = None,
        cache_ttl: float | None = 300.0,
        connect_timeout: float = 10.0,
        list_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.tool_prefix = tool_prefix or ""
        self.allowed_tools = frozenset(allowed_tools) if allowed_tools is not None else None
        for label, value in (
            ("connect_timeout", connect_timeout),
            ("list_timeout", list_timeout),
            ("close_timeout", close_timeout),
        ):
            if not (isinstance(value, int | float) and not isinstance(value, bool) and value > 0):
                raise ConfigurationError(
                    f"MCP server {name!r}: {label} must be a positive number of seconds, not {value!r}"
                )
        if cache_ttl is not None and not cache_ttl >= 0:
            raise ConfigurationError(f"MCP server {name!r}: cache_ttl must be >= 0 seconds or None, not {cache_ttl!r}")
        self.connect_timeout = float(connect_timeout)
        self.list_timeout = float(list_timeout)
        self.close_timeout = float(close_timeout)
        self.cache_ttl = cache_ttl
        # One breaker and one bulkhead for the whole server: a dead server is refused for every tool.
        # The default breaker counts the server failing (no answer, protocol errors, timeouts), not a tool
        # answering isError.
        if breaker is True:
            breaker = CircuitBreaker(count=(MCPServerError, ToolTimeout))
        elif breaker is False:
            breaker = None
        self._defaults: dict[str, Any] = {
            "timeout": timeout,
            "retries": retries,
            "breaker": breaker,
            "needs_approval": needs_approval,
            "max_result_chars": max_result_chars,
            "max_image_bytes": _image_bound(name, "max_image_bytes", max_image_bytes),
        }
        try:
            self.bulkhead = Bulkhead(max_concurrency, max_queue=max_queue, queue_timeout=queue_timeout, name=name)
        except ConfigurationError as exc:
            raise ConfigurationError(f"MCP server {name!r}: {exc}") from None
        self._tool_settings: dict[str, dict[str, Any]] = {}
        for tool_name, settings in (tool_settings or {}).items():
            unknown = set(settings) - TOOL_SETTINGS
            if unknown:
                raise ConfigurationError(
                    f"MCP server {name!r}: tool_settings[{tool_name!r}] has unknown settings {sorted(unknown)}; "
                    f"use {', '.join(sorted(TOOL_SETTINGS))}"
                )
            self._tool_settings[tool_name] = dict(settings)
            if "max_image_bytes" in settings:
                _image_bound(name, f"tool_settings[{tool_name!r}]['max_image_bytes']", settings["max_image_bytes"])
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._tools: dict[str, MCPTool] = {}
        self._listed_at: float | None = None
        self._stale = False
        #: How many times the server said its tool list changed (``notifications/tools/list_changed``).
        self.list_changes = 0
        #: Why the last listing failed (None after a good one).
        self.last_error: BaseException | None = None
        _servers.add(self)

    # ----------------------------------------------------------------------------------- transport

    def _transport(self) -> contextlib.AbstractAsyncContextManager[tuple[Any, Any]]:
        raise NotImplementedError

    def _describe_start_failure(self, exc: BaseException) -> str:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    # ------------------------------------------------------------------------------------- session

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def _session(self) -> ClientSession:
        """The open session, opened (or reopened) if needed, within ``connect_timeout``."""
        conn = self._conn
        loop = asyncio.get_running_loop()
        if conn is not None and conn.loop is loop and conn.alive and conn.session is not None:
            return conn.session
        try:
            async with asyncio.timeout(self.connect_timeout):
                async with self._get_lock():
                    conn = self._conn
                    if conn is None or conn.loop is not loop or not conn.alive:
                        if conn is not None and conn.loop is loop:
                            await self._stop(conn)
                        conn = self._conn = _Connection(loop)
                        conn.task = loop.create_task(self._own(conn), name=f"tracedagent-mcp {self.name}")
                    ready = conn.ready
                    try:
                        return await asyncio.shield(ready)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        raise self._start_failed(exc) from None
        except TimeoutError:
            conn = self._conn
            if conn is not None and conn.session is None and conn.task is not None:  # stuck before the handshake
                conn.stop.set()
                conn.task.cancel()
            raise

    def _start_failed(self, exc: BaseException) -> MCPConnectionError:
        return MCPConnectionError(
            f"MCP server {self.name!r} could not be started or reached: {self._describe_start_failure(exc)}; "
            "answer without its tools",
        )

    async def _own(self, conn: _Connection) -> None:
        """The task that opens the session, keeps it until told to stop, and closes it."""
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport())
                pending: dict[Any, OutgoingCall] = {}
                session = await stack.enter_async_context(
                    ClientSession(
                        WatchedReadStream(read, pending),
                        TracingWriteStream(write, http=self._http, pending=pending),
                        message_handler=self._on_message,
                    )
                )
                conn.pending = pending
                await session.initialize()
                conn.session = session
                conn.ready.set_result(session)
                await conn.stop.wait()
        except BaseException as exc:  # anyio groups wrap errors; the first one says what went wrong
            conn.error = _first(exc)
            if not conn.ready.done():
                conn.ready.set_exception(conn.error)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            conn.stop.set()
            if not conn.ready.done():
                conn.ready.set_exception(MCPConnectionError(f"MCP server {self.name!r}: the session closed"))
            if not conn.ready.cancelled():
                conn.ready.exception()  # retrieved, so an unused failure is not reported at exit

    async def _stop(self, conn: _Connection) -> None:
        conn.stop.set()
        task = conn.task
        if task is None or task.done():
            return
        if task is asyncio.current_task():
            return
        done, _ = await asyncio.wait({task}, timeout=self.close_timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=self.close_timeout)

    def _drop(self, session: ClientSession) -> None:
        """The session ended under a call: the next call opens a new one."""
        conn = self._conn
        if conn is not None and conn.session is session:
            conn.stop.set()

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not JSON-RPC, a transport hiccup
            logger.debug("MCP server %r: %s", self.name, message)
            return
        if getattr(notification(message), "method", None) == "notifications/tools/list_changed":
            self.list_changes += 1
            self._stale = True

    async def aclose(self) -> None:
        """Close the session (and stop a stdio server's process). The next use opens a new one."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if conn.loop is loop:
            await self._stop(conn)
        elif not conn.loop.is_closed() and not conn.loop.is_running():
            conn.loop.run_until_complete(self._stop(conn))

    async def __aenter__(self) -> MCPServerBase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --------------------------------------------------------------------------------------- tools

    async def list_tools(self) -> list[Tool]:
        """The server's tools (``allowed_tools``, prefixed with ``tool_prefix``), from the cache while it
        is fresh (``cache_ttl``, until the server says its list changed). A listing that fails keeps the
        last good list, if any; else it raises."""
        listed_at = self._listed_at
        if (
            listed_at is not None
            and not self._stale
            and (self.cache_ttl is None or time.monotonic() - listed_at < self.cache_ttl)
        ):
            return list(self._tools.values())
        changes = self.list_changes
        try:
            definitions = await self._list_definitions()
        except Exception as exc:
            self.last_error = exc
            if listed_at is not None:
                logger.warning("MCP server %r: listing its tools failed (%s); using the last list", self.name, exc)
                return list(self._tools.values())
            raise
        self.last_error = None
        self._stale = self.list_changes != changes  # a change said during the listing may not be in it
        self._listed_at = time.monotonic()
        self._tools = self._build(definitions)
        return list(self._tools.values())

    async def _list_definitions(self) -> list[ToolDefinition]:
        try:
            session = await self._session()
        except TimeoutError:
            raise MCPConnectionError(
                f"MCP server {self.name!r} did not start within {self.connect_timeout:g}s (connect_timeout)"
            ) from None
        try:
            found: list[ToolDefinition] = []
            cursor: str | None = None
            async with asyncio.timeout(self.list_timeout):
                while True:
                    params = PaginatedRequestParams(cursor=cursor) if cursor is not None else None
                    page = await session.list_tools(params=params)
                    found.extend(page.tools)
                    cursor = next_cursor(page)
                    if not cursor:
                        return found
        except TimeoutError:
            raise MCPConnectionError(
                f"MCP server {self.name!r} did not list its tools within {self.list_timeout:g}s (list_timeout)"
            ) from None
        except MCPError as exc:
            raise MCPServerError(
                f"MCP server {self.name!r} could not list its tools: {exc}", code=error_code(exc)
            ) from None

    def _build(self, definitions: list[ToolDefinition]) -> dict[str, MCPTool]:
        tools: dict[str, MCPTool] = {}
        for definition in definitions:
            if self.allowed_tools is not None and definition.name not in self.allowed_tools:
                continue
            name = _NAME.sub("_", self.tool_prefix + definition.name)[:64]
            old = self._tools.get(name)
            if old is not None and old.definition == definition:
                tools[name] = old  # the same tool: keep it (and its state)
                continue
            settings = {**self._defaults, **self._tool_settings.get(definition.name, {})}
            if "max_concurrency" not in settings and "max_queue" not in settings and "queue_timeout" not in settings:
                settings["bulkhead"] = self.bulkhead
            max_image_bytes = settings.pop("max_image_bytes")
            try:
                tools[name] = MCPTool(self, definition, name, settings)
                tools[name].max_image_bytes = max_image_bytes
            except jsonschema.SchemaError as exc:
                logger.warning(
                    "MCP server %r: tool %r is not offered: its input schema is invalid (%s)",
                    self.name,
                    definition.name,
                    exc.message,
                )
            except ToolDefinitionError as exc:
                logger.warning("MCP server %r: tool %r is not offered: %s", self.name, definition.name, exc)
        return tools

    async def refresh(self, tools: dict[str, Tool]) -> None:
        """Bring a run's ``tools`` up to date with the server's list (before and after each call of one of
        its tools, so that the call and the model's next call see the change), listing them again if the
        server said they changed: its new tools are added (a name the run already has stays), its removed
        ones taken away, its changed ones replaced. A change another run listed first reaches this run's
        removed and changed tools too; its new tools, this run's next listing."""
        if self._stale:
            before = self._tools
            try:
                await self.list_tools()
            except Exception as exc:  # the run goes on with the tools it has; the next run lists again
                logger.warning("MCP server %r: its tools changed but listing them failed: %s", self.name, exc)
                return
            for name, new in self._tools.items():
                if name not in before and name not in tools:
                    tools[name] = new
        current = self._tools
        behind = [
            name
            for name, t in tools.items()
            if isinstance(t, MCPTool) and t.server is self and current.get(name) is not t
        ]
        for name in behind:
            if name in current:
                tools[name] = current[name]
            else:
                del tools[name]

    # --------------------------------------------------------------------------------------- calls

    async def call_tool(self, tool: MCPTool, arguments: dict[str, Any]) -> str:
        """One ``tools/call`` of ``tool``: its result as the model's text, or a tool error (an
        :class:`~tracedagent.exceptions.UnknownToolError`, without a request, for a tool the server took
        away since the run listed it)."""
        await self._still_offered(tool)
        span = current_span()
        # The exported execute_tool span's ids, taken here: inside the SDK's call another span may be current.
        call = OutgoingCall(*outgoing_context(span)) if span is not None else OutgoingCall(None)
        token = outgoing.set(call)
        try:
            for _ in range(2):  # once more on a new session when the old one had closed unseen
                session = await self._session_for_call(tool)
                call.written = call.answered = False
                try:
                    result = await session.call_tool(tool.remote_name, arguments)
                except asyncio.CancelledError:
                    if not SENDS_CANCELLED and call.written:  # the 1.x SDK does not tell the server
                        self._tell_cancelled(session, call.request_id)
                    raise
                except MCPError as exc:
                    code = error_code(exc)
                    # The SDK's own CONNECTION_CLOSED (the connection went), not the server's error -32000.
                    if (code == CONNECTION_CLOSED and not call.answered) or _session_unknown(exc):
                        self._drop(session)
                        if not call.written or code != CONNECTION_CLOSED:
                            continue  # the server never saw it (it had gone, or restarted): send it again
                        raise MCPConnectionError(
                            f"MCP server {self.name!r} closed the connection during the call to {tool.remote_name!r} "
                            "(it exited or crashed); answer without it or try again",
                            tool=tool.name,
                            code=code,
                        ) from None
                    if code == REQUEST_TIMEOUT:
                        raise ToolTimeout(f"tool {tool.name!r}: the MCP request timed out", tool=tool.name) from None
                    raise MCPServerError(
                        f"MCP server {self.name!r} refused the call to {tool.remote_name!r}: {error_message(exc)} "
                        f"(JSON-RPC error {code})",
                        tool=tool.name,
                        code=code,
                    ) from None
                except (RuntimeError, ValueError) as exc:  # the SDK's checks of the result (output schema...)
                    raise MCPServerError(
                        f"MCP server {self.name!r} gave a result for {tool.remote_name!r} that cannot be used: {exc}",
                        tool=tool.name,
                    ) from None
                return self._text(tool, result)
            raise MCPConnectionError(
                f"MCP server {self.name!r} keeps closing the connection; answer without it", tool=tool.name
            )
        finally:
            outgoing.reset(token)
            conn = self._conn
            if conn is not None and call.request_id is not None:
                conn.pending.pop(call.request_id, None)

    async def _still_offered(self, tool: MCPTool) -> None:
        """Raise :class:`UnknownToolError` if the server no longer has ``tool``: it said its list changed
        (listed again here, if no one has yet) and the new list lacks it."""
        if self._stale:
            try:
                await self.list_tools()
            except Exception as exc:  # the call goes on: the server itself answers for the tool
                logger.debug("MCP server %r: listing its changed tools failed: %s", self.name, exc)
        if tool.name in self._tools or self._listed_at is None:
            return
        raise UnknownToolError(
            f"tool {tool.name!r} is no longer offered: MCP server {self.name!r} took it away (its tool list "
            f"changed); its tools now are: {', '.join(self._tools) or 'none'}",
            tool=tool.name,
        )

    def _tell_cancelled(self, session: ClientSession, request_id: Any) -> None:
        """Send ``notifications/cancelled`` for a request whose call was cancelled, from a task of its own
        (the cancelled one cannot wait), within ``close_timeout``."""

        async def tell() -> None:
            try:
                async with asyncio.timeout(self.close_timeout):
                    await send_cancelled(session, request_id, "the tool call was cancelled")
            except Exception as exc:  # the session may have gone meanwhile: nothing left to tell
                logger.debug("MCP server %r: could not send the cancellation: %s", self.name, exc)

        task = asyncio.get_running_loop().create_task(tell())
        _telling.add(task)
        task.add_done_callback(_telling.discard)

    async def _session_for_call(self, tool: MCPTool) -> ClientSession:
        try:
            return await self._session()
        except TimeoutError:
            raise MCPConnectionError(
                f"MCP server {self.name!r} did not start within {self.connect_timeout:g}s (connect_timeout); "
                "answer without it",
                tool=tool.name,
            ) from None
        except MCPConnectionError as exc:
            exc.tool = tool.name
            raise

    def _text(self, tool: MCPTool, result: Any) -> str:
        if not isinstance(result, CallToolResult):
            raise MCPServerError(
                f"MCP server {self.name!r} answered {tool.remote_name!r} with a {type(result).__name__}, not a result",
                tool=tool.name,
            )
        text = result_text(result, tool.max_image_bytes)
        if is_error(result):
            raise MCPToolError(text or f"tool {tool.name!r} failed (the MCP server gave no message)", tool=tool.name)
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _image_bound(server: str, label: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigurationError(
            f"MCP server {server!r}: {label} must be a whole number of bytes >= 0 or None, not {value!r}"
        )
    return value


def _session_unknown(exc: MCPError) -> bool:
    """A streamable HTTP server that restarted (or dropped the session) answers 404: it never ran the call."""
    return error_code(exc) == SESSION_TERMINATED and error_message(exc) in ("Session terminated", "Session not found")


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@atexit.register
def _close_all() -> None:
    """At exit: close the sessions whose event loop is still there (``asyncio.run`` closed the others)."""
    for server in list(_servers):
        conn = server._conn
        if conn is None or conn.loop.is_closed() or conn.loop.is_running():
            continue
        try:
            conn.loop.run_until_complete(server.aclose())
        except Exception:  # at exit, best effort
            pass
