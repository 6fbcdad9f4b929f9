"""Soak test: thousands of concurrent runs for minutes, faults at random; memory stays flat and every
counter adds up.

    python benchmarks/soak.py                  # three minutes, 2,000 runs in flight (figures in README.md)
    python benchmarks/soak.py --short          # 2,400 runs, 300 in flight, for CI (tests/test_soak_short.py)
    python benchmarks/soak.py --duration 600 --concurrency 5000 --json soak.json
    python benchmarks/soak.py --runs 100000    # a number of runs instead of a duration

``--concurrency`` workers each start a run as soon as their last one ended, so that many runs are in
flight all the time. Each run asks for one to three tools; faults are drawn at random per run:

* tools that fail, hang past their timeout (async, and sync ones whose threads run on), retry, trip
  their circuit breaker (a backend that goes down for a while, every few seconds), or are refused by
  their bulkhead (a narrow tool under load); a tool that needs approval (the run pauses and is resumed,
  approved or denied);
* model calls that fail, and runs cancelled by a deadline of a few milliseconds;
* a plugin that raises in a tenth of its hook calls; a stdout tracer whose stream is blocked for the whole
  soak (its queue fills, then drops); a Prometheus tracer; an OTLP tracer whose exporter always fails
  (when the plugin is installed).

Memory is sampled by the work done, not by the clock: each time another ``--sample-every-runs`` runs
have completed (after ``gc.collect()``): the Python heap (tracemalloc) and the process's RSS. So a slow or
loaded machine takes as many samples of the same work as a fast one (with ``--runs``, exactly
``(runs - concurrency) // sample_every_runs``: the completions after that are the load winding down, not
a sample of it). At the end, with the workers stopped and every paused run resumed, it checks:

* memory is flat: the mean of the last third of the samples is within ``--tolerance`` of the first
  third's, for the heap and for RSS;
* runs started == runs ended, by status, as the workers saw them and as the hooks reported them;
* the Prometheus counters equal the events counted by a plugin (runs, model and tool calls by status,
  retries, plugin errors, export drops), and nothing is active or in flight;
* every raise of the faulty plugin is in ``plugin_errors()``; every event handed to each sink is exported,
  failed or dropped, and counted so; the in-memory checkpoint store is empty again.

It prints one line per sample and a report, and exits 1 if a check fails. Nothing is timed against a
threshold: the throughput is printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import logging
import os
import random
import statistics
import sys
import threading
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only the tracers the soak sets up

import tracedagent
from tracedagent import (
    Agent,
    Approval,
    Message,
    ModelError,
    ModelRequest,
    RunResult,
    ToolCall,
    _durable,
    hookimpl,
    tool,
)
from tracedagent.hookspecs import OBSERVER_HOOKS
from tracedagent.resilience import CircuitBreaker, RetryPolicy, tool_states
from tracedagent.testing import FunctionModel

# ------------------------------------------------------------------------------------------ faults

#: Probability of each fault per run (a run draws its tools and its fate from these).
TOOL_WEIGHTS = {
    "lookup": 40,  # fine
    "broken": 8,  # raises
    "stuck": 4,  # async, hangs past its timeout (cancelled)
    "slow_sync": 0.6,  # sync, runs past its timeout in its thread (late result)
    "backend": 12,  # down for a while every few seconds: its breaker opens and closes
    "narrow": 12,  # max_concurrency=8: refused by its bulkhead under load
    "flaky": 10,  # fails half of its first attempts: retried
    "guarded": 4,  # needs approval: the run pauses, then is resumed
}
MODEL_FAILS = 0.03  # a model call raises
CANCELLED = 0.02  # a run gets a deadline of a few milliseconds
DENIED = 0.3  # a paused call is denied rather than approved
PLUGIN_RAISES = 0.1  # the faulty plugin raises in this share of its hook calls


class Backend:
    """A dependency that goes down for ``down_s`` every ``period_s``."""

    def __init__(self, period_s: float = 3.0, down_s: float = 1.0) -> None:
        self.period_s, self.down_s = period_s, down_s
        self.started = time.monotonic()

    def up(self) -> bool:
        return (time.monotonic() - self.started) % self.period_s >= self.down_s


BACKEND = Backend()


@tool
async def lookup(key: str) -> str:
    """Look a key up."""
    await asyncio.sleep(0)
    return f"value of {key}"


@tool
async def broken(key: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot read {key}")


@tool(timeout=0.05)
async def stuck(key: str) -> str:
    """Never answers: cancelled at its timeout."""
    await asyncio.Event().wait()
    return "never"


@tool(timeout=0.02)
def slow_sync(key: str) -> str:
    """A sync call that runs on in its thread after its timeout; its late result is discarded."""
    time.sleep(0.1)
    return "late"


@tool(breaker=CircuitBreaker(failure_threshold=5, reset_timeout=0.5))
async def backend(key: str) -> str:
    """A call to a backend that is down now and then."""
    await asyncio.sleep(0)
    if not BACKEND.up():
        raise ConnectionError("backend unavailable")
    return "backend ok"


@tool(max_concurrency=8, max_queue=16, queue_timeout=0.02)
async def narrow(key: str) -> str:
    """A scarce resource: eight calls at a time."""
    await asyncio.sleep(0.002)
    return "narrow ok"


_flaky_rng = random.Random(7)


@tool(retries=RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002))
async def flaky(key: str) -> str:
    """Fails half of the time; retried once."""
    await asyncio.sleep(0)
    if _flaky_rng.random() < 0.5:
        raise ConnectionError("transient")
    return "flaky ok"


@tool(needs_approval=True)
async def guarded(key: str) -> str:
    """Needs a person's approval."""
    return "guarded ok"


