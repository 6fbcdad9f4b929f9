"""A broken plugin never breaks a run nor another plugin: it is counted and logged once per hook."""

from __future__ import annotations

import collections
import gc
import logging
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import tracedagent
from tracedagent import (
    Agent,
    CheckpointSaved,
    CircuitStateChanged,
    Event,
    HandoffOccurred,
    ModelError,
    RetryScheduled,
    RunInterrupted,
    RunResult,
    RunResumed,
    hookimpl,
    hookspecs,
    tool,
)
from tracedagent._dispatch import DeciderFailed
from tracedagent._plugins import get_dispatcher
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def calc_agent(**options: Any) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 2, "b": 3})]), "It is 5."])
    return Agent("calc", model, tools=[add], **options)


async def run_calc(agent: Agent, prompt: str = "2 + 3?") -> RunResult:
    """Run the calc agent. A raising ``approve_tool_call`` fails closed (the call waits for a person, the
    interruption says why); then a person approves it and the run goes on."""
    result = await agent.run(prompt)
    if result.status == "interrupted":
        assert [i.tool for i in result.interruptions] == ["add"]
        assert all("raised RuntimeError" in i.reason for i in result.interruptions)
        result = await agent.resume(result.run_id, {i.id: True for i in result.interruptions})
    return result


