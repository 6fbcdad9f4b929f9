"""The fault matrix: one fault per cell, each cell a test whose id names it.

Rows: every hook (a plugin raising there), every sink (its backend down, slow, answering an error), the
model through ``tracedagent.models`` against the loopback wire server (429, 5xx, timeouts, a malformed
stream, a dropped connection), tools (exceptions, hangs past their timeout, breaker and bulkhead
refusals, retries running out) and cancellation at every await point of a run.

Every cell checks the same invariants with :meth:`Witness.assert_clean`:

* the run's outcome is what it is without the fault (the cell runs the fault-free baseline too where
  that is cheap), or the documented typed error;
* one end event per start, and as many ends as starts of each kind;
* nothing left in flight: no tool call in flight or queued (``tool_states()``), no active run
  (``Agent.active_runs``), no task of the run still pending, and a sink on every agent (a stdout tracer
  writing JSON lines to memory) that was handed every event and exported every one of them;
* the fault counted where the design says: ``plugin_errors()``, ``export_stats()`` / the sink's
  ``stats()`` (dropped, failed), ``ToolCallEnded`` statuses, ``RetryScheduled`` events,
  ``ModelHTTPError.attempts``.

What earlier tests prove in detail is not repeated here: ``test_fault_isolation.py`` (a plugin raising
in every hook at once, logged once), ``test_cancellation.py`` (the statuses at each await point),
``test_model_openai.py`` / ``test_model_anthropic.py`` (each wire failure's message), ``test_export.py``
and the plugins' own tests (each sink against its real backend). This file runs all of them through one
set of invariants, and adds the await points and faults they did not cover.

What "backend" means per sink: stdout's is its stream (down: closed, error: writes fail with ENOSPC,
slow: writes block); Prometheus's is the scraper (down: nobody scrapes, slow: a scrape that stalls
holding a server thread, error: a collector that breaks the exposition, answered with HTTP 500); OTLP's
is the collector behind the real OTLP/HTTP exporter (down: a closed port, error: HTTP 500, slow: an answer
held back); LangSmith's is the SDK client (a fake one: down raises a connection error, error raises the
SDK's ``LangSmithAPIError``, slow blocks; the real SDK against a failing capture server is tested in
``plugins/tracedagent-langsmith/tests/test_langsmith_failures.py``).
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import io
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from wire_server import Reply, WireServer, wire_server

import tracedagent
from tracedagent import (
    Agent,
    CircuitStateChanged,
    DropOldest,
    InMemoryCheckpointStore,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelConnectionError,
    ModelHTTPError,
    ModelRequest,
    ModelStreamError,
    RetryScheduled,
    RunEnded,
    RunResult,
    RunResumed,
    RunStarted,
    Summarize,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    hookimpl,
    tool,
)
from tracedagent.hookspecs import OBSERVER_HOOKS
from tracedagent.models import AnthropicModel, OpenAIChatModel
from tracedagent.resilience import Bulkhead, CircuitBreaker, RetryPolicy, tool_states
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step

StdoutTracer = pytest.importorskip("tracedagent_stdout").StdoutTracer

GUARD_S = 10.0  # only a guard, so that a regression fails instead of hanging; never asserted on
TRANSCRIPTS = Path(__file__).parent / "transcripts"
HAS_OTLP = importlib.util.find_spec("tracedagent_otlp") is not None
HAS_LANGSMITH = importlib.util.find_spec("tracedagent_langsmith") is not None

OPENERS = (RunStarted, RunResumed, ModelCallStarted, ToolCallStarted)
CLOSERS = (RunEnded, ModelCallEnded, ToolCallEnded)


def tag() -> str:
    """A suffix no other cell uses: tools live in a process-wide set, plugin errors are per name."""
    return uuid.uuid4().hex[:8]


class Witness:
    """What every cell watches: a recorder and a JSON-lines stdout tracer on each of its agents, its
    tools, and the tasks that were pending before it started."""

    def __init__(self) -> None:
        self.recorder = RecordingTracer()
        self.lines = io.StringIO()
        self.sink = StdoutTracer(self.lines, format="json", interval_s=0.01)
        self.agents: list[Agent] = []
        self.tools: list[Tool] = []
        self.tasks_before: set[asyncio.Task[Any]] | None = None

    def agent(
        self, name: str, model: Any, *, plugins: Sequence[object] = (), tools: Sequence[Tool] = (), **options: Any
    ) -> Agent:
        if self.tasks_before is None:  # taken in the cell's own task, before its first run
            self.tasks_before = {t for t in asyncio.all_tasks() if not t.done()}
        self.tools.extend(tools)
        agent = Agent(name, model, tools=tools, plugins=[*plugins, self.recorder, self.sink], **options)
        self.agents.append(agent)
        return agent

    def statuses(self, kind: type[Any]) -> list[str]:
        return [e.status for e in self.recorder.of_type(kind)]

    def assert_clean(self) -> None:
        events = self.recorder.events
        assert self.recorder.unmatched() == []
        starts = Counter(e.span_id for e in events if isinstance(e, OPENERS))
        ends = Counter(e.span_id for e in events if isinstance(e, CLOSERS))
        assert starts == ends, "every start has an end"
        assert set(ends.values()) <= {1}, "and only one"
        kinds = Counter(type(e).__name__ for e in events)
        assert kinds["RunStarted"] + kinds["RunResumed"] == kinds["RunEnded"]
        assert kinds["ModelCallStarted"] == kinds["ModelCallEnded"]
        assert kinds["ToolCallStarted"] == kinds["ToolCallEnded"]
        # nothing in flight
        names = {t.name for t in self.tools}
        states = [s for s in tool_states() if s.tool in names]
        assert len(states) >= len(names)  # (other tests' tools may share a name; all must be idle too)
        assert [(t.name, t.bulkhead.inflight, t.bulkhead.queue_depth) for t in self.tools] == [
            (t.name, 0, 0) for t in self.tools
        ]
        assert [(s.tool, s.inflight, s.queue_depth) for s in states] == [(s.tool, 0, 0) for s in states]
        assert [a.active_runs for a in self.agents] == [0] * len(self.agents)
        # the process's default in-memory store keeps paused runs only: an ended run leaves nothing there
        last_status = {e.run_id: e.status for e in self.recorder.of_type(RunEnded)}
        for agent in self.agents:
            store = agent.store()
            if isinstance(store, InMemoryCheckpointStore) and agent.checkpoints is None:
                kept = [run for run, status in last_status.items() if status != "interrupted" and store.raw(run)]
                assert kept == []
        current = asyncio.current_task()
        pending = {t for t in asyncio.all_tasks() if not t.done() and t is not current} - (self.tasks_before or set())
        assert pending == set()
        # the witness sink was handed every event and lost none
        assert self.sink.flush(GUARD_S)
        stats = self.sink.stats()
        assert (stats.queue_depth, stats.dropped, stats.failed, stats.exported) == (0, 0, 0, len(events))
        lines = [json.loads(line) for line in self.lines.getvalue().splitlines()]
        assert len(lines) == len(events)
        assert Counter(line["run_id"] for line in lines) == Counter(e.run_id for e in events)
        assert self.sink.shutdown(GUARD_S)


@pytest.fixture
def witness(fresh_registry: Any) -> Iterator[Witness]:
    """A witness for the cell, in a fresh process-wide registry (only the cell's own plugins)."""
    watched = Witness()
    yield watched
    watched.sink.shutdown(GUARD_S)


def long_history(n: int = 12) -> list[Message]:
    history: list[Message] = [Message.system("be brief")]
    for i in range(n):
        history += [Message.user(f"question {i} " * 20), Message.assistant(f"answer {i} " * 20)]
    return history


def without_tag(name: str) -> str:
    return name.rsplit("_", 1)[0]


# ============================================================================== hooks: a plugin raises


def raising_plugin(hook: str) -> Any:
    """A plugin implementing only ``hook``, which raises every time."""
    name = f"raises-in-{hook}-{tag()}"
    if hook == "approve_tool_call":

        def impl(self: Any, call: Any) -> Any:
            raise RuntimeError(f"{name} broke")

    else:

        def impl(self: Any, event: Any) -> None:
            raise RuntimeError(f"{name} broke")

    return type("RaisingPlugin", (), {"name": name, hook: hookimpl(impl)})()


async def every_hook_scenario(w: Witness, plugins: Sequence[object]) -> tuple[RunResult, RunResult]:
    """One run that fires every observer hook: a compaction, checkpoints, a tool retried, a tool whose
    breaker opens, a tool that pauses the run for approval; then its resume, which hands the run off to
    another agent (``handoffs=``) that gives the answer."""
    suffix = tag()
    attempts = Counter[str]()

    @tool(name=f"flaky_{suffix}", retries=RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.001))
    async def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ConnectionError("the first attempt fails")
        return "flaky ok"

    @tool(name=f"fragile_{suffix}", breaker=CircuitBreaker(failure_threshold=1, reset_timeout=3600))
    async def fragile() -> str:
        raise RuntimeError("fragile fails")

    @tool(name=f"guarded_{suffix}", needs_approval=True)
    async def guarded() -> str:
        return "guarded ok"

    closer = w.agent("closer", ScriptedModel(["done"]))
    model = ScriptedModel(
        [
            Step(tool_calls=[(flaky.name, {}), (fragile.name, {}), (guarded.name, {})]),
            Step(tool_calls=[("transfer_to_closer", {})]),
        ]
    )
    agent = w.agent(
        "every-hook",
        model,
        plugins=plugins,
        tools=[flaky, fragile, guarded],
        handoffs=[closer],
        compaction=DropOldest(max_tokens=200),
        checkpoints=InMemoryCheckpointStore(),
        checkpoint_every="step",
    )
    paused = await agent.run("go", messages=long_history())
    done = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
    return paused, done