TOOLS = [lookup, broken, stuck, slow_sync, backend, narrow, flaky, guarded]


def model_answer(messages: Sequence[Message], request: ModelRequest) -> Any:
    """Turn 1: one to three tools drawn for this run; turn 2: the answer (or a failure)."""
    prompt = messages[0].content or ""
    number = int(prompt.split()[-1])
    turn = sum(1 for m in messages if m.role == "assistant")
    rng = random.Random(number * 31 + turn)
    if rng.random() < MODEL_FAILS:
        raise ConnectionError("the model provider reset the connection")
    if turn == 0:
        names = rng.choices(list(TOOL_WEIGHTS), weights=list(TOOL_WEIGHTS.values()), k=rng.randint(1, 3))
        return [ToolCall(f"c{number}-{i}", name, json.dumps({"key": f"k{number}"})) for i, name in enumerate(names)]
    return f"done {number}"


# ----------------------------------------------------------------------------------------- plugins


class Counting:
    """The ground truth: every event counted by hook and status, in O(1) memory."""

    name = "soak-counter"

    def __init__(self) -> None:
        self.hooks: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        self.models: Counter[str] = Counter()
        self.tools: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()

    @hookimpl
    def on_run_start(self) -> None:
        self.hooks["on_run_start"] += 1

    @hookimpl
    def on_resume(self) -> None:
        self.hooks["on_resume"] += 1

    @hookimpl
    def on_run_end(self, event: Any) -> None:
        self.hooks["on_run_end"] += 1
        self.runs[event.status] += 1

    @hookimpl
    def on_model_call_start(self) -> None:
        self.hooks["on_model_call_start"] += 1

    @hookimpl
    def on_model_call_end(self, event: Any) -> None:
        self.hooks["on_model_call_end"] += 1
        self.models[event.status] += 1

    @hookimpl
    def on_tool_call_start(self) -> None:
        self.hooks["on_tool_call_start"] += 1

    @hookimpl
    def on_tool_call_end(self, event: Any) -> None:
        self.hooks["on_tool_call_end"] += 1
        self.tools[event.status] += 1

    @hookimpl
    def on_interrupt(self) -> None:
        self.hooks["on_interrupt"] += 1

    @hookimpl
    def on_compaction(self) -> None:
        self.hooks["on_compaction"] += 1

    @hookimpl
    def on_checkpoint(self) -> None:
        self.hooks["on_checkpoint"] += 1

    @hookimpl
    def on_circuit_change(self) -> None:
        self.hooks["on_circuit_change"] += 1

    @hookimpl
    def on_retry(self, event: Any) -> None:
        self.hooks["on_retry"] += 1
        self.retries[event.kind] += 1


def faulty_plugin(rate: float, seed: int) -> Any:
    """A plugin that raises in ``rate`` of its calls, in every observer hook, and counts its raises."""
    rng = random.Random(seed)
    raised: Counter[str] = Counter()

    def make(hook: str) -> Any:
        def impl(self: Any, event: Any) -> None:
            if rng.random() < rate:
                raised[hook] += 1
                raise RuntimeError(f"the faulty plugin broke in {hook}")

        return hookimpl(impl)

    namespace: dict[str, Any] = {hook: make(hook) for hook in OBSERVER_HOOKS}
    namespace.update(name="soak-faulty-plugin", raised=raised)
    return type("FaultyPlugin", (), namespace)()


