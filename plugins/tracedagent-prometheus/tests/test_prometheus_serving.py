"""Serving the metrics: TRACEDAGENT_METRICS_ADDR and the plugin's configure hook, serve(), the WSGI and
ASGI apps, and prometheus-client's multiprocess mode."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.request
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import unique

import tracedagent
import tracedagent_prometheus
from tracedagent import Agent, ConfigurationError, _plugins
from tracedagent.testing import ScriptedModel
from tracedagent_prometheus import (
    ENV_ADDR,
    PrometheusTracer,
    asgi_app,
    exposition_registry,
    parse_addr,
    serve,
    tracedagent_configure,
    wsgi_app,
)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode())


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


# ------------------------------------------------------------------------------------- parse_addr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        (":9464", ("127.0.0.1", 9464)),
        ("9464", ("127.0.0.1", 9464)),
        (" 9100 ", ("127.0.0.1", 9100)),
        ("1", ("127.0.0.1", 9464)),
        ("true", ("127.0.0.1", 9464)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("localhost:8000", ("localhost", 8000)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("metrics-host.internal:9464", ("metrics-host.internal", 9464)),
    ],
)
def test_parse_addr(text, expected):
    assert parse_addr(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "is not host:port"),
        ("host:", "is not host:port"),
        ("127.0.0.1:http", "is not host:port"),
        ("127.0.0.1:65536", "between 0 and 65535"),
        ("-1", "between 0 and 65535"),
        ("[::1]9464", "IPv6"),
        ("[::1", "IPv6"),
        ("bad host!:9464", "is not a host name or address"),
    ],
)
def test_parse_addr_refuses_bad_values(text, says):
    with pytest.raises(ConfigurationError, match=says) as caught:
        parse_addr(text)
    assert ENV_ADDR in str(caught.value)


# ----------------------------------------------------------------------------------------- serve()


@pytest.mark.usefixtures("stop_servers")
async def test_serve_on_a_free_port_serves_the_registry(registry, prom):
    host, port = serve("127.0.0.1:0", registry)
    assert host == "127.0.0.1"
    assert port > 0
    await Agent("served", ScriptedModel(["hi"]), plugins=[prom]).run("hello")
    text = scrape(f"http://{host}:{port}/metrics")
    assert samples(text, "tracedagent_runs_total") == {(("agent", "served"), ("status", "completed")): 1.0}


@pytest.mark.usefixtures("stop_servers")
def test_serve_on_a_busy_port_says_so(registry):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"cannot serve /metrics on 127.0.0.1:{port}.*{ENV_ADDR}"):
            serve(f"127.0.0.1:{port}", registry)


# ------------------------------------------------------------------------------- the configure hook


class FakeContext:
    """What tracedagent hands to ``tracedagent_configure``."""

    def __init__(self, **environ: str) -> None:
        self.environ = environ
        self.registered: list[tuple[object, str | None]] = []

    def register(self, plugin: object, name: str | None = None) -> None:
        self.registered.append((plugin, name))


@pytest.mark.parametrize("off", ["0", "false", "no", "OFF", " off "])
def test_configure_can_be_turned_off(off):
    context = FakeContext(TRACEDAGENT_METRICS=off, TRACEDAGENT_METRICS_ADDR="127.0.0.1:0")
    assert tracedagent_configure(context) == "inactive: TRACEDAGENT_METRICS is off"
    assert context.registered == []


def test_configure_keeps_metrics_in_the_default_registry():
    context = FakeContext()
    status = tracedagent_configure(context)
    assert status.startswith("active: metrics in the default registry")
    assert ENV_ADDR in status
    [(tracer, name)] = context.registered
    assert isinstance(tracer, PrometheusTracer)
    assert name == "prometheus-tracer"
    assert tracer.registry is REGISTRY


@pytest.mark.usefixtures("stop_servers")
def test_configure_serves_metrics_at_the_address():
    context = FakeContext(TRACEDAGENT_METRICS_ADDR="127.0.0.1:0")
    status = tracedagent_configure(context)
    prefix = "active: /metrics on http://127.0.0.1:"
    assert status.startswith(prefix)
    assert status.endswith("/metrics")
    assert len(context.registered) == 1
    assert "# TYPE tracedagent_runs_total counter" in scrape(status.removeprefix("active: /metrics on "))


def test_configure_refuses_a_bad_address():
    with pytest.raises(ConfigurationError, match="not host:port"):
        tracedagent_configure(FakeContext(TRACEDAGENT_METRICS_ADDR="where?"))


@pytest.mark.usefixtures("stop_servers")
async def test_plugin_registered_process_wide_serves_every_agent(monkeypatch):
    """``tracedagent.register(tracedagent_prometheus)`` runs the configure hook like loading it does."""
    monkeypatch.setattr(_plugins, "_registry", _plugins._Registry())  # a fresh process-wide registry
    monkeypatch.setenv(ENV_ADDR, "127.0.0.1:0")
    tracedagent.register(tracedagent_prometheus, "metrics")
    plugins = {info.name: info for info in tracedagent.list_plugins()}
    assert plugins["prometheus-tracer"].source == "registered by metrics"
    status = plugins["metrics"].status
    assert status.startswith("active: /metrics on http://127.0.0.1:")

    agent_name = unique("process-wide")
    await Agent(agent_name, ScriptedModel(["hi"])).run("hello")  # no plugin of its own
    text = scrape(status.removeprefix("active: /metrics on "))
    assert samples(text, "tracedagent_runs_total")[(("agent", agent_name), ("status", "completed"))] == 1


def test_the_entry_point_loads_and_reports_its_status(tmp_path):
    env = {
        **os.environ,
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_PLUGINS": "prometheus",
        "TRACEDAGENT_METRICS": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tracedagent", "plugins"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "prometheus\n  from:   entry point prometheus = tracedagent_prometheus" in proc.stdout
    assert "status: inactive: TRACEDAGENT_METRICS is off" in proc.stdout


# ------------------------------------------------------------------------------ WSGI and ASGI apps


async def test_wsgi_app_serves_the_exposition(registry, prom):
    await Agent("wsgi-agent", ScriptedModel(["hi"]), plugins=[prom]).run("hello")
    app = wsgi_app(registry)
    environ: dict[str, Any] = {"PATH_INFO": "/metrics"}
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, headers, *_: started.append((status, headers))))
    [(status, headers)] = started
    assert status.startswith("200")
    assert dict(headers)["Content-Type"].startswith("text/plain")
    runs = samples(body.decode(), "tracedagent_runs_total")
    assert runs == {(("agent", "wsgi-agent"), ("status", "completed")): 1.0}


async def test_asgi_app_serves_the_exposition(registry, prom):
    await Agent("asgi-agent", ScriptedModel(["hi"]), plugins=[prom]).run("hello")
    transport = httpx.ASGITransport(app=asgi_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    runs = samples(response.text, "tracedagent_runs_total")
    assert runs == {(("agent", "asgi-agent"), ("status", "completed")): 1.0}


def test_without_multiprocess_mode_the_registry_is_exposed_as_it_is(registry):
    assert exposition_registry(registry) is registry
    assert exposition_registry() is REGISTRY


# ---------------------------------------------------------------------------------- multiprocess

WORKER = textwrap.dedent(
    """
    import json, os, sys
    from tracedagent import Agent, Tool, Usage
    from tracedagent.testing import ScriptedModel, Step
    from tracedagent_prometheus import PrometheusTracer

    runs = int(sys.argv[1])

    async def ping() -> str:
        return "pong"

    steps = [Step(tool_calls=[("ping", {})], usage=Usage(10, 2)), Step(text="done", usage=Usage(5, 1))]
    agent = Agent(
        "worker",
        ScriptedModel(steps, per_run=True),
        tools=[Tool(ping, name="ping")],
        plugins=[PrometheusTracer()],
    )
    for _ in range(runs):
        assert agent.run_sync("go").status == "completed"
    print(json.dumps({"pid": os.getpid()}))
    """
)


def test_multiprocess_mode_merges_every_worker(tmp_path, monkeypatch):
    """Two worker processes keep metrics in PROMETHEUS_MULTIPROC_DIR; the exposition sums them."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    workers = [
        subprocess.Popen([sys.executable, str(script), str(n)], env=env, stdout=subprocess.PIPE, text=True)
        for n in (2, 3)
    ]
    pids = set()
    for worker in workers:
        out, _ = worker.communicate(timeout=60)
        assert worker.returncode == 0
        pids.add(json.loads(out)["pid"])
    assert len(pids) == 2
    assert {p.name for p in multiproc.glob("counter_*.db")} == {f"counter_{pid}.db" for pid in pids}

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc))
    merged = exposition_registry(CollectorRegistry())

    def read(name: str, **labels: str) -> float | None:
        return merged.get_sample_value(name, labels)

    assert read("tracedagent_runs_total", agent="worker", status="completed") == 5
    assert read("tracedagent_run_duration_seconds_count", agent="worker") == 5
    assert read("tracedagent_runs_active", agent="worker") == 0
    assert read("tracedagent_tool_calls_total", agent="worker", tool="ping", status="ok") == 5
    model = {"agent": "worker", "provider": "scripted", "model": "scripted"}
    assert read("tracedagent_model_calls_total", **model, status="ok") == 10
    assert read("tracedagent_tokens_total", **model, type="input") == 75
    assert read("tracedagent_tokens_total", **model, type="output") == 15
    # served the same way: the WSGI app merges the files too
    environ: dict[str, Any] = {"PATH_INFO": "/metrics"}
    setup_testing_defaults(environ)
    body = b"".join(wsgi_app()(environ, lambda *_: None)).decode()
    assert samples(body, "tracedagent_runs_total") == {(("agent", "worker"), ("status", "completed")): 5.0}
