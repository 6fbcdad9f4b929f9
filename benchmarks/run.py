"""Time the first workload: tracedagent against the same loop written by hand, in one process, with
and without full telemetry.

    python benchmarks/run.py                 # the full table and the targets (a few minutes)
    python benchmarks/run.py --quick         # a smoke run for CI (well under 30 s), all four tracers included
    python benchmarks/run.py --profile       # where the time goes (cProfile), instead of timing

Variants, interleaved A B C C B A ... inside one process so that ratios are measured side by side:

* ``handwritten``: the agent loop written by hand with plain dicts (the peers' ``bare`` baseline);
* ``bare``: tracedagent with no plugin registered;
* ``noop4``: tracedagent with 4 no-op tracers registered process-wide (every observer hook is ``pass``);
* ``stdout``, ``prometheus``, ``otlp``, ``langsmith``: one real tracer each, exporting for real (JSON
  lines to a file; a registry; OTLP/HTTP and LangSmith multipart to fast sinks on loopback, served by
  ``sinks.py`` in another process);
* ``all4``: the four tracers together; ``all4_dead``: the same with nothing listening where the OTLP
  and LangSmith tracers send (connection refused).

Every run's output is checked against the expected answer (outside the timed section) and so is the
number of tool calls; a broken benchmark stops with an error instead of printing figures. Installed
tracedagent plugins are not loaded (``TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD=1``) so that ``bare`` is bare.
After the timing: each sink's worker throughput, the Python heap per run at 10,000 concurrent runs (one
process per variant) and, with ``--peer``, a peer framework's script run in the same session; then
the table of targets.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import targets as TG
import workload as W

import tracedagent
from tracedagent.testing import capture_events

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = HERE.parent.parent / "shared" / "peers"
#: Every variant, in table order; ``--quick`` runs QUICK_VARIANTS.
ALL_VARIANTS = (
    "handwritten",
    "bare",
    "noop4",
    "stdout",
    "prometheus",
    "otlp",
    "langsmith",
    "all4_hooks",
    "all4",
    "all4_dead",
)
QUICK_VARIANTS = "handwritten,bare,noop4,all4_hooks,all4"
#: (variant, the variant it is compared with) for the ratio columns
PAIRS = (
    ("bare", "handwritten"),
    ("noop4", "bare"),
    ("noop4", "handwritten"),
    ("stdout", "bare"),
    ("prometheus", "bare"),
    ("otlp", "bare"),
    ("langsmith", "bare"),
    ("all4_hooks", "bare"),
    ("all4", "bare"),
    ("all4", "all4_hooks"),
    ("all4", "handwritten"),
    ("all4_dead", "all4"),
)
#: The RESULTS.md figure for the fastest peer with its tracing off (strands, seq median, another session).
PEER_RESULTS_MD = ("strands", "off", 3822.7)


@dataclass
class Block:
    """What one timed block measured (per run, in microseconds, unless said otherwise)."""

    median: float  # median latency of a run (seq); wall time / runs (conc)
    mean: float  # wall time / runs
    main_cpu: float  # CPU of the main thread (the loop and the hooks), per run
    process_cpu: float  # CPU of the whole process, the drain of the export queues included, per run
    drain_ms: float  # after the block: until every live sink had exported everything (ms)
    dropped: int  # items the sinks dropped (queue full) during the block and its drain
    failed: int  # items whose export failed (dead backend)


@dataclass
class Variant:
    name: str
    run: Callable[[int], Awaitable[str]]
    plugins: list[tuple[str, object]] = field(default_factory=list)  # registered process-wide while it runs
    exporting: list[Any] = field(default_factory=list)  # its tracers with an export queue
    live: bool = True  # its backends answer: drain (flush) after each block
    held: bool = False  # its export workers never run: the queues are emptied after each block
    notes: str = ""
    seq: list[Block] = field(default_factory=list)
    conc: dict[int, list[Block]] = field(default_factory=dict)
    verified: int = 0

    @property
    def seq_median(self) -> list[float]:
        return [b.median for b in self.seq]

    def col(self, attr: str, c: int | None = None) -> list[float]:
        blocks = self.seq if c is None else self.conc[c]
        return [getattr(b, attr) for b in blocks]


class Telemetry:
    """The loopback sinks and the tracers of the telemetry variants, made on first use."""

    def __init__(self, urls: dict[str, str] | None = None) -> None:
        import telemetry as T

        T.quiet_exporter_logs()
        self.T = T
        self.sinks = T.Sinks() if urls is None else None
        self.urls = urls or self.sinks.urls  # type: ignore[union-attr]
        self.dir = Path(os.environ.get("TMPDIR", "/tmp"))
        tag = os.getpid()
        self.live = T.make_tracers(self.urls["otlp"], self.urls["langsmith"], self.dir / f"tracedagent-bench-{tag}.log")
        dead = T.dead_url()
        self.dead = T.make_tracers(dead, dead, self.dir / f"tracedagent-bench-{tag}-dead.log", dead=True)
        self.held = T.make_tracers(dead, dead, self.dir / f"tracedagent-bench-{tag}-held.log", hold=True)

    def close(self) -> None:
        if self.sinks is not None:
            self.sinks.close()


_telemetry: Telemetry | None = None


def telemetry(urls: dict[str, str] | None = None) -> Telemetry:
    global _telemetry
    if _telemetry is None:
        _telemetry = Telemetry(urls)
    return _telemetry


def make_variants(wanted: list[str], urls: dict[str, str] | None = None) -> list[Variant]:
    agent = W.make_agent()

    async def run_agent(i: int) -> str:
        result = await agent.run(W.prompt_for(i)[0])
        return result.output or ""

    noops: list[tuple[str, object]] = [(f"noop{k}", W.NoopPlugin()) for k in range(1, 5)]
    variants = []
    for name in wanted:
        if name == "handwritten":
            variants.append(Variant(name, W.run_handwritten, notes="the loop by hand, plain dicts (peers' bare)"))
        elif name == "bare":
            variants.append(Variant(name, run_agent, notes="tracedagent, no plugin registered"))
        elif name == "noop4":
            variants.append(Variant(name, run_agent, noops, notes="tracedagent, 4 no-op tracers on every hook"))
        elif name in ("stdout", "prometheus", "otlp", "langsmith"):
            tracers = telemetry(urls).live
            plugins = tracers.named([name])
            exporting = [p for _, p in plugins if p is not tracers.prometheus]
            variants.append(Variant(name, run_agent, plugins, exporting, notes=f"the {name} tracer alone"))
        elif name in ("all4", "all4_dead"):
            dead = name == "all4_dead"
            tracers = telemetry(urls).dead if dead else telemetry(urls).live
            variants.append(
                Variant(
                    name,
                    run_agent,
                    tracers.named(T_TRACERS),
                    tracers.exporting(),
                    live=not dead,
                    notes="the four tracers" + (", OTLP and LangSmith backends dead" if dead else ""),
                )
            )
        elif name == "all4_hooks":
            tracers = telemetry(urls).held
            plugins = [(f"{n}-held", p) for n, p in tracers.named(T_TRACERS)]
            variants.append(
                Variant(
                    name,
                    run_agent,
                    plugins,
                    tracers.exporting(),
                    held=True,
                    notes="the four tracers' hooks, their export workers held (the hot path alone)",
                )
            )
        else:
            raise SystemExit(f"unknown variant {name!r}; choose from {', '.join(ALL_VARIANTS)}")
    return variants


T_TRACERS = ("stdout", "prometheus", "otlp", "langsmith")


# --------------------------------------------------------------------------------------- plugins

_registered: dict[str, object] = {}


def activate(variant: Variant) -> None:
    """Register and unregister plugins so that exactly ``variant.plugins`` are active."""
    wanted = dict(variant.plugins)
    for name, plugin in list(_registered.items()):
        if wanted.get(name) is not plugin:
            tracedagent.unregister(plugin)
            del _registered[name]
    for name, plugin in variant.plugins:
        if name not in _registered:
            got = tracedagent.register(plugin, name)
            if got != name:
                raise SystemExit(f"[{variant.name}] plugin {name!r} was registered as {got!r}")
            _registered[name] = plugin
    active = [p.name for p in tracedagent.list_plugins() if p.status.split(";")[0] == "active"]
    if sorted(active) != sorted(_registered):
        raise SystemExit(f"[{variant.name}] expected plugins {sorted(_registered)}, but these are active: {active}")


# ------------------------------------------------------------------------------------ measuring


class Timed:
    """A timed section: collect first, optionally keep the collector off while timing."""

    def __init__(self, no_gc: bool) -> None:
        self.no_gc = no_gc

    def __enter__(self) -> None:
        gc.collect()
        if self.no_gc:
            gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.no_gc:
            gc.enable()


def check(variant: Variant, start: int, outputs: list[str], tool_calls_before: int) -> None:
    for k, got in enumerate(outputs):
        expected = W.expected_text(start + k)
        if got != expected:
            raise AssertionError(f"[{variant.name}] run {start + k}: expected {expected!r}, got {got!r}")
    calls = W.tool_calls() - tool_calls_before
    if calls != W.TOOL_CALLS_PER_RUN * len(outputs):
        raise AssertionError(f"[{variant.name}] {len(outputs)} runs made {calls} tool calls, not {2 * len(outputs)}")
    variant.verified += len(outputs)


def counters(variant: Variant) -> tuple[int, int]:
    dropped = failed = 0
    for tracer in variant.exporting:
        stats = tracer.stats()
        dropped += stats.dropped
        failed += stats.failed
    return dropped, failed


def settle(variant: Variant) -> float:
    """After a block: wait until every live sink of the variant exported what it was given (seconds).
    Dead backends cannot be flushed: their queues stay full and drop."""
    t0 = time.perf_counter()
    if variant.held:
        import telemetry as T

        T.discard(variant.exporting)
    elif variant.live:
        for tracer in variant.exporting:
            if not tracer.flush(120):
                raise SystemExit(f"[{variant.name}] {tracer!r} did not flush within 120 s")
    return time.perf_counter() - t0


async def seq_block(variant: Variant, start: int, n: int, no_gc: bool) -> Block:
    """``n`` runs one after another, then the drain of the export queues."""
    run, clock = variant.run, time.perf_counter_ns
    latencies: list[int] = []
    outputs: list[str] = []
    before = W.tool_calls()
    dropped0, failed0 = counters(variant)
    with Timed(no_gc):
        cpu0, main0 = time.process_time(), time.thread_time()
        t0 = clock()
        for i in range(start, start + n):
            t = clock()
            out = await run(i)
            latencies.append(clock() - t)
            outputs.append(out)
        total = clock() - t0
        main1 = time.thread_time()
        drain = settle(variant)
        cpu1 = time.process_time()
    dropped1, failed1 = counters(variant)
    check(variant, start, outputs, before)
    return Block(
        statistics.median(latencies) / 1000,
        total / n / 1000,
        (main1 - main0) / n * 1e6,
        (cpu1 - cpu0) / n * 1e6,
        drain * 1000,
        dropped1 - dropped0,
        failed1 - failed0,
    )


async def conc_block(variant: Variant, start: int, c: int, no_gc: bool) -> Block:
    """``c`` runs at once with ``asyncio.gather``: wall time / c, then the drain of the export queues."""
    run = variant.run
    before = W.tool_calls()
    dropped0, failed0 = counters(variant)
    with Timed(no_gc):
        cpu0, main0 = time.process_time(), time.thread_time()
        t0 = time.perf_counter_ns()
        outputs = await asyncio.gather(*(run(i) for i in range(start, start + c)))
        dt = time.perf_counter_ns() - t0
        main1 = time.thread_time()
        drain = settle(variant)
        cpu1 = time.process_time()
    dropped1, failed1 = counters(variant)
    check(variant, start, list(outputs), before)
    per_run = dt / c / 1000
    return Block(
        per_run,
        per_run,
        (main1 - main0) / c * 1e6,
        (cpu1 - cpu0) / c * 1e6,
        drain * 1000,
        dropped1 - dropped0,
        failed1 - failed0,
    )


async def validate(variants: list[Variant]) -> None:
    """Before timing: each variant answers right, and tracedagent emits every event, paired."""
    for v in variants:
        activate(v)
        before = W.tool_calls()
        check(v, 0, [await v.run(i) for i in range(10)], before)
        if v.name == "handwritten":
            continue
        with capture_events() as events:
            await v.run(0)
        if len(events) != W.EVENTS_PER_RUN or events.unmatched():
            raise AssertionError(f"[{v.name}] expected {W.EVENTS_PER_RUN} paired events per run, got {events.hooks()}")
        settle(v)


def conc_reps(reps: int, c: int) -> int:
    """Fewer repetitions for the largest batches (at least 3)."""
    return max(3, min(reps, 20_000 // c))


async def measure(variants: list[Variant], args: argparse.Namespace) -> None:
    index = 0
    for v in variants:  # warm-up, not recorded
        activate(v)
        await seq_block(v, index, args.warm, args.no_gc)
        for c in args.conc:
            await conc_block(v, index, min(c, 50), args.no_gc)
        index += args.warm
    for rep in range(args.reps):
        for v in variants if rep % 2 == 0 else variants[::-1]:
            activate(v)
            v.seq.append(await seq_block(v, 1000 + rep * args.n, args.n, args.no_gc))
    for c in args.conc:
        for rep in range(conc_reps(args.reps, c)):
            for v in variants if rep % 2 == 0 else variants[::-1]:
                activate(v)
                v.conc.setdefault(c, []).append(await conc_block(v, 50_000 + rep * c, c, args.no_gc))


# ------------------------------------------------------------------------------------ reporting


def _ratio(a: list[float], b: list[float]) -> float:
    """The median over reps of a/b, each pair measured side by side."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _delta(a: list[float], b: list[float]) -> float:
    """The median over reps of a - b, each pair measured side by side."""
    return statistics.median(x - y for x, y in zip(a, b, strict=True))


