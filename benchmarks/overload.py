"""Overload: does each sink get whole traces, or none, when runs arrive faster than it exports?

    python benchmarks/overload.py              # the three scenarios of issue 15 (a few minutes)
    python benchmarks/overload.py --quick      # the same, smaller: well under a minute
    python benchmarks/overload.py --scenarios once --once 10000 --json overload.json

The workload is ``add X Y Z`` (``workload.py``: 3 model calls and 2 tool calls a run) with a realistic fast
model: each call awaits ``--latency`` (20 ms). All four tracers are on, registered process-wide:
``StdoutTracer`` writing JSON lines to a file, ``PrometheusTracer`` on a registry of its own,
``OtlpTracer`` with the OTLP/HTTP exporter and ``LangSmithTracer`` with a ``langsmith.Client``, both
posting to the loopback stand-ins of ``sinks.py`` (another process, run with ``--record`` so it keeps the
ids of every span and run it receives). Scenarios:

* ``bursts``: ``--bursts`` bursts of ``--burst-runs`` concurrent runs (3 x 1,000), back to back;
* ``once``: ``--once`` runs started at once (5,000);
* ``sustained``: ``--inflight`` runs always in flight (200) for ``--duration`` seconds (30): each worker
  starts a run as soon as its last one ended.

After each scenario every sink is flushed, then for each sink every trace the scenario made is one of:

* **complete**: its root (the run's segment, no parent) is there, every span or LangSmith run in it was
  started and ended, every child's parent is in the trace, and it has all of its spans (6: the run, 3
  model calls, 2 tool calls);
* **broken**: it arrived in part (a span missing, never ended, or a child without its parent);
* **absent**: nothing of it arrived.

Beside them: the sink's shed counter (``traces_shed`` in ``tracedagent.export_stats()``, ``n/a`` while the
export path does not count it), which should equal ``absent``; the events it dropped; the events it
exported per second, from the scenario's start until its flush returned. Prometheus is checked for exact
counts instead (``tracedagent_runs_total``, ``_model_calls_total``, ``_tool_calls_total``). The scenario's
run latency (p50, p99, max) is printed under its table. Every run's answer and the number of tool calls
are checked; a wrong answer stops the benchmark. Nothing here asserts a figure: it prints them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the four tracers set up here

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workload.py and telemetry.py, run from anywhere

import workload as W

import tracedagent
from tracedagent import Agent, Message, ModelRequest, ModelResponse
from tracedagent.testing import FunctionModel

HERE = Path(__file__).resolve().parent
#: Spans (OTLP), runs (LangSmith) or start/end pairs (stdout) of one whole trace of the workload.
SPANS_PER_TRACE = 1 + W.MODEL_CALLS_PER_RUN + W.TOOL_CALLS_PER_RUN
QUEUED_SINKS = ("stdout", "otlp", "langsmith")
SCENARIOS = ("bursts", "once", "sustained")

# ------------------------------------------------------------------------------------ the analysis


@dataclass(slots=True)
class Seen:
    """What a sink received of one span (or LangSmith run)."""

    parent: str | None = None
    started: bool = False
    ended: bool = False


#: trace id -> span id -> what arrived of it
Traces = dict[str, dict[str, Seen]]


@dataclass
class Verdict:
    """How the traces a scenario made arrived at one sink."""

    expected: int
    complete: int = 0
    broken: int = 0
    absent: int = 0
    foreign: int = 0  # traces the sink got that no run of the scenario made (should be 0)
    why: Counter[str] = field(default_factory=Counter)  # why traces are broken (one trace may have several)


def trace_faults(spans: dict[str, Seen], spans_per_trace: int | None) -> list[str]:
    """Why this trace is not whole (an empty list: it is whole)."""
    faults = []
    roots = [s for s in spans.values() if s.parent is None]
    if len(roots) != 1:
        faults.append("no root" if not roots else "several roots")
    if any(not s.started for s in spans.values()):
        faults.append("a span never started")
    if any(not s.ended for s in spans.values()):
        faults.append("a span never ended")
    if any(s.parent is not None and s.parent not in spans for s in spans.values()):
        faults.append("a child without its parent")
    if spans_per_trace is not None and len(spans) < spans_per_trace:
        faults.append("spans missing")
    if spans_per_trace is not None and len(spans) > spans_per_trace:
        faults.append("spans too many")
    return faults


def classify(expected: Collection[str], traces: Traces, spans_per_trace: int | None = SPANS_PER_TRACE) -> Verdict:
    """Sort the ``expected`` trace ids into complete, broken and absent, by what ``traces`` holds."""
    verdict = Verdict(len(expected))
    for trace_id in expected:
        spans = traces.get(trace_id)
        if not spans:
            verdict.absent += 1
            continue
        faults = trace_faults(spans, spans_per_trace)
        if faults:
            verdict.broken += 1
            verdict.why.update(faults)
        else:
            verdict.complete += 1
    wanted = set(expected)
    verdict.foreign = sum(1 for trace_id in traces if trace_id not in wanted)
    return verdict


def _seen(traces: Traces, trace_id: str, span_id: str) -> Seen:
    spans = traces.get(trace_id)
    if spans is None:
        spans = traces[trace_id] = {}
    seen = spans.get(span_id)
    if seen is None:
        seen = spans[span_id] = Seen()
    return seen


def stdout_traces(lines: Iterable[str]) -> Traces:
    """The stdout tracer's JSON lines: ``run.start`` / ``run.end``, ``model.*`` and ``tool.*``, each with
    ``trace_id``, ``span_id`` and ``parent_span_id``; a start and its end share the span id."""
    traces: Traces = {}
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        kind, _, edge = str(record.get("event", "")).partition(".")
        if kind not in ("run", "model", "tool") or edge not in ("start", "end"):
            continue  # point events (interrupt, retry...) are not spans
        seen = _seen(traces, record["trace_id"], record["span_id"])
        if edge == "start":
            seen.started = True
            seen.parent = record.get("parent_span_id") or None
        else:
            seen.ended = True
            if not seen.started:
                seen.parent = record.get("parent_span_id") or None
    return traces


def otlp_traces(records: Iterable[Sequence[Any]]) -> Traces:
    """The OTLP stand-in's records ``[trace_id, span_id, parent_span_id, name, ended]``: a span is sent
    once, when it ends (``ended`` says whether it carried an end time)."""
    traces: Traces = {}
    for trace_id, span_id, parent, _name, ended in records:
        seen = _seen(traces, trace_id, span_id)
        seen.parent = parent or None
        seen.started = True
        seen.ended = seen.ended or bool(ended)
    return traces


def langsmith_traces(records: Iterable[Sequence[Any]]) -> Traces:
    """The LangSmith stand-in's records ``[op, run_id, trace_id, parent_run_id, ended]``: a run is started
    by its post and ended by an ``end_time`` in its post or a later patch. Trace ids are UUIDs, the same
    128 bits as the W3C trace id (``tracedagent_langsmith._ids``), so they are compared as hex."""
    records = list(records)
    trace_of = {run_id: trace_id for op, run_id, trace_id, _p, _e in records if op == "post" and trace_id}
    traces: Traces = {}
    for op, run_id, trace_id, parent, ended in records:
        trace = (trace_id or trace_of.get(run_id, "")).replace("-", "")
        seen = _seen(traces, trace, run_id)
        if op == "post":
            seen.started = True
            seen.parent = parent or None
        elif not seen.started and parent:
            seen.parent = parent
        seen.ended = seen.ended or bool(ended)
    return traces


# --------------------------------------------------------------------------------- the workload


def make_agent(latency_s: float) -> Agent:
    """``add X Y Z`` with a model that takes ``latency_s`` a call (the scripted brain of ``workload.py``)."""

    async def answer(messages: Sequence[Message], request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(latency_s)
        return W._model_function(messages, request)

    model = FunctionModel(answer, name=f"scripted-{latency_s * 1000:g}ms", provider="function")
    return Agent("bench", model, tools=[W.add], max_turns=5)


@dataclass
class Made:
    """The runs a scenario made."""

    trace_ids: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


async def one_run(agent: Agent, i: int, made: Made) -> None:
    prompt, _ = W.prompt_for(i)
    t0 = time.perf_counter()
    result = await agent.run(prompt)
    made.latencies_s.append(time.perf_counter() - t0)
    made.trace_ids.append(result.trace_id)
    if result.output != W.expected_text(i):
        made.failures[f"{result.status}: {result.output!r}"[:120]] += 1


async def bursts(agent: Agent, made: Made, runs: int, count: int, gap_s: float) -> None:
    for burst in range(count):
        await asyncio.gather(*(one_run(agent, burst * runs + k, made) for k in range(runs)))
        if gap_s and burst + 1 < count:
            await asyncio.sleep(gap_s)


async def at_once(agent: Agent, made: Made, runs: int) -> None:
    await asyncio.gather(*(one_run(agent, k, made) for k in range(runs)))


async def sustained(agent: Agent, made: Made, inflight: int, duration_s: float) -> None:
    deadline = time.monotonic() + duration_s
    numbers = iter(range(10**12))

    async def worker() -> None:
        while time.monotonic() < deadline:
            await one_run(agent, next(numbers), made)

    await asyncio.gather(*(worker() for _ in range(inflight)))


# ------------------------------------------------------------------------------------- the sinks


class RecordingSinks:
    """The loopback OTLP and LangSmith stand-ins (``sinks.py --record``) in a process of their own."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "sinks.py"), "--record"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.urls: dict[str, str] = json.loads(self.process.stdout.readline())

    def records(self, kind: str, clear: bool = True) -> list[list[Any]]:
        url = self.urls[kind] + "/records" + ("?clear=1" if clear else "")
        with urllib.request.urlopen(url, timeout=120) as response:
            return json.loads(response.read())["records"]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def sink_counters() -> dict[str, dict[str, int | None]]:
    """Per sink, summed over its pipelines: dropped, exported, failed, queued, and the whole-trace
    counters ``traces_shed`` / ``traces_admitted`` (None where ``ExportStats`` has no such field yet)."""
    out: dict[str, dict[str, int | None]] = {}
    for stats in tracedagent.export_stats():
        sink = out.setdefault(
            stats.sink,
            {"dropped": 0, "exported": 0, "failed": 0, "queued": 0, "traces_shed": None, "traces_admitted": None},
        )
        for key, attribute in (("dropped", "dropped"), ("exported", "exported"), ("failed", "failed")):
            sink[key] = (sink[key] or 0) + getattr(stats, attribute)
        sink["queued"] = (sink["queued"] or 0) + stats.queue_depth
        for key in ("traces_shed", "traces_admitted"):
            value = getattr(stats, key, None)
            if value is not None:
                sink[key] = (sink[key] or 0) + value
    return out


