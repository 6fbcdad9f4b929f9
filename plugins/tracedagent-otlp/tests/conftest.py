"""Plugin tests see only the plugins they register, no OTEL_* setting from the shell, and the
OpenTelemetry globals as they were (a test that sets a global provider gets it reset afterwards)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Installed plugins must not load into these tests on their own (the root tests/conftest.py does not
# apply to this folder).
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS"):
    os.environ.pop(_name, None)

from opentelemetry import metrics as metrics_api  # noqa: E402
from opentelemetry import trace as trace_api  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.util._once import Once  # noqa: E402
from otlp_support import MakeTracer  # noqa: E402

from tracedagent import use_otel_spans  # noqa: E402
from tracedagent_otlp import OtlpTracer  # noqa: E402

SETTINGS = (
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_METRICS_EXPORTER",
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "TRACEDAGENT_OTLP_MAX_CONTENT",
)


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


def _reset_otel_globals() -> None:
    # What opentelemetry-test-utils' reset_trace_globals / reset_metrics_globals do.
    trace_api._TRACER_PROVIDER_SET_ONCE = Once()
    trace_api._TRACER_PROVIDER = None
    trace_api._PROXY_TRACER_PROVIDER = trace_api.ProxyTracerProvider()
    metrics_api._internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_api._internal._METER_PROVIDER = None
    metrics_api._internal._PROXY_METER_PROVIDER = metrics_api._internal._ProxyMeterProvider()


@pytest.fixture(autouse=True)
def _otel_globals_restored() -> Iterator[None]:
    _reset_otel_globals()
    yield
    _reset_otel_globals()
    # A tracer left running by a test (through an application's provider) starts no span in the next one.
    use_otel_spans(None)


@pytest.fixture
def app_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    """An application's SDK tracer provider, set globally, exporting to memory as spans end."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_api.set_tracer_provider(provider)
    return provider, exporter


@pytest.fixture
def make_tracer() -> Iterator[MakeTracer]:
    """Build OtlpTracers exporting to an in-memory exporter; each is shut down afterwards."""
    tracers: list[OtlpTracer] = []

    def make(**kwargs: Any) -> tuple[OtlpTracer, InMemorySpanExporter]:
        exporter = kwargs.pop("span_exporter", None) or InMemorySpanExporter()
        kwargs.setdefault("interval_s", 0.05)
        tracer = OtlpTracer(span_exporter=exporter, **kwargs)
        tracers.append(tracer)
        return tracer, exporter

    yield make
    for tracer in tracers:
        tracer.shutdown(5.0)
