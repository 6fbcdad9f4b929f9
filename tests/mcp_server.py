"""A real MCP server for the tests, on the ``mcp`` SDK's high-level server: ``MCPServer`` with mcp 2.x,
``FastMCP`` with 1.x (tests/test_mcp_sdk1.py runs the server and some tests under 1.x).

Run over stdio (``python tests/mcp_server.py``) or streamable HTTP (``--http --port-file F`` binds
127.0.0.1 on a free port, or ``--port N``, and writes the port to F). With ``MCP_RECORD=path`` it appends
one JSON line per request it handles (the tool, the ``_meta``, the HTTP headers, its pid) and one per
cancelled call. With ``OTEL_EXPORTER_OTLP_ENDPOINT`` it sends its spans (the SDK's server spans, and one
of its own inside ``add``) over OTLP/HTTP. ``--garbage`` prints lines that are not JSON-RPC on stdout,
``--bad-schema`` adds a tool with an invalid input schema, ``--exit-at-start`` exits before the handshake,
``--hang-listing`` never answers ``tools/list``, ``--only a,b`` offers those tools only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import sys
from typing import Any

try:  # mcp 2.x
    from mcp.server.mcpserver import Context, Image, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.shared.exceptions import MCPError
    from mcp_types import EmbeddedResource, ImageContent, TextContent

    SDK_2 = True
except ImportError:  # mcp 1.x: FastMCP
    from mcp.server.fastmcp import Context, Image
    from mcp.server.fastmcp import FastMCP as MCPServer
    from mcp.server.fastmcp.exceptions import ToolError
    from mcp.shared.exceptions import McpError, UrlElicitationRequiredError
    from mcp.types import EmbeddedResource, ErrorData, ImageContent, TextContent

    SDK_2 = False

    class MCPError(UrlElicitationRequiredError):
        """A JSON-RPC error with this code and message. 1.x's FastMCP makes an isError result of whatever a
        tool raises but this one error class, which it lets through as the JSON-RPC error it carries."""

        def __init__(self, code: int, message: str) -> None:
            McpError.__init__(self, ErrorData(code=code, message=message))

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

server = MCPServer("tracedagent-test-server")


def record(**fields: Any) -> None:
    path = os.environ.get("MCP_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({**fields, "pid": os.getpid()}) + "\n")


def _meta(ctx: Context) -> dict[str, Any]:
    meta = ctx.request_context.meta
    if meta is None:
        return {}
    if hasattr(meta, "model_dump"):
        return dict(meta.model_dump(by_alias=True, exclude_none=True))
    return dict(meta)


def _headers(ctx: Context) -> Any:
    if SDK_2:
        return ctx.headers
    request = ctx.request_context.request  # 1.x: the Starlette request over HTTP, None over stdio
    return getattr(request, "headers", None)


def seen(tool: str, ctx: Context) -> None:
    headers = _headers(ctx)
    record(event="call", tool=tool, meta=_meta(ctx), headers=dict(headers) if headers is not None else None)


@server.tool()
def add(a: int, b: int, ctx: Context) -> int:
    """Add two integers."""
    seen("add", ctx)
    tracer = sys.modules.get("opentelemetry.trace")
    if tracer is not None:
        with tracer.get_tracer("test-server").start_as_current_span("add-inside-server"):
            return a + b
    return a + b


@server.tool()
def echo(text: str, ctx: Context) -> str:
    """Say the text back."""
    seen("echo", ctx)
    return text


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Wait for some seconds, then answer."""
    seen("slow", ctx)
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(event="cancelled", tool="slow")
        raise
    return f"waited {seconds}s"


@server.tool()
def crash(ctx: Context) -> str:
    """Kill this server in the middle of the call."""
    seen("crash", ctx)
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


@server.tool()
def fail(message: str, ctx: Context) -> str:
    """Fail with the message (an isError result)."""
    seen("fail", ctx)
    raise ToolError(message)


@server.tool()
def refuse(ctx: Context) -> str:
    """Answer with a JSON-RPC error (a protocol error, not an isError result)."""
    seen("refuse", ctx)
    raise MCPError(code=-32000, message="quota exceeded for this client")


@server.tool()
def picture(ctx: Context) -> Image:
    """A one-pixel PNG."""
    seen("picture", ctx)
    return Image(data=PNG, format="png")


@server.tool(structured_output=False)
def chart(ctx: Context) -> list[TextContent | ImageContent]:
    """A caption and a one-pixel PNG, as two content blocks."""
    seen("chart", ctx)
    return [
        TextContent(type="text", text="the chart"),
        ImageContent.model_validate({"type": "image", "data": base64.b64encode(PNG).decode(), "mimeType": "image/png"}),
    ]


