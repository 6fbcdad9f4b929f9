"""Time the first workload: tracedagent against the same loop written by hand, in one process.

    python benchmarks/run.py                 # the full table (about ten seconds)
    python benchmarks/run.py --quick         # a smoke run for CI (a few seconds)
    python benchmarks/run.py --profile       # where the time goes (cProfile), instead of timing

Variants, interleaved A B C C B A ... inside one process so that ratios are measured side by side:

* ``handwritten``: the agent loop written by hand with plain dicts (the peers' ``bare`` baseline);
* ``bare``: tracedagent with no plugin registered;
* ``noop4``: tracedagent with 4 no-op tracers registered process-wide (every observer hook is ``pass``).

Every run's output is checked against the expected answer (outside the timed section) and so is the
number of tool calls; a broken benchmark stops with an error instead of printing figures. Installed
tracedagent plugins are not loaded (``TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD=1``) so that ``bare`` is bare.
Standard library only: ``time.perf_counter_ns``, ``statistics``, ``cProfile``.
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

import workload as W

import tracedagent
from tracedagent.testing import capture_events

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = HERE.parent.parent / "shared" / "peers"
#: (variant, the variant it is compared with) for the ratio columns
PAIRS = (("bare", "handwritten"), ("noop4", "bare"), ("noop4", "handwritten"))


@dataclass
class Variant:
    name: str
    run: Callable[[int], Awaitable[str]]
    plugins: int = 0  # how many NoopPlugin tracers are registered process-wide while it runs
    notes: str = ""
    seq_median: list[float] = field(default_factory=list)  # per rep: median latency of one run, us
    seq_mean: list[float] = field(default_factory=list)  # per rep: block wall time / runs, us
    conc: dict[int, list[float]] = field(default_factory=dict)  # C -> per rep: wall time / C, us
    verified: int = 0


def make_variants() -> list[Variant]:
    agent = W.make_agent()

    async def run_agent(i: int) -> str:
        result = await agent.run(W.prompt_for(i)[0])
        return result.output or ""

    return [
        Variant("handwritten", W.run_handwritten, notes="the loop by hand, plain dicts (peers' bare)"),
        Variant("bare", run_agent, notes="tracedagent, no plugin registered"),
        Variant("noop4", run_agent, plugins=4, notes="tracedagent, 4 no-op tracers on every hook"),
    ]


# --------------------------------------------------------------------------------------- plugins

_registered: list[str] = []


def activate(variant: Variant) -> None:
    """Register or unregister NoopPlugin tracers so exactly ``variant.plugins`` are active."""
    while len(_registered) > variant.plugins:
        tracedagent.unregister(_registered.pop())
    while len(_registered) < variant.plugins:
        _registered.append(tracedagent.register(W.NoopPlugin(), f"noop{len(_registered) + 1}"))
    active = [p.name for p in tracedagent.list_plugins() if p.status == "active"]
    if sorted(active) != sorted(_registered):
        raise SystemExit(f"[{variant.name}] expected plugins {_registered}, but these are active: {active}")


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


async def seq_block(variant: Variant, start: int, n: int, no_gc: bool) -> tuple[float, float]:
    """``n`` runs one after another: (median latency, mean latency) in microseconds."""
    run, clock = variant.run, time.perf_counter_ns
    latencies: list[int] = []
    outputs: list[str] = []
    before = W.tool_calls()
    with Timed(no_gc):
        t0 = clock()
        for i in range(start, start + n):
            t = clock()
            out = await run(i)
            latencies.append(clock() - t)
            outputs.append(out)
        total = clock() - t0
    check(variant, start, outputs, before)
    return statistics.median(latencies) / 1000, total / n / 1000


async def conc_block(variant: Variant, start: int, c: int, no_gc: bool) -> float:
    """``c`` runs at once with ``asyncio.gather``: wall time / c, in microseconds."""
    run = variant.run
    before = W.tool_calls()
    with Timed(no_gc):
        t0 = time.perf_counter_ns()
        outputs = await asyncio.gather(*(run(i) for i in range(start, start + c)))
        dt = time.perf_counter_ns() - t0
    check(variant, start, list(outputs), before)
    return dt / c / 1000


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
            median, mean = await seq_block(v, 1000 + rep * args.n, args.n, args.no_gc)
            v.seq_median.append(median)
            v.seq_mean.append(mean)
    for c in args.conc:
        for rep in range(args.reps):
            for v in variants if rep % 2 == 0 else variants[::-1]:
                activate(v)
                v.conc.setdefault(c, []).append(await conc_block(v, 5000 + rep * c, c, args.no_gc))


# ------------------------------------------------------------------------------------ reporting


def _ratio(a: list[float], b: list[float]) -> float:
    """The median over reps of a/b, each pair measured side by side."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def report(variants: list[Variant], args: argparse.Namespace) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    ref = by_name.get("handwritten")
    conc_cols = [f"conc C={c} us/run" for c in args.conc]
    print("\n## Time per run\n")
    head = ["variant", "seq us/run [min..max]", "seq mean us/run", *conc_cols, "x handwritten", "verified runs"]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for v in variants:
        med = statistics.median(v.seq_median)
        cells = [
            v.name,
            f"{med:.1f} [{min(v.seq_median):.1f}..{max(v.seq_median):.1f}]",
            f"{statistics.median(v.seq_mean):.1f}",
            *(f"{statistics.median(v.conc[c]):.1f}" for c in args.conc),
            f"{_ratio(v.seq_median, ref.seq_median):.2f}x" if ref else "",
            str(v.verified),
        ]
        print("| " + " | ".join(cells) + " |")
    print("\n## Ratios, side by side (median over reps of variant / partner)\n")
    head = [
        "variant / partner",
        "seq (median latency)",
        "seq (mean)",
        *(f"conc C={c}" for c in args.conc),
        "d us/run (seq)",
    ]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    ratios: dict[str, Any] = {}
    for a, b in PAIRS:
        if a not in by_name or b not in by_name:
            continue
        va, vb = by_name[a], by_name[b]
        row = {
            "seq": _ratio(va.seq_median, vb.seq_median),
            "seq_mean": _ratio(va.seq_mean, vb.seq_mean),
            "conc": {c: _ratio(va.conc[c], vb.conc[c]) for c in args.conc},
            "delta_us": statistics.median(x - y for x, y in zip(va.seq_median, vb.seq_median, strict=True)),
        }
        ratios[f"{a}/{b}"] = row
        cells = [
            f"{a} / {b}",
            f"{row['seq']:.2f}",
            f"{row['seq_mean']:.2f}",
            *(f"{row['conc'][c]:.2f}" for c in args.conc),
            f"{row['delta_us']:+.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if "noop4/bare" in ratios:
        d = ratios["noop4/bare"]["delta_us"]
        print(
            f"\nnoop4 - bare = {d:.1f} us/run for {W.EVENTS_PER_RUN} events: {d / W.EVENTS_PER_RUN:.2f} us per event "
            "(building it, which bare skips, and 4 tracer calls)"
        )
    total = sum(v.verified for v in variants)
    print(f"\nverified {total} runs: every output equals its expected answer, {W.TOOL_CALLS_PER_RUN} tool calls each")
    return {
        "variants": {
            v.name: {
                "notes": v.notes,
                "seq_us_per_run_median": v.seq_median,
                "seq_us_per_run_mean": v.seq_mean,
                "conc_us_per_run": v.conc,
                "verified_runs": v.verified,
            }
            for v in variants
        },
        "ratios": ratios,
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
    parser.add_argument("--reps", type=int, default=9, help="interleaved repetitions (9)")
    parser.add_argument("--warm", type=int, default=50, help="warm-up runs per variant, not timed (50)")
    parser.add_argument("--conc", default="200,1000", help="concurrent batch sizes, comma-separated; 0 for none")
    parser.add_argument("--variants", default="handwritten,bare,noop4", help="which variants, comma-separated")
    parser.add_argument("--no-gc", action="store_true", help="keep the garbage collector off while timing")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of a few seconds: --n 100 --reps 3 --conc 100"
    )
    parser.add_argument("--profile", action="store_true", help="profile --n runs per variant instead of timing")
    parser.add_argument("--top", type=int, default=25, help="functions listed per variant with --profile (25)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--peers", type=Path, default=DEFAULT_PEERS, help="the peers' benchmark folder (optional)")
    parser.add_argument(
        "--with-installed-plugins",
        action="store_true",
        help="let installed tracedagent plugins load (off: bare is bare)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.reps, args.warm, args.conc = 100, 3, 20, "100"
    args.conc = [int(c) for c in str(args.conc).split(",") if int(c) > 0]
    return args


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    wanted = args.variants.split(",")
    variants = [v for v in make_variants() if v.name in wanted]
    if unknown := set(wanted) - {v.name for v in variants}:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from handwritten, bare, noop4")
    await validate(variants)
    if args.profile:
        return {"profile": await profile(variants, args)}
    await measure(variants, args)
    return report(variants, args)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.with_installed_plugins:
        os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        os.environ.pop("TRACEDAGENT_PLUGINS", None)
    env = environment(args)
    env["workload"] = check_against_peers(args.peers)
    print(f"- workload vs peers' harness: {env['workload']}")
    started = time.perf_counter()
    result = asyncio.run(amain(args))
    print(f"\n({time.perf_counter() - started:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, **result}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
