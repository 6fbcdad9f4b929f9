"""The tracer: activation by tracedagent_configure, hooks that only queue, the SDK called on the worker
only, failures isolated, and flush reaching the SDK client."""

from __future__ import annotations

import logging
import os
import queue
from importlib.metadata import entry_points
from typing import Any

import pytest
from ls_support import API_KEY, SENTINEL, FakeClient, MakeTracer, calc_agent

import tracedagent
from tracedagent import Agent, ConfigurationError, RunStarted, tool
from tracedagent.testing import ScriptedModel, Step
from tracedagent_langsmith import LangSmithTracer, tracedagent_configure

GUARD_S = 60.0


class Context:
    """What tracedagent_configure gets: the environment and a way to register."""

    def __init__(self, **environ: str) -> None:
        self.environ = {**os.environ, **environ}
        self.registered: list[Any] = []

    def register(self, plugin: Any, name: str | None = None) -> None:
        self.registered.append((name, plugin))


@pytest.fixture
def configure() -> Any:
    contexts: list[Context] = []

    def run(**environ: str) -> tuple[str, list[Any]]:
        context = Context(**environ)
        contexts.append(context)
        return tracedagent_configure(context), [plugin for _, plugin in context.registered]  # type: ignore[arg-type]

    yield run
    for context in contexts:
        for _, plugin in context.registered:
            plugin.shutdown(1.0)


# ----------------------------------------------------------------------------------------- activation


def test_the_plugin_is_the_langsmith_entry_point_of_the_tracedagent_group() -> None:
    (found,) = [ep for ep in entry_points(group="tracedagent") if ep.name == "langsmith"]
    assert found.value == "tracedagent_langsmith"
    assert found.load().tracedagent_configure is tracedagent_configure


def test_without_langsmith_tracing_the_plugin_stays_inactive_and_says_how_to_turn_it_on(configure: Any) -> None:
    status, registered = configure()
    assert status == "inactive: set LANGSMITH_TRACING=true to send runs to LangSmith"
    assert registered == []
    status, registered = configure(LANGSMITH_TRACING="false")
    assert registered == []


def test_with_langsmith_tracing_it_registers_a_tracer_and_says_where_runs_go(configure: Any) -> None:
    status, registered = configure(
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT="http://127.0.0.1:1984/",
        LANGSMITH_PROJECT="agents",
        LANGSMITH_API_KEY=API_KEY,
    )
    (tracer,) = registered
    assert isinstance(tracer, LangSmithTracer)
    assert status == "active: runs to http://127.0.0.1:1984, project 'agents', no message content"
    assert API_KEY not in status


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"LANGCHAIN_TRACING_V2": "true"}, "project 'default', no message content"),  # the SDK's older names
        ({"LANGSMITH_TRACING_SAMPLING_RATE": "0.25"}, "25% of traces"),
        ({"LANGSMITH_HIDE_INPUTS": "true", "LANGSMITH_HIDE_OUTPUTS": "true"}, "inputs hidden, outputs hidden"),
        ({"TRACEDAGENT_CAPTURE_CONTENT": "true"}, "message content included"),
        ({}, "LANGSMITH_API_KEY is not set, so the hosted API will refuse the runs"),
    ],
)
def test_the_status_line_tells_the_settings(configure: Any, environ: dict[str, str], says: str) -> None:
    status, registered = configure(**{"LANGSMITH_TRACING": "true", **environ})
    assert says in status
    assert status.startswith("active: runs to https://api.smith.langchain.com")
    assert len(registered) == 1


def test_the_settings_reach_the_sdk_client(monkeypatch: pytest.MonkeyPatch, make_tracer: MakeTracer) -> None:
    monkeypatch.setenv("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")  # nothing is sent in this test
    monkeypatch.setenv("LANGSMITH_TRACING_SAMPLING_RATE", "0")
    monkeypatch.setenv("LANGSMITH_HIDE_INPUTS", "true")
    tracer = make_tracer()
    calc_agent(tracer).run_sync("question")
    tracer.flush(GUARD_S)
    client = tracer.client

    assert client.api_url == "http://127.0.0.1:9"
    assert client.tracing_sample_rate == 0.0
    assert (client._hide_inputs, client._hide_outputs) == (True, False)


