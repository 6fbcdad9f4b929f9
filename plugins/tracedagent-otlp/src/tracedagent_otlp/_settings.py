"""The settings this plugin reads: the standard ``OTEL_*`` variables and ``TRACEDAGENT_OTLP_MAX_CONTENT``."""

from __future__ import annotations

import math
from collections.abc import Mapping

from tracedagent import ConfigurationError

from . import _names as N

__all__ = [
    "capture_from_env",
    "endpoint_from_env",
    "export_timeout_from_env",
    "fast_encoder_from_env",
    "is_true",
    "max_content_from_env",
    "metrics_from_env",
    "protocol_from_env",
    "sdk_disabled",
]

_CAPTURE_ON = ("1", "true", "yes", "on", "span_only", "span_and_event")

#: The OpenTelemetry exporters' own default timeout for one export, retries included (seconds).
OTEL_DEFAULT_TIMEOUT_S = 10.0
#: ``TRACEDAGENT_EXIT_TIMEOUT``'s default in the core (seconds).
DEFAULT_EXIT_TIMEOUT_S = 5.0
#: The shortest export timeout the plugin gives its own exporters (a shorter one fails healthy exports).
MIN_EXPORT_TIMEOUT_S = 1.0


def is_true(value: str | None) -> bool:
    """Whether an environment variable's value means yes (``1``, ``true``, ``yes``, ``on``)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def capture_from_env(environ: Mapping[str, str]) -> bool:
    """Whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` asks for content on spans: ``true``
    (or the newer ``SPAN_ONLY`` / ``SPAN_AND_EVENT``)."""
    return (environ.get(N.ENV_CAPTURE_CONTENT) or "").strip().lower() in _CAPTURE_ON


def max_content_from_env(environ: Mapping[str, str]) -> int:
    """The most characters of one content string put on a span (``TRACEDAGENT_OTLP_MAX_CONTENT``)."""
    raw = (environ.get(N.ENV_MAX_CONTENT) or "").strip()
    if not raw:
        return N.DEFAULT_MAX_CONTENT
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigurationError(
            f"{N.ENV_MAX_CONTENT}={raw!r} is not a positive number of characters; set it to, say, 4096, or "
            f"unset it for {N.DEFAULT_MAX_CONTENT}"
        )
    return value


def fast_encoder_from_env(environ: Mapping[str, str]) -> bool:
    """Whether the stock OTLP exporters get the plugin's own protobuf encoder (on unless
    ``TRACEDAGENT_OTLP_FAST_ENCODER`` is ``false``, ``0``, ``no`` or ``off``)."""
    raw = (environ.get(N.ENV_FAST_ENCODER) or "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{N.ENV_FAST_ENCODER}={raw!r}: set it to true or false (default true)")


def sdk_disabled(environ: Mapping[str, str]) -> bool:
    """``OTEL_SDK_DISABLED=true`` turns OpenTelemetry off, this plugin included."""
    return (environ.get(N.ENV_SDK_DISABLED) or "").strip().lower() == "true"


def endpoint_from_env(environ: Mapping[str, str]) -> str | None:
    """The traces endpoint the variables name, or None when neither endpoint variable is set."""
    traces = (environ.get(N.ENV_TRACES_ENDPOINT) or "").strip()
    if traces:
        return _url(N.ENV_TRACES_ENDPOINT, traces, environ)
    base = (environ.get(N.ENV_ENDPOINT) or "").strip()
    if not base:
        return None
    if protocol_from_env(environ) == "grpc":
        return base
    return _url(N.ENV_ENDPOINT, base, environ).rstrip("/") + "/v1/traces"


def _url(name: str, value: str, environ: Mapping[str, str]) -> str:
    """``value`` if it can be an OTLP/HTTP endpoint: the exporter would otherwise fail on every batch."""
    if protocol_from_env(environ) == "http/protobuf" and not value.lower().startswith(("http://", "https://")):
        raise ConfigurationError(
            f"{name}={value!r} is not an http(s) URL; OTLP over http/protobuf needs one such as "
            f"http://localhost:4318 (a bare host:port is for {N.ENV_PROTOCOL}=grpc)"
        )
    return value


def protocol_from_env(environ: Mapping[str, str], signal: str = "traces") -> str:
    """``http/protobuf`` (the default) or ``grpc``, from ``OTEL_EXPORTER_OTLP[_TRACES|_METRICS]_PROTOCOL``."""
    specific = N.ENV_TRACES_PROTOCOL if signal == "traces" else N.ENV_METRICS_PROTOCOL
    raw = (environ.get(specific) or environ.get(N.ENV_PROTOCOL) or "http/protobuf").strip().lower()
    if raw not in ("http/protobuf", "grpc"):
        raise ConfigurationError(
            f"OTLP protocol {raw!r} is not supported by tracedagent-otlp; set {N.ENV_PROTOCOL} to "
            "http/protobuf (the default) or grpc"
        )
    return raw


def metrics_from_env(environ: Mapping[str, str]) -> bool:
    """Whether ``OTEL_METRICS_EXPORTER`` names ``otlp`` (asked for explicitly: metrics are opt-in here)."""
    names = (environ.get(N.ENV_METRICS_EXPORTER) or "").lower().replace(";", ",").split(",")
    return "otlp" in (name.strip() for name in names)


def export_timeout_from_env(environ: Mapping[str, str], signal: str = "traces") -> float | None:
    """The timeout (seconds, retries included) for an exporter the plugin builds from ``OTEL_*``: None
    when ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]TIMEOUT`` is set (the exporter reads it itself), else
    the OpenTelemetry default (10 s) cut to ``TRACEDAGENT_EXIT_TIMEOUT`` (at least 1 s), so that one
    export to a dead or silent collector ends by itself within the exit timeout."""
    specific = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT" if signal == "traces" else "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"
    if (environ.get(specific) or "").strip() or (environ.get("OTEL_EXPORTER_OTLP_TIMEOUT") or "").strip():
        return None
    raw = (environ.get("TRACEDAGENT_EXIT_TIMEOUT") or "").strip()
    try:
        exit_timeout = float(raw) if raw else DEFAULT_EXIT_TIMEOUT_S
    except ValueError:
        exit_timeout = DEFAULT_EXIT_TIMEOUT_S  # the core warns about it at exit and uses its default
    if not math.isfinite(exit_timeout):  # nan, inf: the core uses its default too
        exit_timeout = DEFAULT_EXIT_TIMEOUT_S
    return max(MIN_EXPORT_TIMEOUT_S, min(OTEL_DEFAULT_TIMEOUT_S, exit_timeout))
