"""Safe by default: what a user gets without asking is closed, bounded and quiet.

* ``/metrics`` binds the loopback interface unless an address is named (``serve()`` with no host, and
  ``TRACEDAGENT_METRICS_ADDR=":port"``); installed, the Prometheus plugin opens no port at all until asked;
* label cardinality is bounded: a flood of distinct agent, tool, model and provider names stays within
  ``max_label_values`` distinct values per label, plus ``other``, in every metric (the live tool gauges
  included), and nothing is lost from the counts;
* no tool that touches the file system or a shell exists until asked for: importing tracedagent, its
  tools module and every installed plugin, and loading the plugins with every switch on, makes no tool and
  installs no approval policy; ``shell_tool`` refuses without ``enabled=True``;
* content capture is off in every tracer, and every queue, retry and timeout has a finite default.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import textwrap
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracedagent
from tracedagent import Agent, ConfigurationError, Tool, tool
from tracedagent.testing import ScriptedModel, Step

GUARD_S = 10.0
PLUGINS = ("tracedagent_stdout", "tracedagent_prometheus", "tracedagent_otlp", "tracedagent_langsmith")


# ============================================================================ /metrics on loopback


@pytest.fixture
def prometheus() -> Iterator[Any]:
    """The Prometheus plugin; every server a test starts is shut down afterwards."""
    module = pytest.importorskip("tracedagent_prometheus")
    from tracedagent_prometheus import _server

    before = len(_server._servers)
    yield module
    with _server._lock:
        started = _server._servers[before:]
        del _server._servers[before:]
    for server in started:
        server.shutdown()
        server.server_close()


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses that are not loopback (to prove nothing listens there)."""
    psutil = pytest.importorskip("psutil")
    found = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                found.append(address.address)
    return found


def listens(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=GUARD_S):
            return True
    except OSError:
        return False


def assert_loopback_only(host: str, port: int) -> None:
    assert ipaddress.ip_address(host).is_loopback
    assert listens("127.0.0.1", port)
    for address in other_addresses():
        assert not listens(address, port), f"/metrics answers on {address}:{port}"


@pytest.mark.parametrize("addr", [":0", "0", " :0 "])
def test_serve_without_a_host_binds_loopback(prometheus: Any, addr: str) -> None:
    from prometheus_client import CollectorRegistry

    host, port = prometheus.serve(addr, registry=CollectorRegistry())
    assert host == "127.0.0.1"
    assert_loopback_only(host, port)


