"""tracedagent-temporal: durable agent runs on Temporal.

``TemporalAgent(agent)`` runs an agent as a Temporal workflow whose model calls and tool calls are
activities; hooks fire once per real call (never on replay) and every event of a run, on every worker,
is in the run's trace, its context carried in Temporal headers (``TraceInterceptor``). See the README's
"Durable runs on Temporal".
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ._agent import NON_RETRYABLE_MODEL_ERRORS, TemporalAgent
from ._trace import HEADER, TraceInterceptor
from ._workflow import AgentWorkflow, activity_name

__all__ = [
    "HEADER",
    "NON_RETRYABLE_MODEL_ERRORS",
    "AgentWorkflow",
    "TemporalAgent",
    "TraceInterceptor",
    "activity_name",
]
