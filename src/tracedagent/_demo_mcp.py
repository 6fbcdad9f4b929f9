"""``tracedagent demo --mcp "COMMAND"``: the demo agent with an MCP server's tools (stdio), and a run that
calls each of them once, with arguments made up from their schemas, so their calls show in the events."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from ._messages import Message, ToolCall
from ._model import ModelRequest
from ._toolsource import ToolSource
from .exceptions import ConfigurationError

__all__ = ["PREFIX", "QUESTION", "mcp_answer", "mcp_server"]

#: The demo's MCP tools are offered as ``mcp_{name}``, apart from the trip desk's own tools.
PREFIX = "mcp_"
QUESTION = "Try the MCP server's tools, please."


def mcp_server(command: str) -> ToolSource:
    """An :class:`~tracedagent.mcp.MCPServerStdio` for a shell-like command line."""
    words = shlex.split(command)
    if not words:
        raise ConfigurationError("--mcp needs a command that starts an MCP server over stdio")
    try:
        from .mcp import MCPServerStdio
    except ImportError as exc:
        raise ConfigurationError(f'--mcp needs the MCP SDK: pip install "tracedagent[mcp]" ({exc})') from None
    return MCPServerStdio(words[0], words[1:], tool_prefix=PREFIX, timeout=20.0, connect_timeout=20.0)


def mcp_answer(question: str, tool_results: Sequence[Message], request: ModelRequest) -> str | list[ToolCall] | None:
    """The scripted model's step for the MCP question: call every MCP tool once, then report."""
    if question != QUESTION:
        return None
    if not tool_results:
        specs = [s for s in request.tools if s.name.startswith(PREFIX)]
        if not specs:
            return "The MCP server offered no tools."
        return [ToolCall.of(f"m{i}", s.name, sample(s.parameters)) for i, s in enumerate(specs)]
    ok = sum(1 for m in tool_results if not m.is_error)
    return f"{ok} of {len(tool_results)} MCP tool calls answered."


def sample(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a JSON Schema object: each required property's default, first enum value, or a
    placeholder of its type."""
    properties = schema.get("properties") or {}
    return {name: _value(properties.get(name) or {}) for name in schema.get("required") or ()}


def _value(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1.0, "boolean": False, "array": [], "object": {}}.get(str(kind), "demo")