def outcome(w: Witness, paused: RunResult, done: RunResult) -> dict[str, Any]:
    return {
        "paused": (paused.status, [without_tag(i.tool) for i in paused.interruptions]),
        "done": (done.status, done.output, done.run_id == paused.run_id),
        "tools": sorted((without_tag(e.tool), e.status) for e in w.recorder.of_type(ToolCallEnded)),
        "hooks": Counter(w.recorder.hooks()),
    }


def test_the_scenario_fires_every_observer_hook() -> None:
    """The hook rows below are only as good as their scenario: it must reach every hook."""

    async def go() -> set[str]:
        w = Witness()
        try:
            await every_hook_scenario(w, [])
            return set(w.recorder.hooks())
        finally:
            w.sink.shutdown(GUARD_S)

    assert asyncio.run(go()) == set(OBSERVER_HOOKS)


# A raising approve_tool_call is not isolated but fails closed (the call waits for a person): see
# test_approvals.py::test_a_raising_decider_pauses_the_call_for_a_person.
@pytest.mark.parametrize("hook", OBSERVER_HOOKS)
async def test_hook_raises(witness: Witness, hook: str) -> None:
    baseline = Witness()
    expected = outcome(baseline, *await every_hook_scenario(baseline, []))
    baseline.assert_clean()

    plugin = raising_plugin(hook)
    before = tracedagent.plugin_errors()
    got = outcome(witness, *await every_hook_scenario(witness, [plugin]))

    assert got == expected
    assert got["done"] == ("completed", "done", True)
    errors = {h: n for (p, h), n in tracedagent.plugin_errors().items() if p == plugin.name}
    # counted once per call: per event
    calls = Counter(witness.recorder.hooks())[hook]
    assert calls > 0
    assert errors == {hook: calls}
    assert {k: v for k, v in tracedagent.plugin_errors().items() if k[0] != plugin.name} == {
        k: v for k, v in before.items() if k[0] != plugin.name
    }
    witness.assert_clean()


