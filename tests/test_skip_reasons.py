"""A test skipped for want of a real server (redis-server, Prometheus's promtool and prometheus, Arize
Phoenix) says in its reason the one command that installs it. The suites that need them run here in a
pytest of their own that cannot find those programs (``shutil.which`` and the Phoenix lookup are
hidden by a small plugin), and every such skip is read back from ``-rs``. CI installs them all, so there
nothing is skipped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import tracedagent

ROOT = Path(__file__).resolve().parents[1]
GUARD_S = 600.0  # a guard against a hang only; never asserted on

SUITES = [
    "tests/test_resilience_redis.py",
    "tests/test_dashboards.py::test_promtool_check_rules",
    "tests/test_dashboards.py::test_promtool_test_rules",
    "tests/test_dashboards.py::test_readme_scrape_config_is_valid",
    "tests/test_dashboards.py::test_every_panel_has_data_from_a_real_prometheus_scraping_the_demo",
    "plugins/tracedagent-prometheus/tests/test_prometheus_promtool.py",
    "plugins/tracedagent-prometheus/tests/test_prometheus_server.py",
    "plugins/tracedagent-otlp/tests/test_otlp_phoenix.py",
]

HIDE = textwrap.dedent(
    '''
    """Make redis-server, promtool, prometheus and Phoenix look not installed."""
    import os
    import shutil

    import pytest

    HIDDEN = {"redis-server", "promtool", "prometheus", "phoenix"}
    _which = shutil.which


    def which(cmd, *args, **kwargs):
        return None if os.path.basename(os.fspath(cmd)) in HIDDEN else _which(cmd, *args, **kwargs)


    shutil.which = which


    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(items):
        for item in items:
            if hasattr(item.module, "_phoenix"):  # it also looks for a phoenix-venv beside the venv
                item.module._phoenix = lambda: None
    '''
)

# What is missing -> the command its skip reason must give.
COMMANDS = {
    "redis-server": "apt-get install -y redis-server",
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
    "Phoenix": "phoenix-venv/bin/pip install arize-phoenix",
}


def test_every_skip_for_a_missing_server_says_how_to_install_it(tmp_path: Path) -> None:
    (tmp_path / "hide_servers.py").write_text(HIDE)
    src = str(Path(tracedagent.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (str(tmp_path), src, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    env.pop("TRACEDAGENT_NO_SKIPS", None)  # this run is about the skips: CI's no-skip rule is not for it
    env.pop("PHOENIX_BIN", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "hide_servers", "-p", "no:cacheprovider", "-rs", "-q", *SUITES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    reasons = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", proc.stdout, re.M)
    seen = set()
    for reason in reasons:
        for missing, command in COMMANDS.items():
            if re.search(rf"\b{re.escape(missing)}\b", reason):
                seen.add(missing)
                assert command in reason, f"the skip reason {reason!r} does not say {command!r}"
    assert seen == set(COMMANDS), proc.stdout[-4000:]
