"""The demo as a user runs it (``TRACEDAGENT_METRICS_ADDR`` set, ``--linger``), with a plugin recording
its events: its /metrics hold what the events predict, and a real Prometheus server scraping it on
loopback answers PromQL queries with the counts the events predict."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import CIRCUIT_VALUE, EVENT_DRIVEN, Key, free_port, key, predicted, wait_until


@dataclass
class Demo:
    url: str
    port: int
    events: list[SimpleNamespace]

    def of(self, hook: str) -> list[SimpleNamespace]:
        return [e for e in self.events if e.hook == hook]


def _event(data: dict[str, Any]) -> SimpleNamespace:
    if isinstance(data.get("usage"), dict):
        data["usage"] = SimpleNamespace(**data["usage"])
    return SimpleNamespace(**data)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``tracedagent demo`` serving /metrics on a free loopback port, lingering once its runs are done."""
    where = tmp_path_factory.mktemp("demo")
    events_file, out, err = where / "events.jsonl", where / "stdout.txt", where / "stderr.txt"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEDAGENT_", "PROMETHEUS_MULTIPROC", "prometheus_multiproc", "OTEL_", "LANGSMITH_"))
    }
    env.update(
        TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD="0",  # the installed plugin loads as it does for a user
        TRACEDAGENT_PLUGINS="tracedagent.testing.event_log",
        TRACEDAGENT_METRICS_ADDR=f"127.0.0.1:{port}",
        TRACEDAGENT_STDOUT="0",
        TRACEDAGENT_EVENT_LOG=str(events_file),
    )
    command = [sys.executable, "-m", "tracedagent", "demo", "--runs", "4", "--concurrency", "2", "--quiet"]
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([*command, "--linger", "30"], env=env, stdout=stdout, stderr=stderr)
    try:

        def lingering() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the demo exited with {proc.returncode}:\n{out.read_text()}\n{err.read_text()}")
            return "lingering" in out.read_text()

        wait_until(lingering, "the demo to finish its runs and linger", timeout=60)
        assert "completed 14" in out.read_text()
        events = [_event(json.loads(line)) for line in events_file.read_text().splitlines()]
        yield Demo(f"http://127.0.0.1:{port}/metrics", port, events)
    finally:
        proc.kill()
        proc.wait(10)


def predicted_circuit_states(demo: Demo) -> dict[str, float]:
    """Each tool's breaker state after the runs: the last change's new state, else closed. A handoff's
    ``transfer_to_{agent}`` tool has no breaker, so no state."""
    states = {
        e.tool: CIRCUIT_VALUE["closed"] for e in demo.of("on_tool_call_start") if not e.tool.startswith("transfer_to_")
    }
    for change in demo.of("on_circuit_change"):
        states[change.tool] = CIRCUIT_VALUE[change.new]
    return states


def test_the_lingering_demo_serves_the_metrics_of_its_runs(demo):
    with urllib.request.urlopen(demo.url, timeout=10) as response:
        text = response.read().decode()
    scraped: dict[Key, float] = {}
    gauges: dict[str, dict[str, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in EVENT_DRIVEN and s.value:
                scraped[key(s.name, **s.labels)] = s.value
            elif s.name in ("tracedagent_circuit_state", "tracedagent_tool_inflight", "tracedagent_tool_queue_depth"):
                gauges[s.name][s.labels["tool"]] = s.value
            elif s.name == "tracedagent_runs_active":
                gauges[s.name][s.labels["agent"]] = s.value

    assert scraped == predicted(demo.events)
    # the demo's scenes all happened (so the match above covers them)
    hooks = Counter(e.hook for e in demo.events)
    assert hooks["on_interrupt"] == hooks["on_resume"] == 1
    assert hooks["on_retry"] >= 1
    assert hooks["on_compaction"] >= 1
    assert hooks["on_handoff"] == 1  # the flight change, handed from the trip desk to the rebooking agent
    assert {"circuit_open", "rejected", "error", "ok"} <= {e.status for e in demo.of("on_tool_call_end")}
    assert gauges["tracedagent_circuit_state"] == predicted_circuit_states(demo)
    assert set(gauges["tracedagent_tool_inflight"].values()) == {0}
    assert set(gauges["tracedagent_tool_queue_depth"].values()) == {0}
    assert gauges["tracedagent_runs_active"] == {"trip-desk": 0}


def test_promtool_finds_no_problem_in_what_the_demo_serves(demo):
    """The exposition as served, with prometheus-client's process and runtime metrics beside ours."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: apt-get install -y prometheus (it brings promtool; CI installs it)")
    with urllib.request.urlopen(demo.url, timeout=10) as response:
        text = response.read().decode()
    assert "tracedagent_tool_rejections_total{" in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (checked.stdout + checked.stderr).strip() == ""


# ------------------------------------------------------------------------- a real Prometheus server

PROMETHEUS = shutil.which("prometheus")


class Prometheus:
    """A Prometheus server of this test's own, on loopback, scraping one target every second."""

    def __init__(self, where: Path, target_port: int) -> None:
        assert PROMETHEUS is not None
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config = where / "prometheus.yml"
        config.write_text(
            textwrap.dedent(
                f"""
                global:
                  scrape_interval: 1s
                  scrape_timeout: 1s
                  evaluation_interval: 1s
                scrape_configs:
                  - job_name: tracedagent-demo
                    static_configs:
                      - targets: ["127.0.0.1:{target_port}"]
                """
            )
        )
        self.log = where / "prometheus.log"
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={where / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str, **params: str) -> Any:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()}")
        url = f"{self.base}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    def target_scraped(self) -> bool:
        answer = self.get("/api/v1/targets")
        if not answer:
            return False
        targets = answer["data"]["activeTargets"]
        return len(targets) == 1 and targets[0]["health"] == "up" and not targets[0]["lastScrape"].startswith("0001")

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        answer = self.get("/api/v1/query", query=promql)
        assert answer is not None, f"prometheus did not answer {promql!r}"
        assert answer["status"] == "success", answer
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in answer["data"]["result"]}

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def prometheus(demo: Demo, tmp_path: Path) -> Iterator[Prometheus]:
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed: apt-get install -y prometheus (CI installs it)")
    server = Prometheus(tmp_path, demo.port)
    try:
        wait_until(server.target_scraped, "prometheus to scrape the demo's /metrics", timeout=30)
        wait_until(lambda: server.query("sum(tracedagent_runs_total)"), "the demo's series in prometheus")
        yield server
    finally:
        server.stop()