def _med(values: list[float]) -> float:
    return statistics.median(values)


def _table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    ref, bare = by_name.get("handwritten"), by_name.get("bare")
    print("\n## Time per run (wall clock)\n")
    rows = []
    for v in variants:
        med = v.seq_median
        rows.append(
            [
                v.name,
                f"{_med(med):.1f} [{min(med):.1f}..{max(med):.1f}]",
                f"{_med(v.col('mean')):.1f}",
                *(f"{_med(v.col('median', c)):.1f}" for c in args.conc),
                f"{_ratio(med, ref.seq_median):.2f}x" if ref else "",
                f"{_ratio(med, bare.seq_median):.2f}x" if bare else "",
                str(v.verified),
            ]
        )
    _table(
        [
            "variant",
            "seq us/run [min..max]",
            "seq mean us/run",
            *(f"conc C={c} us/run" for c in args.conc),
            "x handwritten",
            "x bare",
            "verified runs",
        ],
        rows,
    )
    print(
        "\n## CPU per run and exports\n\nmain CPU: the main thread's CPU (`time.thread_time`: the loop, the hooks, "
        "the queue puts). process CPU: every thread's (`time.process_time`), the export workers' and the SDKs' "
        "threads included, until the queues were drained after the block. drain: from the end of a block of "
        f"{args.n} sequential runs until every live sink had exported all of it. dropped / failed: items over "
        "all reps (queue full / export failed).\n"
    )
    rows = []
    for v in variants:
        cells = [
            v.name,
            f"{_med(v.col('main_cpu')):.1f}",
            f"{_med(v.col('process_cpu')):.1f}",
            f"{_med(v.col('drain_ms')):.1f}",
            f"{sum(v.col('dropped')):.0f} / {sum(v.col('failed')):.0f}",
        ]
        for c in args.conc:
            cells += [
                f"{_med(v.col('main_cpu', c)):.1f}",
                f"{_med(v.col('process_cpu', c)):.1f}",
                f"{sum(v.col('dropped', c)):.0f} / {sum(v.col('failed', c)):.0f}",
            ]
        rows.append(cells)
    head = ["variant", "seq main CPU us/run", "seq process CPU us/run", "seq drain ms", "seq dropped / failed"]
    for c in args.conc:
        head += [f"C={c} main CPU", f"C={c} process CPU", f"C={c} dropped / failed"]
    _table(head, rows)
    print("\n## Ratios, side by side (median over reps of variant / partner)\n")
    ratios: dict[str, Any] = {}
    rows = []
    for a, b in PAIRS:
        if a not in by_name or b not in by_name:
            continue
        va, vb = by_name[a], by_name[b]
        row = {
            "seq": _ratio(va.seq_median, vb.seq_median),
            "seq_mean": _ratio(va.col("mean"), vb.col("mean")),
            "conc": {c: _ratio(va.col("median", c), vb.col("median", c)) for c in args.conc},
            "delta_us": _delta(va.seq_median, vb.seq_median),
            "delta_main_cpu_us": _delta(va.col("main_cpu"), vb.col("main_cpu")),
        }
        ratios[f"{a}/{b}"] = row
        rows.append(
            [
                f"{a} / {b}",
                f"{row['seq']:.2f}",
                f"{row['seq_mean']:.2f}",
                *(f"{row['conc'][c]:.2f}" for c in args.conc),
                f"{row['delta_us']:+.1f}",
                f"{row['delta_main_cpu_us']:+.1f}",
            ]
        )
    _table(
        [
            "variant / partner",
            "seq (median latency)",
            "seq (mean)",
            *(f"conc C={c}" for c in args.conc),
            "d us/run (seq)",
            "d main CPU us/run (seq)",
        ],
        rows,
    )
    per_event: dict[str, Any] = {}
    if bare is not None:
        print(
            f"\n## Hot path: cost of one event ({W.EVENTS_PER_RUN} events per run), over bare\n\n"
            "main CPU: the main thread's extra CPU per run / events (building the event, dispatching it, the "
            "hooks). wall: the extra median latency per run / events; it also holds the time the main thread "
            "waits for the GIL while export workers hold it.\n"
        )
        rows = []
        for v in variants:
            if v.name in ("handwritten", "bare"):
                continue
            cpu = _delta(v.col("main_cpu"), bare.col("main_cpu")) / W.EVENTS_PER_RUN
            wall = _delta(v.seq_median, bare.seq_median) / W.EVENTS_PER_RUN
            conc = {c: _delta(v.col("main_cpu", c), bare.col("main_cpu", c)) / W.EVENTS_PER_RUN for c in args.conc}
            per_event[v.name] = {"main_cpu_us": cpu, "wall_us": wall, "conc_main_cpu_us": conc}
            rows.append([v.name, f"{cpu:.2f}", f"{wall:.2f}", *(f"{conc[c]:.2f}" for c in args.conc)])
        _table(
            [
                "variant",
                "main CPU us/event (seq)",
                "wall us/event (seq)",
                *(f"main CPU us/event (C={c})" for c in args.conc),
            ],
            rows,
        )
    total = sum(v.verified for v in variants)
    print(f"\nverified {total} runs: every output equals its expected answer, {W.TOOL_CALLS_PER_RUN} tool calls each")
    return {
        "variants": {
            v.name: {
                "notes": v.notes,
                "seq": [b.__dict__ for b in v.seq],
                "conc": {c: [b.__dict__ for b in blocks] for c, blocks in v.conc.items()},
                "verified_runs": v.verified,
            }
            for v in variants
        },
        "ratios": ratios,
        "per_event": per_event,
    }


