"""Plugin loading and the fault-isolating event dispatcher.

pluggy keeps the registry (names, validation, ordering, ``tryfirst``/``trylast``); the dispatcher
calls the implementations itself, because plain pluggy stops at the first implementation that raises
and cannot await a decider. For each hook the dispatcher keeps a tuple of implementations, rebuilt only
when a plugin is registered or unregistered, so emitting an event with no plugin is one falsy check.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from . import hookspecs
from ._events import Event
from ._queueing import QueueingTracer
from .exceptions import PluginError

__all__ = [
    "Dispatcher",
    "PluginContext",
    "PluginInfo",
    "get_dispatcher",
    "list_plugins",
    "load_plugins",
    "plugin_errors",
    "register",
    "unregister",
]

logger = logging.getLogger("tracedagent")

ENV_PLUGINS = "TRACEDAGENT_PLUGINS"
ENV_DISABLE = "TRACEDAGENT_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"

# (plugin name, callable, whether it takes the event argument)
Impl = tuple[str, Callable[..., Any], bool]


# ------------------------------------------------------------------------------- error accounting

_errors_lock = threading.Lock()
_errors: dict[tuple[str, str], int] = {}
_warned: set[tuple[str, str]] = set()


def _record_error(plugin: str, hook: str, exc: BaseException | None, coroutine: bool = False) -> None:
    key = (plugin, hook)
    with _errors_lock:
        _errors[key] = _errors.get(key, 0) + 1
        first = key not in _warned
        _warned.add(key)
    if not first:
        return
    if coroutine:
        message = (
            f"plugin {plugin!r} returned a coroutine from {hook}; observer hooks are synchronous and "
            "its result was discarded. Do the async work elsewhere (for example, put the event on a "
            "queue that a task or thread drains). This warning is shown once."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        logger.warning(message)
    else:
        logger.error(
            "plugin %r raised in %s; the run goes on and other plugins still get the event "
            "(further errors from this plugin in this hook are counted, not logged)",
            plugin,
            hook,
            exc_info=exc,
        )


def plugin_errors() -> dict[tuple[str, str], int]:
    """How many times each ``(plugin, hook)`` raised or misbehaved, since the process started."""
    with _errors_lock:
        return dict(_errors)


# ------------------------------------------------------------------------------------- dispatcher


def _direct(function: Callable[..., Any], hook: str) -> Callable[..., Any]:
    """The callable to call for ``function``: a :class:`QueueingTracer` hook that its class did not
    override only does ``self._put(event)``, so the dispatcher calls ``_put`` itself (one Python call
    fewer per event and sink, on the run's thread). ``_put`` is read here, when the plugin is registered."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, QueueingTracer) and getattr(function, "__func__", None) is getattr(QueueingTracer, hook, None):
        put: Callable[..., Any] | None = getattr(owner, "_put", None)
        if callable(put):
            return put
    return function


class Dispatcher:
    """The implementations of every hook, snapshotted, and the calls that isolate their faults.

    Each observer hook is an attribute holding a tuple of implementations; the run loop checks the
    tuple before building an event, so a hook nobody implements costs one attribute read.
    """

    __slots__ = (*hookspecs.OBSERVER_HOOKS, "approve_tool_call")

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
    approve_tool_call: tuple[Impl, ...]

    def __init__(self, managers: Iterable[pluggy.PluginManager] = ()) -> None:
        managers = list(managers)
        for hook in (*hookspecs.OBSERVER_HOOKS, "approve_tool_call"):
            impls: list[Impl] = []
            seen: set[int] = set()
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
                _record_error(name, event.hook, exc)
                continue
            if result is not None and inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                _record_error(name, event.hook, None, coroutine=True)

    def emit_event(self, event: Event) -> None:
        """Dispatch ``event`` to the hook its class names."""
        impls = getattr(self, event.hook)
        if impls:
            self.emit(impls, event)

    async def decide(self, hook: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` decider: the first non-``None`` answer wins; awaitables are awaited.
        An implementation that raises is counted, logged once and skipped."""
        for name, function, takes_args in getattr(self, hook):
            try:
                result = function(**kwargs) if takes_args else function()
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:
                _record_error(name, hook, exc)
                continue
            if result is not None:
                return result
        return None


# ---------------------------------------------------------------------------------------- registry


@dataclass
class PluginInfo:
    """One loaded plugin, for ``tracedagent plugins``."""

    name: str
    source: str
    hooks: list[str] = field(default_factory=list)
    status: str = "active"


class PluginContext:
    """What ``tracedagent_configure`` receives: the environment and a way to register tracers."""

    def __init__(self, registry: _Registry, plugin_name: str) -> None:
        self._registry = registry
        self.plugin_name = plugin_name
        self.environ = os.environ

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register ``plugin`` process-wide (it is listed as registered by this plugin)."""
        self._registry.register(plugin, name, source=f"registered by {self.plugin_name}")


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


_HOOK_NAMES = ", ".join((*hookspecs.OBSERVER_HOOKS, "approve_tool_call", "tracedagent_configure"))


def register_checked(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register ``plugin`` in ``pm`` under a unique, stable name, or raise :class:`PluginError` saying why
    it cannot be used (an unknown hook, a wrong argument name, a hook wrapper, registered twice)."""
    wanted = name or _plugin_name(plugin)
    unique, n = wanted, 2
    while pm.has_plugin(unique):
        unique, n = f"{wanted}-{n}", n + 1
    try:
        pm.register(plugin, name=unique)
        pm.check_pending()
        for caller in pm.get_hookcallers(plugin) or ():
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                    raise PluginError(
                        f"plugin {unique!r} implements {caller.name} as a hook wrapper; tracedagent hooks are "
                        "plain calls, remove wrapper=True / hookwrapper=True"
                    )
    except (pluggy.PluginValidationError, ValueError, PluginError) as exc:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        if isinstance(exc, PluginError):
            raise
        raise PluginError(f"plugin {unique!r} cannot be registered: {exc}. Hook names are {_HOOK_NAMES}") from exc
    return unique


def _split(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").replace(";", ",").split(",") if item.strip()]


def _plugin_name(plugin: object) -> str:
    name = getattr(plugin, "name", None)
    if isinstance(name, str) and name:
        return name
    if inspect.ismodule(plugin):
        return plugin.__name__
    return type(plugin).__name__ if not inspect.isclass(plugin) else plugin.__name__


class _Registry:
    """The process-wide plugins."""

    def __init__(self) -> None:
        self.pm = _new_plugin_manager()
        self.version = 0
        self.loaded = False
        self.info: dict[str, PluginInfo] = {}
        self.skipped: dict[str, str] = {}
        self._lock = threading.RLock()
        self._dispatcher: Dispatcher | None = None

    def register(self, plugin: object, name: str | None = None, *, source: str = "tracedagent.register()") -> str:
        with self._lock:
            existing = self.pm.get_name(plugin)
            if existing is not None:
                return existing
            unique = register_checked(self.pm, plugin, name)
            hooks = [caller.name for caller in self.pm.get_hookcallers(plugin) or ()]
            self.info[unique] = PluginInfo(unique, source, sorted(hooks))
            self._changed()
            return unique

    def unregister(self, plugin: object) -> None:
        with self._lock:
            if isinstance(plugin, str):
                name = plugin
                obj = self.pm.get_plugin(name)
                if obj is None:
                    raise PluginError(f"no plugin named {name!r} is registered")
            else:
                obj = plugin
                found = self.pm.get_name(plugin)
                if found is None:
                    raise PluginError(f"{plugin!r} is not registered")
                name = found
            self.pm.unregister(obj)
            self.info.pop(name, None)
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        self._dispatcher = None

    def dispatcher(self) -> Dispatcher:
        dispatcher = self._dispatcher
        if dispatcher is None:
            with self._lock:
                dispatcher = self._dispatcher = Dispatcher([self.pm])
        return dispatcher

    def load(self) -> None:
        with self._lock:
            if self.loaded:
                return
            self.loaded = True
            try:
                self._load()
            except BaseException:
                self.loaded = False
                raise

    def _load(self) -> None:
        wanted = _split(os.environ.get(ENV_PLUGINS))
        disabled = set(_split(os.environ.get(ENV_DISABLE)))
        autoload = os.environ.get(ENV_NO_AUTOLOAD, "").strip().lower() not in ("1", "true", "yes")
        configured_before = set(self.info)
        found: set[str] = set()
        for ep in entry_points(group=hookspecs.PROJECT):
            found.add(ep.name)
            if ep.name in disabled or ep.module in disabled or ep.value in disabled:
                self.skipped[ep.name] = f"disabled by {ENV_DISABLE}"
                continue
            if not autoload and ep.name not in wanted:
                self.skipped[ep.name] = f"autoload off ({ENV_NO_AUTOLOAD}) and not named in {ENV_PLUGINS}"
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                obj = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r}) failed to import: {exc!r}; "
                    f"fix or uninstall it, or skip it with {ENV_DISABLE}={ep.name}"
                ) from exc
            dist = ep.dist
            where = f"entry point {ep.name} = {ep.value}" + (f" ({dist.name} {dist.version})" if dist else "")
            self.register(obj, ep.name, source=where)
        for item in wanted:
            if item in disabled and item not in found:
                self.skipped[item] = f"named in {ENV_PLUGINS} but disabled by {ENV_DISABLE}"
            if item in found or item in disabled or self.pm.has_plugin(item):
                continue
            try:
                module = importlib.import_module(item)
            except Exception as exc:
                raise PluginError(
                    f"{ENV_PLUGINS} names {item!r}, which is neither an installed plugin "
                    f"(installed: {', '.join(sorted(found)) or 'none'}) nor an importable module: {exc!r}"
                ) from exc
            self.register(module, item, source=f"module path from {ENV_PLUGINS}")
        for name in [n for n in self.info if n not in configured_before]:
            self._configure(name)

    def _configure(self, name: str) -> None:
        impls = [i for i in self.pm.hook.tracedagent_configure.get_hookimpls() if i.plugin_name == name]
        if not impls:
            return
        impl = impls[0]
        try:
            # Like every hook, an implementation may take fewer arguments than the spec.
            status = impl.function(PluginContext(self, name)) if impl.argnames else impl.function()
        except Exception as exc:
            _record_error(name, "tracedagent_configure", exc)
            self.info[name].status = f"failed to configure: {exc!r}"
            return
        if status:
            self.info[name].status = str(status)


_registry = _Registry()


def load_plugins() -> None:
    """Load installed plugins (entry point group ``tracedagent``) and those named in
    ``TRACEDAGENT_PLUGINS``, once per process. Runs on first use; calling it again does nothing."""
    _registry.load()


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin for every agent in this process; returns the name it was registered under."""
    name = _registry.register(plugin, name)
    _registry._configure(name)
    return name


def unregister(plugin: object) -> None:
    """Remove a process-wide plugin, given the object or its name."""
    _registry.unregister(plugin)


def get_dispatcher() -> Dispatcher:
    """The process-wide dispatcher, loading plugins on first use."""
    if not _registry.loaded:
        _registry.load()
    return _registry.dispatcher()


def registry_version() -> int:
    return _registry.version


def global_plugin_manager() -> pluggy.PluginManager:
    return _registry.pm


def new_plugin_manager() -> pluggy.PluginManager:
    return _new_plugin_manager()


def list_plugins() -> list[PluginInfo]:
    """The process-wide plugins: name, where each came from, its hooks and its status."""
    load_plugins()
    infos = list(_registry.info.values())
    infos += [PluginInfo(name, "entry point", [], f"not loaded: {why}") for name, why in _registry.skipped.items()]
    return infos