def unique(prefix: str) -> str:
    """A plugin name no other test uses: error counts and log-once state are per process."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Exploding:
    """Raises in every hook tracedagent has."""

    def __init__(self, name: str) -> None:
        self.name = name

    def _boom(self, hook: str) -> None:
        raise RuntimeError(f"{self.name} broke in {hook}")

    @hookimpl
    def on_run_start(self, event: Event) -> None:
        self._boom("on_run_start")

    @hookimpl
    def on_run_end(self, event: Event) -> None:
        self._boom("on_run_end")

    @hookimpl
    def on_model_call_start(self, event: Event) -> None:
        self._boom("on_model_call_start")

    @hookimpl
    def on_model_call_end(self, event: Event) -> None:
        self._boom("on_model_call_end")

    @hookimpl
    def on_tool_call_start(self, event: Event) -> None:
        self._boom("on_tool_call_start")

    @hookimpl
    def on_tool_call_end(self, event: Event) -> None:
        self._boom("on_tool_call_end")

    @hookimpl
    def on_interrupt(self, event: Event) -> None:
        self._boom("on_interrupt")

    @hookimpl
    def on_resume(self, event: Event) -> None:
        self._boom("on_resume")

    @hookimpl
    def on_compaction(self, event: Event) -> None:
        self._boom("on_compaction")

    @hookimpl
    def on_checkpoint(self, event: Event) -> None:
        self._boom("on_checkpoint")

    @hookimpl
    def on_circuit_change(self, event: Event) -> None:
        self._boom("on_circuit_change")

    @hookimpl
    def on_retry(self, event: Event) -> None:
        self._boom("on_retry")

    @hookimpl
    def on_handoff(self, event: Event) -> None:
        self._boom("on_handoff")

    @hookimpl
    def approve_tool_call(self, call: Any) -> None:
        self._boom("approve_tool_call")

    @hookimpl
    def tracedagent_configure(self, context: Any) -> None:
        self._boom("tracedagent_configure")


def test_exploding_implements_every_hook() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith(("on_", "approve_", "tracedagent_"))]
    assert sorted(hooks) == sorted(name for name in dir(Exploding) if not name.startswith("_"))


@pytest.fixture
def recorder(fresh_registry: Any) -> Iterator[RecordingTracer]:
    recorder = RecordingTracer()
    tracedagent.register(recorder, "recorder")
    return recorder


def later_events(run_id: str, trace_id: str) -> list[Event]:
    common = {"run_id": run_id, "trace_id": trace_id, "span_id": "1" * 16, "parent_span_id": None, "agent": "calc"}
    return [
        RunInterrupted(**common, timestamp_ns=1),
        RunResumed(**common, timestamp_ns=2),
        CheckpointSaved(**common, timestamp_ns=3, bytes=10),
        CircuitStateChanged(**common, timestamp_ns=4, tool="add", old="closed", new="open"),
        RetryScheduled(**common, timestamp_ns=5, target="add", kind="tool", attempt=1),
        HandoffOccurred(**common, timestamp_ns=6, from_agent="calc", to_agent="checker"),
    ]


async def test_a_plugin_raising_in_every_hook_breaks_nothing(
    recorder: RecordingTracer, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("exploding")
    before = tracedagent.plugin_errors()
    # Registered after the recorder, so pluggy calls it first: the recorder must still get every event.
    tracedagent.register(Exploding(name))

    result = await run_calc(calc_agent())
    assert recorder.unmatched() == []
    for event in later_events(result.run_id, result.trace_id):
        get_dispatcher().emit_event(event)
    with pytest.raises(DeciderFailed, match=name):  # a decision nobody could make fails closed
        await get_dispatcher().decide("approve_tool_call", call=object())

    assert result.status == "completed"
    assert result.output == "It is 5."
    assert recorder.hooks() == [
        "on_run_start",
        "on_model_call_start",
        "on_model_call_end",
        "on_interrupt",
        "on_checkpoint",
        "on_run_end",
        "on_resume",
        "on_tool_call_start",
        "on_tool_call_end",
        "on_model_call_start",
        "on_model_call_end",
        "on_run_end",
        "on_interrupt",
        "on_resume",
        "on_checkpoint",
        "on_circuit_change",
        "on_retry",
        "on_handoff",
    ]

    expected = collections.Counter(recorder.hooks())
    expected["approve_tool_call"] += 2  # asked about the run's one tool call (it paused), then directly
    expected["tracedagent_configure"] += 1
    errors = tracedagent.plugin_errors()
    assert {hook: errors[(name, hook)] for (plugin, hook) in errors if plugin == name} == dict(expected)
    assert not {key for key in errors if key[0] == "recorder" and errors[key] != before.get(key, 0)}

    [info] = [p for p in tracedagent.list_plugins() if p.name == name]
    assert info.status.startswith("failed to configure")
    assert "RuntimeError" in info.status


async def test_plugin_errors_are_logged_once_per_plugin_and_hook(
    recorder: RecordingTracer, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("exploding")
    tracedagent.register(Exploding(name))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="tracedagent"):
        for prompt in ("first", "second"):
            result = await run_calc(calc_agent(), prompt)
            assert result.output == "It is 5."

    logged = collections.Counter(
        hook
        for record in caplog.records
        for hook in hookspecs.OBSERVER_HOOKS
        if f"{name}' raised RuntimeError in {hook};" in record.getMessage()
    )
    run_hooks = [
        "on_run_start",
        "on_run_end",
        "on_model_call_start",
        "on_model_call_end",
        "on_tool_call_start",
        "on_tool_call_end",
    ]
    assert logged == dict.fromkeys([*run_hooks, "on_interrupt", "on_checkpoint", "on_resume"], 1)
    errors = tracedagent.plugin_errors()
    assert errors[(name, "on_run_start")] == 2
    assert errors[(name, "on_model_call_start")] == 4
    # The log record carries the plugin's traceback (its frames), not its message: content capture is off.
    record = next(r for r in caplog.records if f"{name}' raised RuntimeError in on_run_start" in r.getMessage())
    assert "in _boom" in record.getMessage()
    assert "broke in on_run_start" not in record.getMessage()
    assert record.exc_info is None


async def test_with_content_capture_on_the_log_carries_the_whole_exception(
    recorder: RecordingTracer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEDAGENT_CAPTURE_CONTENT", "true")
    name = unique("exploding")
    tracedagent.register(Exploding(name))
    with caplog.at_level(logging.ERROR, logger="tracedagent"):
        await run_calc(calc_agent())
    record = next(r for r in caplog.records if f"{name}' raised in on_run_start" in r.getMessage())
    assert record.exc_info is not None
    assert "broke in on_run_start" in str(record.exc_info[1])


class SecretTool(Exception):
    pass


async def test_a_plugin_failing_while_a_tool_fails_logs_no_tool_content(
    recorder: RecordingTracer, caplog: pytest.LogCaptureFixture
) -> None:
    """The tool's exception (user content) is being handled when the plugin raises in on_tool_call_end:
    with content capture off, neither its message nor the plugin's reaches the log."""
    name = unique("exploding")

    class ExplodesOnToolEnd:
        @hookimpl
        def on_tool_call_end(self, event: Event) -> None:
            raise RuntimeError(f"plugin saw {event.result}")

    @tool
    def leak(card: str) -> str:
        """Charge a card."""
        raise SecretTool(f"card {card} was declined")

    tracedagent.register(ExplodesOnToolEnd(), name)
    model = ScriptedModel([Step(tool_calls=[("leak", {"card": "4111-1111"})]), "Sorry."])
    with caplog.at_level(logging.DEBUG, logger="tracedagent"):
        result = await Agent("pay", model, tools=[leak]).run("pay")
    assert result.output == "Sorry."
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") + str(r.exc_text or "") for r in caplog.records)
    assert f"{name}' raised RuntimeError in on_tool_call_end" in logged
    assert "4111" not in logged
    assert "declined" not in logged


