"""Instructions per run, counted by valgrind's callgrind: the hot path's cost without the machine's noise.

Wall-clock and CPU-time figures on a shared VM move by 10 to 30% between runs (see README.md). An
instruction count does not: callgrind counts the instructions the process executes, whatever else the
machine is doing, so the same code gives the same count (within a fraction of a percent) every time. It
is the figure to compare two versions of the hot path with, and to check a claim like "the hooks cost
N us per event" against: the CPU time per run of ``bare`` in ``run.py`` divided by its instructions
per run gives the machine's rate, and the rate turns instructions into microseconds.

How: for each variant, the workload runs in a fresh process under callgrind twice, with ``--n-low`` and
``--n-high`` runs after a warm-up; the difference of the two totals divided by the difference of the
run counts is the cost of one run (start-up, imports and warm-up cancel out). GC stays on. The four
tracers are those of ``all4_hooks`` in ``run.py``: their export workers are held (they never wake and
their queues are emptied every 100 runs), so only the run's thread is counted, which is the hot path.

    python benchmarks/instructions.py                          # bare, noop4, all4_hooks: ~5 min
    python benchmarks/instructions.py --variants bare,prometheus --n-low 100 --n-high 300

Needs valgrind (``apt-get install -y valgrind``). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRACERS = ("stdout", "prometheus", "otlp", "langsmith")
VARIANTS = ("bare", "noop4", "all4_hooks", *TRACERS)


def child(variant: str, n: int, log: Path) -> None:
    """Run the workload ``n`` times (after 50 warm-up runs) with ``variant``'s plugins; then exit at once."""
    os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    sys.path.insert(0, str(HERE))
    import telemetry as T
    import workload as W

    import tracedagent

    agent = W.make_agent()
    tracers: Any = None
    if variant == "noop4":
        for k in range(4):
            tracedagent.register(W.NoopPlugin(), f"noop{k}")
    elif variant != "bare":
        dead = "http://127.0.0.1:9"
        tracers = T.make_tracers(dead, dead, log, hold=True)
        for name, plugin in tracers.named(TRACERS if variant == "all4_hooks" else (variant,)):
            tracedagent.register(plugin, name)

    async def main() -> None:
        for i in range(50):
            await agent.run(W.prompt_for(i)[0])
        if tracers is not None:
            T.discard(tracers.exporting())
        for i in range(n):
            out = await agent.run(W.prompt_for(i)[0])
            if (out.output or "") != W.expected_text(i):
                raise SystemExit(f"run {i}: got {out.output!r}")
            if tracers is not None and i % 100 == 99:
                T.discard(tracers.exporting())

    asyncio.run(main())
    sys.stdout.flush()
    os._exit(0)  # no exit handlers: the held workers and the SDK clients would only add noise


def count(variant: str, n: int, workdir: Path) -> int:
    """Total instructions of one child process under callgrind."""
    out = workdir / f"{variant}-{n}.callgrind"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        __file__,
        "--child",
        variant,
        str(n),
        str(workdir / f"{variant}.log"),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{variant} n={n} failed:\n{done.stderr[-3000:]}")
    match = re.search(r"^summary:\s+(\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no summary line in {out}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="bare,noop4,all4_hooks", help=f"comma-separated, of {VARIANTS}")
    parser.add_argument("--n-low", type=int, default=200)
    parser.add_argument("--n-high", type=int, default=600)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, n, log = args.child
        child(variant, int(n), Path(log))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind)")
    wanted = [v for v in args.variants.split(",") if v]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown or args.n_high <= args.n_low:
        raise SystemExit(f"unknown variants {unknown}, or --n-high not above --n-low; variants: {VARIANTS}")
    sys.path.insert(0, str(HERE))
    from workload import EVENTS_PER_RUN

    per_run: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tracedagent-ir-") as tmp:
        for variant in wanted:
            low, high = count(variant, args.n_low, Path(tmp)), count(variant, args.n_high, Path(tmp))
            per_run[variant] = (high - low) / (args.n_high - args.n_low)
            print(f"  {variant}: {per_run[variant]:,.0f} instructions per run", file=sys.stderr, flush=True)
    print(f"## Instructions per run (callgrind, runs {args.n_low} and {args.n_high}, difference)\n")
    print("| variant | instructions/run | x bare | over bare, per event |")
    print("|---|---:|---:|---:|")
    bare = per_run.get("bare")
    for variant, value in per_run.items():
        ratio = f"{value / bare:.2f}x" if bare else ""
        extra = f"{(value - bare) / EVENTS_PER_RUN:,.0f}" if bare and variant != "bare" else ""
        print(f"| {variant} | {value:,.0f} | {ratio} | {extra} |")


if __name__ == "__main__":
    main()
