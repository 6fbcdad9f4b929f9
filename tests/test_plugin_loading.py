"""Loading plugins: installed entry points, TRACEDAGENT_PLUGINS / TRACEDAGENT_DISABLE_PLUGINS, autoload,
``tracedagent_configure`` statuses and the ``tracedagent plugins`` command.

Each test builds a real installed-looking distribution (a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt``) in a temporary folder put on ``sys.path``, so ``importlib.metadata`` finds it.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import tracedagent
from tracedagent import Agent, PluginError
from tracedagent.testing import ScriptedModel

AUTOLOAD_OFF = "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"

PLUGIN_SOURCE = """
from tracedagent import hookimpl

events = []
configured = []


@hookimpl
def on_run_start(event):
    events.append(event)


@hookimpl
def tracedagent_configure(context):
    configured.append(context.plugin_name)
    return STATUS
"""


@dataclass
class Installed:
    """A plugin distribution installed in a temporary site folder."""

    site: Path
    entry_point: str  # the entry point's name
    module: str  # the module the entry point names
    dist: str

    def imported(self) -> Any:
        return sys.modules[self.module]


def write_module(site: Path, module: str, status: str = "None", source: str = PLUGIN_SOURCE) -> None:
    (site / f"{module}.py").write_text(source.replace("STATUS", status))


def install(site: Path, entry_point: str, module: str, value: str | None = None) -> str:
    """Write a dist-info folder declaring ``entry_point = value`` in the group ``tracedagent``."""
    dist = f"tracedagent-{entry_point}-{uuid.uuid4().hex[:6]}"
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[tracedagent]\n{entry_point} = {value or module}\n")
    return dist


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


@pytest.fixture
def installed(site: Path, fresh_registry: Any, monkeypatch: pytest.MonkeyPatch) -> Installed:
    """An installed plugin ``demo`` whose configure reports a status; its module is forgotten afterwards."""
    suffix = uuid.uuid4().hex[:8]
    name, module = f"demo{suffix}", f"tracedagent_demo_plugin_{suffix}"
    write_module(site, module, status='"active: demo status"')
    dist = install(site, name, module)
    monkeypatch.delitem(sys.modules, module, raising=False)
    plugin = Installed(site, name, module, dist)
    assert [ep.value for ep in importlib.metadata.entry_points(group="tracedagent", name=name)] == [module]
    return plugin


def plugin_info(name: str) -> tracedagent.PluginInfo:
    [info] = [p for p in tracedagent.list_plugins() if p.name == name]
    return info


def run_once(name: str = "a") -> None:
    Agent(name, ScriptedModel(["ok"])).run_sync("hi")


def test_an_installed_plugin_loads_when_autoload_is_on(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_OFF)
    tracedagent.load_plugins()
    tracedagent.load_plugins()

    info = plugin_info(installed.entry_point)
    assert info.source == f"entry point {installed.entry_point} = {installed.module} ({installed.dist} 1.2.3)"
    assert info.hooks == ["on_run_start", "tracedagent_configure"]
    assert info.status == "active: demo status"
    module = installed.imported()
    assert module.configured == [installed.entry_point]

    run_once("loaded")
    assert [e.agent for e in module.events] == ["loaded"]


def test_the_first_run_loads_plugins(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_OFF)
    run_once("first")
    assert [e.agent for e in installed.imported().events] == ["first"]


def test_an_installed_plugin_does_not_load_when_autoload_is_off(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTOLOAD_OFF, "1")
    run_once()

    assert installed.module not in sys.modules
    info = plugin_info(installed.entry_point)
    assert info.status.startswith("not loaded: autoload off")
    assert "TRACEDAGENT_PLUGINS" in info.status


@pytest.mark.parametrize("autoload", ["on", "off"])
def test_plugins_by_entry_point_name(installed: Installed, monkeypatch: pytest.MonkeyPatch, autoload: str) -> None:
    if autoload == "on":
        monkeypatch.delenv(AUTOLOAD_OFF)
    else:
        monkeypatch.setenv(AUTOLOAD_OFF, "1")
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", installed.entry_point)
    run_once("named")

    assert plugin_info(installed.entry_point).status == "active: demo status"
    assert [e.agent for e in installed.imported().events] == ["named"]


def test_plugins_by_module_path(site: Path, fresh_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"tracedagent_local_plugin_{uuid.uuid4().hex[:8]}"
    other = f"tracedagent_other_plugin_{uuid.uuid4().hex[:8]}"
    write_module(site, module, status='"ready"')
    write_module(site, other)
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delitem(sys.modules, other, raising=False)
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", f"{module}, {other}")

    run_once("by-path")

    info = plugin_info(module)
    assert info.source == "module path from TRACEDAGENT_PLUGINS"
    assert info.hooks == ["on_run_start", "tracedagent_configure"]
    assert info.status == "ready"
    assert plugin_info(other).status == "active"
    assert [e.agent for e in sys.modules[module].events] == ["by-path"]
    assert [e.agent for e in sys.modules[other].events] == ["by-path"]


def test_disable_by_entry_point_name(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_OFF)
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", installed.entry_point)
    monkeypatch.setenv("TRACEDAGENT_DISABLE_PLUGINS", f"something-else,{installed.entry_point}")
    run_once()

    assert installed.module not in sys.modules
    assert plugin_info(installed.entry_point).status == "not loaded: disabled by TRACEDAGENT_DISABLE_PLUGINS"


def test_disable_an_installed_plugin_by_module_path(installed: Installed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTOLOAD_OFF)
    monkeypatch.setenv("TRACEDAGENT_DISABLE_PLUGINS", installed.module)
    run_once()

    assert installed.module not in sys.modules
    assert plugin_info(installed.entry_point).status == "not loaded: disabled by TRACEDAGENT_DISABLE_PLUGINS"


def test_disable_a_module_path(site: Path, fresh_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"tracedagent_local_plugin_{uuid.uuid4().hex[:8]}"
    write_module(site, module)
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", module)
    monkeypatch.setenv("TRACEDAGENT_DISABLE_PLUGINS", module)
    run_once()

    assert module not in sys.modules
    assert plugin_info(module).status.startswith("not loaded")


def test_a_bad_module_path_is_a_clear_error(fresh_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", "tracedagent_no_such_plugin_module")
    with pytest.raises(PluginError) as raised:
        tracedagent.load_plugins()
    message = str(raised.value)
    assert "TRACEDAGENT_PLUGINS" in message
    assert "'tracedagent_no_such_plugin_module'" in message
    assert "neither an installed plugin" in message
    assert "nor an importable module" in message
    # It stays loud: a run does not silently go on without the plugin.
    with pytest.raises(PluginError):
        run_once()


def test_an_installed_plugin_that_fails_to_import_is_a_clear_error(
    site: Path, fresh_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"tracedagent_broken_plugin_{uuid.uuid4().hex[:8]}"
    (site / f"{module}.py").write_text("raise ImportError('needs a missing SDK')\n")
    name = f"broken{uuid.uuid4().hex[:6]}"
    install(site, name, module)
    monkeypatch.delenv(AUTOLOAD_OFF)
    with pytest.raises(PluginError) as raised:
        tracedagent.load_plugins()
    message = str(raised.value)
    assert repr(name) in message
    assert "needs a missing SDK" in message
    assert f"TRACEDAGENT_DISABLE_PLUGINS={name}" in message


def test_an_entry_point_may_name_an_object(site: Path, fresh_registry: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"tracedagent_object_plugin_{uuid.uuid4().hex[:8]}"
    source = textwrap.dedent(
        """
        from tracedagent import hookimpl

        class Tracer:
            def __init__(self):
                self.agents = []

            @hookimpl
            def on_run_end(self, event):
                self.agents.append(event.agent)

        tracer = Tracer()
        """
    )
    (site / f"{module}.py").write_text(source)
    monkeypatch.delitem(sys.modules, module, raising=False)
    name = f"object{uuid.uuid4().hex[:6]}"
    install(site, name, module, value=f"{module}:tracer")
    monkeypatch.delenv(AUTOLOAD_OFF)

    run_once("object")

    assert sys.modules[module].tracer.agents == ["object"]
    assert plugin_info(name).hooks == ["on_run_end"]


# --------------------------------------------------------------------------------- configure


def test_configure_status_shows_in_list_plugins(fresh_registry: Any) -> None:
    class Quiet:
        @tracedagent.hookimpl
        def tracedagent_configure(self, context: tracedagent.PluginContext) -> str:
            return f"inactive: set {context.plugin_name.upper()}=1 to print events"

    class NoStatus:
        @tracedagent.hookimpl
        def tracedagent_configure(self) -> None:
            return None

    tracedagent.register(Quiet(), "quiet")
    tracedagent.register(NoStatus(), "no-status")
    assert plugin_info("quiet").status == "inactive: set QUIET=1 to print events"
    assert plugin_info("quiet").source == "tracedagent.register()"
    assert plugin_info("no-status").status == "active"


def test_configure_may_register_tracers(fresh_registry: Any) -> None:
    seen: list[str] = []

    class Tracer:
        @tracedagent.hookimpl
        def on_run_end(self, event: tracedagent.RunEnded) -> None:
            seen.append(event.status)

    class Installer:
        @tracedagent.hookimpl
        def tracedagent_configure(self, context: tracedagent.PluginContext) -> str:
            assert context.environ is os.environ
            context.register(Tracer(), "installer-tracer")
            return "active: 1 tracer"

    tracedagent.register(Installer(), "installer")
    run_once()

    assert seen == ["completed"]
    assert plugin_info("installer-tracer").source == "registered by installer"
    assert plugin_info("installer").status == "active: 1 tracer"


def test_a_failing_configure_is_counted_and_shown(fresh_registry: Any) -> None:
    name = f"bad-config-{uuid.uuid4().hex[:8]}"

    class BadConfig:
        @tracedagent.hookimpl
        def tracedagent_configure(self) -> None:
            raise ValueError("TRACEDAGENT_X must be a number")

    tracedagent.register(BadConfig(), name)

    assert plugin_info(name).status == "failed to configure: ValueError('TRACEDAGENT_X must be a number')"
    assert tracedagent.plugin_errors()[(name, "tracedagent_configure")] == 1
    run_once()  # a plugin that failed to configure never breaks a run


def test_registering_twice_under_one_name_keeps_both(fresh_registry: Any) -> None:
    class Tracer:
        pass

    first = tracedagent.register(Tracer(), "tracer")
    second = tracedagent.register(Tracer(), "tracer")
    assert (first, second) == ("tracer", "tracer-2")
    assert {"tracer", "tracer-2"} <= {p.name for p in tracedagent.list_plugins()}


# ------------------------------------------------------------------------------------- the CLI


def cli_command() -> list[str]:
    return [sys.executable, "-m", "tracedagent", "plugins"]


def test_tracedagent_plugins_command_lists_what_loads_and_why(installed: Installed, tmp_path: Path) -> None:
    module = f"tracedagent_cli_plugin_{uuid.uuid4().hex[:8]}"
    write_module(installed.site, module, status='"active: from a module path"')
    disabled_module = f"tracedagent_cli_disabled_{uuid.uuid4().hex[:8]}"
    write_module(installed.site, disabled_module)
    disabled = f"disabled{uuid.uuid4().hex[:6]}"
    install(installed.site, disabled, disabled_module)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed.site), *sys.path]),
        "TRACEDAGENT_PLUGINS": module,
        "TRACEDAGENT_DISABLE_PLUGINS": disabled,
    }
    env.pop(AUTOLOAD_OFF, None)

    done = subprocess.run(cli_command(), env=env, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"{installed.entry_point}\n" in out
    assert f"from:   entry point {installed.entry_point} = {installed.module} ({installed.dist} 1.2.3)" in out
    assert "hooks:  on_run_start, tracedagent_configure" in out
    assert "status: active: demo status" in out
    assert f"{module}\n  from:   module path from TRACEDAGENT_PLUGINS" in out
    assert "status: active: from a module path" in out
    assert f"{disabled}\n" in out
    assert "status: not loaded: disabled by TRACEDAGENT_DISABLE_PLUGINS" in out


def test_tracedagent_plugins_command_reports_a_bad_module_path() -> None:
    env = {**os.environ, "TRACEDAGENT_PLUGINS": "tracedagent_no_such_plugin_module", AUTOLOAD_OFF: "1"}
    done = subprocess.run(cli_command(), env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "tracedagent_no_such_plugin_module" in done.stderr
    assert "Traceback" not in done.stderr