# ================================================================================ sinks: the backend


@tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


RUNS = 3
EVENTS_PER_RUN = 8  # a run, two model calls and one tool call: four spans, a start and an end each
SPANS_PER_RUN = 4


async def sink_workload(w: Witness, sink: object) -> None:
    """Three concurrent runs with the sink on their agent; each must come out as it does without it."""
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 2, "b": 3})]), "It is 5."], per_run=True)
    agent = w.agent(f"sink-{tag()}", model, plugins=[sink], tools=[add])
    async with asyncio.timeout(GUARD_S):
        results = await asyncio.gather(*(agent.run(f"question {i}") for i in range(RUNS)))
    assert [(r.status, r.output) for r in results] == [("completed", "It is 5.")] * RUNS
    assert len(w.recorder.events) == RUNS * EVENTS_PER_RUN


class BrokenStream:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def write(self, text: str) -> int:
        raise self.error


class BlockedStream:
    """A stream whose writes wait until released (a terminal scrolled back, a pipe nobody reads)."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.text = io.StringIO()

    def write(self, text: str) -> int:
        self.released.wait(GUARD_S)
        return self.text.write(text)


async def stdout_cell(w: Witness, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    if fault in ("down", "error"):
        error = ValueError("I/O operation on closed file.") if fault == "down" else OSError(errno.ENOSPC, "No space")
        sink = StdoutTracer(BrokenStream(error), format="json", interval_s=0.01)
        with caplog.at_level(logging.ERROR, logger="tracedagent.export"):
            await sink_workload(w, sink)
            assert sink.flush(GUARD_S)
        stats = sink.stats()
        assert (stats.queue_depth, stats.exported, stats.dropped) == (0, 0, 0)
        assert stats.failed == RUNS * EVENTS_PER_RUN  # every event counted as failed, none silently lost
        logged = [r for r in caplog.records if r.getMessage().startswith("sink 'stdout' failed to export")]
        assert len(logged) == 1  # logged once, however many batches failed
        assert sink.shutdown(GUARD_S)
        return
    stream = BlockedStream()
    sink = StdoutTracer(stream, format="json", max_queue=2, interval_s=0.01)
    try:
        await sink_workload(w, sink)  # completes while the stream has not taken a single line
        assert not stream.released.is_set()
        assert sink.flush(0.0) is False  # flush keeps its timeout: said, not waited for
    finally:
        stream.released.set()
    assert sink.flush(GUARD_S)
    stats = sink.stats()
    assert (stats.queue_depth, stats.failed) == (0, 0)
    assert stats.dropped > 0  # the queue of 2 overflowed while the stream was blocked: dropped and counted
    assert stats.exported + stats.dropped == RUNS * EVENTS_PER_RUN
    assert len(stream.text.getvalue().splitlines()) == stats.exported  # what is not counted as dropped was written
    assert sink.shutdown(GUARD_S)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=GUARD_S) as answer:
        return str(answer.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def prometheus_cell(w: Witness, fault: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from tracedagent_prometheus import PrometheusTracer, serve

    registry = CollectorRegistry()
    sink = PrometheusTracer(registry)
    port = 0
    stalled: socket.socket | None = None

    class BrokenCollector:
        def collect(self) -> Iterator[Any]:
            raise RuntimeError("a collector broke the exposition")

    broken = BrokenCollector()
    if fault != "down":
        _, port = serve("127.0.0.1:0", registry=registry)
    try:
        if fault == "slow":  # a scraper that sends half a request and then nothing, holding a server thread
            stalled = socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)
            stalled.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        if fault == "error":
            registry.register(broken)  # type: ignore[arg-type]
        await sink_workload(w, sink)
        if fault == "error":
            with pytest.raises(urllib.error.HTTPError) as answered:
                await asyncio.to_thread(scrape, port)
            assert answered.value.code == 500
            registry.unregister(broken)  # type: ignore[arg-type]
    finally:
        if stalled is not None:
            stalled.close()
    agent = w.agents[-1].name
    expected = {
        ("tracedagent_runs_total", (("agent", agent), ("status", "completed"))): RUNS,
        ("tracedagent_model_calls_total", (("agent", agent), ("status", "ok"))): 2 * RUNS,
        ("tracedagent_tool_calls_total", (("agent", agent), ("status", "ok"), ("tool", "add"))): RUNS,
        ("tracedagent_run_duration_seconds_count", (("agent", agent),)): RUNS,
        ("tracedagent_runs_active", (("agent", agent),)): 0,
    }
    texts = [generate_latest(registry).decode()]
    if fault != "down":  # the scrape that works again shows the same counts: nothing was lost meanwhile
        texts.append(await asyncio.to_thread(scrape, port))
    for text in texts:
        for (name, labels), value in expected.items():
            assert sample(text, name, **dict(labels)) == value, name
    assert not [key for key in tracedagent.plugin_errors() if key[0] == PrometheusTracer.name]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spans_in(requests: Sequence[Any]) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    count = 0
    for request in requests:
        message = ExportTraceServiceRequest()
        message.ParseFromString(request.body)
        count += sum(len(scope.spans) for resource in message.resource_spans for scope in resource.scope_spans)
    return count


async def otlp_cell(w: Witness, fault: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from tracedagent_otlp import OtlpTracer

    with wire_server() as server:
        if fault == "down":
            exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{closed_port()}/v1/traces", timeout=0.5)
        elif fault == "error":
            server.queue(*[Reply(status=500, chunks=["collector broke"], content_type="text/plain")] * 8)
            exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=0.5)
        else:
            gate = threading.Event()
            held = Reply(status=200, chunks=["ok"], content_type="application/x-protobuf", gate=gate, gate_before=0)
            server.queue(held, *[Reply(status=200, chunks=["ok"], content_type="application/x-protobuf")] * 8)
            exporter = OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=GUARD_S)
        sink = OtlpTracer(span_exporter=exporter, metrics=False)
        try:
            if fault == "slow":
                try:
                    await sink_workload(w, sink)  # completes while the collector holds its answer back
                    assert sink.flush(0.0) is False
                finally:
                    gate.set()
            else:
                await sink_workload(w, sink)
            assert sink.flush(GUARD_S)
            stats = sink.stats()
            assert (stats.queue_depth, stats.dropped) == (0, 0)
            assert stats.exported + stats.failed == RUNS * EVENTS_PER_RUN
            assert sink.pending == 0  # every span started was ended and handed on
            if fault == "slow":
                assert (stats.failed, sink.spans_failed, sink.spans_exported) == (0, 0, RUNS * SPANS_PER_RUN)
                assert spans_in([r for r in server.requests if r.path == "/v1/traces"]) == RUNS * SPANS_PER_RUN
            else:
                assert stats.failed > 0  # the batches the collector never took, counted
                assert (sink.spans_exported, sink.spans_failed) == (0, RUNS * SPANS_PER_RUN)
                if fault == "error":
                    assert [r.path for r in server.requests][:1] == ["/v1/traces"]
        finally:
            sink.shutdown(GUARD_S)


class FakeLangSmith:
    """The part of ``langsmith.Client`` the tracer uses, with a fault."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.released = threading.Event()
        self.attempts = 0
        #: Events the refused calls carried: a create with its end (a call that started and ended in one
        #: batch of the tracer's worker) carries two, its start and its end.
        self.refused_events = 0
        self.created: list[Any] = []
        self.ended: list[Any] = []

    def _call(self, events: int = 1) -> None:
        self.attempts += 1
        if self.fault in ("down", "error"):
            self.refused_events += events
        if self.fault == "down":
            raise ConnectionError("[Errno 111] Connection refused")
        if self.fault == "error":
            from langsmith.utils import LangSmithAPIError

            raise LangSmithAPIError("Server error caused failure to POST /runs: 500 Internal Server Error")
        self.released.wait(GUARD_S)

    def create_run(self, name: str, inputs: Any, run_type: Any, **kwargs: Any) -> None:
        ended = kwargs.get("end_time") is not None
        self._call(2 if ended else 1)
        self.created.append(kwargs["id"])
        if ended:
            self.ended.append(kwargs["id"])

    def update_run(self, run_id: Any, **kwargs: Any) -> None:
        self._call()
        self.ended.append(run_id)

    def flush(self, timeout: float | None = None) -> None:
        pass


