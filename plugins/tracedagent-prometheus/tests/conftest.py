"""Plugin tests see only the plugins they register, no metrics setting from the shell, and a fresh
registry each (the process-wide default registry only where a test says so)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Installed plugins must not load into these tests on their own (the root tests/conftest.py does not
# apply to this folder).
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
# prometheus-client picks its value class (in-process or multiprocess files) when it is imported: a
# multiprocess directory set in the shell would change every test. Tests that want it set it in a child.
for _name in (
    "TRACEDAGENT_PLUGINS",
    "TRACEDAGENT_DISABLE_PLUGINS",
    "PROMETHEUS_MULTIPROC_DIR",
    "prometheus_multiproc_dir",
):
    os.environ.pop(_name, None)

from prometheus_client import CollectorRegistry  # noqa: E402

from tracedagent.testing import RecordingTracer  # noqa: E402
from tracedagent_prometheus import PrometheusTracer, _server  # noqa: E402

SETTINGS = ("TRACEDAGENT_METRICS", "TRACEDAGENT_METRICS_ADDR", "TRACEDAGENT_CHECKPOINTS")


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of this test's own."""
    return CollectorRegistry()


@pytest.fixture
def prom(registry: CollectorRegistry) -> PrometheusTracer:
    """The tracer under test, keeping its metrics in ``registry``."""
    return PrometheusTracer(registry)


@pytest.fixture
def recorder() -> RecordingTracer:
    return RecordingTracer()


@pytest.fixture
def stop_servers() -> Iterator[None]:
    """Shut down every /metrics server a test started with ``serve()`` (they run in daemon threads)."""
    before = len(_server._servers)
    yield
    with _server._lock:
        started = _server._servers[before:]
        del _server._servers[before:]
    for server in started:
        server.shutdown()
        server.server_close()