def test_serve_from_the_environment_binds_loopback(prometheus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    monkeypatch.setenv("TRACEDAGENT_METRICS_ADDR", ":0")
    host, port = prometheus.serve(registry=CollectorRegistry())
    assert host == "127.0.0.1"
    assert_loopback_only(host, port)


def test_serve_with_nothing_at_all_means_loopback_9464(prometheus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client import CollectorRegistry

    monkeypatch.delenv("TRACEDAGENT_METRICS_ADDR", raising=False)
    try:
        host, port = prometheus.serve(registry=CollectorRegistry())
    except ConfigurationError as busy:  # another process holds the port: the address it tried says enough
        message = str(busy)
        assert "127.0.0.1:9464" in message
        return
    assert (host, port) == ("127.0.0.1", 9464)
    assert_loopback_only(host, port)


class Context:
    """What a plugin's ``tracedagent_configure`` receives."""

    def __init__(self, **environ: str) -> None:
        self.environ = environ

    def register(self, plugin: object, name: str | None = None) -> None:
        pass


def test_the_installed_plugin_opens_no_port_until_asked(prometheus: Any) -> None:
    before = len(prometheus._server._servers)
    status = prometheus.tracedagent_configure(Context())
    assert "TRACEDAGENT_METRICS_ADDR" in status  # says how to serve
    assert len(prometheus._server._servers) == before  # and serves nothing


def test_the_plugin_asked_with_a_port_only_binds_loopback(prometheus: Any) -> None:
    status = prometheus.tracedagent_configure(Context(TRACEDAGENT_METRICS_ADDR=":0"))
    assert status.startswith("active: /metrics on http://127.0.0.1:")
    port = int(status.rsplit(":", 1)[1].split("/")[0])
    assert_loopback_only("127.0.0.1", port)


def test_another_interface_only_when_named(prometheus: Any) -> None:
    from prometheus_client import CollectorRegistry

    host, port = prometheus.serve("0.0.0.0:0", registry=CollectorRegistry())
    assert host == "0.0.0.0"
    assert listens("127.0.0.1", port)


# ============================================================================= label cardinality


async def test_a_flood_of_names_stays_within_the_label_limit(prometheus: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    limit, flood = 20, 60
    registry = CollectorRegistry()
    tracer = prometheus.PrometheusTracer(registry, max_label_values=limit)
    tools: list[Tool] = []
    for i in range(flood):

        @tool(name=f"flood_tool_{i:03d}")
        async def flood_tool() -> str:
            return "ok"

        tools.append(flood_tool)
        model = ScriptedModel(
            [Step(tool_calls=[(flood_tool.name, {})]), "done"], name=f"model-{i:03d}", provider=f"provider-{i:03d}"
        )
        result = await Agent(f"agent-{i:03d}", model, tools=[flood_tool], plugins=[tracer]).run("go")
        assert result.status == "completed"

    values: dict[tuple[str, str], set[str]] = defaultdict(set)
    totals: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            for label in ("agent", "tool", "model", "provider"):
                if label in sample.labels:
                    values[(family.name, label)].add(sample.labels[label])
            if sample.name in ("tracedagent_runs_total", "tracedagent_tool_calls_total"):
                totals[sample.name] += sample.value

    assert ("tracedagent_tool_inflight", "tool") in values  # the live gauges are checked too
    for (family, label), seen in values.items():
        assert len(seen - {"other"}) <= limit, (family, label, len(seen))
    for family, label in (
        ("tracedagent_runs", "agent"),
        ("tracedagent_tool_calls", "tool"),
        ("tracedagent_model_calls", "model"),
        ("tracedagent_model_calls", "provider"),
        ("tracedagent_tool_inflight", "tool"),
    ):
        assert "other" in values[(family, label)], (family, label)
    # folded, not lost: every run and every tool call is still counted
    assert totals == {"tracedagent_runs_total": flood, "tracedagent_tool_calls_total": flood}
    assert len(tools) == flood  # the tools were alive (in tool_states()) when the exposition was read


# ==================================================================== no tool, no policy by default


def test_importing_and_loading_everything_enables_no_tool_and_no_approval_policy(tmp_path: Path) -> None:
    """In a clean process, with every installed plugin loading on its own and every one switched on."""
    script = textwrap.dedent(
        """
        import importlib, json
        import tracedagent, tracedagent.tools, tracedagent.models, tracedagent.resilience, tracedagent.testing
        from tracedagent import _plugins, _tools
        for name in PLUGINS_HERE:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        tracedagent.load_plugins()
        dispatcher = _plugins.get_dispatcher()
        print(json.dumps({
            "tools": sorted(t.name for t in _tools._all_tools),
            "deciders": [name for name, _, _ in dispatcher.approve_tool_call],
            "plugins": {p.name: p.status for p in tracedagent.list_plugins()},
        }))
        tracedagent.shutdown(2)
        """
    ).replace("PLUGINS_HERE", repr(PLUGINS))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRACEDAGENT_", "OTEL_", "LANGSMITH_", "LANGCHAIN_", "PROMETHEUS_"))
    }
    env.update(  # every plugin on, pointed at nothing
        {
            "TRACEDAGENT_STDOUT": "1",
            "TRACEDAGENT_METRICS_ADDR": "127.0.0.1:0",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "LANGSMITH_TRACING": "true",
            "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{port}",
            "TRACEDAGENT_EXIT_TIMEOUT": "1",
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tools"] == []
    assert report["deciders"] == []
    active = {name for name, status in report["plugins"].items() if status.startswith("active")}
    installed = {name.removeprefix("tracedagent_") for name in PLUGINS if _installed(name)}
    assert installed <= active, report["plugins"]  # the check ran with every installed plugin switched on


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_the_shell_and_writes_need_asking(tmp_path: Path) -> None:
    from tracedagent.tools import file_tools, shell_tool

    for enabled in (None, False, 1, "yes"):
        with pytest.raises(ConfigurationError, match="enabled=True"):
            shell_tool(tmp_path, enabled=enabled)  # type: ignore[arg-type]
    assert "write_file" not in {t.name for t in file_tools(tmp_path)}
    shell = shell_tool(tmp_path, enabled=True)
    assert shell.needs_approval is not False  # even enabled, every command waits for a person


# ================================================================ quiet and bounded unless asked


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("OTEL_", "LANGSMITH_", "LANGCHAIN_", "TRACEDAGENT_CAPTURE")):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("clean_env")
def test_content_capture_is_off_in_every_tracer() -> None:
    import io

    tracers: list[Any] = []
    stdout = pytest.importorskip("tracedagent_stdout")
    tracers.append(stdout.StdoutTracer(io.StringIO()))
    if _installed("tracedagent_otlp"):
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from tracedagent_otlp import OtlpTracer

        tracers.append(OtlpTracer(span_exporter=InMemorySpanExporter(), metrics=False))
    if _installed("tracedagent_langsmith"):
        from tracedagent_langsmith import LangSmithTracer

        class Client:
            def create_run(self, *args: Any, **kwargs: Any) -> None: ...
            def update_run(self, *args: Any, **kwargs: Any) -> None: ...
            def flush(self, timeout: float | None = None) -> None: ...

        tracers.append(LangSmithTracer(Client()))
    try:
        assert [(type(t).__name__, t.capture_content) for t in tracers] == [(type(t).__name__, False) for t in tracers]
    finally:
        for t in tracers:
            t.shutdown(GUARD_S)


@pytest.mark.usefixtures("clean_env")
def test_every_queue_retry_and_timeout_is_finite_by_default() -> None:
    import io
    import math

    from tracedagent.models import OpenAIChatModel

    model = OpenAIChatModel("m", base_url="http://127.0.0.1:1/v1")
    assert 0 < model.max_retries <= 10
    for value in (model.timeout.connect, model.timeout.read, model.timeout.pool, model.max_retry_after):
        assert value is not None
        assert math.isfinite(value)

    @tool
    def plain() -> str:
        return "ok"

    assert plain.breaker is not None  # every tool has a breaker...
    assert 0 < plain.bulkhead.max_queue < 10_000  # ...and a bounded queue
    assert 0 < Agent("a", ScriptedModel(["hi"])).max_turns <= 100

    stdout = pytest.importorskip("tracedagent_stdout")
    tracer = stdout.StdoutTracer(io.StringIO())
    try:
        assert 0 < tracer._pipeline.max_queue <= 100_000  # a dead sink holds a bounded number of events
    finally:
        tracer.shutdown(GUARD_S)
    assert tracedagent.ExportPipeline("bounded", lambda batch: None).max_queue <= 100_000
