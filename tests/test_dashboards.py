"""The Grafana dashboards and alert rules of ``dashboards/``.

- The committed JSON is what the code builds, and it validates against Grafana's JSON schemas
  (``../shared/grafana``: the classic dashboard schema, the time series panel schema, the Prometheus
  query schema).
- Every metric a dashboard or an alert names is one the Prometheus plugin exposes, with the right kind.
- ``promtool check rules`` and ``promtool test rules`` pass, every alert has a test where it fires, and
  the README's scrape config passes ``promtool check config``.
- Against a real Prometheus scraping ``tracedagent demo``, every panel's query returns data, every
  variable lists the demo's names, and the alerts the demo should trip are pending or firing.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "dashboards"
GENERATED = DASHBOARDS / "generated"
SCHEMAS = ROOT.parent / "shared" / "grafana"

#: Grafana's own variables that panels may use besides the dashboard's variables.
GRAFANA_MACROS = {"__rate_interval", "__interval", "__range"}


def build_module() -> ModuleType:
    """``dashboards.build`` (``dashboards`` is a folder of the repository, not an installed package)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("dashboards.build")


def boards() -> dict[str, dict[str, Any]]:
    """The committed dashboards, by file name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(GENERATED.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The panels of a dashboard, rows' own panels included (rows themselves left out)."""
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield panel, target


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((DASHBOARDS / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


# ------------------------------------------------------------------------------------ generation


def test_committed_dashboards_are_what_the_code_builds() -> None:
    built = build_module().rendered()
    committed = {path.name: path.read_text() for path in GENERATED.glob("*.json")}
    assert set(built) == set(committed) == {"overview.json", "tool.json"}
    for name, text in built.items():
        assert text == committed[name], f"dashboards/generated/{name} is stale: run python -m dashboards.build"


# --------------------------------------------------------------------------------------- schemas


def schema_validator(file: str, definition: str | None = None) -> Any:
    """A validator for ``file`` of Grafana's schemas (or one of its definitions); skips without them."""
    if not SCHEMAS.is_dir():
        pytest.skip(f"Grafana's JSON schemas are not at {SCHEMAS} (the shared/ folder beside the repository)")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((SCHEMAS / file).read_text())
    if definition is not None:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    return jsonschema.Draft7Validator(schema)


def errors_of(validator: Any, instance: Any) -> list[str]:
    return [f"{error.json_path}: {error.message[:300]}" for error in validator.iter_errors(instance)]


@pytest.mark.parametrize("name", ["overview.json", "tool.json"])
def test_dashboard_validates_against_grafana_schema(name: str) -> None:
    board = boards()[name]
    # The SDK builds the classic dashboard model (panels, templating, schemaVersion), which is what
    # dashboard.jsonschema.json describes; dashboardv2.jsonschema.json is the v2 resource (elements,
    # layout) and must not accept it.
    assert {"panels", "templating", "schemaVersion"} <= set(board)
    assert "elements" not in board
    assert errors_of(schema_validator("dashboard.jsonschema.json"), board) == []
    assert not schema_validator("dashboardv2.jsonschema.json", "Dashboard").is_valid(board)


@pytest.mark.parametrize("name", ["overview.json", "tool.json"])
def test_panels_validate_against_panel_and_query_schemas(name: str) -> None:
    """Time series panels against the time series schema (options, custom field config), every query
    against the Prometheus query schema. State timelines have no schema here: the dashboard schema's
    Panel definition (checked above) is all that covers them."""
    options = schema_validator("timeseries.jsonschema.json", "Options")
    field_config = schema_validator("timeseries.jsonschema.json", "FieldConfig")
    query = schema_validator("prometheus.jsonschema.json")
    board = boards()[name]
    assert {panel["type"] for panel in panels(board)} == {"timeseries", "state-timeline"}
    for panel in panels(board):
        where = f"{name} panel {panel['title']!r}"
        if panel["type"] == "timeseries":
            assert errors_of(options, panel["options"]) == [], where
            assert errors_of(field_config, panel["fieldConfig"]["defaults"].get("custom", {})) == [], where
        for target in panel["targets"]:
            assert errors_of(query, target) == [], where


# ------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("name", ["overview.json", "tool.json"])
def test_panels_use_the_datasource_variable_and_declared_variables(name: str) -> None:
    board = boards()[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"agent", "tool"} <= set(variables)
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel, target in targets(board):
        where = f"{name} panel {panel['title']!r}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert target["refId"], where
        assert target["expr"], where
        used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
        assert used <= set(variables) | GRAFANA_MACROS, f"{where} uses undeclared variables {used}"
        # rates and increases read over Grafana's $__rate_interval (at least four scrape intervals)
        for window in re.findall(r"\[([^\]]*)\]", target["expr"]):
            assert window == "$__rate_interval", f"{where}: range [{window}]"
    for variable in variables.values():
        if variable["type"] == "query":
            assert re.fullmatch(r"label_values\(tracedagent_\w+(\{.*\})?, \w+\)", variable["query"])


def test_overview_has_the_panels_operators_asked_for() -> None:
    titles = [panel["title"] for panel in panels(boards()["overview.json"])]
    assert titles == [
        "Runs per second by status",
        "Run duration",
        "Active runs",
        "Interrupts and resumes",
        "Output validation failures",
        "Handoffs between agents",
        "Model calls per second",
        "Model call latency",
        "Time to first token",
        "Tokens per second",
        "Cost per hour by agent and model",
        "Cost per model call",
        "Tool calls per second",
        "Tool latency p95",
        "Tool error ratio",
        "Refusals by reason",
        "Breaker state",
        "In flight and queued",
        "Retries",
        "Compactions",
        "Tokens removed by compaction",
        "Plugin errors",
        "Export queue depth",
        "Export drops",
    ]
    variables = [v["name"] for v in boards()["overview.json"]["templating"]["list"]]
    assert variables == ["datasource", "agent", "model", "tool", "cost_threshold"]


def test_the_cost_threshold_variable_is_the_cost_alerts_threshold() -> None:
    (variable,) = [v for v in boards()["overview.json"]["templating"]["list"] if v["name"] == "cost_threshold"]
    (rule,) = [r for r in alert_rules() if r["alert"] == "TracedAgentCostRateHigh"]
    threshold = re.fullmatch(r"(?s).*\* 3600 > (\d+(?:\.\d+)?)\s*", rule["expr"])
    assert threshold, rule["expr"]
    assert variable["type"] == "textbox"
    assert variable["query"] == variable["current"]["value"] == threshold[1]
    assert f"threshold {threshold[1]} USD/h" in rule["annotations"]["description"]


# ----------------------------------------------------------------------------------- metric names

METRIC = re.compile(r"\btracedagent_\w+")
#: A query that draws a dashboard variable as a line (the cost panel's threshold), the one kind of
#: query that names no metric.
THRESHOLD_LINE = re.compile(r"vector\(\$\w+\)")


def exposed_samples() -> dict[str, str]:
    """Every sample name the Prometheus plugin exposes, with its metric's kind, read from a registry."""
    from prometheus_client import CollectorRegistry

    from tracedagent_prometheus import PrometheusTracer

    registry = CollectorRegistry()
    PrometheusTracer(registry=registry)
    samples: dict[str, str] = {}
    for family in registry.collect():
        if family.type == "counter":
            samples[family.name + "_total"] = "counter"
        elif family.type == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                samples[family.name + suffix] = "histogram"
        else:
            samples[family.name] = family.type
    return samples


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard query, variable query and alert rule."""
    found = []
    for name, board in boards().items():
        found += [(f"{name} {panel['title']!r}", target["expr"]) for panel, target in targets(board)]
        found += [(f"{name} ${v['name']}", v["query"]) for v in board["templating"]["list"] if v["type"] == "query"]
    found += [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return found


def test_every_metric_named_exists_in_the_prometheus_plugin() -> None:
    from tracedagent_prometheus._names import ALL

    samples = exposed_samples()
    bases = {re.sub(r"_(bucket|count|sum)$", "", s) if kind == "histogram" else s for s, kind in samples.items()}
    assert bases == set(ALL), "the registry and _names.ALL disagree"
    used: set[str] = set()
    for where, expr in expressions():
        if THRESHOLD_LINE.fullmatch(expr):
            continue
        names = METRIC.findall(expr)
        assert names, f"{where} names no tracedagent metric"
        for name in names:
            assert name in samples, f"{where}: {name} is not a metric of tracedagent-prometheus"
        # rate() and increase() only over counters (histogram buckets are counters); quantiles over buckets
        for name in re.findall(r"\b(?:rate|increase)\((tracedagent_\w+)", expr):
            assert samples[name] in ("counter", "histogram"), f"{where}: rate of the gauge {name}"
        if "histogram_quantile" in expr:
            assert all(name.endswith("_bucket") for name in names), f"{where}: a quantile of {names}"
        used.update(names)
    # and the overview shows every metric the plugin has
    overview = {n for _, t in targets(boards()["overview.json"]) for n in METRIC.findall(t["expr"])}
    missing = {m for m in ALL if not any(n == m or n.startswith(m + "_") for n in overview)}
    assert not missing, f"metrics no overview panel shows: {missing}"


# -------------------------------------------------------------------------------------- promtool


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed: apt-get install -y prometheus (it brings promtool; CI installs it)")
    return path


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"], cwd=DASHBOARDS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"], cwd=DASHBOARDS, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_readme_scrape_config_is_valid(tmp_path: Path) -> None:
    """The prometheus.yml of dashboards/README.md, with its rule file pointing at alerts.yml."""
    readme = (DASHBOARDS / "README.md").read_text()
    block = re.search(r"`prometheus.yml`:\n\n```yaml\n(.*?)```", readme, re.DOTALL)
    assert block, "dashboards/README.md lost its prometheus.yml example"
    config = yaml.safe_load(block[1])
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    config["rule_files"] = [str(DASHBOARDS / "alerts.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [promtool(), "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_firing_test_case() -> None:
    tests = yaml.safe_load((DASHBOARDS / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts == fired
    assert alerts == {
        "TracedAgentToolErrorRatioHigh",
        "TracedAgentCircuitOpen",
        "TracedAgentExportDropping",
        "TracedAgentPluginErrors",
        "TracedAgentModelLatencyHigh",
        "TracedAgentCostRateHigh",
    }


# ---------------------------------------------------------------------- a real Prometheus, the demo

#: The demo's names (tracedagent demo: the trip desk agent on its scripted model).
DEMO_AGENT, DEMO_PROVIDER, DEMO_MODEL = "trip-desk", "scripted", "trip-desk-scripted"
DEMO_TOOLS = ("book_seat", "exchange_rate", "fare_quote", "flight_status", "get_weather", "seat_map")
#: The demo's handoff (its flight change scene): from the trip desk to the rebooking agent.
DEMO_HANDOFF = (DEMO_AGENT, "rebooking")

# A plugin loaded into the demo by module path (TRACEDAGENT_PLUGINS). The demo's scenario takes a tenth of
# a second, faster than any scrape, and rate() needs a counter to move between two scrapes. So the probe
# (1) creates the demo's series at 0 when it loads (as Prometheus advises for known label sets), and
# (2) holds the first model call until the test says go, after Prometheus has scraped those zeros;
# it also (3) raises in on_run_start, so tracedagent_plugin_errors_total appears, and (4) feeds a sink
# with a tiny queue that nothing drains until the demo flushes, so tracedagent_export_dropped_total and
# tracedagent_traces_shed_total grow.
PROBE = textwrap.dedent(
    f'''
    """Dashboards test probe: zeroed series, a pause, a failing hook and a sink that drops."""
    import os
    import time

    import tracedagent
    from tracedagent_prometheus import PrometheusTracer

    AGENT, PROVIDER, MODEL = {DEMO_AGENT!r}, {DEMO_PROVIDER!r}, {DEMO_MODEL!r}
    TOOLS = {DEMO_TOOLS!r}
    HANDOFF = {DEMO_HANDOFF!r}

    m = PrometheusTracer().metrics  # the default registry's metrics, shared with the plugin's tracer
    for status in ("completed", "interrupted"):
        m.runs_total.labels(AGENT, status)
    m.run_duration.labels(AGENT)
    m.model_calls_total.labels(AGENT, PROVIDER, MODEL, "ok")
    m.model_call_duration.labels(AGENT, PROVIDER, MODEL)
    m.model_ttft.labels(AGENT, PROVIDER, MODEL)
    for kind in ("input", "output"):
        m.tokens_total.labels(AGENT, PROVIDER, MODEL, kind)
    m.cost_usd_total.labels(AGENT, PROVIDER, MODEL)  # the demo's model is priced (as gpt-4o-mini)
    for tool in TOOLS:
        m.tool_call_duration.labels(AGENT, tool)
        for status in ("ok", "error", "rejected", "circuit_open"):
            m.tool_calls_total.labels(AGENT, tool, status)
        for reason in ("queue_full", "circuit_open"):
            m.tool_rejections_total.labels(tool, reason)
        m.retries_total.labels(tool, "tool")
    m.interrupts_total.labels(AGENT)
    m.resumes_total.labels(AGENT)
    m.compactions_total.labels(AGENT, "summarize")
    m.compaction_tokens_removed_total.labels(AGENT)
    m.output_validation_failures_total.labels(AGENT)
    m.handoffs_total.labels(*HANDOFF)

    sink = tracedagent.ExportPipeline("probe", lambda batch: None, max_queue=3, max_batch=10_000, interval_s=3600)
    paused = False


    @tracedagent.hookimpl
    def on_run_start(event):
        sink.put_event(event)  # by whole traces: past the first run the sink is full and sheds them
        raise RuntimeError("the dashboards probe fails here on purpose")


    @tracedagent.hookimpl
    def on_model_call_start(event):
        global paused
        sink.put_event(event)
        if not paused:
            paused = True
            deadline = time.monotonic() + 60
            while not os.path.exists(os.environ["DASHBOARD_PROBE_GO"]) and time.monotonic() < deadline:
                time.sleep(0.02)
    '''
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except httpx.TransportError:  # the server is not up yet
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=5.0)

    def get(self, path: str, **params: Any) -> Any:
        body = self.http.get(path, params=params).raise_for_status().json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> list[float]:
        return [float(sample["value"][1]) for sample in self.query(expr)]

    def label_values(self, label: str, selector: str) -> list[str]:
        found: list[str] = self.get(f"/api/v1/label/{label}/values", **{"match[]": selector})
        return found


def substitute(text: str, values: dict[str, str]) -> str:
    """Grafana's macros and the dashboard's variables, as Grafana would fill them."""
    text = text.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$__range", "1m")
    return re.sub(r"\$\{?(\w+)(?::\w+)?\}?", lambda m: values.get(m[1], m[0]), text)


def variable_values(api: PrometheusAPI, board: dict[str, Any]) -> dict[str, str]:
    """Each query variable's options, from Prometheus (as Grafana lists them), as a regex of them all."""
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "textbox":  # a value the viewer types: its default
            values[variable["name"]] = variable["current"]["value"]
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"])
        assert match, variable["query"]
        options = api.label_values(match[2], substitute(match[1], values))
        expected = {"agent": {DEMO_AGENT}, "model": {DEMO_MODEL}, "tool": set(DEMO_TOOLS)}[variable["name"]]
        assert expected <= set(options), f"${variable['name']} lists {options}"
        values[variable["name"]] = "(" + "|".join(options) + ")"
    return values


def check_has_data(api: PrometheusAPI, where: str, expr: str) -> None:
    """The query returns series; a rate moved (> 0); a quantile is a number (not NaN)."""
    values = api.values(expr)
    assert values, f"{where}: no data for\n{expr}"
    if "histogram_quantile" in expr:
        assert any(math.isfinite(v) for v in values), f"{where}: only NaN for\n{expr}"
    elif "rate(" in expr:
        assert any(v > 0 for v in values), f"{where}: the rate stayed 0 for\n{expr}"


@pytest.mark.integration
def test_every_panel_has_data_from_a_real_prometheus_scraping_the_demo(tmp_path: Path) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed: apt-get install -y prometheus (CI installs it)")
    pytest.importorskip("tracedagent_prometheus")
    metrics_port, web_port = free_port(), free_port()
    (tmp_path / "dashboard_probe.py").write_text(PROBE)
    go = tmp_path / "go"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DASHBOARDS / "alerts.yml")],
        "scrape_configs": [{"job_name": "tracedagent", "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    demo_out, prom_log = tmp_path / "demo.out", tmp_path / "prometheus.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_PLUGINS": "prometheus,dashboard_probe",
        "TRACEDAGENT_METRICS_ADDR": f"127.0.0.1:{metrics_port}",
        "DASHBOARD_PROBE_GO": str(go),
    }
    with demo_out.open("w") as out, prom_log.open("w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tracedagent", "demo", "--quiet", "--linger", "120"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web_port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = PrometheusAPI(f"http://127.0.0.1:{web_port}")
    try:
        try:
            check_dashboards_and_alerts(api, go, demo_out)
        except BaseException:
            print("--- demo output ---\n" + demo_out.read_text() + "\n--- prometheus log ---\n" + prom_log.read_text())
            raise
    finally:
        for proc in (demo, server):
            proc.terminate()
        for proc in (demo, server):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        api.http.close()


def check_dashboards_and_alerts(api: PrometheusAPI, go: Path, demo_out: Path) -> None:
    wait_for(lambda: api.http.get("/-/ready").status_code == 200, "Prometheus to be ready")
    # 1. The demo is held at its first model call: Prometheus scrapes every series at 0 (the probe's
    #    plugin error is already counted, which tells the scrape came after the pause began).
    wait_for(lambda: api.values("sum(tracedagent_plugin_errors_total)"), "a scrape of the paused demo")
    assert api.values("sum(tracedagent_tool_calls_total)") == [0.0]
    # 2. The scenario runs, then lingers; wait for a scrape that started after it ended.
    go.touch()
    wait_for(lambda: "lingering" in demo_out.read_text(), "the demo's scenario to end")
    ended = time.time()
    # (timestamp() of the selector itself: of an expression it would be the query's time)
    wait_for(lambda: any(v > ended for v in api.values('timestamp(up{job="tracedagent"})')), "a later scrape")
    assert api.values('up{job="tracedagent"}') == [1.0]
    # 3. Every query of every panel returns data, its variables filled as Grafana would fill them.
    checked = 0
    for name, board in boards().items():
        values = variable_values(api, board)
        for panel, target in targets(board):
            check_has_data(api, f"{name} {panel['title']!r} {target['refId']}", substitute(target["expr"], values))
            checked += 1
    assert checked >= 30
    # 4. The alert rules evaluate without error on the demo's metrics, and those it trips are active:
    #    tool failures (flight TA404, the seat map outage) wait out their `for`; the probe's plugin
    #    errors and its sink's drops fire at once. Breakers and model latency stay quiet.
    expected = {
        ("TracedAgentToolErrorRatioHigh", "flight_status"): "pending",
        ("TracedAgentToolErrorRatioHigh", "seat_map"): "pending",
        ("TracedAgentPluginErrors", "dashboard_probe"): "firing",
        ("TracedAgentExportDropping", "probe"): "firing",
    }
    active: dict[tuple[str, str], str] = {}

    def tripped() -> bool:
        active.clear()
        for alert in api.get("/api/v1/alerts")["alerts"]:
            labels = alert["labels"]
            subject = labels.get("tool") or labels.get("sink") or labels.get("plugin", "")
            active[labels["alertname"], subject] = alert["state"]
        return active == expected

    wait_for(tripped, f"the alerts {expected} (active: {active})", timeout=10)
    rules = [rule for group in api.get("/api/v1/rules")["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in rules} == {rule["alert"] for rule in alert_rules()}
    assert all(rule["health"] == "ok" for rule in rules), [(r["name"], r.get("lastError")) for r in rules]
