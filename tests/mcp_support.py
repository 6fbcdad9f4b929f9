"""Starting the test MCP server (tests/mcp_server.py) over stdio and streamable HTTP, and reading what it recorded."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER = Path(__file__).with_name("mcp_server.py")
#: How long a test waits for something that should happen at once (a guard against hanging, not a timing).
GUARD_S = 30.0


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (up to the guard) for ``condition``, which something else makes true."""
    async with asyncio.timeout(GUARD_S):
        while not condition():  # noqa: ASYNC110 (the condition is another process's doing: a file it writes)
            await asyncio.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HTTPServerProcess:
    """The test server over streamable HTTP on 127.0.0.1, in a child process."""

    def __init__(self, tmp: Path, record: Path, env: dict[str, str] | None = None, port: int = 0) -> None:
        self.tmp, self.record, self.extra_env = tmp, record, env or {}
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        port_file = self.tmp / f"port-{time.monotonic_ns()}"
        env = {**os.environ, **self.extra_env, "MCP_RECORD": str(self.record)}
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--http", "--port", str(self.port), "--port-file", str(port_file)], env=env
        )
        deadline = time.monotonic() + GUARD_S
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the test MCP server did not start")
            time.sleep(0.02)
        self.port = int(port_file.read_text())
        # uvicorn accepts connections once serve() runs: wait until it answers.
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(GUARD_S)
