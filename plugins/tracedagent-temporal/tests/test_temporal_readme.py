"""The README's "Durable runs on Temporal" example runs as written, against the dev server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from temporal_support import DevServer, subprocess_env

README = Path(__file__).resolve().parents[3] / "README.md"

pytestmark = pytest.mark.integration


def test_the_readme_example_runs_against_a_real_server(temporal_server: DevServer, tmp_path: Path) -> None:
    text = README.read_text()
    section = text[text.index("## Durable runs on Temporal") :]
    match = re.search(r"```py\n(.*?)```", section, re.S)
    assert match, "no py block in the section"
    script = tmp_path / "example.py"
    script.write_text(match.group(1))
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=subprocess_env(TEMPORAL_ADDRESS=temporal_server.address),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "completed Refunded."
