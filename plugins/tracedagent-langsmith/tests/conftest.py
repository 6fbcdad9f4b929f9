"""Plugin tests see only the plugins they register, and no LangSmith or content setting from the shell."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Installed plugins must not load into these tests on their own (the root tests/conftest.py does not
# apply to this folder).
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS"):
    os.environ.pop(_name, None)

sys.path.insert(0, str(Path(__file__).parent))  # the capture server module beside this file

import langsmith.utils  # noqa: E402
from langsmith_server import CaptureServer, capture_server  # noqa: E402
from ls_support import API_KEY, MakeTracer  # noqa: E402

from tracedagent_langsmith import LangSmithTracer  # noqa: E402

CAPTURE = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRACEDAGENT_CAPTURE_CONTENT")


def _clear_sdk_caches() -> None:
    # The SDK caches the variables it reads for the life of the process.
    langsmith.utils.get_env_var.cache_clear()
    langsmith.utils.get_tracer_project.cache_clear()


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("LANGSMITH_", "LANGCHAIN_")) or name in CAPTURE:
            monkeypatch.delenv(name)
    _clear_sdk_caches()
    yield
    _clear_sdk_caches()


@pytest.fixture
def server() -> Iterator[CaptureServer]:
    """A healthy capture server (multipart, zstd) that the SDK is pointed at."""
    with capture_server() as running:
        yield running


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Point the SDK's environment at ``url`` with the test API key."""

    def point(url: str) -> None:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", url)
        monkeypatch.setenv("LANGSMITH_API_KEY", API_KEY)
        monkeypatch.setenv("LANGSMITH_PROJECT", "tracedagent-tests")
        _clear_sdk_caches()

    return point


@pytest.fixture
def make_tracer() -> Iterator[MakeTracer]:
    """Build tracers (small interval, so tests are quick); each is shut down afterwards."""
    tracers: list[LangSmithTracer] = []

    def make(**kwargs: Any) -> LangSmithTracer:
        kwargs.setdefault("interval_s", 0.05)
        tracer = LangSmithTracer(**kwargs)
        tracers.append(tracer)
        return tracer

    yield make
    for tracer in tracers:
        tracer.shutdown(5.0)
