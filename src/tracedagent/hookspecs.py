"""Every hook tracedagent calls, in one place.

Three kinds:

* **Observers** (``on_*``) take one argument, ``event``, a frozen dataclass from
  :mod:`tracedagent` (``RunStarted``, ``ToolCallEnded``...). They are called synchronously on the thread
  that runs the agent's event loop, in the order the stages happen, and must return in microseconds:
  update a counter or put the event on a queue, nothing more (no I/O, no blocking). An implementation
  that raises is isolated: the run goes on, every other plugin still gets the event, and the failure is
  counted (``tracedagent.plugin_errors()``) and logged once per plugin and hook. An implementation may
  take no argument at all. Returning a coroutine is a mistake: it is closed, counted and warned about.
* **Deciders** (``firstresult=True``): the first implementation that returns something other than
  ``None`` decides. A decider may return an awaitable, which is awaited.
* **Registration**: ``tracedagent_configure`` is called once when plugins load, so a plugin can read its
  settings and register what it needs.

Guaranteed on every event: ``run_id``, ``trace_id``, ``span_id``, ``parent_span_id``, ``agent`` and
``timestamp_ns``. Every ``*_start`` is followed by exactly one ``*_end`` with the same ``span_id``, on
success, error, timeout and cancellation.

This module is the one list of hooks: :data:`OBSERVER_HOOKS`, :data:`DECIDER_HOOKS` and
:data:`ALL_HOOKS` are read from the specs below, the dispatcher's table is built from them, and the
event types, the queueing base of tracers and the docs are checked against them by the tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._events import (
        CheckpointSaved,
        CircuitStateChanged,
        ContextCompacted,
        HandoffOccurred,
        ModelCallEnded,
        ModelCallStarted,
        RetryScheduled,
        RunEnded,
        RunInterrupted,
        RunResumed,
        RunStarted,
        ToolCallEnded,
        ToolCallStarted,
    )
    from ._plugin_context import PluginContext
    from ._tools import ToolCallRequest

PROJECT = "tracedagent"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# --------------------------------------------------------------------------------------- observers


@hookspec
def on_run_start(event: RunStarted) -> None:
    """A run begins (not on resume). ``event.span_id`` opens the run's first segment."""


@hookspec
def on_run_end(event: RunEnded) -> None:
    """A run segment ends, whatever the reason: ``completed``, ``failed``, ``cancelled``, or
    ``interrupted`` when it pauses (a later ``on_resume`` opens the next segment)."""


@hookspec
def on_model_call_start(event: ModelCallStarted) -> None:
    """A model request is about to be sent; a child of the run segment."""


@hookspec
def on_model_call_end(event: ModelCallEnded) -> None:
    """A model request finished, failed or was cancelled: usage, finish reason, time to first token."""


@hookspec
def on_tool_call_start(event: ToolCallStarted) -> None:
    """A tool call begins; a child of the run segment. Tools of one turn may run concurrently."""


@hookspec
def on_tool_call_end(event: ToolCallEnded) -> None:
    """A tool call ends: ``ok``, ``error``, ``timeout``, ``rejected``, ``circuit_open``, ``denied`` or
    ``cancelled``."""


@hookspec
def on_interrupt(event: RunInterrupted) -> None:
    """A run pauses for approval or for external input; fired before its ``on_run_end``."""


@hookspec
def on_resume(event: RunResumed) -> None:
    """A paused run goes on, maybe in another process. ``event.span_id`` opens the new segment; the
    ``trace_id`` and ``run_id`` are the run's."""


@hookspec
def on_compaction(event: ContextCompacted) -> None:
    """The context was compacted (tokens and messages before and after, strategy)."""


@hookspec
def on_checkpoint(event: CheckpointSaved) -> None:
    """The run's state was persisted (bytes, write time)."""


@hookspec
def on_circuit_change(event: CircuitStateChanged) -> None:
    """A tool's circuit breaker changed state; fired exactly once per transition."""


@hookspec
def on_retry(event: RetryScheduled) -> None:
    """A model or tool call failed and will be retried after ``event.delay_s``."""


@hookspec
def on_handoff(event: HandoffOccurred) -> None:
    """A run passed to another agent (``Agent(handoffs=[...])``); fired on the run segment's span, after
    the ``transfer_to_{name}`` tool call ended and before the other agent's first model call. ``agent``
    and ``from_agent`` name the agent handing off; later events of the run's stages carry ``to_agent``."""


# ----------------------------------------------------------------------------------------- deciders


@hookspec(firstresult=True)
def approve_tool_call(call: ToolCallRequest) -> Any:
    """Decide whether a tool call may run: return ``"allow"``, ``"deny"`` or ``"interrupt"`` (ask a
    person), or ``None`` to let the next plugin decide. May return an awaitable."""


# ------------------------------------------------------------------------------------- registration


@hookspec
def tracedagent_configure(context: PluginContext) -> str | None:
    """Called once after plugins load. Read settings, register tracers with
    ``context.register(obj, name)``, and return a short status line for ``tracedagent plugins``
    (for example ``"inactive: set TRACEDAGENT_STDOUT=1 to print events"``)."""


# ----------------------------------------------------------------------------------------- the lists


def _specs(kind: str) -> tuple[str, ...]:
    """The hooks declared above, in their order: ``observer`` (``on_*``), ``decider`` (``firstresult``)
    or ``registration`` (the rest)."""
    names = []
    for name, value in list(globals().items()):
        options = getattr(value, PROJECT + "_spec", None)
        if options is None or name.startswith("_"):
            continue
        if options.get("firstresult"):
            found = "decider"
        elif name.startswith("on_"):
            found = "observer"
        else:
            found = "registration"
        if found == kind:
            names.append(name)
    return tuple(names)


#: Observer hook names, in the order they are declared above.
OBSERVER_HOOKS: tuple[str, ...] = _specs("observer")
#: Decider hooks (``firstresult=True``).
DECIDER_HOOKS: tuple[str, ...] = _specs("decider")
#: Registration hooks.
REGISTRATION_HOOKS: tuple[str, ...] = _specs("registration")
ALL_HOOKS: tuple[str, ...] = (*OBSERVER_HOOKS, *DECIDER_HOOKS, *REGISTRATION_HOOKS)
