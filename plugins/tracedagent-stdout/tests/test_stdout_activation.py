"""Activation: ``tracedagent_configure`` registers a tracer when ``TRACEDAGENT_STDOUT`` is true."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import tracedagent
import tracedagent_stdout
from tracedagent import Agent, ConfigurationError
from tracedagent.testing import ScriptedModel
from tracedagent_stdout import StdoutTracer, tracedagent_configure


class FakeContext:
    """What ``tracedagent_configure`` is handed: the environment and ``register``."""

    plugin_name = "stdout"

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ
        self.registered: list[tuple[object, str | None]] = []

    def register(self, plugin: object, name: str | None = None) -> None:
        self.registered.append((plugin, name))


@pytest.fixture
def configured() -> Iterator[list[FakeContext]]:
    contexts: list[FakeContext] = []
    yield contexts
    for context in contexts:
        for plugin, _ in context.registered:
            assert isinstance(plugin, StdoutTracer)
            plugin.shutdown()


def configure(contexts: list[FakeContext], **environ: str) -> tuple[str, FakeContext]:
    context = FakeContext(environ)
    contexts.append(context)
    return tracedagent_configure(context), context  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, "", "0", "false", "no", "off"])
def test_inactive_unless_asked(configured, value):
    environ = {} if value is None else {"TRACEDAGENT_STDOUT": value}
    status, context = configure(configured, **environ)
    assert status == "inactive: set TRACEDAGENT_STDOUT=1 to print events"
    assert context.registered == []


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE", " Yes "])
def test_active_registers_one_tracer(configured, value):
    status, context = configure(configured, TRACEDAGENT_STDOUT=value)
    assert status.startswith("active: ")
    [(tracer, name)] = context.registered
    assert isinstance(tracer, StdoutTracer)
    assert name == "stdout-tracer"


def test_active_reads_format_and_capture_from_its_environment(configured):
    status, context = configure(
        configured, TRACEDAGENT_STDOUT="1", TRACEDAGENT_LOG_FORMAT="console", TRACEDAGENT_CAPTURE_CONTENT="true"
    )
    [(tracer, _)] = context.registered
    assert isinstance(tracer, StdoutTracer)
    assert (tracer.format, tracer.capture_content) == ("console", True)
    assert status == "active: console lines to stdout, message content included"


def test_a_bad_format_fails_configuration_loudly(configured):
    # The loader turns this into the plugin's status ("failed to configure: ...") and logs it.
    with pytest.raises(ConfigurationError, match="TRACEDAGENT_LOG_FORMAT='xml'"):
        configure(configured, TRACEDAGENT_STDOUT="1", TRACEDAGENT_LOG_FORMAT="xml")


def test_public_names():
    assert set(tracedagent_stdout.__all__) == {"ENV_ENABLE", "StdoutTracer", "tracedagent_configure"}
    assert tracedagent_stdout.__all__ == sorted(tracedagent_stdout.__all__)


# ------------------------------------------------ through the real loader and the installed entry point


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty process-wide plugin registry for this test (the core keeps no public way to reset it)."""
    from tracedagent import _plugins

    registry = _plugins._Registry()
    monkeypatch.setattr(_plugins, "_registry", registry)
    yield registry
    for name in list(registry.info):
        plugin = registry.pm.get_plugin(name)
        if isinstance(plugin, StdoutTracer):
            plugin.shutdown()


def test_entry_point_on_prints_every_run(fresh_registry, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", "stdout")  # autoload is off in tests; name it
    monkeypatch.setenv("TRACEDAGENT_STDOUT", "1")
    monkeypatch.setenv("TRACEDAGENT_LOG_FORMAT", "json")
    tracedagent.load_plugins()
    plugins = {info.name: info for info in tracedagent.list_plugins()}
    assert plugins["stdout"].status == "active: json lines to stdout, no message content"
    assert plugins["stdout"].hooks == ["tracedagent_configure"]
    assert plugins["stdout-tracer"].source == "registered by stdout"
    assert "on_tool_call_end" in plugins["stdout-tracer"].hooks

    result = Agent("plain", ScriptedModel(["hello"])).run_sync("hi")  # no plugin passed: process-wide
    assert tracedagent.flush()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["event"] for line in lines] == ["run.start", "model.start", "model.end", "run.end"]
    assert {line["run_id"] for line in lines} == {result.run_id}


def test_entry_point_off_registers_nothing(fresh_registry, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDAGENT_PLUGINS", "stdout")
    tracedagent.load_plugins()
    plugins = {info.name: info for info in tracedagent.list_plugins()}
    assert plugins["stdout"].status == "inactive: set TRACEDAGENT_STDOUT=1 to print events"
    assert "stdout-tracer" not in plugins

    Agent("plain", ScriptedModel(["hello"])).run_sync("hi")
    assert tracedagent.flush()
    assert capsys.readouterr().out == ""
