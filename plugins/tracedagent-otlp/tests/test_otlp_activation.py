"""When the plugin switches itself on (tracedagent_configure) and where it sends spans."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tracedagent_otlp
from tracedagent import ConfigurationError
from tracedagent_otlp import OtlpTracer
from tracedagent_otlp._http import OtlpHttpSender


class StubContext:
    """What tracedagent_configure is given: the environment and a way to register."""

    def __init__(self) -> None:
        self.environ = os.environ
        self.registered: list[tuple[Any, str | None]] = []

    def register(self, plugin: object, name: str | None = None) -> None:
        self.registered.append((plugin, name))


@pytest.fixture
def context() -> Any:
    ctx = StubContext()
    yield ctx
    for plugin, _ in ctx.registered:
        plugin.shutdown(2.0)


def test_inactive_without_an_endpoint_or_a_tracer_provider(context: Any) -> None:
    status = tracedagent_otlp.tracedagent_configure(context)
    assert status.startswith("inactive: set OTEL_EXPORTER_OTLP_ENDPOINT")
    assert context.registered == []


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_active_with_an_endpoint(context: Any, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:4318" + ("/v1/traces" if "TRACES" in variable else ""))
    status = tracedagent_otlp.tracedagent_configure(context)
    assert status.startswith("active: spans to OTLP http/protobuf to http://127.0.0.1:4318/v1/traces")
    assert "no message content" in status
    ((tracer, name),) = context.registered
    assert isinstance(tracer, OtlpTracer)
    assert name == "otlp-tracer"
    assert isinstance(tracer._exporter, OtlpHttpSender)  # its own send path, not the SDK's exporter


def test_active_with_the_application_tracer_provider(context: Any) -> None:
    trace_api.set_tracer_provider(TracerProvider(shutdown_on_exit=False))
    status = tracedagent_otlp.tracedagent_configure(context)
    assert status.startswith("active: spans to the application's tracer provider")


def test_otel_sdk_disabled_turns_it_off(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracedagent_otlp.tracedagent_configure(context) == "inactive: OTEL_SDK_DISABLED is true"
    assert context.registered == []


def test_otel_traces_exporter_none_turns_it_off(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert tracedagent_otlp.tracedagent_configure(context) == "inactive: OTEL_TRACES_EXPORTER is none"
    assert context.registered == []


def test_a_tracer_built_while_disabled_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    exporter = InMemorySpanExporter()
    tracer = OtlpTracer(span_exporter=exporter)
    from tracedagent import Agent
    from tracedagent.testing import ScriptedModel

    Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run_sync("go")
    assert tracer.flush(5.0)
    assert exporter.get_finished_spans() == ()
    assert tracer.stats().exported == 0


def test_grpc_protocol_uses_the_grpc_exporter(context: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    grpc = pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    status = tracedagent_otlp.tracedagent_configure(context)
    assert status.startswith("active: spans to OTLP grpc to http://127.0.0.1:4317")
    ((tracer, _),) = context.registered
    assert isinstance(tracer._exporter, grpc.OTLPSpanExporter)


def test_an_unsupported_protocol_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    with pytest.raises(ConfigurationError, match="http/protobuf"):
        OtlpTracer()


def test_span_exporter_and_tracer_provider_are_exclusive() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        OtlpTracer(span_exporter=InMemorySpanExporter(), tracer_provider=TracerProvider(shutdown_on_exit=False))


def test_the_service_name_and_resource_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "trip-desk")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    tracer = OtlpTracer(span_exporter=InMemorySpanExporter())
    try:
        assert tracer.tracer_provider is not None
        resource = tracer.tracer_provider.resource.attributes
        assert resource["service.name"] == "trip-desk"
        assert resource["deployment.environment"] == "test"
    finally:
        tracer.shutdown(2.0)


def test_the_plugin_loads_from_its_entry_point_and_says_what_it_does(tmp_path: Any) -> None:
    env = {
        **os.environ,
        "TRACEDAGENT_PLUGINS": "otlp",
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
    }
    out = subprocess.run(
        [sys.executable, "-m", "tracedagent", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "otlp" in out
    assert "status: active: spans to OTLP http/protobuf to http://127.0.0.1:9/v1/traces" in out
    assert "message content included (max 8192 chars)" in out


def test_importing_the_plugin_does_not_import_the_sdk() -> None:
    code = "import sys, tracedagent_otlp; print(any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "False"
