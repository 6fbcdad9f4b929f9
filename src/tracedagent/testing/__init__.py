"""Test kit: scripted models, a recording tracer and pytest fixtures.

::

    from tracedagent.testing import ScriptedModel, Step, capture_events

    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "It is 3."])
    with capture_events() as events:
        result = Agent("calc", model, tools=[add]).run_sync("1 + 2?")
    model.assert_all_used()
    print(events.format_span_tree())

The pytest plugin (installed with tracedagent, entry point ``pytest11``) adds the fixtures
``recorded_events`` and ``scripted_model``.
"""

from ._models import FunctionModel, ScriptedModel, ScriptExhausted, Step
from ._recording import RecordingTracer, capture_events

__all__ = [
    "FunctionModel",
    "RecordingTracer",
    "ScriptExhausted",
    "ScriptedModel",
    "Step",
    "capture_events",
]