class BlockedStream:
    """A stream nobody reads until the end of the soak: the stdout tracer's worker blocks on it."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.lines = 0

    def write(self, text: str) -> int:
        self.released.wait()
        self.lines += text.count("\n")
        return len(text)


class FailingExporter:
    """An OTLP span exporter whose collector always refuses (the SDK's FAILURE result)."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.result = SpanExportResult.FAILURE
        self.spans = 0

    def export(self, spans: Sequence[Any]) -> Any:
        self.spans += len(spans)
        return self.result

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# ------------------------------------------------------------------------------------------- the soak


@dataclass
class Sample:
    at_s: float
    heap_mb: float
    rss_mb: float
    runs: int  # launched
    in_flight: int
    completed: int  # runs completed when the sample was taken: a multiple of --sample-every-runs


@dataclass
class Soak:
    agents: list[Agent]
    counting: Counting
    faulty: Any
    blocked: BlockedStream
    stdout: Any
    prometheus: Any
    otlp: Any
    segments: Counter[str] = field(default_factory=Counter)  # run segments ended, by status, as workers saw them
    launched: int = 0
    resumed: int = 0
    unexpected: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    in_flight: int = 0
    completed: int = 0


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: the peak, which cannot show a leak going down, but shows one going up
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (1e6 if sys.platform == "darwin" else 1e3)


def build(args: argparse.Namespace) -> Soak:
    from tracedagent_stdout import StdoutTracer

    counting = Counting()
    faulty = faulty_plugin(PLUGIN_RAISES, args.seed)
    blocked = BlockedStream()
    stdout = StdoutTracer(blocked, format="json", max_queue=2048)
    plugins: list[Any] = [counting, faulty, stdout]
    prometheus = otlp = None
    if importlib.util.find_spec("tracedagent_prometheus") is not None:
        from prometheus_client import CollectorRegistry

        from tracedagent_prometheus import PrometheusTracer

        prometheus = PrometheusTracer(CollectorRegistry())
        plugins.append(prometheus)
    if args.otlp and importlib.util.find_spec("tracedagent_otlp") is not None:
        from tracedagent_otlp import OtlpTracer

        otlp = OtlpTracer(span_exporter=FailingExporter(), metrics=False)  # type: ignore[arg-type]
        plugins.append(otlp)
    for plugin in plugins:
        tracedagent.register(plugin)
    model = FunctionModel(model_answer, name="soak-model", provider="soak")
    agents = [Agent(f"soak-{i}", model, tools=TOOLS) for i in range(args.agents)]
    return Soak(agents, counting, faulty, blocked, stdout, prometheus, otlp)


async def one_run(soak: Soak, number: int, rng: random.Random) -> None:
    agent = soak.agents[number % len(soak.agents)]
    soak.launched += 1
    result: RunResult | None = None
    try:
        if rng.random() < CANCELLED:
            async with asyncio.timeout(rng.uniform(0.0005, 0.005)):
                result = await agent.run(f"soak run {number}")
        else:
            result = await agent.run(f"soak run {number}")
    except TimeoutError:
        soak.segments["cancelled"] += 1
        return
    except ModelError:
        soak.segments["failed"] += 1
        return
    except Exception as exc:  # a soak counts what it did not expect, and fails on it
        soak.unexpected[type(exc).__name__] += 1
        return
    soak.segments[result.status] += 1
    while result is not None and result.status == "interrupted":
        decisions = {p.id: (Approval.deny("not now") if rng.random() < DENIED else True) for p in result.interruptions}
        soak.resumed += 1
        try:
            result = await agent.resume(result.run_id, decisions)
        except ModelError:
            soak.segments["failed"] += 1
            return
        except Exception as exc:
            soak.unexpected[type(exc).__name__] += 1
            return
        soak.segments[result.status] += 1


@dataclass
class Load:
    """When the workers stop launching runs, and when a completed run is a sample of the load."""

    started: float
    runs: int | None  # launch this many runs (``--runs``) ...
    deadline: float  # ... or launch until then (``--duration``)
    concurrency: int
    every: int  # sample memory each time this many more runs have completed
    quiet: bool

    def launching(self, soak: Soak) -> bool:
        if self.runs is not None:
            return soak.launched < self.runs
        return time.monotonic() < self.deadline

    def sampling(self, soak: Soak) -> bool:
        """While every worker still starts a new run as its last one ends (after, the load winds down)."""
        if self.runs is not None:
            return soak.completed <= self.runs - self.concurrency
        return time.monotonic() < self.deadline


def expected_samples(runs: int, concurrency: int, every: int) -> int:
    """The memory samples of a soak of ``--runs`` (the same on any machine, however loaded)."""
    return max(0, runs - concurrency) // every


async def worker(soak: Soak, index: int, load: Load, numbers: Any, seed: int) -> None:
    rng = random.Random(seed * 1_000_003 + index)
    while load.launching(soak):
        soak.in_flight += 1
        try:
            await one_run(soak, next(numbers), rng)
        finally:
            soak.in_flight -= 1
            soak.completed += 1
        if soak.completed % load.every == 0 and load.sampling(soak):
            take_sample(soak, load)


def take_sample(soak: Soak, load: Load) -> None:
    gc.collect()
    heap = tracemalloc.get_traced_memory()[0] / 1e6 if tracemalloc.is_tracing() else 0.0
    sample = Sample(time.monotonic() - load.started, heap, rss_mb(), soak.launched, soak.in_flight, soak.completed)
    soak.samples.append(sample)
    if not load.quiet:
        print(
            f"  t={sample.at_s:7.1f}s  completed={sample.completed:9,}  in flight={sample.in_flight:6,}  "
            f"heap={sample.heap_mb:8.2f} MB  rss={sample.rss_mb:8.1f} MB",
            flush=True,
        )


def thirds(values: list[float]) -> tuple[float, float]:
    third = max(1, len(values) // 3)
    return statistics.fmean(values[:third]), statistics.fmean(values[-third:])


def prometheus_values(tracer: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the tracer's registry, summed over the labels not kept in the key."""
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    keep = ("status", "kind", "plugin", "sink")
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for family in text_string_to_metric_families(generate_latest(tracer.registry).decode()):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k in keep))
            values[(sample.name, labels)] += sample.value
    return values


def check(soak: Soak, args: argparse.Namespace) -> list[tuple[str, bool, str]]:
    """Every check: (what, passed, the figures)."""
    results: list[tuple[str, bool, str]] = []

    def expect(what: str, ok: bool, figures: str) -> None:
        results.append((what, bool(ok), figures))

    counting = soak.counting
    hooks = counting.hooks
    segments = hooks["on_run_start"] + hooks["on_resume"]
    expect("no unexpected exception", not soak.unexpected, str(dict(soak.unexpected)))
    expect(
        "runs started == runs launched; resumes == resumed",
        (hooks["on_run_start"], hooks["on_resume"]) == (soak.launched, soak.resumed),
        f"started {hooks['on_run_start']:,} / launched {soak.launched:,}; "
        f"resumed {hooks['on_resume']:,} / {soak.resumed:,}",
    )
    expect(
        "run segments started == ended, by status as the workers saw them",
        segments == hooks["on_run_end"] and counting.runs == soak.segments,
        f"started {segments:,}, ended {hooks['on_run_end']:,}; "
        f"hooks {dict(counting.runs)} / workers {dict(soak.segments)}",
    )
    expect(
        "every model and tool call ended once",
        hooks["on_model_call_start"] == hooks["on_model_call_end"] == sum(counting.models.values())
        and hooks["on_tool_call_start"] == hooks["on_tool_call_end"] == sum(counting.tools.values()),
        f"model {dict(counting.models)}; tools {dict(counting.tools)}",
    )
    expect(
        "each fault happened (the soak is not blind)",
        all(counting.tools[s] > 0 for s in ("ok", "error", "timeout", "circuit_open", "rejected", "denied"))
        and counting.models["error"] > 0
        and counting.runs["cancelled"] > 0
        and counting.runs["interrupted"] > 0
        and hooks["on_circuit_change"] > 0
        and counting.retries["tool"] > 0,
        f"circuit changes {hooks['on_circuit_change']:,}, retries {dict(counting.retries)}",
    )
    errors = {hook: n for (plugin, hook), n in tracedagent.plugin_errors().items() if plugin == soak.faulty.name}
    expect(
        "every raise of the faulty plugin is counted in plugin_errors()",
        errors == dict(soak.faulty.raised) and sum(errors.values()) > 0,
        f"{sum(errors.values()):,} raises counted / {sum(soak.faulty.raised.values()):,} raised",
    )
    events = sum(hooks.values())
    stdout = soak.stdout.stats()
    expect(
        "the blocked stdout sink: every event exported or dropped, and counted",
        stdout.exported + stdout.dropped + stdout.failed == events
        and stdout.queue_depth == 0
        and stdout.dropped > 0
        and soak.blocked.lines == stdout.exported,
        f"{events:,} events: exported {stdout.exported:,}, dropped {stdout.dropped:,}, failed {stdout.failed:,}",
    )
    if soak.otlp is not None:
        otlp = soak.otlp.stats()
        expect(
            "the failing OTLP sink: every event handled or dropped, and counted",
            otlp.exported + otlp.failed + otlp.dropped == events and otlp.queue_depth == 0 and otlp.failed > 0,
            f"exported {otlp.exported:,}, failed {otlp.failed:,}, dropped {otlp.dropped:,}, spans pending "
            f"{soak.otlp.pending:,}",
        )
    if soak.prometheus is not None:
        values = prometheus_values(soak.prometheus)

        def total(name: str, **labels: str) -> float:
            return sum(
                v for (n, key), v in values.items() if n == name and all((k, w) in key for k, w in labels.items())
            )

        mismatches = []
        for status, count in counting.runs.items():
            if total("tracedagent_runs_total", status=status) != count:
                mismatches.append(f"runs {status}")
        for status, count in counting.models.items():
            if total("tracedagent_model_calls_total", status=status) != count:
                mismatches.append(f"model calls {status}")
        for status, count in counting.tools.items():
            if total("tracedagent_tool_calls_total", status=status) != count:
                mismatches.append(f"tool calls {status}")
        for kind, count in counting.retries.items():
            if total("tracedagent_retries_total", kind=kind) != count:
                mismatches.append(f"retries {kind}")
        if total("tracedagent_plugin_errors_total", plugin=soak.faulty.name) != sum(errors.values()):
            mismatches.append("plugin errors")
        if total("tracedagent_export_dropped_total", sink="stdout") != stdout.dropped:
            mismatches.append("stdout drops")
        if total("tracedagent_runs_active") != 0 or total("tracedagent_tool_inflight") != 0:
            mismatches.append("something still active")
        expect(
            "Prometheus counters == the events counted",
            not mismatches,
            f"mismatches: {mismatches}" if mismatches else f"runs_total {total('tracedagent_runs_total'):,.0f}",
        )
    states = [s for s in tool_states() if s.tool in {t.name for t in TOOLS}]
    stored = len(_durable._default_memory._runs)
    expect(
        "nothing left in flight, no run left in the in-memory checkpoint store",
        all(s.inflight == 0 and s.queue_depth == 0 for s in states)
        and all(a.active_runs == 0 for a in soak.agents)
        and stored == 0,
        f"in flight {sum(s.inflight for s in states)}, queued {sum(s.queue_depth for s in states)}, "
        f"active runs {sum(a.active_runs for a in soak.agents)}, stored runs {stored}",
    )
    samples = soak.samples[args.warmup_samples :]
    if len(samples) >= 3:
        for label, attribute in (("heap (tracemalloc)", "heap_mb"), ("RSS", "rss_mb")):
            series = [getattr(s, attribute) for s in samples]
            if attribute == "heap_mb" and not tracemalloc.is_tracing():
                continue
            first, last = thirds(series)
            drift = (last - first) / first if first else 0.0
            expect(
                f"memory flat: {label}, last third within {args.tolerance:.0%} of the first",
                drift <= args.tolerance,
                f"first third {first:.2f} MB, last third {last:.2f} MB ({drift:+.2%})",
            )
    else:
        expect(
            "enough memory samples",
            False,
            f"{len(samples)} after the warm-up ({len(soak.samples)} in all, one every {args.sample_every_runs:,} "
            f"runs completed); run more runs or sample more often",
        )
    return results


async def soak_main(args: argparse.Namespace) -> int:
    # The narrow tool's queue passes its soft limit all the time, on purpose: keep its warnings out of the
    # figures (plugin errors are still logged, once per hook).
    logging.getLogger("tracedagent").setLevel(logging.ERROR)
    if args.tracemalloc:
        tracemalloc.start()
    soak = build(args)
    started = time.monotonic()
    load = Load(started, args.runs, started + args.duration, args.concurrency, args.sample_every_runs, args.quiet)
    numbers = iter(range(10**12))
    length = f"{args.runs:,} runs" if args.runs is not None else f"{args.duration:g}s"
    print(
        f"soak: {length}, {args.concurrency:,} runs in flight, {args.agents} agents, seed {args.seed}, "
        f"memory sampled every {args.sample_every_runs:,} runs completed, "
        f"tracemalloc {'on' if args.tracemalloc else 'off'}, sinks: stdout (blocked)"
        f"{', prometheus' if soak.prometheus else ''}{', otlp (failing)' if soak.otlp else ''}",
        flush=True,
    )
    workers = [asyncio.create_task(worker(soak, i, load, numbers, args.seed)) for i in range(args.concurrency)]
    await asyncio.gather(*workers)
    elapsed = time.monotonic() - started
    # drain: the late sync calls finish in their threads; the blocked stream is released and flushed
    soak.blocked.released.set()
    flushed = tracedagent.flush(60.0)
    # a sync call past its timeout keeps its bulkhead slot until its thread ends (0.1 s later at most)
    threads_done = time.monotonic() + 10.0
    while any(t.bulkhead.inflight for t in TOOLS) and time.monotonic() < threads_done:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    results = check(soak, args)
    results.append(("every sink drained within its flush timeout", flushed, ""))
    results.append(("no task of a run left pending", not leftover, f"{len(leftover)} pending"))

    runs = soak.launched
    print()
    print(f"runs: {runs:,} in {elapsed:.1f}s ({runs / elapsed:,.0f} runs/s), {soak.resumed:,} resumed")
    print(f"segments by status: {dict(sorted(soak.counting.runs.items()))}")
    print(f"tool calls by status: {dict(sorted(soak.counting.tools.items()))}")
    print(f"model calls by status: {dict(sorted(soak.counting.models.items()))}")
    print(f"events: {sum(soak.counting.hooks.values()):,}; late sync results: {slow_sync.late_results:,}")
    failed = 0
    for what, ok, figures in results:
        failed += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {what}" + (f": {figures}" if figures else ""))
    if args.json:
        write_json(
            args.json,
            {
                "args": vars(args),
                "runs": runs,
                "elapsed_s": elapsed,
                "segments": soak.counting.runs,
                "tools": soak.counting.tools,
                "models": soak.counting.models,
                "samples": [vars(s) for s in soak.samples],
                "checks": [{"what": w, "ok": ok, "figures": f} for w, ok, f in results],
            },
        )
    print("soak: " + ("every check passed" if not failed else f"{failed} check(s) FAILED"))
    return 1 if failed else 0


def write_json(path: str, figures: dict[str, Any]) -> None:
    with open(path, "w") as out:
        json.dump(figures, out, indent=1)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="2,400 runs, 300 in flight: a few seconds, for CI")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds of load (default 180)")
    parser.add_argument("--runs", type=int, help="launch this many runs, then stop (instead of --duration)")
    parser.add_argument("--concurrency", type=int, default=2000, help="runs in flight (default 2000)")
    parser.add_argument("--agents", type=int, default=4, help="agents sharing the tools (default 4)")
    parser.add_argument(
        "--sample-every-runs", type=int, default=1000, help="sample memory each time this many runs completed (1000)"
    )
    parser.add_argument("--warmup-samples", type=int, default=3, help="samples left out of the comparison")
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed growth, last third vs first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false", help="RSS only (faster)")
    parser.add_argument("--no-otlp", dest="otlp", action="store_false", help="leave the OTLP tracer out")
    parser.add_argument("--quiet", action="store_true", help="no line per sample")
    parser.add_argument("--json", metavar="PATH", help="write the figures and checks there")
    args = parser.parse_args(argv)
    if args.short:
        args.runs, args.concurrency = min(args.runs or 2400, 2400), min(args.concurrency, 300)
        args.sample_every_runs, args.warmup_samples, args.tolerance = 120, 4, max(args.tolerance, 0.25)
    if args.sample_every_runs < 1:
        parser.error("--sample-every-runs must be at least 1")
    if args.runs is not None:
        samples = expected_samples(args.runs, args.concurrency, args.sample_every_runs)
        if samples - args.warmup_samples < 3:
            parser.error(
                f"{args.runs:,} runs with {args.concurrency:,} in flight give {samples} memory samples (one every "
                f"{args.sample_every_runs:,} runs completed), {args.warmup_samples} of them warm-up: fewer than the "
                "3 to compare; raise --runs or lower --sample-every-runs"
            )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return asyncio.run(soak_main(args))
    finally:
        tracedagent.shutdown(5.0)


if __name__ == "__main__":
    sys.exit(main())
