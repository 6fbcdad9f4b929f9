"""The measurements after the timing (sink throughput, memory per run, a peer run in the same session,
the exports check) and the table of the issue's targets.

Called by ``run.py``; each function prints its section and returns its figures for the JSON output.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import telemetry as T
import workload as W

HERE = Path(__file__).resolve().parent


def _table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|---|" + "---:|" * (len(head) - 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")


# --------------------------------------------------------------------------------- throughput


async def throughput(urls: dict[str, str], sinks: T.Sinks | None, events_wanted: int) -> dict[str, Any]:
    """Each exporting sink alone, fed ``events_wanted`` recorded events through its hooks at once (a
    queue large enough to hold them): events/s from the first put until its flush returned."""
    runs = max(1, events_wanted // W.EVENTS_PER_RUN)
    events = await T.record_events(runs)
    out: dict[str, Any] = {}
    rows = []
    folder = Path(tempfile.gettempdir())
    for name in ("stdout", "otlp", "langsmith"):

        def make(name: str = name) -> Any:
            tracers = T.make_tracers(
                urls["otlp"],
                urls["langsmith"],
                folder / f"tracedagent-bench-throughput-{name}.log",
                max_queue=len(events) + 1000,
            )
            return getattr(tracers, name)

        def stats(name: str = name) -> dict[str, int]:
            if sinks is None or name == "stdout":
                return {}
            return sinks.stats(name)

        result = T.measure_throughput(make, name, events, stats)
        backend = result.backend
        if name == "otlp":
            arrived = f"{backend.get('spans', 0)} spans in {backend.get('requests', 0)} requests"
        elif name == "langsmith":
            posts, patches, requests = (backend.get(k, 0) for k in ("posts", "patches", "requests"))
            arrived = f"{posts} posts + {patches} patches in {requests} requests"
        else:
            arrived = "lines in a file"
        out[name] = {
            **result.__dict__,
            "events_per_s": result.events_per_s,
            "worker_us_per_event": result.worker_us_per_event,
        }
        rows.append(
            [
                name,
                str(result.events),
                f"{result.events_per_s:,.0f}",
                f"{result.worker_us_per_event:.1f}",
                f"{result.put_s / result.events * 1e6:.2f}",
                f"{result.dropped} / {result.failed}",
                arrived,
            ]
        )
    print(
        "\n## Export workers: throughput of each sink alone\n\n"
        f"{len(events)} recorded events ({runs} runs) put on a fresh tracer's queue at once, then its flush: "
        "events/s from the first put until the backend had everything. worker CPU: every thread but the "
        "main one (the tracer's worker, and the SDK's own threads for LangSmith), per event. put: the hook, "
        "main thread. The Prometheus tracer has no worker: its hooks update the counters.\n"
    )
    _table(
        ["sink", "events", "events/s drained", "worker CPU us/event", "put us/event", "dropped / failed", "arrived"],
        rows,
    )
    return out


# ------------------------------------------------------------------------------------- memory


def memory(variants: list[str], concurrent: int, urls: dict[str, str]) -> dict[str, Any]:
    """One process per variant (as the peers' harness): tracemalloc peak / runs of ``concurrent`` runs."""
    out: dict[str, Any] = {}
    rows = []
    for name in variants:
        command = [
            sys.executable,
            str(HERE / "run.py"),
            "--mem",
            name,
            "--mem-conc",
            str(concurrent),
            "--urls",
            json.dumps(urls),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=os.environ.copy())
        if done.returncode != 0:
            raise SystemExit(f"memory run of {name} failed:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        out[name] = figures
        rows.append(
            [
                name,
                str(concurrent),
                f"{figures['tracemalloc_peak_kib'] / 1024:.1f}",
                f"{figures['kib_per_run']:.2f}",
                f"{figures['rss_growth_kib'] / 1024:.1f}",
                f"{figures.get('dropped', 0)}",
            ]
        )
    print(
        f"\n## Memory: {concurrent:,} concurrent runs (one process per variant)\n\n"
        "tracemalloc peak during a batch of concurrent runs (after warm-up and a first untraced batch), "
        "divided by the runs, as the peers' harness measures. RSS growth: during the first batch.\n"
    )
    _table(["variant", "concurrent runs", "tracemalloc peak MiB", "KiB/run", "RSS growth MiB", "dropped"], rows)
    return out


# ---------------------------------------------------------------------------------------- peer


def peer(spec: str, peers_dir: Path, n: int, reps: int, conc: int) -> dict[str, Any]:
    """Run a peer's script (``NAME=PYTHON``: ``bench_NAME.py`` with that interpreter) with its tracing off,
    in this session, right after our timing."""
    name, _, python = spec.partition("=")
    script = peers_dir / f"bench_{name}.py"
    if not script.is_file() or not python:
        raise SystemExit(f"--peer {spec!r}: expected NAME=PYTHON with {script} present")
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        command = [
            python,
            str(script),
            "--only",
            "off",
            "--n",
            str(n),
            "--reps",
            str(reps),
            "--warm",
            "20",
            "--conc",
            str(conc),
            "--out",
            out.name,
        ]
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=peers_dir, env=env)
        if done.returncode != 0:
            raise SystemExit(f"peer {name} failed:\n{done.stderr[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    off = result["variants"]["off"]
    figures = {
        "framework": name,
        "python": result["python"],
        "versions": result["versions"],
        "seq_us_per_run": off["seq_us_per_run_median"]["median"],
        "seq_min_max": (off["seq_us_per_run_median"]["min"], off["seq_us_per_run_median"]["max"]),
        "conc_us_per_run": off.get("conc_us_per_run", {}).get("median"),
        "n": n,
        "reps": reps,
        "conc": conc,
    }
    lo, hi = figures["seq_min_max"]
    print(
        f"\n## Peer, same session: {name} with its tracing off\n\n"
        f"`{Path(python).name} {script.name} --only off --n {n} --reps {reps} --conc {conc}` (Python "
        f"{result['python']}, {', '.join(f'{k} {v}' for k, v in result['versions'].items())}): "
        f"seq {figures['seq_us_per_run']:.1f} us/run [{lo:.0f}..{hi:.0f}], conc C={conc} "
        f"{figures['conc_us_per_run'] or float('nan'):.1f} us/run"
    )
    return figures


# ------------------------------------------------------------------------------------- targets


def targets(
    result: dict[str, Any], conc: list[int], peer_fig: dict[str, Any] | None, results_md: tuple[str, str, float]
) -> list[list[str]]:
    """The issue's targets, each with its measured value."""
    ratios, per_event = result.get("ratios", {}), result.get("per_event", {})
    variants = result.get("variants", {})
    rows: list[list[str]] = []

    def seq_median(name: str) -> float | None:
        blocks = variants.get(name, {}).get("seq")
        return statistics.median(b["median"] for b in blocks) if blocks else None

    if "bare/handwritten" in ratios:
        r = ratios["bare/handwritten"]
        worst = max([r["seq"], *r["conc"].values()])
        rows.append(
            [
                "bare core / hand-written loop",
                "<= 5x",
                f"{r['seq']:.2f}x seq, " + ", ".join(f"{v:.2f}x C={c}" for c, v in r["conc"].items()),
                "met" if worst <= 5 else "MISSED",
            ]
        )
    all4 = seq_median("all4")
    if all4:
        if peer_fig is not None:
            base, where = peer_fig["seq_us_per_run"], f"{peer_fig['framework']} off, this session"
        else:
            base, where = results_md[2], f"{results_md[0]} {results_md[1]}, RESULTS.md (another session)"
        factor = base / all4
        rows.append(
            [
                "all4 vs the fastest peer with tracing off",
                ">= 10x faster",
                f"{factor:.1f}x ({all4:.0f} vs {base:.0f} us/run seq; {where})",
                "met" if factor >= 10 else "MISSED",
            ]
        )
    for name in ("all4_hooks", "all4", "all4_dead"):
        if name in per_event:
            e = per_event[name]
            rows.append(
                [
                    f"hot path per event, {name}",
                    "<= 10 us",
                    f"{e['main_cpu_us']:.2f} us main-thread CPU; {e['wall_us']:.2f} us wall",
                    "met" if e["main_cpu_us"] <= 10 else "MISSED",
                ]
            )
    memory = result.get("memory", {})
    for name, m in memory.items():
        rows.append(
            [
                f"heap per run at {m['concurrent']:,} concurrent, {name}",
                "<= 16 KiB",
                f"{m['kib_per_run']:.2f} KiB",
                "met" if m["kib_per_run"] <= 16 else "MISSED",
            ]
        )
    if "all4_dead/all4" in ratios:
        r = ratios["all4_dead/all4"]
        rows.append(
            [
                "dead OTLP + LangSmith vs live (all4_dead / all4)",
                "~1.0 (noise)",
                f"{r['seq']:.2f} seq, " + ", ".join(f"{v:.2f} C={c}" for c, v in r["conc"].items()),
                "see note",
            ]
        )
    for name, t in result.get("throughput", {}).items():
        rows.append(
            [
                f"export worker throughput, {name}",
                ">= 50,000 events/s",
                f"{t['events_per_s']:,.0f} events/s",
                "met" if t["events_per_s"] >= 50_000 else "MISSED",
            ]
        )
    print("\n## Targets (issue 9)\n")
    _table(["target", "wanted", "measured", ""], rows)
    return rows


def check_exports(tele: Any) -> str:
    """After the timing: what the live sinks exported arrived (every span at the OTLP sink, every line in
    the file), or the run stops."""
    tracers = tele.live
    tracers.stdout.flush(30)
    tracers.otlp.flush(30)
    tracers.langsmith.flush(30)
    with open(tracers.log_path, encoding="utf-8") as log:
        lines = sum(1 for _ in log)
    stdout_exported = tracers.stdout.stats().exported
    if lines != stdout_exported:
        raise SystemExit(f"stdout: {stdout_exported} events exported but {lines} lines in {tracers.log_path}")
    spans_sent = tracers.otlp.spans_exported
    parts = [f"stdout {lines} lines", f"otlp {spans_sent} spans"]
    if tele.sinks is not None:
        got = tele.sinks.stats("otlp")["spans"]
        if got < spans_sent:
            raise SystemExit(f"otlp: {spans_sent} spans exported but the sink counted {got}")
        ls = tele.sinks.stats("langsmith")
        parts[-1] += f" (sink: {got})"
        parts.append(f"langsmith {ls['posts']} posts + {ls['patches']} patches")
    runs = sum(
        sample.value
        for metric in tracers.registry.collect()
        if metric.name == "tracedagent_runs"
        for sample in metric.samples
        if sample.name == "tracedagent_runs_total"
    )
    parts.append(f"prometheus tracedagent_runs_total {runs:.0f}")
    return ", ".join(parts)