def by(events: list[SimpleNamespace], *labels: str, amount: Any = None) -> dict[tuple[tuple[str, str], ...], float]:
    """What ``sum by (labels)`` must return, from the events: count them, or sum ``amount(event)``."""
    out: Counter[tuple[tuple[str, str], ...]] = Counter()
    for e in events:
        out[tuple(sorted((label, getattr(e, label)) for label in labels))] += 1 if amount is None else amount(e)
    return {k: float(v) for k, v in out.items() if v}


@pytest.mark.integration
def test_prometheus_scrapes_the_demo_and_promql_returns_what_the_events_predict(demo, prometheus):
    q = prometheus.query
    runs, tools, models = demo.of("on_run_end"), demo.of("on_tool_call_end"), demo.of("on_model_call_end")

    assert q("sum by (status) (tracedagent_runs_total)") == by(runs, "status")
    assert q("sum by (tool, status) (tracedagent_tool_calls_total)") == by(tools, "tool", "status")
    refused = [e for e in tools if e.status in ("rejected", "circuit_open")]
    assert q("sum by (reason) (tracedagent_tool_rejections_total)") == by(refused, "reason")
    assert q("sum by (tool, reason) (tracedagent_tool_rejections_total)") == {
        (("reason", "circuit_open"), ("tool", "seat_map")): 1.0,
        (("reason", "queue_full"), ("tool", "fare_quote")): 2.0,
    }
    circuit = q("tracedagent_circuit_state")
    assert {dict(labels)["tool"]: v for labels, v in circuit.items()} == predicted_circuit_states(demo)
    assert q("sum(tracedagent_retries_total)") == {(): float(len(demo.of("on_retry")))}
    assert q("sum by (target, kind) (tracedagent_retries_total)") == by(demo.of("on_retry"), "target", "kind")
    assert q("sum(tracedagent_interrupts_total)") == {(): float(len(demo.of("on_interrupt")))} == {(): 1.0}
    assert q("sum(tracedagent_resumes_total)") == {(): float(len(demo.of("on_resume")))} == {(): 1.0}
    assert q("sum by (status) (tracedagent_model_calls_total)") == by(models, "status")
    assert q("sum(tracedagent_model_call_duration_seconds_count)") == {(): float(len(models))}
    tokens = {
        (("type", kind),): float(sum(getattr(e.usage, f"{kind}_tokens") for e in models))
        for kind in ("input", "output", "cache_read", "reasoning")
    }
    assert q("sum by (type) (tracedagent_tokens_total)") == {k: v for k, v in tokens.items() if v}
    # the demo's scripted models are priced as gpt-4o-mini: every call adds its cost, under the agent
    # that made it (the trip desk, and the rebooking agent it hands a run to)
    costs: dict[tuple[tuple[str, str], ...], float] = {}
    for e in models:
        if getattr(e.usage, "cost_usd", None) is not None:
            key = (("agent", e.agent), ("model", e.model), ("provider", e.provider))
            costs[key] = costs.get(key, 0.0) + e.usage.cost_usd
    assert len(costs) == 2
    assert all(v > 0 for v in costs.values())
    assert q("sum by (agent, provider, model) (tracedagent_cost_usd_total)") == {
        k: pytest.approx(v) for k, v in costs.items()
    }
    assert q("sum by (strategy) (tracedagent_compactions_total)") == by(demo.of("on_compaction"), "strategy")
    removed = sum(e.tokens_before - e.tokens_after for e in demo.of("on_compaction"))
    assert q("sum(tracedagent_compaction_tokens_removed_total)") == {(): float(removed)}
    assert q("sum(tracedagent_runs_active)") == {(): 0.0}
    # the flight change scene: the trip desk hands its run to the rebooking agent
    handoffs = demo.of("on_handoff")
    assert q("sum by (from_agent, to_agent) (tracedagent_handoffs_total)") == by(handoffs, "from_agent", "to_agent")
    raw = q("tracedagent_handoffs_total")  # one series, labelled with the two agents and nothing else
    scrape = ("__name__", "instance", "job")
    assert [{k: v for k, v in labels if k not in scrape} for labels in raw] == [
        {"from_agent": "trip-desk", "to_agent": "rebooking"}
    ]
    assert list(raw.values()) == [1.0]
    assert q('sum by (instance) (up{job="tracedagent-demo"})') == {(("instance", f"127.0.0.1:{demo.port}"),): 1.0}
