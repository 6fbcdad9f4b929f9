"""The public surface: ``__all__`` is sorted and is exactly what a module makes public (as httpx checks)."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import tracedagent
import tracedagent.testing
from tracedagent import exceptions, hookspecs


def public_names(module: ModuleType) -> list[str]:
    """Every name a module defines or imports that does not start with ``_``, except submodules."""
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    ]


@pytest.mark.parametrize("module", [tracedagent, tracedagent.testing], ids=lambda m: m.__name__)
def test_all_is_sorted(module: ModuleType) -> None:
    assert module.__all__ == sorted(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)


@pytest.mark.parametrize("module", [tracedagent, tracedagent.testing], ids=lambda m: m.__name__)
def test_all_imports_are_exported(module: ModuleType) -> None:
    assert module.__all__ == sorted(public_names(module))


@pytest.mark.parametrize("module", [tracedagent, tracedagent.testing], ids=lambda m: m.__name__)
def test_star_import_gives_exactly_all(module: ModuleType) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(module.__all__)


def test_exported_names_belong_to_the_package() -> None:
    """Nothing third-party (pluggy, pydantic) is re-exported by accident; the markers are ours to export."""
    for name in tracedagent.__all__:
        value = getattr(tracedagent, name)
        if isinstance(value, type) or inspect.isfunction(value):
            assert value.__module__.startswith("tracedagent."), (name, value.__module__)
    for name in tracedagent.testing.__all__:
        assert getattr(tracedagent.testing, name).__module__.startswith("tracedagent.testing."), name


# Names DESIGN.md fixes as the public API, where the core already has them.
DESIGN_NAMES = [
    "Agent",
    "RunResult",
    "tool",
    "Model",
    "hookimpl",
    "hookspec",
    "flush",
    "shutdown",
    "RunStarted",
    "RunEnded",
    "ModelCallStarted",
    "ModelCallEnded",
    "ToolCallStarted",
    "ToolCallEnded",
    "RunInterrupted",
    "RunResumed",
    "ContextCompacted",
    "CheckpointSaved",
    "CircuitStateChanged",
    "RetryScheduled",
    "TracedAgentError",
    "UserError",
    "RunError",
    "ToolError",
    "ToolTimeout",
]
DESIGN_TESTING_NAMES = ["RecordingTracer", "capture_events", "ScriptedModel", "FunctionModel"]


def test_design_names_are_exported() -> None:
    assert sorted(set(DESIGN_NAMES) - set(tracedagent.__all__)) == []
    assert sorted(set(DESIGN_TESTING_NAMES) - set(tracedagent.testing.__all__)) == []


def test_every_error_is_exported() -> None:
    assert sorted(set(exceptions.__all__) - set(tracedagent.__all__)) == []
    for name in exceptions.__all__:
        if name == "ApprovalRequired":  # control flow (pauses the run), documented as not an error
            assert not issubclass(tracedagent.ApprovalRequired, tracedagent.TracedAgentError)
            continue
        assert issubclass(getattr(tracedagent, name), tracedagent.TracedAgentError)


def test_every_hook_has_an_exported_event() -> None:
    hooks = {
        value.hook
        for value in vars(tracedagent).values()
        if isinstance(value, type) and issubclass(value, tracedagent.Event) and value is not tracedagent.Event
    }
    assert hooks == set(hookspecs.OBSERVER_HOOKS)


def test_hook_markers_are_the_tracedagent_project() -> None:
    assert tracedagent.hookimpl.project_name == "tracedagent"
    assert tracedagent.hookspec.project_name == "tracedagent"


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert tracedagent.__version__ == version("tracedagent")
