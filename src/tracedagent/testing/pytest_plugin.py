"""The tracedagent pytest plugin (entry point ``pytest11``): fixtures for testing agents.

* ``recorded_events``: a :class:`RecordingTracer` registered for every run of the test;
* every circuit breaker is closed again after each test (tools outlive tests; their failures must not);
* ``scripted_model``: a factory ``scripted_model(steps, **options)`` returning a :class:`ScriptedModel`;
  at the end of the test every model it made must have played all its steps (pass
  ``require_all_used=False`` to allow leftovers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
