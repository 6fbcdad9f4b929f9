"""Plugins: the process-wide registry, loading installed plugins, and checked registration.

Installed plugins (entry point group ``tracedagent``) load on first use, filtered by
``TRACEDAGENT_PLUGINS`` / ``TRACEDAGENT_DISABLE_PLUGINS`` / ``TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD``; each is
registered under a name with ``pm.check_pending()``, so a misspelled hook fails loudly, and configured
through ``tracedagent_configure``. The dispatcher (:mod:`._dispatch`) is rebuilt when the set changes.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import pluggy

from . import hookspecs
from ._dispatch import Dispatcher
from ._plugin_context import PluginContext
from ._plugin_errors import record_error
from .exceptions import PluginError, TracedAgentError

__all__ = [
    "PluginInfo",
    "get_dispatcher",
    "global_plugin_manager",
    "list_plugins",
    "load_plugins",
    "new_plugin_manager",
    "register",
    "register_checked",
    "registry_version",
    "unregister",
]

logger = logging.getLogger("tracedagent")

ENV_PLUGINS = "TRACEDAGENT_PLUGINS"
ENV_DISABLE = "TRACEDAGENT_DISABLE_PLUGINS"
ENV_NO_AUTOLOAD = "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"


@dataclass
class PluginInfo:
    """One loaded plugin, for ``tracedagent plugins``."""

    name: str
    source: str
    hooks: list[str] = field(default_factory=list)
    status: str = "active"


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


_HOOK_NAMES = ", ".join(hookspecs.ALL_HOOKS)


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
        raise PluginError(f"plugin {unique!r} cannot be registered: {exc}. {_expected(plugin)}") from exc
    return unique


def _signature(hook: str) -> str:
    return f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"


def _expected(plugin: object) -> str:
    """What the hooks a plugin tried to implement take, or the hook names when none is right."""
    tried = [name for name in hookspecs.ALL_HOOKS if callable(getattr(plugin, name, None))]
    if tried:
        return "Expected: " + ", ".join(_signature(name) for name in tried) + " (an implementation may take fewer)"
    return f"Hook names are {_HOOK_NAMES}"


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

    def _register_from(self, plugin: object, name: str | None, source: str) -> str:
        return self.register(plugin, name, source=source)

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
            except TracedAgentError as exc:  # it was found and refused to load: its own message says why
                raise PluginError(f"{ENV_PLUGINS} names {item!r}, which cannot load: {exc}") from exc
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
            context = PluginContext(self._register_from, name)
            status = impl.function(context) if impl.argnames else impl.function()
        except Exception as exc:
            record_error(name, "tracedagent_configure", exc)
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


def note_shadowed(name: str, why: str) -> None:
    """A process-wide plugin an agent's own equal plugin replaces for that agent's runs: say so in
    ``tracedagent plugins`` and in the log, once."""
    info = _registry.info.get(name)
    if info is None or why in info.status:
        return
    info.status = f"{info.status}; not used for one agent: {why}, which gets its events"
    logger.info("plugin %r is not called for one agent's runs: %s, which gets each event once", name, why)


def list_plugins() -> list[PluginInfo]:
    """The process-wide plugins: name, where each came from, its hooks and its status."""
    load_plugins()
    infos = []
    for info in _registry.info.values():
        live = getattr(_registry.pm.get_plugin(info.name), "tracedagent_status", None)
        if callable(live):  # a plugin that reports how it is doing now (failures counted, not printed)
            try:
                info = PluginInfo(info.name, info.source, info.hooks, f"{info.status}; {live()}")
            except Exception as exc:
                info = PluginInfo(info.name, info.source, info.hooks, f"{info.status}; status failed: {exc!r}")
        infos.append(info)
    infos += [PluginInfo(name, "entry point", [], f"not loaded: {why}") for name, why in _registry.skipped.items()]
    return infos
