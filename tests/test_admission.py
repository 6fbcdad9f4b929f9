"""Whole traces or nothing: each queued sink decides at a run segment's start whether it takes the trace,
and a trace it takes arrives complete. The sinks are the real ones (stdout to a stream that can be held;
OTLP with an exporter that can be held) with their workers blocked, so the queues really fill."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry, generate_latest

import tracedagent
from tracedagent import Agent, CheckpointSaved, Event, ExportPipeline, RunStarted, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step
from tracedagent_otlp import OtlpTracer
from tracedagent_prometheus import PrometheusTracer
from tracedagent_stdout import StdoutTracer

GUARD_S = 30.0  # only a guard against hanging; never asserted on


class HeldStream(io.StringIO):
    """A stream whose writes wait until ``release`` is set: the stdout sink's worker is held."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        if not self.release.wait(GUARD_S):
            raise TimeoutError("the test never released the stream")
        return super().write(text)


@pytest.fixture
def held() -> Iterator[tuple[StdoutTracer, HeldStream]]:
    """A stdout tracer whose worker is blocked in its first write; released and shut down after."""
    stream = HeldStream()
    tracer = StdoutTracer(stream, format="json", max_queue=200, interval_s=0.01)
    # An event outside any run, taken while there is room: the worker takes it and hangs in write().
    tracer._put(
        CheckpointSaved(
            run_id="x",
            trace_id="0" * 32,
            span_id="0" * 16,
            parent_span_id=None,
            agent="x",
            timestamp_ns=1,
            bytes=1,
            duration_s=0.0,
            store="memory",
            step=0,
        )
    )
    assert stream.entered.wait(GUARD_S)
    yield tracer, stream
    stream.release.set()
    tracer.shutdown(GUARD_S)


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def calc_agent(*plugins: Any) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"], per_run=True)
    return Agent("calc", model, tools=[add], plugins=list(plugins))


