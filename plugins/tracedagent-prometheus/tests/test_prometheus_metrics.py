"""PrometheusTracer: after scripted runs, every metric read back from the registry is what the recorded
events predict; live values are right in the middle of a call; labels never carry user content; the
cardinality guard folds extra values into ``other``."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_support import (
    CIRCUIT_VALUE,
    DESIGN_TABLE,
    GENAI_DURATION_BUCKETS,
    GENAI_TTFT_BUCKETS,
    SECRET,
    VariedScenario,
    buckets,
    cumulative,
    durations,
    long_history,
    observed,
    predicted,
    unique,
    until,
    value,
)

import tracedagent
from tracedagent import (
    Agent,
    CircuitStateChanged,
    ConfigurationError,
    DropOldest,
    ExportPipeline,
    ModelCallEnded,
    RunEnded,
    RunStarted,
    Tool,
    ToolCallEnded,
    ToolCallStarted,
    hookimpl,
)
from tracedagent.resilience import CircuitBreaker
from tracedagent.testing import RecordingTracer, ScriptedModel, Step
from tracedagent_prometheus import LabelGuard, PrometheusTracer


@pytest.fixture
async def varied(registry: CollectorRegistry, prom: PrometheusTracer, recorder: RecordingTracer) -> RecordingTracer:
    """The varied scenario, run once with the tracer on: the recorded events."""
    await VariedScenario().run(prom, recorder)
    assert recorder.unmatched() == []
    return recorder


# ------------------------------------------------------------------------------ counters and histograms


async def test_every_counter_and_histogram_count_matches_the_events(registry, varied):
    events = varied.events
    assert observed(registry) == predicted(events)

    # ... and the events are the ones the scenario was written to make (so the match means something)
    desk = {"agent": "desk"}
    assert value(registry, "tracedagent_runs_total", **desk, status="completed") == 2
    assert value(registry, "tracedagent_runs_total", **desk, status="interrupted") == 1
    assert value(registry, "tracedagent_runs_total", **desk, status="failed") == 1
    for agent in ("summarizer", "dropper", "retrier"):
        assert value(registry, "tracedagent_runs_total", agent=agent, status="completed") == 1
    assert value(registry, "tracedagent_run_duration_seconds_count", **desk) == 4  # segments
    assert value(registry, "tracedagent_interrupts_total", **desk) == 1
    assert value(registry, "tracedagent_resumes_total", **desk) == 1
    model = {**desk, "provider": "scripted", "model": "desk-model"}
    assert value(registry, "tracedagent_model_calls_total", **model, status="ok") == 7
    assert value(registry, "tracedagent_model_calls_total", **model, status="error") == 1
    assert value(registry, "tracedagent_tokens_total", **model, type="cache_read") == 40
    assert value(registry, "tracedagent_tokens_total", **model, type="reasoning") == 13
    assert value(registry, "tracedagent_tokens_total", **model, type="input") >= 320
    costs = [e.usage.cost_usd for e in events if isinstance(e, ModelCallEnded) and e.model == "desk-model"]
    assert sum(c or 0.0 for c in costs) > 0
    assert value(registry, "tracedagent_cost_usd_total", **model) == pytest.approx(sum(c or 0.0 for c in costs))
    # the summarising compaction is a model call too
    summary = {"agent": "summarizer", "provider": "scripted", "model": "summary-model"}
    assert value(registry, "tracedagent_model_calls_total", **summary, status="ok") == 2
    assert registry.get_sample_value("tracedagent_cost_usd_total", summary) is None  # no price: no series


async def test_tool_outcomes_refusals_and_retries(registry, varied):
    tools = {e.tool: e for e in varied.of_type(ToolCallStarted)}
    names = {name.rsplit("_", 1)[0]: name for name in tools}

    def calls(tool: str, status: str) -> float:
        return value(registry, "tracedagent_tool_calls_total", agent="desk", tool=names[tool], status=status)

    assert calls("lookup", "ok") == 1
    assert calls("explode", "error") == 1
    assert calls("stall", "timeout") == 1
    assert calls("flaky", "ok") == 1
    assert calls("single", "ok") == calls("single", "rejected") == 1
    assert calls("fragile", "error") == calls("fragile", "circuit_open") == 1
    assert calls("approve", "ok") == 1
    assert value(registry, "tracedagent_tool_rejections_total", tool=names["single"], reason="queue_full") == 1
    assert value(registry, "tracedagent_tool_rejections_total", tool=names["fragile"], reason="circuit_open") == 1
    assert value(registry, "tracedagent_tool_call_duration_seconds_count", agent="desk", tool=names["single"]) == 2
    assert value(registry, "tracedagent_retries_total", target=names["flaky"], kind="tool") == 1
    assert value(registry, "tracedagent_retries_total", target="retry-model", kind="model") == 1


async def test_compactions_and_tokens_removed(registry, varied):
    compactions = varied.of_type(tracedagent.ContextCompacted)
    assert {(e.agent, e.strategy) for e in compactions} == {("summarizer", "summarize"), ("dropper", "drop_oldest")}
    for agent, strategy in (("summarizer", "summarize"), ("dropper", "drop_oldest")):
        assert value(registry, "tracedagent_compactions_total", agent=agent, strategy=strategy) == 1
        removed = sum(e.tokens_before - e.tokens_after for e in compactions if e.agent == agent)
        assert removed > 0
        assert value(registry, "tracedagent_compaction_tokens_removed_total", agent=agent) == removed


async def test_output_validation_failures_count_every_invalid_answer(registry, varied):
    # run 1: one invalid answer, corrected; run 2: two invalid answers, the run fails
    ends = [e for e in varied.of_type(RunEnded) if e.agent == "typed"]
    assert [(e.status, e.output_validation_failures) for e in ends] == [("completed", 1), ("failed", 2)]
    assert ends[1].error is not None
    assert ends[1].error.type == "OutputValidationError"
    assert value(registry, "tracedagent_output_validation_failures_total", agent="typed") == 3
    assert value(registry, "tracedagent_runs_total", agent="typed", status="failed") == 1
    assert value(registry, "tracedagent_output_validation_failures_total", agent="desk") == 0


async def test_handoffs_count_by_the_agents_handing_off_and_taking_over(registry, varied):
    handoffs = varied.of_type(tracedagent.HandoffOccurred)
    assert [(e.from_agent, e.to_agent) for e in handoffs] == [("router", "specialist")]
    assert value(registry, "tracedagent_handoffs_total", from_agent="router", to_agent="specialist") == 1
    # the run stays the router's; the specialist's calls carry the specialist
    assert value(registry, "tracedagent_runs_total", agent="router", status="completed") == 1
    specialist = {"agent": "specialist", "provider": "scripted", "model": "specialist-model"}
    assert value(registry, "tracedagent_model_calls_total", **specialist, status="ok") == 1


async def test_runs_active_is_back_to_zero(registry, varied):
    agents = {e.agent for e in varied.of_type(RunStarted)}
    assert agents == {"desk", "summarizer", "dropper", "retrier", "typed", "router"}
    for agent in agents:
        assert registry.get_sample_value("tracedagent_runs_active", {"agent": agent}) == 0


async def test_histograms_use_fitting_buckets_and_hold_each_observation(registry, varied):
    events = varied.events
    labels = {"agent": "desk", "provider": "scripted", "model": "desk-model"}
    desk_model_calls = [e for e in events if isinstance(e, ModelCallEnded) and e.model == "desk-model"]

    model = buckets(registry, "tracedagent_model_call_duration_seconds", **labels)
    assert sorted(model) == [*GENAI_DURATION_BUCKETS, math.inf]
    assert model == cumulative(durations(desk_model_calls, ModelCallEnded), GENAI_DURATION_BUCKETS)

    ttft = buckets(registry, "tracedagent_model_time_to_first_token_seconds", **labels)
    assert sorted(ttft) == [*GENAI_TTFT_BUCKETS, math.inf]
    firsts = durations(desk_model_calls, ModelCallEnded, "time_to_first_token_s")
    assert len(firsts) == 7  # the failed call streamed nothing
    assert ttft == cumulative(firsts, GENAI_TTFT_BUCKETS)

    runs = buckets(registry, "tracedagent_run_duration_seconds", agent="desk")
    run_bounds = sorted(runs)[:-1]
    assert run_bounds[0] <= 0.01
    assert run_bounds[-1] >= 300
    assert runs == cumulative(durations([e for e in events if e.agent == "desk"], RunEnded), run_bounds)

    stall = next(e for e in events if isinstance(e, ToolCallEnded) and e.status == "timeout")
    tool = buckets(registry, "tracedagent_tool_call_duration_seconds", agent="desk", tool=stall.tool)
    tool_bounds = sorted(tool)[:-1]
    assert tool_bounds[0] <= 0.001
    assert tool_bounds[-1] >= 60
    assert tool == cumulative([stall.duration_s], tool_bounds)
    assert registry.get_sample_value(
        "tracedagent_tool_call_duration_seconds_sum", {"agent": "desk", "tool": stall.tool}
    ) == pytest.approx(stall.duration_s)


# -------------------------------------------------------------------------------- the exposition


class Raising:
    """A plugin whose every run end raises."""

    def __init__(self) -> None:
        self.name = unique("raising")

    @hookimpl
    def on_run_end(self, event):
        raise RuntimeError("broken plugin")


async def test_every_metric_of_the_design_is_exposed_with_its_type_and_labels(registry, prom, varied):
    await Agent("broken", ScriptedModel(["hi"]), plugins=[Raising(), prom]).run("hello")
    sink = ExportPipeline(unique("design-sink"), lambda batch: None, interval_s=3600)
    sink.put("one item")
    try:
        text = generate_latest(registry).decode()
    finally:
        sink.shutdown(5)
    families = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        families[name] = family
    for name, (kind, labels) in DESIGN_TABLE.items():
        assert name in families, f"{name} is missing from the exposition"
        family = families[name]
        assert family.type == kind, f"{name} is a {family.type}, the design says {kind}"
        assert family.samples, f"{name} has no sample after the varied runs"
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            assert set(sample.labels) - {"le"} == labels, f"{sample.name} has labels {sorted(sample.labels)}"


async def test_labels_never_carry_user_content(registry, varied):
    # the secret was everywhere content goes...
    events = varied.events
    assert any(SECRET in (e.input[-1].content or "") for e in events if isinstance(e, RunStarted))
    assert any(SECRET in e.arguments for e in events if isinstance(e, ToolCallStarted))
    assert any(SECRET in (e.result or "") for e in events if isinstance(e, ToolCallEnded))
    assert any(SECRET in (e.error.message if e.error else "") for e in events if isinstance(e, ToolCallEnded))
    assert any(SECRET in (e.output or "") for e in events if isinstance(e, RunEnded))
    assert any(SECRET in (e.error.message if e.error else "") for e in events if isinstance(e, RunEnded))
    # ... and nowhere in the metrics
    text = generate_latest(registry).decode()
    assert "tracedagent_tool_calls_total" in text
    assert SECRET not in text
    label_values = {v for f in registry.collect() for s in f.samples for v in s.labels.values()}
    assert not {v for v in label_values if SECRET in v}


# ---------------------------------------------------------------------------------- live values


async def test_inflight_queue_depth_and_runs_active_in_the_middle_of_a_call(registry, prom, recorder):
    gate = asyncio.Event()

    async def wait_for_gate(n: int) -> str:
        await gate.wait()
        return f"done {n}"

    name = unique("gated")
    gated = Tool(wait_for_gate, name=name, max_concurrency=1, max_queue=5)
    model = ScriptedModel([Step(tool_calls=[(name, {"n": i}) for i in range(3)]), "all done"])
    agent = Agent("gatekeeper", model, tools=[gated], plugins=[prom, recorder])
    assert value(registry, "tracedagent_tool_inflight", tool=name) == 0  # known, idle

    run = asyncio.ensure_future(agent.run("go"))
    try:
        await until(lambda: value(registry, "tracedagent_tool_queue_depth", tool=name) == 2, "two calls queued")
        assert value(registry, "tracedagent_tool_inflight", tool=name) == 1
        assert value(registry, "tracedagent_runs_active", agent="gatekeeper") == 1
        started = [e for e in recorder.of_type(ToolCallStarted) if e.tool == name]
        assert len(started) == 3
        assert not recorder.of_type(ToolCallEnded)
    finally:
        gate.set()
    result = await asyncio.wait_for(run, 10)

    assert result.output == "all done"
    assert value(registry, "tracedagent_tool_inflight", tool=name) == 0
    assert value(registry, "tracedagent_tool_queue_depth", tool=name) == 0
    assert value(registry, "tracedagent_runs_active", agent="gatekeeper") == 0
    assert value(registry, "tracedagent_tool_calls_total", agent="gatekeeper", tool=name, status="ok") == 3


async def test_circuit_state_follows_the_breaker(registry, prom, recorder):
    now = [1000.0]
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=lambda: now[0])
    failing = [True]
    probe_entered, probe_gate = asyncio.Event(), asyncio.Event()

    async def upstream() -> str:
        if failing[0]:
            raise ConnectionError("upstream down")
        probe_entered.set()
        await probe_gate.wait()
        return "upstream back"

    name = unique("guarded")
    guarded = Tool(upstream, name=name, breaker=breaker)
    model = ScriptedModel([Step(tool_calls=[(name, {})]), "answered"], per_run=True)
    agent = Agent("breakers", model, tools=[guarded], plugins=[prom, recorder])

    def state() -> float | None:
        return registry.get_sample_value("tracedagent_circuit_state", {"tool": name})

    def last_change() -> float:
        changes = [e for e in recorder.of_type(CircuitStateChanged) if e.tool == name]
        return CIRCUIT_VALUE[changes[-1].new] if changes else CIRCUIT_VALUE["closed"]

    assert state() == 0 == last_change()
    await agent.run("first")  # fails: the breaker opens
    assert state() == 2 == last_change()
    now[0] += 31  # past the reset timeout: the next call is a probe
    failing[0] = False
    run = asyncio.ensure_future(agent.run("probe"))
    try:
        await asyncio.wait_for(probe_entered.wait(), 10)
        assert state() == 1 == last_change()  # half-open while the probe runs
    finally:
        probe_gate.set()
    await asyncio.wait_for(run, 10)
    assert state() == 0 == last_change()
    assert [(e.old, e.new) for e in recorder.of_type(CircuitStateChanged)] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_plugin_errors_are_counted_per_plugin_and_hook(registry, prom, recorder):
    plugin_name = unique("exploding")

    class Exploding:
        name = plugin_name

        @hookimpl
        def on_run_end(self, event):
            raise RuntimeError("broken plugin")

        @hookimpl
        def on_model_call_end(self, event):
            raise RuntimeError("broken plugin")

    agent = Agent("victim", ScriptedModel(["one", "two"]), plugins=[Exploding(), prom, recorder])
    await agent.run("a")
    await agent.run("b")

    runs, calls = len(recorder.of_type(RunEnded)), len(recorder.of_type(ModelCallEnded))
    assert runs == calls == 2
    assert value(registry, "tracedagent_plugin_errors_total", plugin=plugin_name, hook="on_run_end") == runs
    assert value(registry, "tracedagent_plugin_errors_total", plugin=plugin_name, hook="on_model_call_end") == calls
    # the broken plugin did not keep the tracer from its events
    assert value(registry, "tracedagent_runs_total", agent="victim", status="completed") == 2


def test_export_queue_depth_and_drops_of_a_full_sink(registry, prom):
    exported: list[list[str]] = []
    release = threading.Event()

    def export(batch):
        release.wait(30)
        exported.append(list(batch))

    # The worker wakes when 100 items wait or once an hour: nothing leaves this queue of 2 meanwhile.
    name = unique("full-sink")
    sink = ExportPipeline(name, export, max_queue=2, max_batch=100, interval_s=3600)
    try:
        accepted = [sink.put(f"item {i}") for i in range(5)]
        assert accepted == [True, True, False, False, False]
        stats = {s.sink: s for s in tracedagent.export_stats()}[name]
        assert (stats.queue_depth, stats.dropped) == (2, 3)
        assert value(registry, "tracedagent_export_queue_depth", sink=name) == 2
        assert value(registry, "tracedagent_export_dropped_total", sink=name) == 3
    finally:
        release.set()
        assert sink.shutdown(10)
    assert exported == [["item 0", "item 1"]]
    assert value(registry, "tracedagent_export_queue_depth", sink=name) == 0
    assert value(registry, "tracedagent_export_dropped_total", sink=name) == 3


# ------------------------------------------------------------------------------ the cardinality guard


async def test_values_past_the_limit_are_folded_into_other(registry, recorder):
    guarded = PrometheusTracer(registry, max_label_values=3)
    for n in range(4):
        agent = Agent(f"agent{n}", ScriptedModel(["hi"]), plugins=[guarded, recorder])
        await agent.run("hello")
    names = [unique(f"tool{n}") for n in range(4)]

    async def echo(n: int) -> str:
        return str(n)

    tools = [Tool(echo, name=name) for name in names]
    model = ScriptedModel([Step(tool_calls=[(name, {"n": i}) for i, name in enumerate(names)]), "done"])
    await Agent("agent0", model, tools=tools, plugins=[guarded, recorder]).run("call them all")

    for n in range(3):
        assert value(registry, "tracedagent_runs_total", agent=f"agent{n}", status="completed") == (2 if n == 0 else 1)
    assert value(registry, "tracedagent_runs_total", agent="agent3", status="completed") == 0
    assert value(registry, "tracedagent_runs_total", agent="other", status="completed") == 1
    # one of the four tools (whichever ended last) is folded; no call is lost
    tool_labels = {
        s.labels["tool"]: s.value
        for f in registry.collect()
        for s in f.samples
        if s.name == "tracedagent_tool_calls_total"
    }
    assert len(tool_labels) == 4
    assert tool_labels.pop("other") == 1
    assert set(tool_labels) < set(names)
    assert set(tool_labels.values()) == {1}
    assert guarded.agent.folded > 0
    assert guarded.tool.folded > 0
    # every run is still counted, in its own series or in `other`
    total = sum(s.value for f in registry.collect() for s in f.samples if s.name == "tracedagent_runs_total")
    assert total == len(recorder.of_type(RunEnded)) == 5


async def test_many_distinct_values_past_the_limit_keep_the_tracers_memory_bounded(registry):
    """The hooks remember the labels of each combination of raw values; past the limit, values fold into
    ``other`` and the memory for them stops growing, while every call is still counted."""
    guarded = PrometheusTracer(registry, max_label_values=2)
    names = [unique(f"t{n}") for n in range(30)]

    async def echo(n: int) -> str:
        return str(n)

    for i, name in enumerate(names):
        model = ScriptedModel([Step(tool_calls=[(name, {"n": i})]), "done"])
        await Agent(f"agent{i}", model, tools=[Tool(echo, name=name)], plugins=[guarded]).run("go")

    assert len(guarded._by_raw) <= 4 * 2
    calls = sum(s.value for f in registry.collect() for s in f.samples if s.name == "tracedagent_tool_calls_total")
    runs = sum(s.value for f in registry.collect() for s in f.samples if s.name == "tracedagent_runs_total")
    assert (calls, runs) == (30, 30)
    assert value(registry, "tracedagent_tool_calls_total", agent="other", tool="other", status="ok") == 28


async def test_each_label_has_its_own_budget(registry, recorder):
    """With one value allowed per label, an agent, a tool, a strategy and a refusal reason all keep theirs."""
    guarded = PrometheusTracer(registry, max_label_values=1)

    async def fails() -> str:
        raise ConnectionError("down")

    name = unique("one_tool")
    flaky = Tool(fails, name=name, breaker=CircuitBreaker(failure_threshold=1, reset_timeout=3600))
    model = ScriptedModel([Step(tool_calls=[(name, {})]), Step(tool_calls=[(name, {})]), "gave up"])
    agent = Agent("solo", model, tools=[flaky], compaction=DropOldest(60), plugins=[guarded, recorder])
    await agent.run("try twice", messages=long_history())

    compactions = len(recorder.of_type(tracedagent.ContextCompacted))
    assert compactions >= 1
    assert value(registry, "tracedagent_compactions_total", agent="solo", strategy="drop_oldest") == compactions
    assert value(registry, "tracedagent_tool_rejections_total", tool=name, reason="circuit_open") == 1
    assert value(registry, "tracedagent_tool_calls_total", agent="solo", tool=name, status="circuit_open") == 1
    assert observed(registry) == predicted(recorder.events)


def test_label_guard():
    guard = LabelGuard(2)
    assert [guard(v) for v in ("a", "b", "a", "c", None, "b")] == ["a", "b", "a", "other", "other", "b"]
    assert guard.folded == 2
    assert LabelGuard(5)(None) == LabelGuard(5)("") == "unknown"


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "200"])
def test_max_label_values_must_be_a_positive_whole_number(bad):
    with pytest.raises(ConfigurationError, match="max_label_values"):
        PrometheusTracer(CollectorRegistry(), max_label_values=bad)


# --------------------------------------------------------------------------- the default registry


async def test_the_default_registry_unless_one_is_given():
    agent_name = unique("default-registry-agent")
    first, second = PrometheusTracer(), PrometheusTracer()  # the metrics are shared, not registered twice
    assert first.registry is second.registry is REGISTRY
    await Agent(agent_name, ScriptedModel(["hi"]), plugins=[first]).run("hello")
    await Agent(agent_name, ScriptedModel(["hi"]), plugins=[second]).run("hello")
    assert REGISTRY.get_sample_value("tracedagent_runs_total", {"agent": agent_name, "status": "completed"}) == 2
    assert f'agent="{agent_name}"' in generate_latest(REGISTRY).decode()


# ------------------------------------------------------------------- the in-process store's exposition


@pytest.mark.parametrize("created", [True, False])
def test_the_in_process_store_exposes_what_prometheus_client_objects_would(varied, monkeypatch, created):
    # In one process the hooks update plain numbers; the exposition must be what prometheus-client's own
    # Counter, Gauge and Histogram objects (the multiprocess store) give for the same events: every name,
    # help text, type, label, bucket and sample, in the same order (the _created times aside).
    import re

    from prometheus_client import metrics as client_metrics

    from tracedagent_prometheus import _tracer

    monkeypatch.setattr(client_metrics, "_use_created", created)
    registries = []
    for multiprocess in (False, True):
        monkeypatch.setattr(_tracer, "_multiprocess", lambda multiprocess=multiprocess: multiprocess)
        registry = CollectorRegistry()
        tracer = PrometheusTracer(registry)
        assert isinstance(tracer.metrics, _tracer._Metrics) is multiprocess
        for event in varied.events:
            hook = getattr(tracer, event.hook, None)
            if hook is not None:
                hook(event)
        registries.append(registry)
    fast, objects = (generate_latest(r).decode() for r in registries)
    assert ("_created{" in fast) is created
    assert "tracedagent_tool_call_duration_seconds_bucket{" in fast  # the scenario filled the histograms

    live = ("tracedagent_tool_inflight", "tracedagent_tool_queue_depth", "tracedagent_circuit_state")
    live += ("tracedagent_plugin_errors", "tracedagent_export_queue_depth", "tracedagent_export_dropped")
    live += ("tracedagent_traces_shed",)

    def timeless(text: str) -> str:
        # The live collector's families are read from process-wide state at each scrape (the tools of
        # every test still alive, collected at any moment): not part of either store, so left out.
        kept = [line for line in text.splitlines() if not any(name in line for name in live)]
        return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", "\n".join(kept))

    assert timeless(fast) == timeless(objects)
