"""The soak test's short mode, as CI runs it: 2,400 concurrent runs with faults at random, after which every
counter must add up and memory must not have grown (``benchmarks/soak.py``).

Its memory samples are taken by runs completed, not by the clock, so a loaded machine takes the same samples
of the same work as an idle one: the number of samples is known before it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_the_short_soak_passes_every_check_with_its_samples_taken_by_runs_completed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDAGENT_", "OTEL_", "LANGSMITH_"))}
    figures = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SOAK), "--short", "--quiet", "--json", str(figures)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "soak: every check passed" in done.stdout
    assert "FAIL" not in done.stdout

    report = json.loads(figures.read_text())
    args = report["args"]
    every = args["sample_every_runs"]
    # one sample each time another `every` runs completed, while every worker still starts a new run
    wanted = list(range(every, args["runs"] - args["concurrency"] + 1, every))
    assert [s["completed"] for s in report["samples"]] == wanted
    assert len(wanted) - args["warmup_samples"] >= 3
    assert report["runs"] == args["runs"]
