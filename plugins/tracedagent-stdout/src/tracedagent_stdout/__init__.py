"""tracedagent-stdout: print one line per agent event with structlog.

Installed, the plugin (entry point ``stdout`` in the ``tracedagent`` group) stays inactive until
``TRACEDAGENT_STDOUT=1``; then it registers a :class:`StdoutTracer` on ``sys.stdout`` for every agent
in the process. Or pass one to an agent yourself::

    from tracedagent_stdout import StdoutTracer

    agent = Agent("calc", model, plugins=[StdoutTracer(format="json")])

Lines are console-rendered on a terminal and JSON lines otherwise (``TRACEDAGENT_LOG_FORMAT`` forces
either). Message content and error messages are printed only with content capture on
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`` or ``TRACEDAGENT_CAPTURE_CONTENT=true``).
"""

from __future__ import annotations

from tracedagent import PluginContext, hookimpl

from ._tracer import StdoutTracer, capture_from_env, format_from_env, is_true

__all__ = ["ENV_ENABLE", "StdoutTracer", "tracedagent_configure"]

__version__ = "0.1.0"

ENV_ENABLE = "TRACEDAGENT_STDOUT"


@hookimpl
def tracedagent_configure(context: PluginContext) -> str:
    """Register a process-wide :class:`StdoutTracer` when ``TRACEDAGENT_STDOUT`` is true."""
    environ = context.environ
    if not is_true(environ.get(ENV_ENABLE)):
        return f"inactive: set {ENV_ENABLE}=1 to print events"
    tracer = StdoutTracer(format=format_from_env(environ), capture_content=capture_from_env(environ))
    context.register(tracer, StdoutTracer.name)
    content = "message content included" if tracer.capture_content else "no message content"
    return f"active: {tracer.format} lines to stdout, {content}"