@server.tool(structured_output=False)
def scan(ctx: Context) -> EmbeddedResource:
    """The one-pixel PNG as an embedded binary resource."""
    seen("scan", ctx)
    blob = {"uri": "file:///scan.png", "mimeType": "image/png", "blob": base64.b64encode(PNG).decode()}
    return EmbeddedResource.model_validate({"type": "resource", "resource": blob})


@server.tool(structured_output=False)  # a content block, not a structured result (mcp 2.0 made it one)
def document(ctx: Context) -> EmbeddedResource:
    """An embedded text resource."""
    seen("document", ctx)
    text = {"uri": "file:///notes.txt", "mimeType": "text/plain", "text": "the notes"}
    return EmbeddedResource.model_validate({"type": "resource", "resource": text})


@server.tool()
def noisy(ctx: Context) -> str:
    """Print a line that is not JSON-RPC on stdout, then answer."""
    seen("noisy", ctx)
    os.write(1, b"this is not json-rpc\n")
    return "still fine"


@server.tool()
def flaky(mode: str, ctx: Context) -> str:
    """Fail the first call of each mode ('error': an isError result; 'crash': this server is killed), then
    answer (the first call leaves a mark beside the MCP_RECORD file)."""
    seen("flaky", ctx)
    mark = f"{os.environ['MCP_RECORD']}.flaky-{mode}"
    if not os.path.exists(mark):
        open(mark, "w").close()
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ToolError(f"the first {mode} fails")
    return f"{mode}: fine the second time"


@server.tool()
def whoami(ctx: Context) -> int:
    """The server's process id."""
    seen("whoami", ctx)
    return os.getpid()


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool named 'extra' and tell the client the tool list changed."""
    seen("grow", ctx)

    def extra(ctx: Context) -> str:
        """A tool that appeared later."""
        return "extra!"

    server.add_tool(extra, name="extra")
    await ctx.session.send_tool_list_changed()  # notifications/tools/list_changed
    return "grown"


@server.tool()
async def shrink(ctx: Context) -> str:
    """Remove the tool named 'extra' and tell the client the tool list changed."""
    seen("shrink", ctx)
    server.remove_tool("extra")
    await ctx.session.send_tool_list_changed()
    return "shrunk"


@server.tool(structured_output=False)
def long_chart(chars: int, images: int, ctx: Context) -> list[TextContent | ImageContent]:
    """A caption of ``chars`` characters and ``images`` one-pixel PNGs."""
    seen("long_chart", ctx)
    png = {"type": "image", "data": base64.b64encode(PNG).decode(), "mimeType": "image/png"}
    caption = ("a very long caption " * (chars // 20 + 1))[:chars]
    return [TextContent(type="text", text=caption), *(ImageContent.model_validate(png) for _ in range(images))]


@server.tool(structured_output=False)
def photos(sizes: list[int], ctx: Context) -> list[ImageContent]:
    """One image per size, of that many bytes (a PNG header, then zeros)."""
    seen("photos", ctx)
    return [
        ImageContent.model_validate(
            {"type": "image", "data": base64.b64encode(PNG[:8] + bytes(size - 8)).decode(), "mimeType": "image/png"}
        )
        for size in sizes
    ]


def _otel() -> None:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "test-mcp-server"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--bad-schema", action="store_true")
    parser.add_argument("--exit-at-start", action="store_true")
    parser.add_argument("--hang-listing", action="store_true")
    parser.add_argument("--only")
    options = parser.parse_args()
    if options.exit_at_start:
        print("refusing to start", file=sys.stderr)
        sys.exit(3)
    _otel()
    if options.only:
        for name in {t.name for t in server._tool_manager.list_tools()} - set(options.only.split(",")):
            server.remove_tool(name)
    if options.bad_schema:

        def broken(x: int) -> int:
            """A tool whose schema is invalid."""
            return x

        server.add_tool(broken, name="broken")
        server._tool_manager._tools["broken"].parameters = {"type": "object", "properties": {"x": {"type": 12}}}
    if options.hang_listing:

        async def never() -> Any:
            await asyncio.sleep(3600)

        # the handshake works, tools/list never answers
        if SDK_2:
            server.list_tools = never  # type: ignore[method-assign]
        else:  # 1.x registered its handler at construction
            from mcp.types import ListToolsRequest

            server._mcp_server.request_handlers[ListToolsRequest] = lambda request: never()
    if options.garbage:
        os.write(1, b"garbage before the handshake\n{not json either\n")
    if not options.http:
        server.run("stdio")
        return
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", options.port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    if options.port_file:
        with open(options.port_file + ".tmp", "w") as f:
            f.write(str(sock.getsockname()[1]))
        os.replace(options.port_file + ".tmp", options.port_file)
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
