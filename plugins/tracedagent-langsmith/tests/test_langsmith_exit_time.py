"""At exit the LangSmith tracer keeps issue 16.7's promises, in a real child process with the real SDK:
a receiver that answers at once and has everything costs no wait; one that refuses connections costs
no wait either; one that accepts and never answers holds the exit no longer than
``TRACEDAGENT_EXIT_TIMEOUT``. The SDK prints nothing on stderr (not "Run compression is not enabled" for
a receiver whose /info offers no zstd, not its failed uploads): its lines are counted, and
``tracedagent plugins`` shows the count. The SDK's logger still prints what an application's own
client logs.

What is bounded is the exit's work: from the last run to the end of the last exit handler (the drain,
the SDK's threads, every ``atexit`` handler; the child's first ``atexit`` handler, which runs last,
says when). After that the interpreter tears itself down: with the langsmith SDK imported its cyclic
garbage collection over the SDK's module graph takes 0.1 s on a quiet machine and over a second on a
loaded one (measured with the tracer not even registered; ``gc.freeze()`` before the exit removes it),
which no tracer setting changes. That total is printed, not bounded."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langsmith_server import CaptureServer, capture_server
from ls_support import API_KEY, MakeTracer, calc_agent

from tracedagent_langsmith._transport import COMPRESSION_NOTICE

EXIT_TIMEOUT_S = 2.0
#: "Costs no wait": what the exit's work may take after the last run when nothing has to be waited for
#: (and what it may take past the exit timeout when something is given up).
NO_WAIT_S = 1.0
GUARD_S = 60.0

SCRIPT = textwrap.dedent(
    """
    import atexit, sys, time
    # Registered first, so it runs last of the exit handlers: the exit's work is done when it runs.
    atexit.register(lambda: print(f"exit work done at {time.monotonic()!r}", file=sys.stderr, flush=True))
    import json
    import langsmith.client  # an application that traces with LangSmith has the SDK imported
    import tracedagent
    from ls_support import calc_agent
    from tracedagent_langsmith import LangSmithTracer

    tracer = LangSmithTracer(interval_s=0.05)
    tracedagent.register(tracer)
    for _ in range(5):
        assert calc_agent().run_sync("question").status == "completed"
    time.sleep(0.5)  # the worker meets the endpoint meanwhile
    status = {p.name: p.status for p in tracedagent.list_plugins()}
    print(json.dumps({"status": status, "notices": tracer.sdk_notices, "failures": tracer.send_failures}), flush=True)
    print("last run done", flush=True)
    """
)


@pytest.fixture
def refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


@pytest.fixture
def black_hole() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.fixture
def no_zstd() -> Iterator[CaptureServer]:
    """A receiver that answers at once and whose /info does not offer zstd (as a local one does not)."""
    with capture_server(zstd=False) as running:
        yield running


def _exit_after_last_run(url: str) -> tuple[int, float, float, dict[str, Any], str]:
    """Run the child; return its exit code, the seconds from its last run to the end of its exit
    handlers and to its exit, its report and its stderr (without the exit handlers' time line)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": url,
        "LANGSMITH_API_KEY": API_KEY,
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_EXIT_TIMEOUT": str(EXIT_TIMEOUT_S),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    errors: list[str] = []
    assert child.stderr is not None
    assert child.stdout is not None
    stderr = child.stderr
    reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
    reader.start()
    try:
        report = child.stdout.readline()
        line = child.stdout.readline()  # blocks until the last run is done (or the child died)
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
    lines = "".join(errors).splitlines(keepends=True)
    done = [float(line.split()[-1]) for line in lines if line.startswith("exit work done at ")]
    assert len(done) == 1, "".join(lines)[-4000:]
    stderr = "".join(line for line in lines if not line.startswith("exit work done at "))
    return code, done[0] - last_run, took, json.loads(report), stderr


def test_when_everything_was_sent_the_process_exits_at_once_and_the_compression_notice_is_counted(
    no_zstd: CaptureServer,
) -> None:
    code, took, total, report, stderr = _exit_after_last_run(no_zstd.url)
    print(f"answering: exit work {took:.2f} s after the last run, exit {total:.2f} s")
    assert code == 0, stderr
    assert stderr.strip() == ""  # no "Run compression is not enabled", nothing else
    assert report["notices"] == 1
    assert "1 SDK log lines counted (not printed)" in report["status"]["langsmith-tracer"]
    assert COMPRESSION_NOTICE in report["status"]["langsmith-tracer"]
    assert report["failures"] == 0
    assert len([op for op in no_zstd.ops if op.operation == "post"]) >= 5 * 3  # each run, model and tool
    assert took < NO_WAIT_S, f"the exit's work took {took:.2f} s after the last run"


def test_an_endpoint_that_refuses_costs_no_wait_at_exit_and_prints_no_sdk_lines(refused: str) -> None:
    code, took, total, report, stderr = _exit_after_last_run(refused)
    print(f"refused: exit work {took:.2f} s after the last run, exit {total:.2f} s")
    assert code == 0, stderr
    assert stderr.strip() == "", stderr  # not "Failed to get info", not "Failed to multipart ingest runs"
    assert report["failures"] >= 1
    assert report["notices"] >= 2  # /info and an upload, at least
    assert "uploads failed" in report["status"]["langsmith-tracer"]
    assert took < NO_WAIT_S, f"the exit's work took {took:.2f} s after the last run"


def test_an_endpoint_that_hangs_holds_the_exit_no_longer_than_the_exit_timeout(black_hole: str) -> None:
    code, took, total, _, stderr = _exit_after_last_run(black_hole)
    print(f"black hole: exit work {took:.2f} s, exit {total:.2f} s (TRACEDAGENT_EXIT_TIMEOUT={EXIT_TIMEOUT_S})")
    assert code == 0, stderr
    assert took < EXIT_TIMEOUT_S + NO_WAIT_S, f"the exit's work took {took:.2f} s after the last run"
    # at most the tracer's own line saying what it gave up
    assert all(line.startswith("LangSmith: ") for line in stderr.splitlines() if line.strip()), stderr


def test_the_sdk_lines_of_an_applications_own_client_are_not_touched(
    no_zstd: CaptureServer, make_tracer: MakeTracer, point_at: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from langsmith import Client

    point_at(no_zstd.url)
    tracer = make_tracer()
    with caplog.at_level(logging.WARNING, logger="langsmith.client"):
        assert calc_agent(tracer).run_sync("question").status == "completed"
        assert tracer.flush(10.0)
        assert tracer.sdk_notices == 1  # ours: counted, not logged
        assert not [r for r in caplog.records if r.getMessage().startswith(COMPRESSION_NOTICE)]
        theirs = Client(api_url=no_zstd.url, api_key=API_KEY)  # its tracing thread reads /info and warns
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not [
            r for r in caplog.records if r.getMessage().startswith(COMPRESSION_NOTICE)
        ]:
            time.sleep(0.02)
        theirs.cleanup()
    assert [r for r in caplog.records if r.getMessage().startswith(COMPRESSION_NOTICE)]
    assert tracer.sdk_notices == 1