def printed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def assert_complete(lines: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every trace in ``lines``: each start has its end, each parent span is there. Returns them by trace."""
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        traces[line["trace_id"]].append(line)
    for trace_id, events in traces.items():
        starts = [e["span_id"] for e in events if e["event"].endswith(".start") or e["event"] == "run.resume"]
        ends = [e["span_id"] for e in events if e["event"].endswith(".end")]
        assert sorted(starts) == sorted(ends), f"trace {trace_id}: a start without its end, or the reverse"
        spans = set(starts)
        for event in events:
            parent = event["parent_span_id"]
            assert parent is None or parent in spans, f"trace {trace_id}: {event['event']} has no parent"
    return traces


# ------------------------------------------------------------------------------------ shedding


async def test_a_held_sink_sheds_new_traces_at_capacity_and_never_drops_an_admitted_event(
    held: tuple[StdoutTracer, HeldStream],
) -> None:
    tracer, stream = held
    recorder = RecordingTracer()
    agent = calc_agent(tracer, recorder)
    results = await asyncio.gather(*(agent.run(f"q{i}") for i in range(40)))
    assert {r.status for r in results} == {"completed"}

    stats = tracer.stats()
    all_traces = {e.trace_id for e in recorder.events}
    assert len(all_traces) == 40
    # 200 events of room, 16 kept for each admitted run: some runs were taken, the rest shed.
    assert stats.traces_admitted + stats.traces_shed == 40
    assert 0 < stats.traces_admitted < 40
    assert stats.traces_broken == 0
    assert stats.queue_depth <= tracer._pipeline.max_queue

    stream.release.set()
    assert tracer.flush(GUARD_S)
    lines = printed(stream)[1:]  # the first line is the event that held the worker
    traces = assert_complete(lines)
    assert len(traces) == stats.traces_admitted  # every admitted trace arrived...
    for trace_id, events in traces.items():  # ...with every event the run emitted
        emitted = [e for e in recorder.events if e.trace_id == trace_id]
        assert [e["span_id"] for e in events] == [e.span_id for e in emitted]
    shed = all_traces - set(traces)
    assert len(shed) == stats.traces_shed  # the counter is exact
    assert stats.dropped == sum(1 for e in recorder.events if e.trace_id in shed)


async def test_a_shed_trace_costs_one_lookup_per_event_and_an_admitted_one_keeps_its_room() -> None:
    """At the pipeline itself: the decision is the trace's, taken at its segment's start."""
    exported: list[Event] = []
    pipeline: ExportPipeline[Event] = ExportPipeline(
        "test-admission", exported.extend, max_queue=40, reserve=16, interval_s=3600
    )
    recorder = RecordingTracer()
    await calc_agent(recorder).run("one")
    first = list(recorder.events)
    assert isinstance(first[0], RunStarted)
    try:
        for event in first:  # admitted: 0 waiting + 16 kept for it <= 40
            assert pipeline.put_event(event)
        # a second trace, while 8 wait and no admitted run is open: 8 + 16 <= 40, taken (and left open)
        assert pipeline.put_event(replace(first[0], trace_id="1" * 32, run_id="r2"))
        # a third: 9 waiting + 16 kept for the open one + 16 for it > 40: shed, and every event of it
        assert not pipeline.put_event(replace(first[0], trace_id="2" * 32, run_id="r3"))
        assert not pipeline.put_event(replace(first[1], trace_id="2" * 32, run_id="r3"))
        # the second trace's next event is still taken: one lookup says it was admitted
        assert pipeline.put_event(replace(first[1], trace_id="1" * 32, run_id="r2"))
        assert (pipeline.traces_admitted, pipeline.traces_shed, pipeline.dropped) == (2, 1, 2)
        assert pipeline.admitted_open == 1  # the first run ended; the second is open
    finally:
        pipeline.shutdown(GUARD_S)


# ----------------------------------------------------------------------------------- child runs


def parent_and_child(*plugins: Any) -> tuple[Agent, Agent]:
    child = calc_agent(*plugins)

    @tool
    async def ask_child(question: str) -> str:
        """Ask the child agent."""
        return str((await child.run(question)).output)

    model = ScriptedModel([Step(tool_calls=[("ask_child", {"question": "1+2"})]), "done"], per_run=True)
    return Agent("parent", model, tools=[ask_child], plugins=list(plugins)), child


async def test_a_child_run_follows_its_traces_decision_when_admitted(held: tuple[StdoutTracer, HeldStream]) -> None:
    tracer, stream = held
    tracer._pipeline.max_queue = 16  # room for exactly one open run: a new trace now would be shed
    tracer._pipeline.reserve = 16
    recorder = RecordingTracer()
    parent, _ = parent_and_child(tracer, recorder)
    assert (await parent.run("go")).status == "completed"
    runs = {e.run_id for e in recorder.events}
    assert len(runs) == 2
    assert len({e.trace_id for e in recorder.events}) == 1
    stats = tracer.stats()
    assert (stats.traces_admitted, stats.traces_shed, stats.dropped, stats.traces_broken) == (1, 0, 0, 0)
    stream.release.set()
    assert tracer.flush(GUARD_S)
    lines = printed(stream)[1:]
    assert_complete(lines)
    assert {line["run_id"] for line in lines} == runs
    assert len(lines) == len(recorder.events)


async def test_a_child_run_follows_its_traces_decision_when_shed(held: tuple[StdoutTracer, HeldStream]) -> None:
    tracer, stream = held
    tracer._pipeline.max_queue = 15  # less than one run's reserve: nothing new is taken
    tracer._pipeline.reserve = 16
    recorder = RecordingTracer()
    parent, _ = parent_and_child(tracer, recorder)
    assert (await parent.run("go")).status == "completed"
    stats = tracer.stats()
    # one trace, shed once, though two runs started in it; every event of both dropped
    assert (stats.traces_admitted, stats.traces_shed, stats.dropped) == (0, 1, len(recorder.events))
    stream.release.set()
    assert tracer.flush(GUARD_S)
    assert printed(stream)[1:] == []


# ------------------------------------------------------------------------------------- resumes


@tool(needs_approval=True)
async def deploy(target: str) -> str:
    """Deploy ``target``."""
    return f"deployed {target}"


def approval_agent(*plugins: Any) -> Agent:
    model = ScriptedModel([Step(tool_calls=[("deploy", {"target": "prod"})]), "deployed"], per_run=True)
    return Agent("ops", model, tools=[deploy], plugins=list(plugins))


async def test_a_resumed_segment_decides_anew() -> None:
    exported: list[Event] = []
    pipeline: ExportPipeline[Event] = ExportPipeline("test-resume", exported.extend, max_queue=64, interval_s=3600)

    class Sink(tracedagent.QueueingTracer):
        def __init__(self) -> None:
            self._put = pipeline.put_event

    recorder = RecordingTracer()
    agent = approval_agent(Sink(), recorder)
    try:
        paused = await agent.run("ship it")
        assert paused.status == "interrupted"
        assert (pipeline.traces_admitted, pipeline.traces_shed, pipeline.admitted_open) == (1, 0, 0)
        # Meanwhile the queue fills (the worker is asleep): the resumed segment is shed, though its
        # trace's first segment was taken. The decision was forgotten when that segment ended.
        i = 0
        while pipeline.queue_depth < 60:  # 60 waiting + 16 for the resumed segment > 64
            assert pipeline.put(_fake(i))
            i += 1
        before = len(recorder.events)
        resumed = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
        assert resumed.status == "completed"
        resumed_events = recorder.events[before:]
        assert resumed_events[0].hook == "on_resume"
        assert {e.trace_id for e in resumed_events} == {paused.trace_id}
        assert (pipeline.traces_admitted, pipeline.traces_shed) == (1, 1)
        assert pipeline.dropped == len(resumed_events)
        # Drained, a later resume of another run decides anew again, and is taken.
        assert pipeline.flush(GUARD_S)
        again = await agent.run("ship it again")
        before = len(recorder.events)
        await agent.resume(again.run_id, {again.interruptions[0].id: True})
        assert (pipeline.traces_admitted, pipeline.traces_shed) == (3, 1)
        assert pipeline.flush(GUARD_S)
        assert exported[-(len(recorder.events) - before) :] == recorder.events[before:]
    finally:
        pipeline.shutdown(GUARD_S)


def _fake(i: int) -> CheckpointSaved:
    return CheckpointSaved(
        run_id="f",
        trace_id="f" * 32,
        span_id=f"{i:016x}",
        parent_span_id=None,
        agent="f",
        timestamp_ns=i + 1,
        bytes=1,
        duration_s=0.0,
        store="memory",
        step=i,
    )


# --------------------------------------------------------------------------------------- OTLP


class HeldExporter(SpanExporter):
    """A collector that does not answer until released: the OTLP sender's thread is held in export()."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        if not self.release.wait(GUARD_S):
            return SpanExportResult.FAILURE
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


async def test_otlp_sheds_whole_traces_while_its_sender_is_held_and_admitted_ones_arrive_whole() -> None:
    exporter = HeldExporter()
    tracer = OtlpTracer(
        span_exporter=exporter, metrics=False, max_queue=160, max_batch=8, interval_s=0.01, max_batches=1
    )
    recorder = RecordingTracer()
    agent = calc_agent(tracer, recorder)
    try:
        await agent.run("warm")  # its spans go out and hold the sender in export()
        assert ExportPipeline.flush(tracer._pipeline, GUARD_S)  # the events queue only, not the sender
        assert exporter.entered.wait(GUARD_S)
        results = await asyncio.gather(*(agent.run(f"q{i}") for i in range(30)))
        assert {r.status for r in results} == {"completed"}
        stats = tracer.stats()
        assert stats.traces_shed > 0
        assert stats.traces_broken == 0
        exporter.release.set()
        assert tracer.flush(GUARD_S)
    finally:
        exporter.release.set()
        tracer.shutdown(GUARD_S)
    stats = tracer.stats()
    by_trace: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in exporter.spans:
        assert span.context is not None
        by_trace[f"{span.context.trace_id:032x}"].append(span)
    assert len(by_trace) == stats.traces_admitted  # the warm-up run included
    assert len(by_trace) + stats.traces_shed == 31
    for spans in by_trace.values():
        ids = {s.context.span_id for s in spans if s.context is not None}
        roots = [s for s in spans if s.parent is None]
        assert [r.name for r in roots] == ["invoke_agent calc"]
        assert all(s.parent is None or s.parent.span_id in ids for s in spans)
        assert len(spans) == 4  # the run, two model calls, the tool call: every span ended
    shed = {e.trace_id for e in recorder.events} - set(by_trace)
    assert stats.dropped == sum(1 for e in recorder.events if e.trace_id in shed)


# --------------------------------------------------------------------------------- Prometheus


async def test_the_shed_traces_show_in_prometheus(held: tuple[StdoutTracer, HeldStream]) -> None:
    tracer, _ = held
    registry = CollectorRegistry()
    PrometheusTracer(registry)
    agent = calc_agent(tracer)
    await asyncio.gather(*(agent.run(f"q{i}") for i in range(40)))
    assert tracer.stats().traces_shed > 0
    text = generate_latest(registry).decode()
    # every live pipeline named stdout (this test's, and any other test's not yet collected), summed
    live = [s for s in tracedagent.export_stats() if s.sink == "stdout"]
    shed, dropped = sum(s.traces_shed for s in live), sum(s.dropped for s in live)
    assert shed >= tracer.stats().traces_shed
    assert f'tracedagent_traces_shed_total{{sink="stdout"}} {float(shed)}' in text
    assert f'tracedagent_export_dropped_total{{sink="stdout"}} {float(dropped)}' in text
