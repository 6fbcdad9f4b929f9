"""The tracer's settings, read from the environment with the langsmith SDK's names.

The SDK reads ``LANGSMITH_*`` first and its older ``LANGCHAIN_*`` names second; so do we. The endpoint
and the API key are left to the SDK's :class:`langsmith.Client`, which reads them itself: this package
never reads, keeps or prints the key. The others are read here, once, when the tracer is built (the
SDK caches what it reads for the life of the process, which would make a tracer built later, or a test,
see stale values), and handed to the client explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tracedagent import ConfigurationError

__all__ = [
    "CAPTURE_VARIABLES",
    "DEFAULT_ENDPOINT",
    "Settings",
    "capture_from_env",
    "env",
    "is_true",
]

DEFAULT_ENDPOINT = "https://api.smith.langchain.com"
#: Either one set to true turns content capture on (the same switches as every tracedagent tracer).
CAPTURE_VARIABLES = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRACEDAGENT_CAPTURE_CONTENT")


def is_true(value: str | None) -> bool:
    """Whether a variable's value means yes (``true``, ``1``, ``yes``, ``on``; any case)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def env(environ: Mapping[str, str], name: str) -> str | None:
    """``LANGSMITH_<name>``, else ``LANGCHAIN_<name>``, as the SDK looks them up (blank counts as unset)."""
    for prefix in ("LANGSMITH_", "LANGCHAIN_"):
        value = environ.get(prefix + name)
        if value is not None and value.strip():
            return value.strip()
    return None


def capture_from_env(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for message content."""
    return any(is_true(environ.get(name)) for name in CAPTURE_VARIABLES)


def _sampling_rate(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ConfigurationError(
            f"LANGSMITH_TRACING_SAMPLING_RATE={raw!r} is not a sampling rate; set it between 0 and 1 "
            "(0.25 sends one trace in four), or unset it to send every trace"
        )
    return rate


def _endpoint(raw: str | None) -> str:
    if raw is None:
        return DEFAULT_ENDPOINT
    if not raw.lower().startswith(("http://", "https://")):  # the SDK would fail on every batch, quietly
        raise ConfigurationError(
            f"LANGSMITH_ENDPOINT={raw!r} is not an http(s) URL; set it to, say, https://api.smith.langchain.com "
            "or http://localhost:1984, or unset it for the hosted API"
        )
    return raw.rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    """What the environment asks of the tracer (never the API key)."""

    tracing: bool
    endpoint: str
    has_api_key: bool
    project: str
    sampling_rate: float | None
    hide_inputs: bool
    hide_outputs: bool
    capture_content: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``LANGSMITH_TRACING``, ``LANGSMITH_ENDPOINT``, ``LANGSMITH_PROJECT``,
        ``LANGSMITH_TRACING_SAMPLING_RATE``, ``LANGSMITH_HIDE_INPUTS`` / ``LANGSMITH_HIDE_OUTPUTS`` (and
        their ``LANGCHAIN_*`` forms) and the content capture switches."""
        tracing = env(environ, "TRACING_V2") or env(environ, "TRACING")
        project = environ.get("HOSTED_LANGSERVE_PROJECT_NAME") or env(environ, "PROJECT") or env(environ, "SESSION")
        return cls(
            tracing=is_true(tracing),
            endpoint=_endpoint(env(environ, "ENDPOINT")),
            has_api_key=env(environ, "API_KEY") is not None,
            project=project or "default",
            sampling_rate=_sampling_rate(env(environ, "TRACING_SAMPLING_RATE")),
            hide_inputs=is_true(env(environ, "HIDE_INPUTS")),
            hide_outputs=is_true(env(environ, "HIDE_OUTPUTS")),
            capture_content=capture_from_env(environ),
        )
