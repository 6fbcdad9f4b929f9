"""What the CLI tells a new user: what the demo's extra runs are, and why a plugin named in
TRACEDAGENT_PLUGINS does not load. Real subprocesses, as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tracedagent._demo_scenes import SCENE_RUNS, SCENES

GUARD_S = 120.0  # only a guard so a regression fails instead of hanging; never asserted on
SRC = Path(__file__).resolve().parents[1] / "src"


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_EVENT_LOG")}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tracedagent", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
    )


def test_demo_help_says_what_the_scene_runs_are(tmp_path: Path) -> None:
    proc = cli("demo", "--help", cwd=tmp_path)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0
    assert f"the demo adds {SCENE_RUNS} scene runs" in text
    for name, count in SCENES:
        assert f"{name} {count}" in text
    assert f"the summary counts N+{SCENE_RUNS} runs" in text


def test_demo_summary_splits_the_runs_asked_from_the_scene_runs(tmp_path: Path) -> None:
    proc = cli("demo", "--runs", "1", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    completed = re.search(r"^runs\s+completed (\d+)$", proc.stdout, re.M)
    assert completed, proc.stdout
    assert int(completed.group(1)) == 1 + SCENE_RUNS  # the scene list says exactly what the demo runs
    scenes = ", ".join(f"{name} {count}" for name, count in SCENES)
    assert f"1 asked with --runs, {SCENE_RUNS} scene runs ({scenes})" in proc.stdout


def test_the_event_log_plugin_without_its_variable_says_the_variable_is_missing(tmp_path: Path) -> None:
    proc = cli("plugins", cwd=tmp_path, TRACEDAGENT_PLUGINS="tracedagent.testing.event_log")
    assert proc.returncode == 2
    assert "importable" not in proc.stderr  # it is importable: that is not the problem
    assert "'tracedagent.testing.event_log', which cannot load: TRACEDAGENT_EVENT_LOG is not set" in proc.stderr
    assert "set it to a path" in proc.stderr


def test_the_event_log_plugin_says_when_its_file_cannot_be_opened(tmp_path: Path) -> None:
    where = tmp_path / "missing-dir" / "events.jsonl"
    proc = cli(
        "plugins", cwd=tmp_path, TRACEDAGENT_PLUGINS="tracedagent.testing.event_log", TRACEDAGENT_EVENT_LOG=str(where)
    )
    assert proc.returncode == 2
    assert "importable" not in proc.stderr
    assert f"TRACEDAGENT_EVENT_LOG={str(where)!r} cannot be opened for appending" in proc.stderr


def test_a_module_that_does_not_exist_is_still_called_not_importable(tmp_path: Path) -> None:
    proc = cli("plugins", cwd=tmp_path, TRACEDAGENT_PLUGINS="no_such_plugin_module")
    assert proc.returncode == 2
    assert "nor an importable module" in proc.stderr
