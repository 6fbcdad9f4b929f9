"""The GenAI client metrics: token usage and operation duration, with the conventions' buckets."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from otlp_support import MakeTracer, answer

from tracedagent import Agent, ModelError, Usage
from tracedagent.testing import FunctionModel, ScriptedModel, Step
from tracedagent_otlp import names as N


def histograms(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], HistogramDataPoint]]]:
    data = reader.get_metrics_data()
    found: dict[str, list[tuple[dict[str, Any], HistogramDataPoint]]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert isinstance(point, HistogramDataPoint)
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), point))
    return found


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


async def test_token_usage_and_duration_per_model_call(make_tracer: MakeTracer, reader: InMemoryMetricReader) -> None:
    tracer, _ = make_tracer(meter_provider=MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    model = FunctionModel(
        lambda m, r: answer("hi", Usage(300, 20, requests=1), model="gpt-x-1"), name="gpt-x", provider="openai"
    )
    agent = Agent("a", model, plugins=[tracer])
    await agent.run("one")
    await agent.run("two")
    assert tracer.flush(5.0)
    found = histograms(reader)
    base = {
        N.GEN_AI_OPERATION_NAME: "chat",
        N.GEN_AI_PROVIDER_NAME: "openai",
        N.GEN_AI_REQUEST_MODEL: "gpt-x",
        N.GEN_AI_RESPONSE_MODEL: "gpt-x-1",
    }
    tokens = {a[N.GEN_AI_TOKEN_TYPE]: p for a, p in found[N.METRIC_TOKEN_USAGE]}
    assert {
        a[N.GEN_AI_TOKEN_TYPE]: {k: v for k, v in a.items() if k != N.GEN_AI_TOKEN_TYPE}
        for a, _ in found[N.METRIC_TOKEN_USAGE]
    } == {
        "input": base,
        "output": base,
    }
    assert (tokens["input"].count, tokens["input"].sum) == (2, 600)
    assert (tokens["output"].count, tokens["output"].sum) == (2, 40)
    assert tuple(tokens["input"].explicit_bounds) == N.TOKEN_USAGE_BUCKETS
    ((attributes, duration),) = found[N.METRIC_OPERATION_DURATION]
    assert attributes == base
    assert duration.count == 2
    assert tuple(duration.explicit_bounds) == N.OPERATION_DURATION_BUCKETS


async def test_a_failed_model_call_has_an_error_type_on_its_duration(
    make_tracer: MakeTracer, reader: InMemoryMetricReader
) -> None:
    tracer, _ = make_tracer(meter_provider=MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    with pytest.raises(ModelError):
        await Agent("a", ScriptedModel([Step(error=ModelError("no"))]), plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    ((attributes, point),) = histograms(reader)[N.METRIC_OPERATION_DURATION]
    assert attributes[N.ERROR_TYPE] == "ModelError"
    assert point.count == 1


async def test_the_application_meter_provider_is_used_when_set(
    make_tracer: MakeTracer, reader: InMemoryMetricReader
) -> None:
    metrics_api.set_meter_provider(MeterProvider(metric_readers=[reader], shutdown_on_exit=False))
    tracer, _ = make_tracer()
    assert tracer.metrics_destination == "the application's meter provider"
    await Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    assert set(histograms(reader)) == {N.METRIC_TOKEN_USAGE, N.METRIC_OPERATION_DURATION}


def test_no_meter_provider_and_no_otlp_metrics_exporter_means_no_metrics(make_tracer: MakeTracer) -> None:
    tracer, _ = make_tracer()
    assert tracer.metrics is None
    assert tracer.metrics_destination == "off"


def test_otel_metrics_exporter_otlp_builds_a_meter_provider(
    make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracer, _ = make_tracer()
    assert tracer.metrics is not None
    assert tracer.metrics_destination == "OTLP http/protobuf"


def test_metrics_can_be_turned_off(make_tracer: MakeTracer, reader: InMemoryMetricReader) -> None:
    tracer, _ = make_tracer(
        meter_provider=MeterProvider(metric_readers=[reader], shutdown_on_exit=False), metrics=False
    )
    assert tracer.metrics is None
