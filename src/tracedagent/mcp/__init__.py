"""MCP tools: the tools of Model Context Protocol servers, as ordinary traced and protected tool calls.

::

    from tracedagent import Agent
    from tracedagent.mcp import MCPServerStdio

    files = MCPServerStdio("python", ["-m", "my_server"], tool_prefix="files_", timeout=20)
    agent = Agent("helper", "openai:gpt-4o-mini", tools=[files, other_tool])

A server is passed in ``Agent(tools=[...])``. Its tools are listed when a run starts (cached for
``cache_ttl`` seconds, listed again when the server says they changed, from the run's next model call on
when a call of its tools brought the news); each call goes through the same layers as any tool
(approval, breaker, bulkhead, timeout, retry) with the same events, spans and metrics, and carries its
span's ``traceparent`` (and the run's ``tracestate``, when it has one) in ``params._meta`` (and, over
HTTP, as headers). Images in a result reach the
model as ``Message.images`` where its provider takes them, and are described in the text;
``max_result_chars`` cuts the text only, and ``max_image_bytes`` bounds the images. Needs the
``mcp`` package, 1.x (from 1.30) or 2.x: ``pip install "tracedagent[mcp]"``.
"""

from __future__ import annotations

try:
    import mcp as _mcp  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without the extra
    raise ImportError('tracedagent.mcp needs the MCP SDK: pip install "tracedagent[mcp]"') from exc

from ._errors import MCPConnectionError, MCPServerError, MCPToolError
from ._http import MCPServerHTTP
from ._server import MCPServerBase
from ._stdio import MCPServerStdio
from ._tool import MCPTool

__all__ = [
    "MCPConnectionError",
    "MCPServerBase",
    "MCPServerError",
    "MCPServerHTTP",
    "MCPServerStdio",
    "MCPTool",
    "MCPToolError",
]
