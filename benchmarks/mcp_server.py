"""The benchmark's MCP server: one ``add`` tool, over stdio or streamable HTTP on 127.0.0.1 (prints its URL)."""

from __future__ import annotations

import asyncio
import socket
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("bench")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    if "--http" not in sys.argv:
        server.run("stdio")
    else:
        import uvicorn

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(256)
        print(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
        config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
        asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
