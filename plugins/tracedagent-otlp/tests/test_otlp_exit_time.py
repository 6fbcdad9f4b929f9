"""At exit, the plugin's own exporter (from ``OTEL_*``) makes one last attempt without backoff: a collector
that refuses connections costs no wait, one that has everything exits at once, and only one that accepts
and never answers holds the exit, never past ``TRACEDAGENT_EXIT_TIMEOUT``. Nothing of the OpenTelemetry
SDK's is printed on stderr: failures are counted.

The bounds are generous (interpreter teardown included); the times are printed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

EXIT_TIMEOUT_S = 2.0
#: "Costs no wait": what the exit may take after the last run when nothing has to be waited for.
NO_WAIT_S = 1.0
#: The interpreter's own teardown after the drain, on top of the exit timeout.
TEARDOWN_S = 1.5
GUARD_S = 60.0

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    import tracedagent
    from tracedagent import Agent, tool
    from tracedagent.testing import ScriptedModel, Step

    @tool
    async def add(a: int, b: int) -> int:
        \"\"\"Add.\"\"\"
        return a + b

    async def main():
        model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"], per_run=True)
        agent = Agent("a", model, tools=[add])
        for block in range(3):
            await asyncio.gather(*(agent.run(f"q{i}") for i in range(100)))
            await asyncio.sleep(0.3)  # the exporter meets the collector meanwhile

    asyncio.run(main())
    (stats,) = [s for s in tracedagent.export_stats() if s.sink == "otlp"]
    status = {p.name: p.status for p in tracedagent.list_plugins()}["otlp"]
    print(json.dumps({"failed": stats.failed, "status": status}), flush=True)
    print("last run done", flush=True)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def refused() -> str:
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def black_hole() -> Iterator[str]:
    """Accepts connections (from the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def answering() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _exit_after_last_run(endpoint: str) -> tuple[int, float, str, str]:
    env = {
        **os.environ,
        "TRACEDAGENT_PLUGINS": "otlp",
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_EXIT_TIMEOUT": str(EXIT_TIMEOUT_S),
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    errors: list[str] = []
    assert child.stderr is not None
    stderr = child.stderr
    reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    reader.start()
    try:
        assert child.stdout is not None
        report = child.stdout.readline()
        line = child.stdout.readline()
        last_run = time.monotonic()
        if line.strip() != "last run done":
            child.wait(GUARD_S)
            reader.join(GUARD_S)
            pytest.fail(f"the child did not finish its runs: {report!r} {line!r}\n{''.join(errors)[-4000:]}")
        code = child.wait(GUARD_S)
        took = time.monotonic() - last_run
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join(GUARD_S)
    return code, took, report, "".join(errors)


def _no_sdk_lines(stderr: str) -> None:
    for line in stderr.splitlines():
        assert "opentelemetry" not in line.lower(), stderr
        assert "retrying" not in line.lower(), stderr
        assert "Transient error" not in line, stderr
    # at most one line of ours says the collector could not be reached; the rest is counted
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 1, stderr


def test_a_collector_that_refuses_costs_no_wait_at_exit_and_prints_no_sdk_lines(refused: str) -> None:
    code, took, report, stderr = _exit_after_last_run(refused)
    print(f"refused: exit took {took:.2f} s after the last run (TRACEDAGENT_EXIT_TIMEOUT={EXIT_TIMEOUT_S})")
    assert code == 0, stderr
    assert took < NO_WAIT_S, f"the process took {took:.2f} s to exit after its last run"
    assert '"failed": 0' not in report  # the failures are counted
    _no_sdk_lines(stderr)


def test_when_everything_was_sent_the_process_exits_at_once(answering: str) -> None:
    code, took, report, stderr = _exit_after_last_run(answering)
    print(f"answering: exit took {took:.2f} s after the last run")
    assert code == 0, stderr
    assert took < NO_WAIT_S, f"the process took {took:.2f} s to exit after its last run"
    assert '"failed": 0' in report
    assert stderr.strip() == ""


def test_a_collector_that_hangs_holds_the_exit_no_longer_than_the_exit_timeout(black_hole: str) -> None:
    code, took, _, stderr = _exit_after_last_run(black_hole)
    print(f"black hole: exit took {took:.2f} s after the last run (TRACEDAGENT_EXIT_TIMEOUT={EXIT_TIMEOUT_S})")
    assert code == 0, stderr
    assert took < EXIT_TIMEOUT_S + TEARDOWN_S, f"the process took {took:.2f} s to exit after its last run"
    _no_sdk_lines(stderr)


def test_failures_are_counted_in_tracedagent_plugins_not_printed(refused: str) -> None:
    script = textwrap.dedent(
        """
        import tracedagent
        from tracedagent import Agent
        from tracedagent.testing import ScriptedModel

        Agent("a", ScriptedModel(["ok"])).run_sync("hi")
        tracedagent.flush(5)
        print([p.status for p in tracedagent.list_plugins() if p.name == "otlp-tracer"][0])
        """
    )
    env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": refused, "TRACEDAGENT_EXIT_TIMEOUT": "2"}
    env.pop("TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    status = done.stdout.strip().splitlines()[-1]
    assert "2 spans failed to export" in status, status
    _no_sdk_lines(done.stderr)
