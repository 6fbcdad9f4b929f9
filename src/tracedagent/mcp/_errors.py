"""The errors of MCP tool calls: each a :class:`~tracedagent.ToolError` the model sees."""

from __future__ import annotations

from ..exceptions import ToolError

__all__ = ["MCPConnectionError", "MCPServerError", "MCPToolError"]


class MCPToolError(ToolError):
    """The tool answered with ``isError: true``: its message is the tool's own text."""


class MCPServerError(ToolError):
    """The server answered the request with a JSON-RPC error (unknown tool, invalid params, its own fault)."""

    def __init__(self, message: str, *, tool: str = "", code: int | None = None) -> None:
        super().__init__(message, tool=tool)
        self.code = code


class MCPConnectionError(MCPServerError):
    """No answer from the server: it could not be started or reached, or it closed the connection
    (it exited, crashed or restarted). These count as failures of the server's circuit breaker."""
