"""Shared test setup: tests see only the plugins they register themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Installed plugins (the stdout tracer, Prometheus...) must not load into unit tests on their own.
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS"):
    os.environ.pop(_name, None)

from postgres_server import postgres_dsn, postgres_server  # noqa: E402, F401  (fixtures: a real PostgreSQL)

from tracedagent import _plugins  # noqa: E402
from tracedagent.testing import RecordingTracer, capture_events  # noqa: E402


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> _plugins._Registry:
    """A new, empty process-wide plugin registry for this test (restored afterwards)."""
    registry = _plugins._Registry()
    monkeypatch.setattr(_plugins, "_registry", registry)
    return registry


@pytest.fixture
def tracer(fresh_registry: _plugins._Registry) -> Iterator[RecordingTracer]:
    """A RecordingTracer registered process-wide (in a fresh registry) for this test."""
    with capture_events() as recorded:
        yield recorded
