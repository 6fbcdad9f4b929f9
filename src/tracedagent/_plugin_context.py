"""``PluginContext``: what a plugin's ``tracedagent_configure`` hook receives."""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["PluginContext"]


class PluginContext:
    """The environment, and a way to register tracers process-wide."""

    def __init__(self, register: Callable[[object, str | None, str], object], plugin_name: str) -> None:
        self._register = register
        self.plugin_name = plugin_name
        self.environ = os.environ

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register ``plugin`` process-wide (it is listed as registered by this plugin)."""
        self._register(plugin, name, f"registered by {self.plugin_name}")
