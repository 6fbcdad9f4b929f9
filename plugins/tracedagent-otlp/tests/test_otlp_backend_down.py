"""A collector that is down costs the runs nothing: they complete, what cannot be sent is counted as
dropped or failed, and ``tracedagent.shutdown(timeout)`` returns. Run in a child process with the plugin
switched on the way a user switches it on (the entry point and ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracedagent import Agent, tool
from tracedagent.testing import ScriptedModel, Step

GUARD_S = 60.0

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, time
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
        return await asyncio.gather(*(agent.run(f"q{i}") for i in range(200)))

    results = asyncio.run(main())
    plugins = {p.name: p.status for p in tracedagent.list_plugins()}
    started = time.monotonic()
    clean = tracedagent.shutdown(1.0)
    took = time.monotonic() - started
    # The worker may still be giving up on its last batch: wait (bounded) until it has counted it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        (stats,) = [s for s in tracedagent.export_stats() if s.sink == "otlp"]
        if stats.queue_depth == 0 and stats.exported + stats.failed + stats.dropped == 1600:
            break
        time.sleep(0.05)
    print(json.dumps({
        "statuses": sorted({r.status for r in results}),
        "plugins": plugins,
        "clean": clean,
        "shutdown_s": took,
        "dropped": stats.dropped,
        "failed": stats.failed,
        "exported": stats.exported,
        "queue_depth": stats.queue_depth,
    }))
    """
)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_complete_and_losses_are_counted_when_the_collector_is_down() -> None:
    env = {
        **os.environ,
        "TRACEDAGENT_PLUGINS": "otlp",
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(report)  # how long shutdown took is shown, not asserted
    assert report["statuses"] == ["completed"]
    assert report["plugins"]["otlp"].startswith("active: spans to OTLP http/protobuf")
    assert isinstance(report["clean"], bool)
    # 200 runs x 8 events: every one was either handed to the worker or dropped at the full queue, and
    # nothing reached the collector.
    assert report["dropped"] + report["failed"] + report["exported"] == 1600
    assert report["dropped"] + report["failed"] > 0
    assert report["queue_depth"] == 0
    # The exporter's failure is logged once, not per batch.
    assert done.stderr.count("sink 'otlp' failed to export") <= 1


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def calc_agent(tracer: Any) -> Agent:
    """One run, four spans: the run, a model call asking for add, the tool call, the answer."""
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
    return Agent("calc", model, tools=[add], plugins=[tracer])


class FlakyExporter(SpanExporter):
    """Fails while ``down`` is set; counts the calls it gets."""

    def __init__(self) -> None:
        self.down = True
        self.calls = 0
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.down:
            return SpanExportResult.FAILURE
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def test_after_a_failed_export_the_exporter_rests_then_tries_again(make_tracer: Any) -> None:
    """A dead collector is not asked again for every batch: the exporter rests (1 s, doubling while it
    keeps failing), the spans made meanwhile are counted as failed, and the first success ends the rests."""
    exporter = FlakyExporter()
    tracer, _ = make_tracer(span_exporter=exporter, interval_s=3600)
    now = [1000.0]
    tracer._clock = lambda: now[0]

    def one_run() -> None:
        assert calc_agent(tracer).run_sync("question").status == "completed"
        assert tracer.flush(GUARD_S)  # drained; the batch's failure is counted

    one_run()
    assert (exporter.calls, tracer.spans_failed) == (1, 4)
    one_run()  # resting: not called, counted as failed
    assert (exporter.calls, tracer.spans_failed) == (1, 8)
    now[0] += 1.01
    one_run()  # the rest is over: tried again, failed again, rests twice as long
    assert exporter.calls == 2
    now[0] += 1.5
    one_run()
    assert exporter.calls == 2
    now[0] += 0.6
    exporter.down = False
    assert calc_agent(tracer).run_sync("question").status == "completed"
    assert tracer.flush(GUARD_S) is True
    assert (exporter.calls, exporter.spans, tracer.spans_exported) == (3, 4, 4)
    assert tracer.stats().dropped == 0