async def langsmith_cell(w: Witness, fault: str) -> None:
    from tracedagent_langsmith import LangSmithTracer

    client = FakeLangSmith(fault)
    sink = LangSmithTracer(client, interval_s=0.01, capture_content=False)
    try:
        if fault == "slow":
            try:
                await sink_workload(w, sink)
                assert client.created == []  # the client has taken nothing yet
                assert sink.flush(0.0) is False
            finally:
                client.released.set()
        else:
            await sink_workload(w, sink)
        assert sink.flush(GUARD_S)
        stats = sink.stats()
        assert (stats.queue_depth, stats.dropped) == (0, 0)
        assert stats.exported + stats.failed == RUNS * EVENTS_PER_RUN
        if fault == "slow":
            assert sink.failed == 0
            assert len(set(client.created)) == RUNS * SPANS_PER_RUN  # every span became a LangSmith run
            assert set(client.ended) == set(client.created)  # and was ended
        else:
            assert client.attempts > 0
            assert sink.failed == client.refused_events  # every event the backend refused, counted
    finally:
        sink.shutdown(GUARD_S)


SINK_CELLS = [
    pytest.param(
        sink, fault, id=f"{sink}-{fault}", marks=[] if ok else [pytest.mark.skip(reason=f"{sink} not installed")]
    )
    for sink, ok in (("stdout", True), ("prometheus", True), ("otlp", HAS_OTLP), ("langsmith", HAS_LANGSMITH))
    for fault in ("down", "slow", "error")
]


@pytest.mark.parametrize(("sink", "fault"), SINK_CELLS)
async def test_sink_backend(witness: Witness, sink: str, fault: str, caplog: pytest.LogCaptureFixture) -> None:
    if sink == "stdout":
        await stdout_cell(witness, fault, caplog)
    elif sink == "prometheus":
        pytest.importorskip("tracedagent_prometheus")
        await prometheus_cell(witness, fault)
    elif sink == "otlp":
        await otlp_cell(witness, fault)
    else:
        await langsmith_cell(witness, fault)
    witness.assert_clean()