def counter_delta(before: dict[str, int | None], after: dict[str, int | None], key: str) -> int | None:
    if after.get(key) is None:
        return None
    return (after[key] or 0) - (before.get(key) or 0)


def prometheus_totals(registry: Any) -> dict[str, float]:
    """Each counter of interest summed over its labels (the registry's exposition, as a scrape sees it)."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    wanted = ("tracedagent_runs_total", "tracedagent_model_calls_total", "tracedagent_tool_calls_total")
    totals = dict.fromkeys(wanted, 0.0)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return totals


# ----------------------------------------------------------------------------------- a scenario


@dataclass
class SinkFigures:
    sink: str
    complete: int | None
    broken: int | None
    absent: int | None
    foreign: int | None
    shed: int | None  # the sink's own counter
    admitted: int | None
    dropped: int
    failed: int
    exported: int
    events_per_s: float
    why: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class Figures:
    scenario: str
    what: str
    runs: int
    wall_s: float
    flush_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sinks: list[SinkFigures]
    prometheus: dict[str, Any]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import telemetry as T

        T.quiet_exporter_logs()
        self.args = args
        self.sinks = RecordingSinks()
        self.dir = Path(tempfile.mkdtemp(prefix="tracedagent-overload-"))
        self.log_path = self.dir / "stdout.jsonl"
        self.tracers = T.make_tracers(self.sinks.urls["otlp"], self.sinks.urls["langsmith"], self.log_path)
        self.log_offset = 0
        self.agent = make_agent(args.latency)
        for name in T.TRACERS:
            tracedagent.register(getattr(self.tracers, name), f"overload-{name}")

    def close(self) -> None:
        tracedagent.shutdown(10)
        self.sinks.close()
        if not self.args.keep_log:
            shutil.rmtree(self.dir, ignore_errors=True)

    def flush(self) -> bool:
        ok = True
        for tracer in self.tracers.exporting():
            ok = tracer.flush(self.args.flush_timeout) and ok
        return ok

    def new_lines(self) -> list[str]:
        with open(self.log_path, "rb") as log:
            log.seek(self.log_offset)
            data = log.read()
        self.log_offset += len(data)
        return data.decode().splitlines()

    def forget(self) -> None:
        """Drop what the sinks received so far (the warm-up's traces)."""
        self.sinks.records("otlp")
        self.sinks.records("langsmith")
        self.new_lines()

    async def warm_up(self, runs: int) -> None:
        made = Made()
        for i in range(runs):
            await one_run(self.agent, i, made)
        if made.failures:
            raise SystemExit(f"warm-up: wrong answers {dict(made.failures)}")
        if not self.flush():
            raise SystemExit("warm-up: the sinks did not flush")
        self.forget()

    async def scenario(self, name: str, what: str, drive: Callable[[Made], Any]) -> Figures:
        made = Made()
        before = sink_counters()
        prom_before = prometheus_totals(self.tracers.registry)
        tools_before = W.tool_calls()
        gc.collect()
        t0 = time.perf_counter()
        await drive(made)
        wall = time.perf_counter() - t0
        flushed = self.flush()
        flush_s = time.perf_counter() - t0 - wall
        after = sink_counters()
        runs = len(made.trace_ids)
        if made.failures:
            raise SystemExit(f"[{name}] wrong answers: {dict(made.failures)}")
        if W.tool_calls() - tools_before != W.TOOL_CALLS_PER_RUN * runs:
            raise SystemExit(f"[{name}] {runs} runs made {W.tool_calls() - tools_before} tool calls")
        expected = set(made.trace_ids)
        if len(expected) != runs:
            raise SystemExit(f"[{name}] {runs} runs but {len(expected)} distinct trace ids")

        lines = self.new_lines()
        by_sink: dict[str, Traces] = {
            "stdout": stdout_traces(lines),
            "otlp": otlp_traces(self.sinks.records("otlp")),
            "langsmith": langsmith_traces(self.sinks.records("langsmith")),
        }
        figures = []
        for sink in QUEUED_SINKS:
            verdict = classify(expected, by_sink[sink])
            b, a = before.get(sink, {}), after.get(sink, {})
            exported = counter_delta(b, a, "exported") or 0
            note = "" if flushed else "flush timed out"
            if sink == "stdout" and exported != len(lines):
                note = f"{len(lines):,} lines but {exported:,} events counted as exported"
            figures.append(
                SinkFigures(
                    sink,
                    verdict.complete,
                    verdict.broken,
                    verdict.absent,
                    verdict.foreign,
                    counter_delta(b, a, "traces_shed"),
                    counter_delta(b, a, "traces_admitted"),
                    counter_delta(b, a, "dropped") or 0,
                    counter_delta(b, a, "failed") or 0,
                    exported,
                    exported / (wall + flush_s) if wall + flush_s > 0 else 0.0,
                    dict(verdict.why.most_common()),
                    note,
                )
            )
        prom_after = prometheus_totals(self.tracers.registry)
        wanted = {
            "runs_total": runs,
            "model_calls_total": W.MODEL_CALLS_PER_RUN * runs,
            "tool_calls_total": W.TOOL_CALLS_PER_RUN * runs,
        }
        prom: dict[str, Any] = {k.removeprefix("tracedagent_"): prom_after[k] - prom_before[k] for k in prom_after}
        prom["exact"] = all(prom[k] == v for k, v in wanted.items())
        prom["wanted"] = wanted
        latencies = sorted(made.latencies_s)
        return Figures(
            name,
            what,
            runs,
            wall,
            flush_s,
            _quantile(latencies, 0.50) * 1000,
            _quantile(latencies, 0.99) * 1000,
            latencies[-1] * 1000 if latencies else 0.0,
            figures,
            prom,
        )


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------------- reporting


def _n(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def report(fig: Figures) -> None:
    print()
    print(f"## {fig.scenario}: {fig.what}")
    print(
        f"{fig.runs:,} runs in {fig.wall_s:.2f} s, then the flush took {fig.flush_s:.2f} s; run latency "
        f"p50 {fig.p50_ms:.1f} ms, p99 {fig.p99_ms:.1f} ms, max {fig.max_ms:.1f} ms"
    )
    head = ["sink", "complete", "shed (counter)", "absent", "broken", "events/s", "events dropped", "admitted"]
    rows = []
    for s in fig.sinks:
        rows.append(
            [
                s.sink,
                _n(s.complete),
                _n(s.shed),
                _n(s.absent),
                _n(s.broken),
                f"{s.events_per_s:,.0f}",
                f"{s.dropped:,}" + (f" (+{s.failed:,} failed)" if s.failed else ""),
                _n(s.admitted),
            ]
        )
    p = fig.prometheus
    rows.append(
        [
            "prometheus",
            "exact" if p["exact"] else "NOT exact",
            "-",
            "-",
            "-",
            "-",
            "-",
            f"runs {p['runs_total']:,.0f}/{fig.runs:,}",
        ]
    )
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 1) + ":" if i else "-" * (w + 2) for i, w in enumerate(widths)) + "|")
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        print("| " + " | ".join(cells) + " |")
    for s in fig.sinks:
        notes = []
        if s.shed is not None and s.absent is not None and s.shed != s.absent:
            notes.append(f"shed counter {s.shed:,} != absent {s.absent:,}")
        if s.foreign:
            notes.append(f"{s.foreign:,} traces no run of this scenario made")
        if s.why:
            notes.append("broken: " + ", ".join(f"{why} {n:,}" for why, n in s.why.items()))
        if s.note:
            notes.append(s.note)
        if notes:
            print(f"  {s.sink}: " + "; ".join(notes))
    if not p["exact"]:
        wanted = p["wanted"]
        print("  prometheus: " + ", ".join(f"{k} {p[k]:,.0f} (want {wanted[k]:,})" for k in wanted))


