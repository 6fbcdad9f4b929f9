"""Plugin tests see only the plugins they register, and no stdout/content setting from the shell."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Installed plugins must not load into these tests on their own (the root tests/conftest.py does not
# apply to this folder).
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS"):
    os.environ.pop(_name, None)

from tracedagent_stdout import StdoutTracer  # noqa: E402

SETTINGS = (
    "TRACEDAGENT_STDOUT",
    "TRACEDAGENT_LOG_FORMAT",
    "TRACEDAGENT_CAPTURE_CONTENT",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "NO_COLOR",
    "FORCE_COLOR",
)

MakeTracer = Callable[..., tuple[StdoutTracer, io.StringIO]]


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_tracer() -> Iterator[MakeTracer]:
    """Build tracers writing to a ``StringIO`` (or the given stream); each is shut down afterwards."""
    tracers: list[StdoutTracer] = []

    def make(stream: Any = None, **kwargs: Any) -> tuple[StdoutTracer, Any]:
        stream = io.StringIO() if stream is None else stream
        tracer = StdoutTracer(stream, **kwargs)
        tracers.append(tracer)
        return tracer, stream

    yield make
    for tracer in tracers:
        tracer.shutdown(5.0)