def test_a_sampling_rate_that_is_not_one_is_a_configuration_error(configure: Any) -> None:
    with pytest.raises(ConfigurationError, match="LANGSMITH_TRACING_SAMPLING_RATE='often'"):
        configure(LANGSMITH_TRACING="true", LANGSMITH_TRACING_SAMPLING_RATE="often")
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        LangSmithTracer(sampling_rate=2.0)


def test_settings_for_a_client_of_your_own_belong_on_that_client() -> None:
    with pytest.raises(ConfigurationError, match="set sampling and hidden inputs/outputs on that client"):
        LangSmithTracer(client=FakeClient(), hide_inputs=True)


# ----------------------------------------------------------------------------------------- the hot path


def test_a_hook_only_queues_the_event() -> None:
    client = FakeClient()
    tracer = LangSmithTracer(client=client, interval_s=3600.0)
    try:
        event = RunStarted(
            run_id="r", trace_id="1" * 32, span_id="2" * 16, parent_span_id=None, agent="a", timestamp_ns=1
        )
        tracer.on_run_start(event)
        assert tracer.stats().queue_depth == 1
        assert client.calls == []  # nothing sent, nothing serialised on the caller's thread
    finally:
        tracer.shutdown(GUARD_S)
    assert [kind for kind, _ in client.calls] == ["create", "flush"]


def test_the_worker_hands_its_batch_to_the_builder_so_a_run_that_finished_in_it_is_one_create() -> None:
    client = FakeClient()
    tracer = LangSmithTracer(client=client, interval_s=3600.0)  # the run's events wait for the flush: one batch
    try:
        calc_agent(tracer).run_sync("question")
        assert tracer.flush(GUARD_S)
        kinds = [kind for kind, _ in client.calls]
    finally:
        tracer.shutdown(GUARD_S)
    # the root with its end, then each model and tool call with its end; then the SDK's flush
    assert kinds == ["create"] * 5 + ["flush"]
    assert len(client.runs()) == 5
    assert tracer.failed == 0


def test_every_sdk_call_happens_off_the_runs_thread_and_flush_reaches_the_client(make_tracer: MakeTracer) -> None:
    client = FakeClient()
    tracer = make_tracer(client=client)
    calc_agent(tracer).run_sync("question")
    assert tracer.flush(GUARD_S)

    assert client.threads["create"] | client.threads.get("update", set()) == {"tracedagent-export-langsmith"}
    assert client.threads["flush"] == {"tracedagent-langsmith-flush"}
    assert [kind for kind, _ in client.calls][-1] == "flush"  # after everything queued was handed over
    assert len(client.runs()) == 5
    assert tracedagent.flush(GUARD_S)
    assert [kind for kind, _ in client.calls][-1] == "flush"


def test_a_failing_sdk_call_is_counted_and_logged_once_and_the_run_goes_on(
    make_tracer: MakeTracer, caplog: pytest.LogCaptureFixture
) -> None:
    tracer = make_tracer(client=FakeClient(fail=True))
    result = calc_agent(tracer).run_sync("question")
    second = calc_agent(tracer).run_sync("question")
    assert tracer.flush(GUARD_S)

    assert (result.output, second.output) == (f"{SENTINEL} the answer", f"{SENTINEL} the answer")
    assert tracer.failed == 20
    messages = [r for r in caplog.records if r.name == "tracedagent.langsmith" and r.levelno >= logging.ERROR]
    assert len(messages) == 1
    assert "later failures are counted" in messages[0].getMessage()
    assert tracer.stats().failed == 0  # the pipeline itself did not fail: each event is isolated


def test_the_tracer_is_in_the_export_stats_as_the_langsmith_sink(make_tracer: MakeTracer) -> None:
    tracer = make_tracer(client=FakeClient())
    calc_agent(tracer).run_sync("question")
    tracer.flush(GUARD_S)
    # Other tests' tracers may still be listed until they are collected, so look for this tracer's own figures.
    own = tracer.stats()
    assert (own.sink, own.queue_depth, own.dropped, own.exported, own.failed) == ("langsmith", 0, 0, 10, 0)
    assert own in tracedagent.export_stats()