def environment(args: argparse.Namespace) -> dict[str, Any]:
    env = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "tracedagent": version("tracedagent"),
        "pluggy": version("pluggy"),
        "pydantic": version("pydantic"),
        "n": args.n,
        "reps": args.reps,
        "warm": args.warm,
        "conc": args.conc,
        "gc": "off while timing" if args.no_gc else "on (collected before each block)",
    }
    print("# tracedagent benchmark: add X Y Z (3 model calls + 2 tool calls per run)\n")
    for key, value in env.items():
        print(f"- {key}: {value}")
    return env


# ------------------------------------------------------------------------------- the peers' harness


def check_against_peers(path: Path) -> str:
    """If the peers' ``harness.py`` is there, prove our copy of the workload is the same one."""
    harness_py = path / "harness.py"
    spec = importlib.util.spec_from_file_location("_peers_harness", harness_py)
    if not harness_py.is_file() or spec is None or spec.loader is None:
        return f"not compared ({harness_py} is absent)"
    harness = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = harness  # its dataclasses look their module up
    try:
        spec.loader.exec_module(harness)
    finally:
        del sys.modules[spec.name]
    for i in (0, 1, 7, 999, 1000, 12345):
        prompt = W.prompt_for(i)[0]
        x, y, z = i % 1000, 3, 7
        steps = ([], [x + y], [x + y, x + y + z], [str(x + y)], [str(x + y), str(x + y + z)])
        if (
            harness.prompt_for(i) != W.prompt_for(i)
            or harness.expected_text(i) != W.expected_text(i)
            or any(harness.script_step(prompt, done) != W.script_step(prompt, done) for done in steps)
        ):
            raise SystemExit(f"benchmarks/workload.py no longer matches {harness_py} (run {i}); copy it again")
    return f"identical to {harness_py}"


