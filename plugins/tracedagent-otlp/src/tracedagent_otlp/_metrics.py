"""The GenAI client metrics, recorded on the export worker from each model call's end event."""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider
from opentelemetry.util.types import Attributes

from tracedagent import ModelCallEnded

from . import _names as N

__all__ = ["GenAIMetrics"]


class GenAIMetrics:
    """``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` with the conventions'
    bucket boundaries (advised to the SDK; a view of the application's can still override them)."""

    def __init__(self, meter_provider: MeterProvider, version: str) -> None:
        meter = meter_provider.get_meter(N.SCOPE_NAME, version, schema_url=N.SCHEMA_URL)
        self.token_usage = meter.create_histogram(
            N.METRIC_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(N.TOKEN_USAGE_BUCKETS),
        )
        self.operation_duration = meter.create_histogram(
            N.METRIC_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(N.OPERATION_DURATION_BUCKETS),
        )

    def record(self, event: ModelCallEnded) -> None:
        attributes: dict[str, str] = {
            N.GEN_AI_OPERATION_NAME: N.OP_CHAT,
            N.GEN_AI_PROVIDER_NAME: event.provider,
            N.GEN_AI_REQUEST_MODEL: event.model,
        }
        if event.response_model:
            attributes[N.GEN_AI_RESPONSE_MODEL] = event.response_model
        duration: Attributes = attributes
        if event.status == "error":
            duration = {**attributes, N.ERROR_TYPE: event.error.type if event.error else N.ERROR_TYPE_OTHER}
        self.operation_duration.record(event.duration_s, duration)
        usage = event.usage
        if usage.requests or usage.input_tokens or usage.output_tokens:
            self.token_usage.record(usage.input_tokens, {**attributes, N.GEN_AI_TOKEN_TYPE: N.TOKEN_TYPE_INPUT})
            self.token_usage.record(usage.output_tokens, {**attributes, N.GEN_AI_TOKEN_TYPE: N.TOKEN_TYPE_OUTPUT})