async def test_a_failing_run_still_fails_with_its_own_error(recorder: RecordingTracer) -> None:
    tracedagent.register(Exploding(unique("exploding")))
    agent = Agent("failing", ScriptedModel([RuntimeError("provider down")]))
    with pytest.raises(ModelError, match="provider down"):
        await agent.run("hi")
    assert recorder.hooks() == ["on_run_start", "on_model_call_start", "on_model_call_end", "on_run_end"]
    assert recorder.unmatched() == []


@pytest.mark.parametrize("where", ["exploding per agent", "exploding process-wide"])
async def test_isolation_across_per_agent_and_process_wide_plugins(fresh_registry: Any, where: str) -> None:
    name = unique("exploding")
    exploding = Exploding(name)
    recorder = RecordingTracer()
    if where == "exploding per agent":
        tracedagent.register(recorder)
        agent = calc_agent(plugins=[exploding])
    else:
        tracedagent.register(exploding)
        agent = calc_agent(plugins=[recorder])

    result = await run_calc(agent)

    assert result.output == "It is 5."
    assert len(recorder.events) == 12  # 8, and the pause: interrupt, checkpoint, the paused segment's end, resume
    assert recorder.unmatched() == []
    errors = tracedagent.plugin_errors()
    # Per-agent plugins are counted under their name too, never under an id.
    assert errors[(name, "on_run_start")] == 1
    assert errors[(name, "on_model_call_end")] == 2


async def test_exploding_both_per_agent_and_process_wide(fresh_registry: Any) -> None:
    name = unique("exploding")
    exploding = Exploding(name)
    recorder = RecordingTracer()
    tracedagent.register(exploding)
    agent = calc_agent(plugins=[exploding, recorder])

    result = await run_calc(agent)

    assert result.output == "It is 5."
    assert recorder.unmatched() == []
    assert len(recorder.events) == 12
    # One object registered in both places is called once per event.
    assert tracedagent.plugin_errors()[(name, "on_run_start")] == 1


class ReturnsACoroutine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.created = 0

    @hookimpl
    async def on_run_start(self, event: Event) -> None:
        self.created += 1

    @hookimpl
    def on_run_end(self, event: Event) -> Any:
        async def later() -> None:
            self.created += 1

        return later()


async def test_a_hookimpl_returning_a_coroutine_is_warned_about_once_and_counted(recorder: RecordingTracer) -> None:
    name = unique("async-by-mistake")
    plugin = ReturnsACoroutine(name)
    tracedagent.register(plugin)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            result = await Agent("a", ScriptedModel(["ok"])).run("hi")
            assert result.output == "ok"
        gc.collect()

    mistakes = [
        w for w in caught if issubclass(w.category, RuntimeWarning) and "returned a coroutine" in str(w.message)
    ]
    assert [str(w.message).split(" returned")[0] for w in mistakes] == [f"plugin {name!r}"] * 2
    assert sorted(str(w.message).split(" from ")[1].split(";")[0] for w in mistakes) == ["on_run_end", "on_run_start"]
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert plugin.created == 0
    errors = tracedagent.plugin_errors()
    assert errors[(name, "on_run_start")] == 3
    assert errors[(name, "on_run_end")] == 3
    assert len(recorder.of_type(Event)) == 12


async def test_a_coroutine_warning_names_the_plugin_and_hook(recorder: RecordingTracer) -> None:
    name = unique("async-by-mistake")

    class AsyncStart:
        @hookimpl
        async def on_run_start(self, event: Event) -> None:
            pass

    tracedagent.register(AsyncStart(), name)
    with pytest.warns(RuntimeWarning, match=rf"{name}.*on_run_start") as caught:
        await Agent("a", ScriptedModel(["ok"])).run("hi")
    assert len(caught) == 1