def environment() -> dict[str, Any]:
    packages: dict[str, str | None] = {}
    for name in ("pluggy", "pydantic", "opentelemetry-sdk", "langsmith", "prometheus-client", "structlog"):
        try:
            packages[name] = version(name)
        except Exception:  # not installed: say so, do not stop
            packages[name] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "packages": packages,
    }


# ------------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller scenarios: well under a minute in all")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"which, of {','.join(SCENARIOS)}")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per model call (0.02)")
    parser.add_argument("--bursts", type=int, default=3, help="bursts of the bursts scenario (3)")
    parser.add_argument("--burst-runs", type=int, default=1000, help="concurrent runs per burst (1000)")
    parser.add_argument("--burst-gap", type=float, default=0.0, help="seconds between bursts (0)")
    parser.add_argument("--once", type=int, default=5000, help="runs started at once (5000)")
    parser.add_argument("--inflight", type=int, default=200, help="runs always in flight, sustained (200)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the sustained scenario (30)")
    parser.add_argument("--warm", type=int, default=20, help="sequential warm-up runs, not counted (20)")
    parser.add_argument("--flush-timeout", type=float, default=120.0, help="seconds each sink may take to flush")
    parser.add_argument("--keep-log", action="store_true", help="keep the stdout tracer's JSON lines file")
    parser.add_argument("--json", metavar="PATH", help="write every figure there")
    args = parser.parse_args(argv)
    if args.quick:
        args.burst_runs = min(args.burst_runs, 500)
        args.once = min(args.once, 2000)
        args.duration = min(args.duration, 5.0)
    unknown = set(args.scenarios.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return args


async def amain(args: argparse.Namespace) -> list[Figures]:
    bench = Bench(args)
    try:
        await bench.warm_up(args.warm)
        results = []
        for name in args.scenarios.split(","):
            if name == "bursts":
                what = f"{args.bursts} bursts of {args.burst_runs:,} concurrent runs"

                def drive(made: Made) -> Any:
                    return bursts(bench.agent, made, args.burst_runs, args.bursts, args.burst_gap)

            elif name == "once":
                what = f"{args.once:,} runs at once"

                def drive(made: Made) -> Any:
                    return at_once(bench.agent, made, args.once)

            else:
                what = f"{args.inflight:,} runs always in flight for {args.duration:g} s"

                def drive(made: Made) -> Any:
                    return sustained(bench.agent, made, args.inflight, args.duration)

            figures = await bench.scenario(name, what, drive)
            report(figures)
            results.append(figures)
        return results
    finally:
        bench.close()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    env = environment()
    print(
        f"overload: {args.latency * 1000:g} ms a model call, all four tracers exporting to loopback; "
        f"{env['date']}, Python {env['python']}, {env['cpus']} CPUs, load average "
        + " ".join(f"{x:.2f}" for x in env["load_average"]),
        flush=True,
    )
    results = asyncio.run(amain(args))
    if args.json:
        with open(args.json, "w") as out:
            figures = {"args": vars(args), "environment": env, "scenarios": [asdict(r) for r in results]}
            json.dump(figures, out, indent=1)


if __name__ == "__main__":
    main()
