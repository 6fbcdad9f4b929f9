"""tracedagent-langsmith: every agent run as a LangSmith trace, sent by the langsmith SDK.

Installed, the plugin (entry point ``langsmith`` in the ``tracedagent`` group) stays inactive until
``LANGSMITH_TRACING=true``; then it registers a :class:`LangSmithTracer` for every agent in the process,
configured the SDK's way (``LANGSMITH_ENDPOINT``, ``LANGSMITH_API_KEY``, ``LANGSMITH_PROJECT``,
``LANGSMITH_TRACING_SAMPLING_RATE``, ``LANGSMITH_HIDE_INPUTS``, ``LANGSMITH_HIDE_OUTPUTS``). Or pass
one to an agent yourself::

    from tracedagent_langsmith import LangSmithTracer

    agent = Agent("calc", model, plugins=[LangSmithTracer(project_name="calc")])

Message content is sent only with content capture on (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
or ``TRACEDAGENT_CAPTURE_CONTENT`` true).
"""

from __future__ import annotations

from tracedagent import PluginContext, hookimpl

from ._ids import dotted_order, nested_root_uuid, root_uuid, span_uuid, trace_uuid
from ._settings import DEFAULT_ENDPOINT, Settings
from ._tracer import LangSmithTracer
from ._tree import RunClient, TraceBuilder

__all__ = [
    "LangSmithTracer",
    "RunClient",
    "Settings",
    "TraceBuilder",
    "dotted_order",
    "nested_root_uuid",
    "root_uuid",
    "span_uuid",
    "trace_uuid",
    "tracedagent_configure",
]

__version__ = "0.1.0"


@hookimpl
def tracedagent_configure(context: PluginContext) -> str:
    """Register a process-wide :class:`LangSmithTracer` when ``LANGSMITH_TRACING`` is true."""
    settings = Settings.from_env(context.environ)
    if not settings.tracing:
        return "inactive: set LANGSMITH_TRACING=true to send runs to LangSmith"
    tracer = LangSmithTracer(environ=context.environ)
    context.register(tracer, LangSmithTracer.name)
    details = [f"project {tracer.project_name!r}"]
    if tracer.sampling_rate is not None and tracer.sampling_rate < 1:
        details.append(f"{tracer.sampling_rate:.0%} of traces")
    if tracer.hide_inputs:
        details.append("inputs hidden")
    if tracer.hide_outputs:
        details.append("outputs hidden")
    details.append("message content included" if tracer.capture_content else "no message content")
    status = f"active: runs to {settings.endpoint}, {', '.join(details)}"
    if not settings.has_api_key and settings.endpoint == DEFAULT_ENDPOINT:
        status += "; LANGSMITH_API_KEY is not set, so the hosted API will refuse the runs"
    return status
