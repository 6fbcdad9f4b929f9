"""The ``mcp`` SDK's names, on its 1.x and 2.x lines alike, picked once at import (the SDK is not patched).

The two lines differ in what tracedagent.mcp uses: 2.x has its types in ``mcp_types`` with snake_case fields
(``is_error``, ``mime_type``...), ``MCPError`` with ``code``/``message``, plain JSON-RPC messages, a
two-stream streamable HTTP transport on ``httpx2`` with per-request headers in ``ClientMessageMetadata``,
and sends ``notifications/cancelled`` for a cancelled request itself. 1.x has them in ``mcp.types`` with
camelCase fields, ``McpError`` carrying ``ErrorData``, messages wrapped in ``JSONRPCMessage`` (a root
model, as are server notifications), a three-tuple transport on ``httpx`` with no per-request headers, and
sends no cancellation: this module gives the rest of the package one spelling of each.

mypy checks against 2.x (``SDK_2`` is ``always_true`` in its settings): the 1.x branches are not checked.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

SDK_2 = importlib.util.find_spec("mcp_types") is not None
"""Whether the installed SDK is the 2.x line (it ships ``mcp_types``)."""

if SDK_2:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import MCPError
    from mcp.shared.message import ClientMessageMetadata, SessionMessage
    from mcp_types import (
        CONNECTION_CLOSED,
        INVALID_PARAMS,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        REQUEST_TIMEOUT,
        AudioContent,
        BlobResourceContents,
        CallToolResult,
        EmbeddedResource,
        ImageContent,
        JSONRPCError,
        JSONRPCRequest,
        PaginatedRequestParams,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )
    from mcp_types import Tool as ToolDefinition

    #: The code of the SDK's own error for a streamable HTTP session the server no longer knows (404).
    SESSION_TERMINATED = INVALID_REQUEST
    #: Whether the SDK itself sends ``notifications/cancelled`` when a request's caller is cancelled.
    SENDS_CANCELLED = True

    def error_code(exc: MCPError) -> int:
        return exc.code

    def error_message(exc: MCPError) -> str:
        return exc.message

    def jsonrpc(item: SessionMessage) -> Any:
        """The JSON-RPC message in a session message (a request, a response, an error...)."""
        return item.message

    def with_request(
        item: SessionMessage, request: JSONRPCRequest, headers: Mapping[str, str] | None
    ) -> SessionMessage:
        """``item`` with ``request`` in it and, given ``headers`` (trace context), those on its HTTP request."""
        metadata = item.metadata
        if headers is not None:
            if isinstance(metadata, ClientMessageMetadata):
                metadata = ClientMessageMetadata(
                    metadata.resumption_token,
                    metadata.on_resumption_token_update,
                    {**(metadata.headers or {}), **headers},
                )
            elif metadata is None:
                metadata = ClientMessageMetadata(headers=dict(headers))
        return SessionMessage(request, metadata)

    def notification(message: Any) -> Any:
        """A notification as the session's message handler gets it, unwrapped."""
        return message

    def is_error(result: CallToolResult) -> bool:
        return bool(result.is_error)

    def structured_content(result: CallToolResult) -> Any:
        return result.structured_content

    def mime_type(block: Any) -> str | None:
        """The MIME type of a content block or a resource's contents."""
        value: str | None = getattr(block, "mime_type", None)
        return value

    def input_schema(definition: ToolDefinition) -> dict[str, Any]:
        return definition.input_schema

    def next_cursor(page: Any) -> str | None:
        value: str | None = page.next_cursor
        return value

    @contextlib.asynccontextmanager
    async def http_streams(
        url: str, headers: Mapping[str, str], connect_timeout: float
    ) -> AsyncIterator[tuple[Any, Any]]:
        """The read and write streams of a streamable HTTP session (the header rides on each request's metadata)."""
        timeout = httpx2.Timeout(connect_timeout, read=300.0)
        async with (
            create_mcp_http_client(headers=dict(headers), timeout=timeout) as client,
            streamable_http_client(url, http_client=client) as (read, write),
        ):
            yield read, write

    async def send_cancelled(session: Any, request_id: Any, reason: str) -> None:  # pragma: no cover - 1.x only
        return None

