"""``MCPServerHTTP``: an MCP server reached over streamable HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ._compat import http_streams
from ._server import MCPServerBase

__all__ = ["MCPServerHTTP"]


class MCPServerHTTP(MCPServerBase):
    """An MCP server at ``url`` (streamable HTTP), with ``headers`` on every request (an
    ``Authorization`` header, say). Each ``tools/call`` also carries the call's ``traceparent`` header
    (and ``tracestate``, when the run has one).
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
        return http_streams(self.url, self.headers, self.connect_timeout)
