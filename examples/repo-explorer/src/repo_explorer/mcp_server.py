"""An MCP server that lets any MCP client explore a repository read-only: ``list_files``, ``read_file``
and ``search``, confined to ``--root``. Built on the ``mcp`` SDK's high-level server (``MCPServer``).

Over stdio (what ``tracedagent.mcp.MCPServerStdio`` starts)::

    python -m repo_explorer.mcp_server --root path/to/repo

Over streamable HTTP on 127.0.0.1 (``--port 0`` picks a free port; the first line printed is the URL)::

    python -m repo_explorer.mcp_server --root path/to/repo --http --port 0

The trace of the caller continues here: the SDK reads ``params._meta.traceparent`` of each request, so
with an OpenTelemetry SDK configured (``OTEL_EXPORTER_OTLP_ENDPOINT``) its spans join the caller's trace.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("repo-explorer", instructions="Read-only access to one repository.")
ROOT = Path.cwd()
MAX_CHARS = 20_000


def _inside(path: str) -> Path:
    target = (ROOT / path).resolve()
    if target != ROOT and ROOT not in target.parents:
        raise ToolError(f"{path!r} is outside the repository")
    return target


@server.tool()
def list_files(path: str = ".") -> list[str]:
    """The files under a folder of the repository (relative paths, at most 500)."""
    folder = _inside(path)
    if not folder.is_dir():
        raise ToolError(f"{path!r} is not a folder of the repository")
    found = sorted(str(p.relative_to(ROOT)) for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)
    return found[:500]


@server.tool()
def read_file(path: str) -> str:
    """The text of a file of the repository (its first 20,000 characters)."""
    target = _inside(path)
    if not target.is_file():
        raise ToolError(f"there is no file {path!r} in the repository")
    return target.read_text(errors="replace")[:MAX_CHARS]


@server.tool()
def search(text: str) -> list[str]:
    """Lines of the repository's files that contain the text, as 'path:line: content' (at most 50)."""
    hits: list[str] = []
    for file in sorted(ROOT.rglob("*")):
        if not file.is_file() or ".git" in file.parts:
            continue
        try:
            lines = file.read_text().splitlines()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(lines, 1):
            if text in line:
                hits.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
                if len(hits) == 50:
                    return hits
    return hits


def main(argv: list[str] | None = None) -> None:
    global ROOT
    parser = argparse.ArgumentParser(prog="python -m repo_explorer.mcp_server", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=".", help="the repository to serve (default: the current folder)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--port", type=int, default=8765, help="the HTTP port on 127.0.0.1 (0: a free one)")
    options = parser.parse_args(argv)
    ROOT = Path(options.root).resolve()
    if not options.http:
        server.run("stdio")
        return
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", options.port))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    main(sys.argv[1:])