else:  # the 1.x line
    import httpx
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client
    from mcp.shared.exceptions import McpError as MCPError
    from mcp.shared.message import SessionMessage
    from mcp.types import (
        CONNECTION_CLOSED,
        INVALID_PARAMS,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        AudioContent,
        BlobResourceContents,
        CallToolResult,
        CancelledNotification,
        CancelledNotificationParams,
        ClientNotification,
        EmbeddedResource,
        ImageContent,
        JSONRPCError,
        JSONRPCMessage,
        JSONRPCRequest,
        PaginatedRequestParams,
        ResourceLink,
        TextContent,
        TextResourceContents,
    )
    from mcp.types import Tool as ToolDefinition

    REQUEST_TIMEOUT = int(httpx.codes.REQUEST_TIMEOUT)  # what 1.x's send_request raises on its read timeout
    SESSION_TERMINATED = 32600  # 1.x's own "Session terminated" error has this code (the sign is missing)
    SENDS_CANCELLED = False

    def error_code(exc):
        return exc.error.code

    def error_message(exc):
        return exc.error.message

    def jsonrpc(item):
        return item.message.root

    def with_request(item, request, headers):
        # 1.x cannot put a header on one request: the HTTP client's hook (http_streams) copies the
        # traceparent and tracestate from the request's params._meta.
        return SessionMessage(JSONRPCMessage(request), item.metadata)

    def notification(message):
        return getattr(message, "root", message)

    def is_error(result):
        return bool(result.isError)

    def structured_content(result):
        return result.structuredContent

    def mime_type(block):
        return getattr(block, "mimeType", None)

    def input_schema(definition):
        return definition.inputSchema

    def next_cursor(page):
        return page.nextCursor

    async def _traceparent_header(request):
        """Each ``tools/call`` POST gets its ``params._meta.traceparent`` (and ``tracestate``) as headers too
        (an httpx request hook: 1.x's transport sends each request from a task of its own, so only the
        body says which call it is). The cost: the body of each ``tools/call`` is parsed once more."""
        if request.method != "POST" or b'"tools/call"' not in request.content:
            return
        try:
            message = json.loads(request.content)
            meta = message["params"]["_meta"]
            traceparent = meta["traceparent"]
        except (ValueError, KeyError, TypeError):
            return
        if isinstance(traceparent, str):
            request.headers["traceparent"] = traceparent
            tracestate = meta.get("tracestate")
            if isinstance(tracestate, str) and tracestate:
                request.headers["tracestate"] = tracestate

    @contextlib.asynccontextmanager
    async def http_streams(url, headers, connect_timeout):
        timeout = httpx.Timeout(connect_timeout, read=300.0)
        async with create_mcp_http_client(headers=dict(headers), timeout=timeout) as client:
            hooks = client.event_hooks
            client.event_hooks = {**hooks, "request": [*hooks["request"], _traceparent_header]}
            async with streamable_http_client(url, http_client=client) as (read, write, _session_id):
                yield read, write

    async def send_cancelled(session, request_id, reason):
        """Tell the server a request was cancelled (the 1.x SDK does not when its caller is)."""
        params = CancelledNotificationParams(requestId=request_id, reason=reason)
        await session.send_notification(ClientNotification(CancelledNotification(params=params)))


__all__ = [
    "CONNECTION_CLOSED",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "REQUEST_TIMEOUT",
    "SDK_2",
    "SENDS_CANCELLED",
    "SESSION_TERMINATED",
    "AudioContent",
    "BlobResourceContents",
    "CallToolResult",
    "EmbeddedResource",
    "ImageContent",
    "JSONRPCError",
    "JSONRPCRequest",
    "MCPError",
    "PaginatedRequestParams",
    "ResourceLink",
    "SessionMessage",
    "TextContent",
    "TextResourceContents",
    "ToolDefinition",
    "error_code",
    "error_message",
    "http_streams",
    "input_schema",
    "is_error",
    "jsonrpc",
    "mime_type",
    "next_cursor",
    "notification",
    "send_cancelled",
    "structured_content",
    "with_request",
]