# =============================================================================== models: on the wire

KEY = "sk-matrix-0123456789abcdef"
MAX_RETRIES = 2


def sse(provider: str, name: str, **options: Any) -> Reply:
    body = (TRANSCRIPTS / provider / f"{name}.sse").read_bytes()
    return Reply(chunks=[block + b"\n\n" for block in body.split(b"\n\n") if block], **options)


def error_reply(provider: str, status: int, **options: Any) -> Reply:
    if provider == "anthropic":
        body = {"type": "error", "error": {"type": "overloaded_error", "message": f"HTTP {status} from the test"}}
    else:
        body = {"error": {"message": f"HTTP {status} from the test", "type": "server_error"}}
    return Reply.json(status, body, **options)


def fault_replies(provider: str, fault: str) -> list[Reply]:
    """What the server answers to the second model call of the run (the first one asks for tools)."""
    if fault == "none":
        return [sse(provider, "tool_answer")]
    if fault == "429":
        return [error_reply(provider, 429, headers={"retry-after": "0"}), sse(provider, "tool_answer")]
    if fault == "5xx":
        return [error_reply(provider, 503) for _ in range(MAX_RETRIES + 1)]
    if fault == "timeout":  # no headers before the read timeout, every attempt
        return [Reply(delay_headers=GUARD_S, chunks=["late"]) for _ in range(MAX_RETRIES + 1)]
    if fault == "malformed":
        return [
            Reply.sse(
                [
                    "event: message_start\ndata: {this is not json"
                    if provider == "anthropic"
                    else "data: {this is not json"
                ]
            )
        ]
    assert fault == "dropped"
    return [sse(provider, "tool_answer", drop_after=2)]


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city."""
    return f"mild in {city} ({unit})"


@tool
def local_time() -> str:
    """The local time."""
    return "09:00"


def http_model(provider: str, server: WireServer, **options: Any) -> Any:
    options = {
        "api_key": KEY,
        "max_retries": MAX_RETRIES,
        "retry_initial_delay": 0.001,
        "retry_max_delay": 0.002,
        "max_retry_after": 0.01,
        "read_timeout": 0.2,
        **options,
    }
    if provider == "anthropic":
        return AnthropicModel("claude-test", base_url=server.url, **options)
    return OpenAIChatModel("gpt-test", base_url=f"{server.url}/v1", **options)


async def wire_run(w: Witness, provider: str, fault: str) -> tuple[RunResult | None, BaseException | None, Any]:
    with wire_server() as server:
        server.queue(sse(provider, "tool_calls"), *fault_replies(provider, fault))
        model = http_model(provider, server)
        agent = w.agent(f"wire-{provider}", model, tools=[get_weather, local_time])
        try:
            async with asyncio.timeout(GUARD_S):
                return await agent.run("Weather?"), None, server.requests
        except Exception as exc:
            return None, exc, server.requests
        finally:
            await model.aclose()


MODEL_ERRORS: dict[str, tuple[type[Exception], int | None]] = {
    # fault: (the documented error, the requests made for the failing call, where counted)
    "5xx": (ModelHTTPError, MAX_RETRIES + 1),
    "timeout": (ModelConnectionError, MAX_RETRIES + 1),
    "malformed": (ModelStreamError, None),
    "dropped": (ModelStreamError, None),
}


@pytest.mark.parametrize("fault", ["429", "5xx", "timeout", "malformed", "dropped"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_model_wire(witness: Witness, provider: str, fault: str) -> None:
    baseline = Witness()
    expected, _, _ = await wire_run(baseline, provider, "none")
    baseline.sink.shutdown(GUARD_S)
    assert expected is not None
    assert expected.status == "completed"

    result, error, requests = await wire_run(witness, provider, fault)

    retries = [e for e in witness.recorder.of_type(RetryScheduled) if e.kind == "model"]
    model_ends = witness.recorder.of_type(ModelCallEnded)
    assert model_ends[0].status == "ok"  # the first call asked for the tools
    tool_ends = witness.recorder.of_type(ToolCallEnded)
    assert [e.status for e in tool_ends] == [e.status for e in baseline.recorder.of_type(ToolCallEnded)]
    if fault == "429":
        assert error is None
        assert result is not None
        assert (result.status, result.output) == (expected.status, expected.output)
        assert [(e.attempt, e.error.type if e.error else None) for e in retries] == [(1, "ModelHTTPError")]
        assert len(requests) == 3
        assert witness.statuses(RunEnded) == ["completed"]
    else:
        kind, attempts = MODEL_ERRORS[fault]
        assert result is None
        assert isinstance(error, kind), error
        if attempts is not None:
            assert error.attempts == attempts  # type: ignore[attr-defined]
            assert len(retries) == attempts - 1
        else:
            assert retries == []  # a stream that broke after it started is never retried
        assert len(requests) == 1 + (attempts or 1)
        assert (model_ends[-1].status, model_ends[-1].error.type if model_ends[-1].error else None) == (
            "error",
            kind.__name__,
        )
        assert witness.statuses(RunEnded) == ["failed"]
        # nothing is lost: the failed run's state holds every tool result of the turn before the failure
        state = error.result  # type: ignore[attr-defined]
        assert state is not None
        assert state.status == "failed"
        answered = {m.tool_call_id for m in state.messages if m.role == "tool"}
        assert answered == {e.call_id for e in tool_ends}
        assert KEY not in str(error)
    witness.assert_clean()


async def test_model_fails_after_a_resume(witness: Witness) -> None:
    """A run that paused (kept in the default in-memory store), was resumed, then failed: the failure
    is the documented error, and the store forgets the run as it forgets a completed one."""

    @tool(name=f"guarded_{tag()}", needs_approval=True)
    async def guarded() -> str:
        return "approved"

    model = ScriptedModel([(guarded.name, {}), Step(error=ConnectionError("provider down"))])
    agent = witness.agent("paused-then-failed", model, tools=[guarded])
    paused = await agent.run("go")
    assert agent.store().raw(paused.run_id) is not None  # kept while it waits

    with pytest.raises(tracedagent.ModelError, match="provider down") as caught:
        await agent.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert caught.value.result is not None
    assert caught.value.result.run_id == paused.run_id
    assert witness.statuses(RunEnded) == ["interrupted", "failed"]
    assert witness.statuses(ToolCallEnded) == ["ok"]
    witness.assert_clean()


# ======================================================================================== tools


async def tool_cell(w: Witness, fault: str) -> None:
    suffix = tag()
    if fault in ("raises-sync", "raises-async"):

        def broken_sync() -> str:
            raise ValueError("bad input")

        async def broken_async() -> str:
            raise ValueError("bad input")

        broken = tool(broken_sync if fault == "raises-sync" else broken_async, name=f"broken_{suffix}")
        agent = w.agent("tools", ScriptedModel([(broken.name, {}), "recovered"]), tools=[broken])
        result = await agent.run("go")
        assert (result.status, result.output) == ("completed", "recovered")
        (end,) = w.recorder.of_type(ToolCallEnded)
        assert (end.status, end.error.type if end.error else None) == ("error", "ValueError")
        return
    if fault == "hangs-async":

        @tool(name=f"hang_{suffix}", timeout=0.05)
        async def hang() -> str:
            await asyncio.Event().wait()
            return "never"

        result = await w.agent("tools", ScriptedModel([(hang.name, {}), "gave up"]), tools=[hang]).run("go")
        assert (result.status, result.output) == ("completed", "gave up")
        assert [(e.status, e.error.type if e.error else None) for e in w.recorder.of_type(ToolCallEnded)] == [
            ("timeout", "ToolTimeout")
        ]
        return
    if fault == "hangs-sync":
        release, finished = threading.Event(), threading.Event()

        @tool(name=f"hang_{suffix}", timeout=0.05)
        def hang_sync() -> str:
            release.wait(GUARD_S)
            finished.set()
            return "late"

        try:
            result = await w.agent("tools", ScriptedModel([(hang_sync.name, {}), "gave up"]), tools=[hang_sync]).run(
                "go"
            )
            assert not finished.is_set()  # the thread still runs...
            assert (hang_sync.bulkhead.inflight, hang_sync.bulkhead.queue_depth) == (1, 0)  # ...with its slot
        finally:
            release.set()
        assert await asyncio.to_thread(finished.wait, GUARD_S)
        while hang_sync.bulkhead.inflight:  # noqa: ASYNC110 - given back on the tool's thread as it ends
            await asyncio.sleep(0.001)
        w.assert_clean()  # nothing left in flight once the thread ended
        assert (result.status, result.output) == ("completed", "gave up")
        assert w.statuses(ToolCallEnded) == ["timeout"]
        return
    if fault == "breaker-trips":

        @tool(name=f"down_{suffix}", breaker=CircuitBreaker(failure_threshold=2, reset_timeout=3600))
        async def down() -> str:
            raise ConnectionError("backend down")

        model = ScriptedModel([(down.name, {}), (down.name, {}), (down.name, {}), "answered without it"])
        result = await w.agent("tools", model, tools=[down]).run("go")
        assert (result.status, result.output) == ("completed", "answered without it")
        assert w.statuses(ToolCallEnded) == ["error", "error", "circuit_open"]
        assert [(e.old, e.new) for e in w.recorder.of_type(CircuitStateChanged)] == [("closed", "open")]
        assert "refused by its circuit breaker" in (model.requests[-1].messages[-1].content or "")
        return
    if fault == "bulkhead-full":
        refused = asyncio.Event()

        class Watch:
            @hookimpl
            def on_tool_call_end(self, event: ToolCallEnded) -> None:
                if event.status == "rejected":
                    refused.set()

        @tool(name=f"single_{suffix}", max_concurrency=1, max_queue=0)
        async def single() -> str:
            async with asyncio.timeout(GUARD_S):
                await refused.wait()  # in flight until the other call has been refused
            return "done"

        model = ScriptedModel([[ToolCall("c1", single.name), ToolCall("c2", single.name)], "one of two"])
        result = await w.agent("tools", model, tools=[single], plugins=[Watch()]).run("go")
        assert (result.status, result.output) == ("completed", "one of two")
        ends = {e.call_id: (e.status, e.reason) for e in w.recorder.of_type(ToolCallEnded)}
        assert sorted(ends.values()) == [("ok", None), ("rejected", "queue_full")]
        return
    assert fault == "retries-exhausted"

    @tool(name=f"flaky_{suffix}", retries=RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.001))
    async def always_fails() -> str:
        raise ConnectionError("still down")

    result = await w.agent("tools", ScriptedModel([(always_fails.name, {}), "gave up"]), tools=[always_fails]).run("go")
    assert (result.status, result.output) == ("completed", "gave up")
    assert w.statuses(ToolCallEnded) == ["error"]
    assert [(e.kind, e.attempt) for e in w.recorder.of_type(RetryScheduled)] == [("tool", 1), ("tool", 2)]


@pytest.mark.parametrize(
    "fault",
    ["raises-sync", "raises-async", "hangs-async", "hangs-sync", "breaker-trips", "bulkhead-full", "retries-exhausted"],
)
async def test_tool(witness: Witness, fault: str) -> None:
    async with asyncio.timeout(GUARD_S):
        await tool_cell(witness, fault)
    assert witness.statuses(RunEnded) == ["completed"]
    witness.assert_clean()


# ============================================================================ cancellation points

Started = tuple["asyncio.Task[Any]", asyncio.Event, Callable[[], Awaitable[None]]]


async def nothing() -> None:
    pass


def signal_on(hook: str, event: asyncio.Event) -> Any:
    """A plugin that sets ``event`` when ``hook`` fires."""

    def impl(self: Any) -> None:
        event.set()

    return type("Signal", (), {hook: hookimpl(impl)})()


async def start_cancel_cell(w: Witness, point: str) -> Started:
    reached = asyncio.Event()
    suffix = tag()
    cleanup: Callable[[], Awaitable[None]] = nothing
    if point == "model-stream":
        agent = w.agent(
            "cancel",
            ScriptedModel([Step(text="late", delay=3600)]),
            plugins=[signal_on("on_model_call_start", reached)],
        )
        return asyncio.create_task(agent.run("hi")), reached, cleanup
    if point == "model-http-stream":
        server = WireServer().start()
        gate = threading.Event()
        server.queue(sse("openai", "text", gate=gate, gate_before=3))  # two deltas, then held
        model = http_model("openai", server, read_timeout=GUARD_S)
        agent = w.agent("cancel", model)

        async def consume() -> None:
            async for item in agent.stream("hi"):
                if isinstance(item, TextDelta):
                    reached.set()

        async def close() -> None:
            gate.set()
            await model.aclose()
            server.stop()

        return asyncio.create_task(consume()), reached, close
    if point == "model-retry-backoff":
        server = WireServer().start()
        server.queue(error_reply("openai", 503, headers={"retry-after": "3600"}))
        model = http_model("openai", server, max_retry_after=3600, max_retries=1)
        agent = w.agent("cancel", model, plugins=[signal_on("on_retry", reached)])

        async def close_model() -> None:
            await model.aclose()
            server.stop()

        return asyncio.create_task(agent.run("hi")), reached, close_model
    if point == "sync-tool":
        entered, release = threading.Event(), threading.Event()

        @tool(name=f"blocking_{suffix}")
        def blocking() -> str:
            entered.set()
            release.wait(GUARD_S)
            return "late"

        agent = w.agent("cancel", ScriptedModel([(blocking.name, {}), "never"]), tools=[blocking])
        task = asyncio.create_task(agent.run("go"))
        waiter = asyncio.create_task(asyncio.to_thread(entered.wait, GUARD_S))
        waiter.add_done_callback(lambda _: reached.set())

        async def release_thread() -> None:
            release.set()
            await waiter
            # The thread ran on past the cancellation with the call's bulkhead slot; it gives it back
            # when it ends (on its own thread, with no event to wait for).
            async with asyncio.timeout(GUARD_S):
                while blocking.bulkhead.inflight:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)

        return task, reached, release_thread
    if point in ("async-tool", "concurrent-tools"):
        names = [f"wait{i}_{suffix}" for i in range(1 if point == "async-tool" else 3)]
        entered: set[str] = set()

        def make(name: str) -> Tool:
            async def wait_forever() -> str:
                entered.add(name)
                if len(entered) == len(names):
                    reached.set()
                await asyncio.Event().wait()
                return "never"

            return tool(wait_forever, name=name)

        @tool(name=f"quick_{suffix}")
        async def quick() -> str:
            return "quick"

        tools = [make(n) for n in names] + [quick]
        calls = [ToolCall(f"c{i}", t.name) for i, t in enumerate(tools)]
        agent = w.agent("cancel", ScriptedModel([calls, "never"]), tools=tools)
        return asyncio.create_task(agent.run("go")), reached, cleanup
    if point == "compaction-summary":

        async def answer(messages: Sequence[Message], request: ModelRequest) -> str:
            if request.purpose == "compaction":
                reached.set()
                await asyncio.Event().wait()
            return "answer"

        agent = w.agent("cancel", FunctionModel(answer), compaction=Summarize(max_tokens=200))
        return asyncio.create_task(agent.run("and now?", messages=long_history())), reached, cleanup
    if point == "checkpoint-write":

        class SlowDisk(InMemoryCheckpointStore):
            """The first write hangs (a disk that stalls); the later ones go through."""

            def __init__(self) -> None:
                super().__init__()
                self.writes = 0

            async def save(self, checkpoint: Any) -> int:
                self.writes += 1
                if self.writes == 1:
                    reached.set()
                    await asyncio.Event().wait()
                return await super().save(checkpoint)

        @tool(name=f"step_{suffix}")
        async def step() -> str:
            return "stepped"

        store = SlowDisk()
        model = ScriptedModel([(step.name, {}), "resumed and done"])
        agent = w.agent("cancel", model, tools=[step], checkpoints=store, checkpoint_every="step")
        return asyncio.create_task(agent.run("go")), reached, cleanup
    if point == "failure-record":
        disk = asyncio.Event()

        class SlowOnFailure(InMemoryCheckpointStore):
            """Writes at once, except the record of a failure, which waits for a slow disk."""

            async def save(self, checkpoint: Any) -> int:
                if checkpoint.status == "failed":
                    reached.set()
                    await disk.wait()
                return await super().save(checkpoint)

        @tool(name=f"step_{suffix}")
        async def before_failure() -> str:
            return "stepped"

        model = ScriptedModel([(before_failure.name, {}), Step(error=ConnectionError("provider down"))])
        agent = w.agent("cancel", model, tools=[before_failure], checkpoints=SlowOnFailure(), checkpoint_every="step")

        async def disk_catches_up() -> None:
            # the record of the failure is shielded from the cancellation: it is still written
            disk.set()
            writing = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
            if writing:
                await asyncio.wait(writing, timeout=GUARD_S)

        return asyncio.create_task(agent.run("go")), reached, disk_catches_up
    if point == "approval-decider":

        class Person:
            @hookimpl
            async def approve_tool_call(self, call: Any) -> Any:
                reached.set()
                await asyncio.Event().wait()  # a person who never answers

        @tool(name=f"act_{suffix}")
        async def act() -> str:
            return "acted"

        agent = w.agent("cancel", ScriptedModel([(act.name, {}), "never"]), tools=[act], plugins=[Person()])
        return asyncio.create_task(agent.run("go")), reached, cleanup
    if point == "bulkhead-queue":

        class Signalling(Bulkhead):
            async def acquire(self) -> None:
                if self.inflight >= 1:
                    reached.set()  # the second call is about to wait in the queue
                await super().acquire()

        @tool(name=f"narrow_{suffix}", bulkhead=Signalling(1, max_queue=5))
        async def narrow() -> str:
            await asyncio.Event().wait()
            return "never"

        calls = [ToolCall("c1", narrow.name), ToolCall("c2", narrow.name)]
        agent = w.agent("cancel", ScriptedModel([calls, "never"]), tools=[narrow])
        return asyncio.create_task(agent.run("go")), reached, cleanup
    if point == "tool-retry-backoff":

        @tool(name=f"retried_{suffix}", retries=RetryPolicy(attempts=2, initial_delay=3600, max_delay=3600))
        async def retried() -> str:
            if not reached.is_set():
                raise ConnectionError("first attempt fails")
            await asyncio.Event().wait()  # in case the random backoff was short
            return "never"

        agent = w.agent(
            "cancel",
            ScriptedModel([(retried.name, {}), "never"]),
            tools=[retried],
            plugins=[signal_on("on_retry", reached)],
        )
        return asyncio.create_task(agent.run("go")), reached, cleanup
    assert point == "between-turns"

    async def prepare(ctx: Any) -> None:
        if ctx.turn == 1:
            reached.set()
            await asyncio.Event().wait()

    @tool(name=f"step_{suffix}")
    async def first_step() -> str:
        return "stepped"

    agent = w.agent(
        "cancel", ScriptedModel([(first_step.name, {}), "never"]), tools=[first_step], prepare_tools=prepare
    )
    return asyncio.create_task(agent.run("go")), reached, cleanup


CANCEL_POINTS = [
    "model-stream",
    "model-http-stream",
    "model-retry-backoff",
    "sync-tool",
    "async-tool",
    "concurrent-tools",
    "bulkhead-queue",
    "tool-retry-backoff",
    "compaction-summary",
    "checkpoint-write",
    "failure-record",
    "approval-decider",
    "between-turns",
]


@pytest.mark.parametrize("point", CANCEL_POINTS)
async def test_cancelled_at(witness: Witness, point: str) -> None:
    task, reached, cleanup = await start_cancel_cell(witness, point)
    try:
        async with asyncio.timeout(GUARD_S):
            await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        await cleanup()

    assert task.cancelled()
    assert witness.statuses(RunEnded) == ["cancelled"]
    (ended,) = witness.recorder.of_type(RunEnded)
    assert ended.error is None  # cancellation is not an error
    open_calls = [e for e in witness.recorder.of_type(ToolCallEnded, ModelCallEnded) if e.status not in ("ok",)]
    if point == "failure-record":  # the model had failed; the cancellation came while that was recorded
        assert [(e.status, e.error.type if e.error else None) for e in open_calls] == [("error", "ModelError")]
    else:
        assert {e.status for e in open_calls} <= {"cancelled"}
    if point == "failure-record":  # the failure was recorded all the same: the run can be resumed
        agent = witness.agents[0]
        checkpoint = await agent.store().load(ended.run_id)
        assert checkpoint is not None
        assert checkpoint.status == "failed"
    if point == "checkpoint-write":
        # the run was recorded as cancelled at its last step, and resumes from there: nothing is lost
        agent = witness.agents[0]
        done = await agent.resume(ended.run_id)
        assert (done.status, done.output, done.run_id) == ("completed", "resumed and done", ended.run_id)
        assert witness.statuses(ToolCallEnded) == ["ok"]
    witness.assert_clean()


# ======================================================================== the matrix is complete


def test_every_row_of_the_matrix_is_here() -> None:
    """A new hook or sink must get its row: the parameters above cover what the design lists."""
    assert set(OBSERVER_HOOKS) | {"approve_tool_call"} == {
        name for name in dir(tracedagent.hookspecs) if name.startswith(("on_", "approve_"))
    }
    assert {p.values[0] for p in SINK_CELLS} == {"stdout", "prometheus", "otlp", "langsmith"}
    assert {p.values[1] for p in SINK_CELLS} == {"down", "slow", "error"}
    assert len(CANCEL_POINTS) == len(set(CANCEL_POINTS))
