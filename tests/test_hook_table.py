"""The hook table is defined once, in ``tracedagent.hookspecs``; everything else is derived from it or
checked against it here: the event types, the dispatcher's table, the queueing base of tracers, the
recording tracer, and the hook names the docs list."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import get_type_hints

import pytest

import tracedagent
from tracedagent import Event, QueueingTracer, _events, hookspecs
from tracedagent._dispatch import Dispatcher
from tracedagent.testing import RecordingTracer

ROOT = Path(__file__).resolve().parents[1]


def event_classes() -> list[type[Event]]:
    """Every event type the core defines (``slots=True`` dataclasses leave their pre-slots class among
    ``__subclasses__``, so the module's names are the list)."""
    return [
        value
        for value in vars(_events).values()
        if isinstance(value, type) and issubclass(value, Event) and value is not Event
    ]


def test_the_lists_are_read_from_the_specs() -> None:
    declared = [name for name, value in vars(hookspecs).items() if hasattr(value, "tracedagent_spec")]
    assert list(hookspecs.ALL_HOOKS) == sorted(declared, key=hookspecs.ALL_HOOKS.index)
    assert set(hookspecs.ALL_HOOKS) == set(declared)
    assert all(name.startswith("on_") for name in hookspecs.OBSERVER_HOOKS)
    assert hookspecs.DECIDER_HOOKS == ("approve_tool_call",)
    assert hookspecs.REGISTRATION_HOOKS == ("tracedagent_configure",)
    for name in hookspecs.DECIDER_HOOKS:
        assert getattr(hookspecs, name).tracedagent_spec["firstresult"] is True


def test_each_observer_hook_has_exactly_one_event_type_and_takes_it() -> None:
    by_hook: dict[str, list[type[Event]]] = {}
    for cls in event_classes():
        by_hook.setdefault(cls.hook, []).append(cls)
    assert sorted(by_hook) == sorted(hookspecs.OBSERVER_HOOKS)
    assert all(len(classes) == 1 for classes in by_hook.values())
    for hook in hookspecs.OBSERVER_HOOKS:
        spec = getattr(hookspecs, hook)
        assert list(inspect.signature(spec).parameters) == ["event"]
        hints = get_type_hints(spec, vars(tracedagent))
        assert hints["event"] is by_hook[hook][0]
        assert spec.__doc__, f"{hook} has no docstring saying when it fires"


def test_the_dispatcher_table_is_the_hook_list() -> None:
    assert set(Dispatcher.__slots__) == {*hookspecs.OBSERVER_HOOKS, *hookspecs.DECIDER_HOOKS, "shadowed"}
    annotated = set(Dispatcher.__annotations__) - {"shadowed"}
    assert annotated == {*hookspecs.OBSERVER_HOOKS, *hookspecs.DECIDER_HOOKS}


def test_the_queueing_base_and_the_recorder_implement_every_observer_hook() -> None:
    for cls in (QueueingTracer, RecordingTracer):
        implemented = {name for name in dir(cls) if hasattr(getattr(cls, name), "tracedagent_impl")}
        assert set(hookspecs.OBSERVER_HOOKS) <= implemented, cls.__name__


def test_the_design_hook_table_names_only_hooks_that_exist_or_are_planned() -> None:
    """Every hook in the code is in the design's table (the contract); the table may list hooks of
    issues not built yet, which are named here so that list only shrinks."""
    path = ROOT.parent / "shared" / "DESIGN.md"
    if not path.exists():
        pytest.skip(f"the design contract is not at {path} (the shared/ folder beside the repository)")
    design = path.read_text()
    table = set(re.findall(r"^\| `(on_\w+)`", design, flags=re.M))
    table |= {name for name in re.findall(r"`(on_\w+)` / `(on_\w+)`", design) for name in name}
    not_built_yet: set[str] = set()
    assert set(hookspecs.OBSERVER_HOOKS) == table - not_built_yet