class BackloggedClient(FakeClient):
    """A client whose SDK queue holds ``backlog`` items (its endpoint is slow or dead)."""

    def __init__(self, backlog: int) -> None:
        super().__init__()
        self.tracing_queue = queue.Queue()
        for i in range(backlog):
            self.tracing_queue.put(i)


def test_past_the_sdk_backlog_new_traces_are_shed_whole(make_tracer: MakeTracer) -> None:
    client = BackloggedClient(backlog=5)
    tracer = make_tracer(client=client, max_sdk_backlog=5)
    calc_agent(tracer).run_sync("question")
    assert tracer.flush(GUARD_S)
    assert [kind for kind, _ in client.calls if kind != "flush"] == []  # nothing more was piled on the SDK
    stats = tracer.stats()
    assert (stats.dropped, stats.exported, stats.failed, stats.traces_shed, stats.traces_admitted) == (10, 0, 0, 1, 0)
    assert tracer._builder._open == {}  # nothing is remembered as open: the tree's memory stays flat

    while not client.tracing_queue.empty():  # the endpoint caught up
        client.tracing_queue.get()
    calc_agent(tracer).run_sync("question")
    assert tracer.flush(GUARD_S)
    assert len(client.runs()) == 5
    assert tracer.stats().exported == 10
    assert tracer.stats().traces_admitted == 1


def test_an_admitted_trace_goes_to_the_sdk_whole_however_far_behind_it_falls(make_tracer: MakeTracer) -> None:
    """The SDK's backlog only decides new traces: a run admitted before the endpoint fell behind keeps
    every event (nothing is given up in the middle of a trace)."""
    client = BackloggedClient(backlog=0)

    @tool
    def slow_endpoint() -> str:
        """The endpoint stops answering while this tool runs."""
        for i in range(50):
            client.tracing_queue.put(i)
        return "done"

    model = ScriptedModel([Step(tool_calls=[("slow_endpoint", {})]), "ok"], per_run=True)
    tracer = make_tracer(client=client, max_sdk_backlog=5, interval_s=0.01)
    agent = Agent("a", model, tools=[slow_endpoint], plugins=[tracer])
    assert agent.run_sync("go").status == "completed"
    assert tracer.flush(GUARD_S)
    stats = tracer.stats()
    assert (stats.dropped, stats.exported, stats.traces_admitted, stats.traces_shed) == (0, 8, 1, 0)
    runs = client.runs()
    assert sorted(r["run_type"] for r in runs.values()) == ["chain", "llm", "llm", "tool"]
    assert all(r.get("end_time") is not None for r in runs.values())
    assert agent.run_sync("go again").status == "completed"  # the SDK is 50 behind now: shed whole
    assert tracer.flush(GUARD_S)
    assert (tracer.stats().traces_shed, len(client.runs())) == (1, 4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "100"])
def test_a_bad_sdk_backlog_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_sdk_backlog must be a positive integer"):
        LangSmithTracer(client=FakeClient(), max_sdk_backlog=bad)


def test_a_flush_hands_the_sdk_every_held_run_even_one_held_for_less_than_hold_s() -> None:
    client = FakeClient()
    tracer = LangSmithTracer(client=client, interval_s=3600.0, hold_s=3600.0)
    try:
        tracer.on_run_start(
            RunStarted(run_id="r", trace_id="1" * 32, span_id="2" * 16, parent_span_id=None, agent="a", timestamp_ns=1)
        )
        assert tracer.flush(GUARD_S)
        assert [kind for kind, _ in client.calls] == ["create", "flush"]  # the open root, as running
        assert "end_time" not in client.calls[0][1]
    finally:
        tracer.shutdown(GUARD_S)


@pytest.mark.parametrize("bad", [-1, True, float("inf"), "1"])
def test_a_bad_hold_s_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="hold_s must be a number of seconds"):
        LangSmithTracer(client=FakeClient(), hold_s=bad)
