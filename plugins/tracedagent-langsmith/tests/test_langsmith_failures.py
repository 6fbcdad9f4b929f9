"""A dead, failing or hanging LangSmith endpoint never slows or breaks a run.

The runs complete with their output, failures and drops are counted, and ``flush`` / ``shutdown`` return
within their timeouts (checked with a guard thread only: no test asserts on how long anything took).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langsmith_server import CaptureServer, capture_server
from ls_support import SENTINEL, MakeTracer, approval_agent, calc_agent

import tracedagent
from tracedagent_langsmith import LangSmithTracer

pytestmark = pytest.mark.integration

GUARD_S = 60.0  # only a guard against hanging; never asserted on


def returns(call: Callable[[], bool], *, guard: float = GUARD_S) -> bool:
    """Run ``call`` on a thread and give its result; fail if it has not returned within the guard."""
    box: list[bool] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(guard)
    assert not thread.is_alive(), "did not return (waited for the guard)"
    return box[0]


def eventually(predicate: Callable[[], bool], *, guard: float = GUARD_S) -> bool:
    """Poll ``predicate`` until it holds (the SDK retries before it gives up); False after the guard."""
    deadline = time.monotonic() + guard
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there any more


def run_both(tracer: LangSmithTracer) -> None:
    """A plain run and one that pauses, with the right outputs whatever the backend does."""
    result = calc_agent(tracer).run_sync("question")
    assert (result.status, result.output) == ("completed", f"{SENTINEL} the answer")
    paused = approval_agent(tracer).run_sync("ship it")
    assert paused.status == "interrupted"


def test_a_dead_endpoint_costs_the_run_nothing_and_its_failures_are_counted(
    point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    point_at(closed_port_url())
    tracer = make_tracer()
    run_both(tracer)

    returns(lambda: tracer.flush(1.0))
    assert eventually(lambda: tracer.send_failures > 0)  # the SDK gave up after its retries
    assert tracer.failed == 0
    assert returns(lambda: tracer.shutdown(1.0)) in (True, False)


def test_a_server_answering_500_costs_the_run_nothing_and_its_failures_are_counted(
    point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    with capture_server(mode="error") as server:
        point_at(server.url)
        tracer = make_tracer()
        run_both(tracer)

        returns(lambda: tracer.flush(1.0))
        assert eventually(lambda: tracer.send_failures > 0)
        assert len([r for r in server.requests if r.path == "/runs/multipart"]) > 1  # retried first
        assert server.runs() == {}  # nothing was accepted
        returns(lambda: tracer.shutdown(1.0))


@pytest.mark.parametrize("mode", ["slow", "slow-ingest"], ids=["hangs", "hangs-on-uploads"])
def test_a_hanging_server_costs_the_run_nothing_and_flush_and_shutdown_keep_their_timeouts(
    point_at: Callable[[str], None], make_tracer: MakeTracer, mode: str
) -> None:
    with capture_server(mode=mode) as server:
        point_at(server.url)
        tracer = make_tracer()
        run_both(tracer)  # completes while the server has not answered anything
        assert not server.release.is_set()

        assert returns(lambda: tracer.flush(0.5)) is False  # the SDK could not finish: said, not waited for
        assert returns(lambda: tracedagent.flush(0.5)) is False
        assert returns(lambda: tracer.shutdown(0.5)) is False
        assert tracer.stats().queue_depth == 0  # everything was handed to the SDK
        assert returns(lambda: tracer.shutdown(0.5)) in (True, False)  # a second shutdown returns too


def test_a_queue_too_small_for_a_run_counts_the_trace_as_broken_and_sheds_the_next(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    """The pathological case, made on purpose: a queue of 4 (hard limit 8) and a worker that wakes only on
    flush. The run is admitted (the queue is empty), and its events past the hard limit are dropped: that
    trace is counted as broken, never silently. A run that starts meanwhile is shed whole."""
    point_at(server.url)
    tracer = make_tracer(max_queue=4, interval_s=3600.0)
    assert calc_agent(tracer).run_sync("question").status == "completed"  # ten events
    stats = tracer.stats()
    assert (stats.queue_depth, stats.dropped, stats.traces_admitted, stats.traces_broken) == (8, 2, 1, 1)

    assert calc_agent(tracer).run_sync("question").status == "completed"
    stats = tracer.stats()
    assert (stats.queue_depth, stats.dropped, stats.traces_shed, stats.traces_broken) == (8, 12, 1, 1)

    assert returns(lambda: tracer.flush(GUARD_S)) is True
    runs = server.runs()
    # What arrived is the broken trace's first eight events: its chain never ends (it is counted broken).
    (chain,) = [r for r in runs.values() if r["run_type"] == "chain"]
    assert chain.get("end_time") is None
    assert tracer.orphaned == 0


def test_shutdown_at_exit_and_by_hand_stop_the_sdk_clients_threads(
    server: CaptureServer, point_at: Callable[[str], None]
) -> None:
    point_at(server.url)
    tracer = LangSmithTracer(interval_s=0.05)
    calc_agent(tracer).run_sync("question")
    assert returns(lambda: tracer.shutdown(GUARD_S)) is True
    assert tracer.client is not None
    assert tracer.client._manual_cleanup  # the SDK's own stop flag
    assert len(server.runs()) == 5
    calc_agent(tracer).run_sync("question")  # after shutdown: dropped, counted, nothing sent
    assert tracer.dropped == 10


EXIT_SCRIPT = """
import sys
from ls_support import calc_agent
from tracedagent_langsmith import LangSmithTracer

tracer = LangSmithTracer(interval_s=0.05)
for _ in range(int(sys.argv[1])):
    assert calc_agent(tracer).run_sync("question").status == "completed"
print("runs done", flush=True)
"""


def test_a_dead_endpoint_does_not_hold_the_process_at_exit_past_the_exit_timeout(tmp_path: Any) -> None:
    """The SDK's upload thread is not a daemon, and with the SDK's default retries each batch to a closed
    port took seconds: 100 runs kept the process alive for half a minute."""
    script = tmp_path / "exit_dead.py"
    script.write_text(EXIT_SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": closed_port_url(),
        "LANGSMITH_API_KEY": "lsv2_pt_test",
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_EXIT_TIMEOUT": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), "100"], env=env, capture_output=True, text=True, timeout=GUARD_S
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "runs done" in done.stdout
    # The client the tracer builds does not retry a refused connection in its transport (the SDK's own
    # tries come at once): every upload fails at once, the drain at exit ends before the deadline, and
    # nothing has to be given up.
    assert "what the SDK still holds is dropped so that the process can exit" not in done.stderr
    assert took < 15, f"the process took {took:.1f} s to exit"
