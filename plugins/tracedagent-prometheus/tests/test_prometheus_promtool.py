"""``promtool check metrics`` (Prometheus's own linter) finds nothing wrong with the exposition."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client import generate_latest
from prometheus_support import DESIGN_TABLE, VariedScenario, unique

from tracedagent import Agent, ExportPipeline, hookimpl
from tracedagent.testing import ScriptedModel

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed: apt-get install -y prometheus (it brings promtool; CI installs it)",
)


def promtool_check(text: bytes) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text.decode(), capture_output=True, text=True, timeout=60
    )


class Raising:
    name = unique("raising")

    @hookimpl
    def on_run_end(self, event):
        raise RuntimeError("broken plugin")


@needs_promtool
async def test_promtool_finds_no_problem_in_a_full_exposition(registry, prom):
    # the scenario holds its tools: the breaker, in-flight and queue gauges list only tools still alive, so
    # a garbage collection before the scrape would leave those metrics without samples
    scenario = VariedScenario()
    await scenario.run(prom)
    await Agent("broken", ScriptedModel(["hi"]), plugins=[Raising(), prom]).run("hello")
    sink = ExportPipeline(unique("promtool-sink"), lambda batch: None, max_queue=1, interval_s=3600)
    sink.put("kept")
    sink.put("dropped")
    try:
        text = generate_latest(registry)
    finally:
        sink.shutdown(5)
    exposed = text.decode()
    del scenario
    for name in DESIGN_TABLE:  # a full exposition: every metric with samples
        assert f"\n{name}{{" in exposed or f"\n{name}_bucket{{" in exposed, name

    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
    assert checked.stderr.strip() == ""


@needs_promtool
def test_promtool_check_is_not_blind():
    """The same check flags what it should (so a clean result above means something)."""
    checked = promtool_check(b"# HELP requests Requests.\n# TYPE requests counter\nrequests 3\n")
    assert checked.returncode != 0
    assert "_total" in checked.stdout + checked.stderr
