"""Where spans and metrics go: the application's OpenTelemetry providers, or ones built from ``OTEL_*``.

An application that set a tracer provider (``trace.set_tracer_provider``, or ``opentelemetry-instrument``)
gets tracedagent's spans through it: its sampler, span limits, resource and every span processor apply.
Otherwise the plugin builds an OTLP span exporter from the standard variables (endpoint, headers,
timeout, compression, certificates; ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` make the
resource): over HTTP/protobuf its own sender (:mod:`._http`), or the SDK's gRPC exporter with
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` and the ``grpc`` extra installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.metrics import MeterProvider as ApiMeterProvider
from opentelemetry.metrics import NoOpMeterProvider

from tracedagent import ConfigurationError

from . import _settings

# The SDK and the exporters are imported when a tracer is built, not when the plugin loads: an inactive
# plugin costs a process no more than the OpenTelemetry API.
if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "application_meter_provider",
    "application_tracer_provider",
    "foreign_tracer_provider",
    "meter_provider_from_env",
    "span_exporter_from_env",
]

_GRPC_HINT = "install the gRPC exporter with: pip install 'tracedagent-otlp[grpc]'"


def application_tracer_provider() -> TracerProvider | None:
    """The tracer provider the application set, if it is the OpenTelemetry SDK's (None when only the
    API's proxy or no-op default is there, or a provider of another SDK, whose spans the plugin cannot
    make: then it exports on its own, from ``OTEL_*``, and :func:`foreign_tracer_provider` says why)."""
    provider = trace_api.get_tracer_provider()
    if isinstance(provider, (trace_api.ProxyTracerProvider, trace_api.NoOpTracerProvider)):
        return None
    from opentelemetry.sdk.trace import TracerProvider

    return provider if isinstance(provider, TracerProvider) else None


def foreign_tracer_provider() -> str | None:
    """The type of the application's tracer provider when it is not the OpenTelemetry SDK's."""
    provider = trace_api.get_tracer_provider()
    if isinstance(provider, (trace_api.ProxyTracerProvider, trace_api.NoOpTracerProvider)):
        return None
    from opentelemetry.sdk.trace import TracerProvider

    return None if isinstance(provider, TracerProvider) else type(provider).__name__


def application_meter_provider() -> ApiMeterProvider | None:
    """The meter provider the application set (None for the API's proxy or no-op default)."""
    provider = metrics_api.get_meter_provider()
    if isinstance(provider, NoOpMeterProvider) or type(provider).__name__ == "_ProxyMeterProvider":
        return None
    return provider


def span_exporter_from_env(environ: Mapping[str, str]) -> SpanExporter:
    """An OTLP span exporter configured by the ``OTEL_EXPORTER_OTLP_*`` variables: over HTTP the plugin's
    own :class:`~._http.OtlpHttpSender` (its fast encoder, its retries, no log lines), over gRPC the
    SDK's exporter. Without a timeout variable its timeout is cut to ``TRACEDAGENT_EXIT_TIMEOUT``
    (:func:`_settings.export_timeout_from_env`)."""
    if _settings.protocol_from_env(environ) == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise ConfigurationError(f"OTLP over gRPC was asked for but is not installed; {_GRPC_HINT}") from exc
        return GrpcExporter(timeout=_settings.export_timeout_from_env(environ))
    from ._http import OtlpHttpSender

    return OtlpHttpSender.from_env(environ)


def _metric_exporter_from_env(environ: Mapping[str, str]) -> MetricExporter:
    if _settings.protocol_from_env(environ, "metrics") == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter
        except ImportError as exc:
            raise ConfigurationError(
                f"OTLP metrics over gRPC were asked for but are not installed; {_GRPC_HINT}"
            ) from exc
        return GrpcExporter(timeout=_settings.export_timeout_from_env(environ, "metrics"))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(timeout=_settings.export_timeout_from_env(environ, "metrics"))


def meter_provider_from_env(environ: Mapping[str, str], resource: Resource) -> MeterProvider | None:
    """A meter provider exporting over OTLP when ``OTEL_METRICS_EXPORTER`` names ``otlp``, else None.
    The reader's interval is ``OTEL_METRIC_EXPORT_INTERVAL`` (read by the SDK)."""
    if not _settings.metrics_from_env(environ):
        return None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    reader = PeriodicExportingMetricReader(_metric_exporter_from_env(environ))
    return MeterProvider(metric_readers=[reader], resource=resource, shutdown_on_exit=False)
