"""The process exits within TRACEDAGENT_EXIT_TIMEOUT of its last run, whatever its backends do: with
every backend dead (the OTLP endpoint a black hole that accepts and never answers, LangSmith answering
503 after 2 s), with both refusing connections, and with both answering at once.

The child's stderr is read while it runs: the langsmith SDK logs every failed upload, and a child
blocked on a full stderr pipe would not exit however well its exporters behave."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

EXIT_TIMEOUT_S = 2.0
#: What may pass after the timeout until the exit handlers are done: reading the clock, printing.
EXIT_SLACK_S = 0.5
#: The interpreter's own teardown after the exit handlers (freeing its modules; slow on a loaded machine).
TEARDOWN_S = 3.0
GUARD_S = 30.0

SCRIPT = textwrap.dedent(
    """
    import asyncio, atexit, sys, time
    # Registered first, so it runs last: every exit handler (the tracers', the SDKs') and the join of the
    # non-daemon threads are done by then. What follows is the interpreter freeing its modules.
    atexit.register(lambda: print(f"exit work done {time.monotonic()!r}", flush=True))
    import langsmith
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    import tracedagent
    from tracedagent import Agent, tool
    from tracedagent.testing import ScriptedModel, Step
    from tracedagent_langsmith import LangSmithTracer
    from tracedagent_otlp import OtlpTracer

    @tool
    async def add(a: int, b: int) -> int:
        \"\"\"Add.\"\"\"
        return a + b

    otlp = OtlpTracer(span_exporter=OTLPSpanExporter(endpoint=sys.argv[1] + "/v1/traces"), metrics=False,
                      interval_s=0.05)
    ls = LangSmithTracer(interval_s=0.05)
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"], per_run=True)
    agent = Agent("a", model, tools=[add], plugins=[otlp, ls])

    async def main():
        for block in range(3):
            await asyncio.gather(*(agent.run(f"q{i}") for i in range(100)))
            await asyncio.sleep(0.5)  # the exporters are busy with the dead backends meanwhile

    asyncio.run(main())
    print("last run done", flush=True)
    """
)


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP listener that accepts connections (the kernel does, from its backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@contextlib.contextmanager
def _http_stand_in(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A threaded HTTP server on loopback that reads each request's body and calls ``answer``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            answer(self)

        do_GET = do_POST = do_PATCH = _answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def slow_503() -> Iterator[str]:
    """A LangSmith stand-in that answers 503 after 2 s."""
    stop = threading.Event()

    def answer(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(2.0)
        try:
            handler.send_response(503)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass

    with _http_stand_in(answer) as url:
        yield url
        stop.set()


@pytest.fixture
def refused() -> str:
    """An address where nothing listens: connections are refused at once."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def answering() -> Iterator[str]:
    """A collector and a LangSmith stand-in that take everything at once (200, ``{}``)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"{}")

    with _http_stand_in(answer) as url:
        yield url


def _exit_after_last_run(otlp: str, langsmith: str) -> tuple[int, float, float | None, str]:
    """Run the child; return its exit code, the seconds from its last run to its exit and to the end of
    its exit handlers (``time.monotonic`` is the system's clock: the child's and ours agree), and its stderr."""
    env = {
        **os.environ,
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_EXIT_TIMEOUT": str(EXIT_TIMEOUT_S),
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": langsmith,
        "LANGSMITH_API_KEY": "lsv2_pt_test",
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, otlp], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    errors: list[str] = []
    assert child.stderr is not None
    reader = threading.Thread(target=lambda: errors.append(child.stderr.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # blocks until the last run is done (or the child died)
        last_run = time.monotonic()
        if line.strip() != "last run done":
            child.wait(GUARD_S)
            reader.join(GUARD_S)
            pytest.fail(f"the child did not finish its runs: {line!r}\n{''.join(errors)[-4000:]}")
        code = child.wait(GUARD_S)
        took = time.monotonic() - last_run
        done = child.stdout.readline().strip()
        work = float(done.removeprefix("exit work done ")) - last_run if done.startswith("exit work done") else None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join(GUARD_S)
    return code, took, work, "".join(errors)


@pytest.mark.parametrize("backends", ["black hole and slow 503", "refused", "answering"])
def test_the_process_exits_within_the_exit_timeout_of_its_last_run(
    backends: str, request: pytest.FixtureRequest
) -> None:
    if backends == "black hole and slow 503":
        otlp, langsmith = request.getfixturevalue("black_hole"), request.getfixturevalue("slow_503")
    elif backends == "refused":
        otlp = langsmith = request.getfixturevalue("refused")
    else:
        otlp = langsmith = request.getfixturevalue("answering")
    code, took, work, errors = _exit_after_last_run(otlp, langsmith)
    print(
        f"{backends}: exit work done {work} s and the process gone {took:.2f} s after the last run "
        f"(TRACEDAGENT_EXIT_TIMEOUT={EXIT_TIMEOUT_S})"
    )
    assert code == 0, errors[-4000:]
    assert work is not None, "the child's last exit handler did not run"
    # The bound: every exit handler and thread join done within the timeout (and a little for the clocks).
    assert work < EXIT_TIMEOUT_S + EXIT_SLACK_S, f"the exit handlers took {work:.2f} s after the last run"
    assert took < EXIT_TIMEOUT_S + TEARDOWN_S, f"the process took {took:.2f} s to exit after its last run"