# -------------------------------------------------------------------------------------- profiling


def _where(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return name
    parts = Path(filename).parts
    for anchor in ("tracedagent", "site-packages", "asyncio", "benchmarks"):
        if anchor in parts:
            filename = "/".join(parts[len(parts) - parts[::-1].index(anchor) - 1 :])
            break
    return f"{filename}:{line}({name})"


_TRACEDAGENT_AREAS = {
    "_loop.py": "run loop (_loop.py)",
    "_agent.py": "agent entry, context, result (_agent.py, _context.py)",
    "_context.py": "agent entry, context, result (_agent.py, _context.py)",
    "_tools.py": "tool call: validate, call, serialise (_tools.py, pydantic)",
    "_ids.py": "trace and span ids (_ids.py)",
    "_messages.py": "messages and usage (_messages.py)",
    "_dispatch.py": "dispatch (_dispatch.py)",
    "_models.py": "FunctionModel (tracedagent.testing)",
}


def _area(key: tuple[str, int, str]) -> str | None:
    """The part of the system a profiled function belongs to; None: charge it to its callers."""
    filename, _line, name = key
    path = filename.replace("\\", "/")
    if filename.startswith("<fast_init ") or (filename == "<string>" and name == "__init__"):
        return "frozen dataclass __init__ (events, messages, requests)"
    if "/tracedagent/" in path:
        return _TRACEDAGENT_AREAS.get(path.rsplit("/", 1)[1])
    if path.endswith("benchmarks/workload.py"):
        if name.startswith("on_"):
            return "tracer bodies (NoopPlugin, pass)"
        if name in ("run_handwritten", "_hand_add"):
            return "hand-written loop"
        if name == "add":
            return _TRACEDAGENT_AREAS["_tools.py"]
        return None if name.startswith("<") else "scripted model's answer (workload)"
    if "/asyncio/" in path or path.endswith("/selectors.py"):
        return "asyncio event loop"
    if path.endswith("benchmarks/run.py"):
        return "benchmark driver"
    return None


def _areas(stats: dict[Any, Any]) -> dict[str, float]:
    """Self time per area; a function without an area (builtins, comprehensions, inspect, contextlib,
    pydantic) is charged to its callers, in proportion to the time spent through each."""
    memo: dict[Any, dict[str, float]] = {}

    def share(key: Any, seen: frozenset[Any]) -> dict[str, float]:
        if key in memo:
            return memo[key]
        area = _area(key)
        callers = stats[key][4] if key in stats else {}
        if area is not None or not callers or key in seen:
            result = {area or "other": 1.0}
        else:
            weights = {caller: edge[3] or edge[1] for caller, edge in callers.items()}
            total = sum(weights.values()) or 1.0
            result = {}
            for caller, weight in weights.items():
                for name, part in share(caller, seen | {key}).items():
                    result[name] = result.get(name, 0.0) + part * weight / total
        memo[key] = result
        return result

    out: dict[str, float] = {}
    for key, (_cc, _nc, tt, _ct, _callers) in stats.items():
        for name, part in share(key, frozenset()).items():
            out[name] = out.get(name, 0.0) + tt * part
    return out


async def profile(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    """cProfile ``args.n`` sequential runs of each variant: calls per run, time by area, top functions.

    cProfile inflates every call, so absolute figures are far above the timed ones; read the shares."""
    out: dict[str, Any] = {}
    for v in variants:
        activate(v)
        await seq_block(v, 0, args.warm, args.no_gc)
        profiler = cProfile.Profile()
        before = W.tool_calls()
        outputs = []
        profiler.enable()
        for i in range(args.n):
            outputs.append(await v.run(i))
        profiler.disable()
        check(v, 0, outputs, before)
        pst = pstats.Stats(profiler)
        stats: dict[Any, Any] = pst.stats  # type: ignore[attr-defined]
        n, calls = args.n, pst.total_calls  # type: ignore[attr-defined]
        total = sum(row[2] for row in stats.values())
        print(f"\n## {v.name}: {calls / n:.0f} Python function calls per run (cProfile, {n} runs)\n")
        print("| area | share of the run |")
        print("|---|---:|")
        areas = sorted(_areas(stats).items(), key=lambda kv: kv[1], reverse=True)
        for name, tt in areas:
            print(f"| {name} | {tt / total:.0%} |")
        print("\n| self time | calls/run | function |")
        print("|---:|---:|---|")
        top = []
        for key, (_cc, nc, tt, ct, _callers) in sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[
            : args.top
        ]:
            top.append(
                {"function": _where(key), "calls_per_run": nc / n, "self_share": tt / total, "cum_share": ct / total}
            )
            print(f"| {tt / total:.1%} | {nc / n:g} | `{_where(key)}` |")
        out[v.name] = {
            "calls_per_run": calls / n,
            "areas": {name: tt / total for name, tt in areas},
            "top": top,
        }
    return out


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=500, help="sequential runs per variant per rep (500)")
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions (7; at least 3 for large C)")
    parser.add_argument("--warm", type=int, default=50, help="warm-up runs per variant, not timed (50)")
    parser.add_argument("--conc", default="1000,10000", help="concurrent batch sizes, comma-separated; 0 for none")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help="which variants, comma-separated")
    parser.add_argument("--no-gc", action="store_true", help="keep the garbage collector off while timing")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: --n 100 --reps 3 --conc 1000, variants {QUICK_VARIANTS}, small throughput and memory runs",
    )
    parser.add_argument("--profile", action="store_true", help="profile --n runs per variant instead of timing")
    parser.add_argument("--top", type=int, default=25, help="functions listed per variant with --profile (25)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="the peers' benchmark folder (optional)")
    parser.add_argument(
        "--peer",
        metavar="NAME=PYTHON",
        help="also run the peers' bench_NAME.py (tracing off) with that interpreter, e.g. "
        "strands=/tmp/peers/strands/bin/python (see shared/peers/setup.sh)",
    )
    parser.add_argument("--throughput-events", type=int, default=60_000, help="events per sink throughput run")
    parser.add_argument("--mem-conc", type=int, default=10_000, help="concurrent runs of the memory measurement")
    parser.add_argument(
        "--mem-variants", default="handwritten,bare,all4,all4_dead", help="variants measured for memory ('' for none)"
    )
    parser.add_argument("--mem", metavar="VARIANT", help=argparse.SUPPRESS)  # internal: one memory measurement
    parser.add_argument("--urls", help=argparse.SUPPRESS)  # internal: the sinks of the parent process
    parser.add_argument(
        "--with-installed-plugins",
        action="store_true",
        help="let installed tracedagent plugins load (off: bare is bare)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.reps, args.warm, args.conc = 100, 3, 20, "1000"
        args.variants = QUICK_VARIANTS
        args.throughput_events, args.mem_conc, args.mem_variants = 6_000, 1000, "bare,all4"
    args.conc = [int(c) for c in str(args.conc).split(",") if int(c) > 0]
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    wanted = args.variants.split(",")
    variants = make_variants(wanted)
    await validate(variants)
    if args.profile:
        return {"profile": await profile(variants, args)}
    await measure(variants, args)
    result = report(variants, args)
    tele = _telemetry
    if tele is not None:
        activate(Variant("none", W.run_handwritten))  # unregister every plugin
        print(f"\nexports check: {TG.check_exports(tele)}")
        result["throughput"] = await TG.throughput(tele.urls, tele.sinks, args.throughput_events)
    return result


def memory_child(args: argparse.Namespace) -> None:
    """``--mem VARIANT``: one memory measurement in this process; prints one JSON line."""
    import telemetry as T

    urls = json.loads(args.urls) if args.urls else None
    (variant,) = make_variants([args.mem], urls)
    activate(variant)
    figures = T.memory_per_run(variant.run, args.mem_conc)
    figures["dropped"] = counters(variant)[0]
    print(json.dumps(figures))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.with_installed_plugins:
        os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        os.environ.pop("TRACEDAGENT_PLUGINS", None)
    if args.mem:
        memory_child(args)
        return
    env = environment(args)
    env["workload"] = check_against_peers(args.peers)
    print(f"- workload vs peers' harness: {env['workload']}")
    started = time.perf_counter()
    result = asyncio.run(amain(args))
    tele = _telemetry
    try:
        mem_variants = [m for m in args.mem_variants.split(",") if m] if not args.profile else []
        if mem_variants:
            urls = tele.urls if tele is not None else telemetry().urls
            result["memory"] = TG.memory(mem_variants, args.mem_conc, urls)
        peer_fig = None
        if args.peer and not args.profile:
            peer_fig = TG.peer(args.peer, args.peers, n=200, reps=5, conc=200)
            result["peer"] = peer_fig
        if not args.profile:
            TG.targets(result, args.conc, peer_fig, PEER_RESULTS_MD)
    finally:
        if _telemetry is not None:
            _telemetry.close()
    env["loadavg_end"] = os.getloadavg()
    print(
        f"\n(load average at the end: {', '.join(f'{x:.2f}' for x in env['loadavg_end'])}; "
        f"{time.perf_counter() - started:.1f} s)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, **result}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
