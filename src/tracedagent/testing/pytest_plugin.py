"""The tracedagent pytest plugin (entry point ``pytest11``): fixtures for testing agents.

* ``recorded_events``: a :class:`RecordingTracer` registered for every run of the test;
* every circuit breaker is closed again after each test (tools outlive tests; their failures must not);
* ``scripted_model``: a factory ``scripted_model(steps, **options)`` returning a :class:`ScriptedModel`;
  at the end of the test every model it made must have played all its steps (pass
  ``require_all_used=False`` to allow leftovers).

``async def`` tests that use these fixtures need no settings: with pytest-asyncio installed the plugin
marks them ``asyncio`` (in strict mode too; a test its author marked ``asyncio`` or ``anyio`` is left as
it is), and without it the plugin runs them itself, each on a new event loop. With pytest-asyncio and no
``asyncio_default_fixture_loop_scope`` set, its deprecation notice about that setting is not shown (it
concerns async fixtures, which the plugin has none of; set the option to choose their loop scope).
Async tests that use none of these fixtures are left to pytest and its plugins.
"""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from ..resilience import reset_all
from ._models import ScriptedModel
from ._recording import RecordingTracer, capture_events


@pytest.fixture
def recorded_events() -> Iterator[RecordingTracer]:
    """Every event of every run in this test, in order."""
    with capture_events() as tracer:
        yield tracer


@pytest.fixture
def scripted_model() -> Iterator[Callable[..., ScriptedModel]]:
    """Make scripted models; each must have played every step by the end of the test."""
    made: list[ScriptedModel] = []

    def make(steps: Any, *, require_all_used: bool = True, **options: Any) -> ScriptedModel:
        model = ScriptedModel(steps, **options)
        if require_all_used:
            made.append(model)
        return model

    yield make
    for model in made:
        model.assert_all_used()


@pytest.fixture(autouse=True)
def _tracedagent_close_breakers() -> Iterator[None]:
    """Tools are usually module-level objects whose circuit breakers live for the whole process: close
    them after each test, so failures in one test never refuse calls in the next."""
    yield
    reset_all()


_FIXTURES = frozenset({"recorded_events", "scripted_model"})
_PYTEST_ASYNCIO = "asyncio"  # the name pytest-asyncio registers under (``-p no:asyncio``)


def _async_test_of_ours(item: object) -> bool:
    """An ``async def`` test using our fixtures that nobody has claimed with a marker."""
    return (
        isinstance(item, pytest.Function)
        and inspect.iscoroutinefunction(item.obj)
        and not _FIXTURES.isdisjoint(item.fixturenames)
        and item.get_closest_marker("asyncio") is None
        and item.get_closest_marker("anyio") is None
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.has_plugin(_PYTEST_ASYNCIO):
        try:
            unset = not config.getini("asyncio_default_fixture_loop_scope")
        except ValueError:  # a pytest-asyncio without that option
            unset = False
        if unset:
            # Filters set here last only while the configure hooks run (pytest restores them after).
            warnings.filterwarnings(
                "ignore",
                message='The configuration option "asyncio_default_fixture_loop_scope" is unset',
                category=pytest.PytestDeprecationWarning,
            )


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Generator[None, Any, Any]:
    """Mark our fixtures' async tests for pytest-asyncio, before its own wrapper (outside this one) looks."""
    result = yield
    if result and collector.config.pluginmanager.has_plugin(_PYTEST_ASYNCIO):
        for item in result if isinstance(result, list) else [result]:
            if _async_test_of_ours(item):
                item.add_marker(pytest.mark.asyncio)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """With no pytest-asyncio, run our fixtures' async tests on a new event loop."""
    if not _async_test_of_ours(pyfuncitem) or pyfuncitem.config.pluginmanager.has_plugin(_PYTEST_ASYNCIO):
        return None
    names = inspect.signature(pyfuncitem.obj).parameters
    asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
