"""The README's examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block_after(heading: str) -> str:
    text = README.read_text()
    section = text[text.index(heading) :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


def test_quick_start_is_two_commands() -> None:
    text = README.read_text()
    section = text[text.index("## Quick start") :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert "tracedagent demo" in commands[0]
    assert "pytest" in commands[1]


def test_ten_line_agent_runs(tmp_path: Path) -> None:
    pytest.importorskip("tracedagent_stdout")
    code = python_block_after("## A traced agent in ten lines")
    assert len([line for line in code.splitlines() if line.strip()]) <= 12
    script = tmp_path / "agent.py"
    script.write_text(code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TRACEDAGENT_LOG_FORMAT": "json"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "2 + 3 = 5" in lines
    assert sum(1 for line in lines if line.startswith("{")) == 8  # run, 2 model calls, 1 tool call: starts and ends


pytest_plugins = ["pytester"]


def test_pytest_plugin_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_readme_example=python_block_after("## Testing your agents"))
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(passed=1)
