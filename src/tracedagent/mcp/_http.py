"""``MCPServerHTTP``: an MCP server reached over streamable HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ._server import MCPServerBase

__all__ = ["MCPServerHTTP"]


class MCPServerHTTP(MCPServerBase):
    """An MCP server at ``url`` (streamable HTTP), with ``headers`` on every request (an
    ``Authorization`` header, say). Each ``tools/call`` also carries the call's ``traceparent`` header.
    Takes the same settings as :class:`MCPServerStdio` (resilience defaults, ``tool_settings``,
    ``tool_prefix``, ``allowed_tools``, timeouts)."""

    _http = True

    def __init__(
        self, url: str, headers: Mapping[str, str] | None = None, *, name: str | None = None, **options: Any
    ) -> None:
        self.url = url
        self.headers = dict(headers or {})
        super().__init__(name=name or url, **options)

    def _transport(self) -> contextlib.AbstractAsyncContextManager[tuple[Any, Any]]:
        return self._open()

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[tuple[Any, Any]]:
        timeout = httpx2.Timeout(self.connect_timeout, read=300.0)
        async with (
            create_mcp_http_client(headers=self.headers, timeout=timeout) as client,
            streamable_http_client(self.url, http_client=client) as (read, write),
        ):
            yield read, write
