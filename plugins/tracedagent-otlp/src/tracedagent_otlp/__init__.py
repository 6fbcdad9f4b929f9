"""tracedagent-otlp: every run as OpenTelemetry spans (GenAI semantic conventions) and GenAI metrics.

Installed, the plugin (entry point ``otlp`` in the ``tracedagent`` group) is active when an OTLP endpoint
is set (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or the application has
set an OpenTelemetry SDK tracer provider before the first run; ``OTEL_SDK_DISABLED=true`` (or
``OTEL_TRACES_EXPORTER=none``) turns it off.
Or pass one to an agent yourself::

    from tracedagent_otlp import OtlpTracer

    agent = Agent("support", model, plugins=[OtlpTracer()])

A run segment is an ``invoke_agent {agent}`` span with ``chat {model}`` and ``execute_tool {tool}``
children, each with the core's own ids and timestamps; message content only with
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``. See the README for every setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracedagent import PluginContext, hookimpl

from . import _names as names
from ._providers import application_tracer_provider, foreign_tracer_provider
from ._settings import endpoint_from_env, sdk_disabled

if TYPE_CHECKING:
    from ._tracer import OtlpTracer, SpanExportFailed

__all__ = ["OtlpTracer", "SpanExportFailed", "names", "tracedagent_configure"]

__version__ = names.SCOPE_VERSION


def __getattr__(name: str) -> Any:
    # The tracer (and with it the OpenTelemetry SDK) is imported on first use: an installed plugin that
    # stays inactive adds only the OpenTelemetry API to a process's start.
    if name in ("OtlpTracer", "SpanExportFailed"):
        from . import _tracer

        return getattr(_tracer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def tracedagent_configure(context: PluginContext) -> str:
    """Register a process-wide :class:`OtlpTracer` when an OTLP endpoint or an application tracer provider
    is there, and OpenTelemetry is not disabled."""
    environ = context.environ
    if sdk_disabled(environ):
        return f"inactive: {names.ENV_SDK_DISABLED} is true"
    if (environ.get(names.ENV_TRACES_EXPORTER) or "").strip().lower() == "none":
        return f"inactive: {names.ENV_TRACES_EXPORTER} is none"
    if application_tracer_provider() is None and endpoint_from_env(environ) is None:
        foreign = foreign_tracer_provider()
        if foreign is not None:
            return (
                f"inactive: the application's tracer provider is a {foreign}, not the OpenTelemetry SDK's; set "
                f"{names.ENV_ENDPOINT} to export on its own"
            )
        return (
            f"inactive: set {names.ENV_ENDPOINT} (for example http://localhost:4318) or set up an OpenTelemetry "
            "tracer provider before the first run"
        )
    from ._tracer import OtlpTracer

    tracer = OtlpTracer()
    context.register(tracer, OtlpTracer.name)
    return f"active: {tracer.describe()}"
