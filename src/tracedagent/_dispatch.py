"""The fault-isolating event dispatcher.

pluggy keeps the registry (names, validation, ordering, ``tryfirst``/``trylast``; see :mod:`._plugins`);
the dispatcher calls the implementations itself, because plain pluggy stops at the first implementation
that raises and cannot await a decider. For each hook the dispatcher keeps a tuple of implementations,
built when the plugins change, so emitting an event with no plugin is one falsy check.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

import pluggy

from . import hookspecs
from ._events import Event
from ._export import ExportPipeline
from ._plugin_errors import record_error
from ._queueing import QueueingTracer
from .exceptions import PluginError

__all__ = ["DeciderFailed", "Dispatcher"]

# (plugin name, callable, whether it takes the event argument)
Impl = tuple[str, Callable[..., Any], bool]


class DeciderFailed(Exception):
    """A decider hook raised: ``plugin`` names it, ``error`` is what it raised (already counted and logged)."""

    def __init__(self, plugin: str, hook: str, error: Exception) -> None:
        super().__init__(f"the {hook} hook of plugin {plugin!r} raised {type(error).__name__}")
        self.plugin = plugin
        self.hook = hook
        self.error = error


# ------------------------------------------------------------------------------------- dispatcher


def _direct(function: Callable[..., Any], hook: str) -> Callable[..., Any]:
    """The callable to call for ``function``: a :class:`QueueingTracer` hook that its class did not
    override only does ``self._put(event)``, so the dispatcher calls ``_put`` itself (one Python call
    fewer per event and sink, on the run's thread), and when ``_put`` is an :class:`ExportPipeline`'s
    ``put_event``, the method that ``put_event`` amounts to for this hook. ``_put`` is read here, when
    the plugin is registered."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, QueueingTracer) and getattr(function, "__func__", None) is getattr(QueueingTracer, hook, None):
        put: Callable[..., Any] | None = getattr(owner, "_put", None)
        if callable(put):
            pipeline = getattr(put, "__self__", None)
            if isinstance(pipeline, ExportPipeline) and getattr(put, "__func__", None) is ExportPipeline.put_event:
                return pipeline.put_for(hook)
            return put
    return function


def identity(plugin: object) -> Any:
    """What makes two plugins the same tracer: ``(class, plugin.tracedagent_identity())`` when the plugin
    has that method (a hashable value of its settings), else None (every object is its own). A plugin
    given to an agent and an equal one registered process-wide are one: the agent's gets the events."""
    method = getattr(plugin, "tracedagent_identity", None)
    if not callable(method):
        return None
    try:
        key = method()
        hash(key)
    except Exception:  # a broken identity makes the plugin its own, never a shadow of another
        return None
    return (type(plugin), key)


class Dispatcher:
    """The implementations of every hook, snapshotted, and the calls that isolate their faults.

    Each observer hook is an attribute holding a tuple of implementations; the run loop checks the
    tuple before building an event, so a hook nobody implements costs one attribute read.
    """

    __slots__ = (*hookspecs.OBSERVER_HOOKS, *hookspecs.DECIDER_HOOKS, "shadowed")

    on_run_start: tuple[Impl, ...]
    on_run_end: tuple[Impl, ...]
    on_model_call_start: tuple[Impl, ...]
    on_model_call_end: tuple[Impl, ...]
    on_tool_call_start: tuple[Impl, ...]
    on_tool_call_end: tuple[Impl, ...]
    on_interrupt: tuple[Impl, ...]
    on_resume: tuple[Impl, ...]
    on_compaction: tuple[Impl, ...]
    on_checkpoint: tuple[Impl, ...]
    on_circuit_change: tuple[Impl, ...]
    on_retry: tuple[Impl, ...]
    on_handoff: tuple[Impl, ...]
    approve_tool_call: tuple[Impl, ...]

    def __init__(self, managers: Iterable[pluggy.PluginManager] = ()) -> None:
        managers = list(managers)
        #: (plugin left out, plugin that gets the events instead): the same tracer, with the same settings,
        #: given to an agent and registered process-wide (see :func:`identity`).
        self.shadowed: list[tuple[str, str]] = []
        shadowed: set[int] = set()
        winners: dict[Any, str] = {}
        for index, pm in enumerate(managers):
            mine: dict[Any, str] = {}
            for name, plugin in pm.list_name_plugin():
                key = identity(plugin)
                if key is None:
                    continue
                if key in winners and index > 0:
                    shadowed.add(id(plugin))
                    self.shadowed.append((name, winners[key]))
                else:
                    mine.setdefault(key, name)
            for key, name in mine.items():
                winners.setdefault(key, name)
        for hook in (*hookspecs.OBSERVER_HOOKS, *hookspecs.DECIDER_HOOKS):
            impls: list[Impl] = []
            seen: set[int] = set(shadowed)
            for pm in managers:
                caller = getattr(pm.hook, hook, None)
                if caller is None:
                    continue
                # pluggy calls implementations last-registered first, honouring tryfirst/trylast.
                for impl in reversed(caller.get_hookimpls()):
                    # A plugin given to an agent and also registered process-wide gets each event once.
                    if id(impl.plugin) in seen:
                        continue
                    seen.add(id(impl.plugin))
                    if impl.hookwrapper or impl.wrapper:
                        raise PluginError(
                            f"plugin {impl.plugin_name!r} implements {hook} as a hook wrapper; "
                            "tracedagent hooks are plain calls, remove wrapper=True/hookwrapper=True"
                        )
                    impls.append((impl.plugin_name, _direct(impl.function, hook), bool(impl.argnames)))
            setattr(self, hook, tuple(impls))

    def emit(self, impls: tuple[Impl, ...], event: Event) -> None:
        """Call every implementation with ``event``; one that raises never stops the others."""
        for name, function, takes_event in impls:
            try:
                result = function(event) if takes_event else function()
            except Exception as exc:
                record_error(name, event.hook, exc)
                continue
            # None, or a queue's put() saying whether it took the event: the common answers, checked first.
            if result is not None and result.__class__ is not bool and inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                record_error(name, event.hook, None, coroutine=True)

    def emit_event(self, event: Event) -> None:
        """Dispatch ``event`` to the hook its class names."""
        impls = getattr(self, event.hook)
        if impls:
            self.emit(impls, event)

    async def decide(self, hook: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` decider: the first non-``None`` answer wins; awaitables are awaited.
        An implementation that raises is counted and logged once, and raises :class:`DeciderFailed`: a
        decision nobody could make must fail closed, so the caller decides what that means (a tool call
        pauses for a person)."""
        for name, function, takes_args in getattr(self, hook):
            try:
                result = function(**kwargs) if takes_args else function()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                record_error(name, hook, exc)
                raise DeciderFailed(name, hook, exc) from exc
            if result is not None:
                return result
        return None
