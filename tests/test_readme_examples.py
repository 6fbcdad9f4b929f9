"""Every Python example in the README runs as written, in a fresh process in an empty folder, offline.

Blocks that are pytest files (they define ``test_...``) are run by pytest in ``test_readme.py``; the
rest run as scripts. The model examples get placeholder API keys: building a model sends nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    found = []
    for match in re.finditer(r"```python\n(.*?)```", text, re.S):
        heading = re.findall(r"(?m)^## (.+)$", text[: match.start()])[-1]
        found.append((heading, match.group(1)))
    return found


SCRIPTS = [(heading, code) for heading, code in blocks() if not re.search(r"(?m)^(async )?def test_", code)]


def test_the_readme_has_examples_for_every_capability() -> None:
    headings = {heading for heading, _ in blocks()}
    for wanted in (
        "A traced agent in ten lines",
        "Pointing it at a real model",
        "Testing your agents",
        "Approvals, checkpoints and resume",
        "Resilience per tool",
        "Context compaction",
        "Inside your application's trace",
        "Writing a plugin",
    ):
        assert wanted in headings


@pytest.mark.parametrize(("heading", "code"), SCRIPTS, ids=[f"{h}-{i}" for i, (h, _) in enumerate(SCRIPTS)])
def test_the_example_runs_as_written(heading: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "OPENAI_API_KEY": "sk-placeholder", "ANTHROPIC_API_KEY": "sk-ant-placeholder"}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, f"the example in {heading!r} failed:\n{proc.stderr[-3000:]}"
