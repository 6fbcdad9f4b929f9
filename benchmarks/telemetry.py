"""The tracers of the telemetry variants, their loopback backends, and what is measured about them.

Every tracer exports for real:

* ``stdout``: :class:`tracedagent_stdout.StdoutTracer`, JSON lines written to a file;
* ``prometheus``: :class:`tracedagent_prometheus.PrometheusTracer` on a registry of its own (scraped once
  at the end, to check the counts);
* ``otlp``: :class:`tracedagent_otlp.OtlpTracer` with the OTLP/HTTP protobuf exporter posting to a fast
  sink on loopback (``sinks.py``, another process);
* ``langsmith``: :class:`tracedagent_langsmith.LangSmithTracer` with a ``langsmith.Client`` posting to a
  LangSmith stand-in on loopback (``sinks.py``: ``/info``, multipart, zstd).

A *dead* backend is a loopback port where nothing listens (connection refused): the exporters retry
with back-off, their queues fill and the tracers drop and count.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import workload as W

import tracedagent
from tracedagent import Event

HERE = Path(__file__).resolve().parent

#: The telemetry plugins, in the order they are registered.
TRACERS = ("stdout", "prometheus", "otlp", "langsmith")


class Sinks:
    """The loopback backends, served by ``sinks.py`` in a child process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "sinks.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.urls: dict[str, str] = json.loads(self.process.stdout.readline())

    def stats(self, kind: str) -> dict[str, int]:
        with urllib.request.urlopen(self.urls[kind] + "/stats", timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def dead_url() -> str:
    """A loopback URL where nothing listens: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def quiet_exporter_logs() -> None:
    """A dead backend makes the exporters log every retry; the benchmark counts failures instead."""
    import logging

    for name in (
        "opentelemetry",
        "langsmith",
        "urllib3",
        "tracedagent.export",
        "tracedagent.otlp",
        "tracedagent.langsmith",
    ):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@dataclass
class Tracers:
    """One set of the four tracers, all exporting to ``otlp_url`` and ``langsmith_url``."""

    stdout: Any
    prometheus: Any
    otlp: Any
    langsmith: Any
    log_path: Path
    registry: Any
    dead: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def named(self, names: Sequence[str]) -> list[tuple[str, Any]]:
        return [(f"{name}{'-dead' if self.dead else ''}", getattr(self, name)) for name in names]

    def exporting(self) -> list[Any]:
        """The tracers with an export pipeline."""
        return [self.stdout, self.otlp, self.langsmith]


def make_tracers(
    otlp_url: str,
    langsmith_url: str,
    log_path: Path,
    *,
    dead: bool = False,
    max_queue: int | None = None,
    interval_s: float | None = None,
    hold: bool = False,
) -> Tracers:
    """Build the four tracers. ``max_queue`` / ``interval_s`` override the tracers' defaults (the
    throughput measurement uses a queue large enough to hold its whole input). ``hold``: the export
    workers never wake (the queues are emptied by :func:`discard`), so only the hooks run."""
    if hold:
        max_queue, interval_s = 10**8, 10**6
    import langsmith
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from prometheus_client import CollectorRegistry

    from tracedagent_langsmith import LangSmithTracer
    from tracedagent_otlp import OtlpTracer
    from tracedagent_prometheus import PrometheusTracer
    from tracedagent_stdout import StdoutTracer

    options: dict[str, Any] = {}
    if max_queue is not None:
        options["max_queue"] = max_queue
    if interval_s is not None:
        options["interval_s"] = interval_s
    stream = open(log_path, "w", encoding="utf-8")  # noqa: SIM115  (closed by the process exit)
    registry = CollectorRegistry()
    client = langsmith.Client(api_url=langsmith_url, api_key="lsv2_pt_benchmark-0000", auto_batch_tracing=True)
    tracers = Tracers(
        stdout=StdoutTracer(stream, format="json", capture_content=False, **options),
        prometheus=PrometheusTracer(registry),
        otlp=OtlpTracer(
            span_exporter=OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces"),
            metrics=False,
            capture_content=False,
            **options,
        ),
        langsmith=LangSmithTracer(client, project_name="tracedagent-benchmark", capture_content=False, **options),
        log_path=log_path,
        registry=registry,
        dead=dead,
    )
    if hold:
        for tracer in tracers.exporting():
            tracer._pipeline.max_batch = 10**9  # never a full batch: the worker waits for its interval
    return tracers


def discard(tracers: Sequence[Any]) -> None:
    """Empty the queues of held tracers (their workers never ran)."""
    for tracer in tracers:
        tracer._pipeline._queue.clear()


def export_counters(tracers: Sequence[Any]) -> dict[str, int]:
    """Dropped, exported and failed items over ``tracers`` (their pipelines' stats)."""
    out = {"dropped": 0, "exported": 0, "failed": 0, "queued": 0}
    for tracer in tracers:
        stats = tracer.stats()
        out["dropped"] += stats.dropped
        out["exported"] += stats.exported
        out["failed"] += stats.failed
        out["queued"] += stats.queue_depth
    return out


# ------------------------------------------------------------------------------ recorded events


class Recorder:
    """A plugin that keeps every event (to replay them into a sink without a loop)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @tracedagent.hookimpl
    def on_run_start(self, event: Event) -> None:
        self.events.append(event)

    @tracedagent.hookimpl
    def on_run_end(self, event: Event) -> None:
        self.events.append(event)

    @tracedagent.hookimpl
    def on_model_call_start(self, event: Event) -> None:
        self.events.append(event)

    @tracedagent.hookimpl
    def on_model_call_end(self, event: Event) -> None:
        self.events.append(event)

    @tracedagent.hookimpl
    def on_tool_call_start(self, event: Event) -> None:
        self.events.append(event)

    @tracedagent.hookimpl
    def on_tool_call_end(self, event: Event) -> None:
        self.events.append(event)


async def record_events(runs: int) -> list[Event]:
    """The events of ``runs`` runs of the workload (12 each), in the order the loop emitted them."""
    recorder = Recorder()
    agent = tracedagent.Agent("bench", W.make_agent().model, tools=[W.add], max_turns=5, plugins=[recorder])
    for start in range(0, runs, 500):
        await asyncio.gather(*(agent.run(W.prompt_for(i)[0]) for i in range(start, min(runs, start + 500))))
    return recorder.events


def replay(tracer: Any, events: Sequence[Event]) -> None:
    """Call ``tracer``'s hooks with ``events``, as the dispatcher would."""
    hooks = {name: getattr(tracer, name, None) for name in {e.hook for e in events}}
    for event in events:
        hook = hooks[event.hook]
        if hook is not None:
            hook(event)


# ----------------------------------------------------------------------------- worker throughput


@dataclass
class Throughput:
    sink: str
    events: int
    put_s: float  # main thread: the hooks putting every event on the queue
    drain_s: float  # from the first put until the sink's flush returned (the backend has it all)
    worker_cpu_s: float  # CPU of the process while draining, minus the main thread's
    dropped: int
    failed: int
    backend: dict[str, int]

    @property
    def events_per_s(self) -> float:
        return self.events / self.drain_s

    @property
    def worker_us_per_event(self) -> float:
        return self.worker_cpu_s / self.events * 1e6


def measure_throughput(
    make: Callable[[], Any], name: str, events: Sequence[Event], stats: Callable[[], Any]
) -> Throughput:
    """Put every event on a fresh tracer's queue (large enough for all of them), then wait for its flush:
    the worker's drain rate with the loop idle, which is what bounds a sink under a sustained load."""
    tracer = make()
    # Warm the worker and the connection with a few runs first.
    replay(tracer, events[:120])
    tracer.flush(30)
    before = stats()
    gc.collect()
    cpu0, main0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    replay(tracer, events)
    put = time.perf_counter() - t0
    ok = tracer.flush(120)
    drain = time.perf_counter() - t0
    cpu1, main2 = time.process_time(), time.thread_time()
    after = stats()
    counters = tracer.stats()
    tracer.shutdown(10)
    if not ok:
        raise SystemExit(f"[throughput {name}] the flush did not finish in 120 s")
    return Throughput(
        name,
        len(events),
        put,
        drain,
        (cpu1 - cpu0) - (main2 - main0),  # every thread but the main one (it waits in flush)
        counters.dropped,
        counters.failed,
        {k: after[k] - before.get(k, 0) for k in after} if isinstance(after, dict) else {},
    )


# ------------------------------------------------------------------------------ memory per run


def memory_per_run(run: Callable[[int], Any], concurrent: int, warm: int = 200) -> dict[str, float]:
    """The peers' method: warm up, collect, then ``tracemalloc`` peak during ``concurrent`` runs started
    together, divided by the runs. Also the RSS growth of a first, untraced batch."""

    async def main() -> dict[str, float]:
        for i in range(warm):
            await run(i)
        gc.collect()
        rss0 = _rss_kib()
        await asyncio.gather(*(run(10_000 + i) for i in range(concurrent)))
        rss1 = _rss_kib()
        gc.collect()
        tracemalloc.start()
        outputs = await asyncio.gather(*(run(20_000 + i) for i in range(concurrent)))
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        for k, out in enumerate(outputs):
            if out != W.expected_text(20_000 + k):
                raise AssertionError(f"memory run {k}: {out!r}")
        return {
            "concurrent": concurrent,
            "tracemalloc_peak_kib": peak / 1024,
            "kib_per_run": peak / 1024 / concurrent,
            "rss_growth_kib": rss1 - rss0,
        }

    return asyncio.run(main())


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def threads_now() -> list[str]:
    return sorted(t.name for t in threading.enumerate())
