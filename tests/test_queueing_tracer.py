"""``QueueingTracer``: every observer hook puts its event on ``_put``; the dispatcher calls ``_put`` itself for
the hooks a subclass leaves alone, and the overridden ones as written, with faults isolated as for any hook."""

from __future__ import annotations

from typing import Any

import tracedagent
from tracedagent import Agent, Event, QueueingTracer, RunStarted, hookimpl, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def calc(*plugins: Any) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
    return Agent("calc", model, tools=[add], plugins=list(plugins))


class Collecting(QueueingTracer):
    def __init__(self) -> None:
        self.put: list[Event] = []
        self._put = self.put.append


class Overriding(Collecting):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        self.starts += 1
        self._put(event)


def test_every_event_reaches_put_in_order() -> None:
    tracer, recorder = Collecting(), RecordingTracer()
    assert calc(tracer, recorder).run_sync("1 + 2").output == "3"
    assert tracer.put == recorder.events
    assert len(tracer.put) == 8


def test_an_overridden_hook_is_still_called_as_written() -> None:
    tracer, recorder = Overriding(), RecordingTracer()
    calc(tracer, recorder).run_sync("1 + 2")
    assert tracer.starts == 1
    assert tracer.put == recorder.events


def test_a_put_that_raises_is_isolated_and_counted_under_the_plugin_and_hook() -> None:
    class Broken(QueueingTracer):
        def __init__(self) -> None:
            self._put = self.fail

        def fail(self, event: Event) -> None:
            raise RuntimeError("queue broke")

    recorder = RecordingTracer()
    before = tracedagent.plugin_errors()
    result = calc(Broken(), recorder).run_sync("1 + 2")
    assert result.output == "3"
    assert len(recorder.events) == 8
    after = tracedagent.plugin_errors()
    grew = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    hooks = ("on_run_start", "on_run_end", "on_model_call_start", "on_model_call_end")
    assert sorted(hook for _, hook in grew) == sorted((*hooks, "on_tool_call_start", "on_tool_call_end"))
    assert sum(grew.values()) == 8
