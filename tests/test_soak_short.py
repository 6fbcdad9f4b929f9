"""The soak test's short mode, as CI runs it: a few seconds of concurrent runs with faults at random,
after which every counter must add up and memory must not have grown (``benchmarks/soak.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parent.parent / "benchmarks" / "soak.py"


def test_the_short_soak_passes_every_check() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRACEDAGENT_", "OTEL_", "LANGSMITH_"))}
    done = subprocess.run(
        [sys.executable, str(SOAK), "--short", "--quiet"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "soak: every check passed" in done.stdout
    assert "FAIL" not in done.stdout
