"""Shared pieces of the Prometheus plugin's tests: the design's metric table, the buckets of the
OpenTelemetry GenAI conventions, what the recorded events predict each metric to read, and a varied
scenario that makes every event the tracer counts."""

from __future__ import annotations

import asyncio
import itertools
import math
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from tracedagent import (
    Agent,
    DropOldest,
    Event,
    InMemoryCheckpointStore,
    Message,
    ModelRequest,
    ModelStreamPart,
    OutputValidationError,
    RunError,
    Summarize,
    Tool,
    ToolCallEnded,
    Usage,
    hookimpl,
)
from tracedagent.resilience import CircuitBreaker, RetryPolicy
from tracedagent.testing import ScriptedModel, Step

#: Put in every content field of the varied scenario: prompts, tool arguments and results, answers,
#: error messages. It must never reach a label.
SECRET = "SECRET-5b1e0d"

#: The Prometheus table of DESIGN.md (the contract): metric, type, label names.
DESIGN_TABLE: dict[str, tuple[str, frozenset[str]]] = {
    "tracedagent_runs_total": ("counter", frozenset({"agent", "status"})),
    "tracedagent_run_duration_seconds": ("histogram", frozenset({"agent"})),
    "tracedagent_runs_active": ("gauge", frozenset({"agent"})),
    "tracedagent_model_calls_total": ("counter", frozenset({"agent", "provider", "model", "status"})),
    "tracedagent_model_call_duration_seconds": ("histogram", frozenset({"agent", "provider", "model"})),
    "tracedagent_model_time_to_first_token_seconds": ("histogram", frozenset({"agent", "provider", "model"})),
    "tracedagent_tokens_total": ("counter", frozenset({"agent", "provider", "model", "type"})),
    "tracedagent_cost_usd_total": ("counter", frozenset({"agent", "provider", "model"})),
    "tracedagent_tool_calls_total": ("counter", frozenset({"agent", "tool", "status"})),
    "tracedagent_tool_call_duration_seconds": ("histogram", frozenset({"agent", "tool"})),
    "tracedagent_tool_inflight": ("gauge", frozenset({"tool"})),
    "tracedagent_tool_queue_depth": ("gauge", frozenset({"tool"})),
    "tracedagent_tool_rejections_total": ("counter", frozenset({"tool", "reason"})),
    "tracedagent_circuit_state": ("gauge", frozenset({"tool"})),
    "tracedagent_retries_total": ("counter", frozenset({"target", "kind"})),
    "tracedagent_interrupts_total": ("counter", frozenset({"agent"})),
    "tracedagent_resumes_total": ("counter", frozenset({"agent"})),
    "tracedagent_compactions_total": ("counter", frozenset({"agent", "strategy"})),
    "tracedagent_compaction_tokens_removed_total": ("counter", frozenset({"agent"})),
    "tracedagent_plugin_errors_total": ("counter", frozenset({"plugin", "hook"})),
    "tracedagent_export_queue_depth": ("gauge", frozenset({"sink"})),
    "tracedagent_export_dropped_total": ("counter", frozenset({"sink"})),
    "tracedagent_traces_shed_total": ("counter", frozenset({"sink"})),
    # Not in the DESIGN table yet (issue 18, structured output): invalid answers to an output_type.
    "tracedagent_output_validation_failures_total": ("counter", frozenset({"agent"})),
    "tracedagent_handoffs_total": ("counter", frozenset({"from_agent", "to_agent"})),
}

#: gen_ai.client.operation.duration's explicit bucket boundaries (OpenTelemetry GenAI conventions).
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: gen_ai.server.time_to_first_token's explicit bucket boundaries (same conventions).
GENAI_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

CIRCUIT_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

Key = tuple[str, tuple[tuple[str, str], ...]]


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 when it does not exist (yet)."""
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


# ------------------------------------------------------------------------- events -> metric values

#: The samples the hooks update: counters (``_total``) and histogram counts (``_count``).
EVENT_DRIVEN = (
    "tracedagent_runs_total",
    "tracedagent_run_duration_seconds_count",
    "tracedagent_model_calls_total",
    "tracedagent_model_call_duration_seconds_count",
    "tracedagent_model_time_to_first_token_seconds_count",
    "tracedagent_tokens_total",
    "tracedagent_cost_usd_total",
    "tracedagent_tool_calls_total",
    "tracedagent_tool_call_duration_seconds_count",
    "tracedagent_tool_rejections_total",
    "tracedagent_retries_total",
    "tracedagent_interrupts_total",
    "tracedagent_resumes_total",
    "tracedagent_compactions_total",
    "tracedagent_compaction_tokens_removed_total",
    "tracedagent_output_validation_failures_total",
    "tracedagent_handoffs_total",
)


def predicted(events: Iterable[Any]) -> dict[Key, float]:
    """What every counter and histogram count must read after these events (zeros left out). Events
    are told apart by their ``hook``, so records of events (read back from JSON) work too."""
    out: Counter[Key] = Counter()
    for e in events:
        hook = e.hook
        if hook == "on_run_end":
            out[key("tracedagent_runs_total", agent=e.agent, status=e.status)] += 1
            out[key("tracedagent_run_duration_seconds_count", agent=e.agent)] += 1
            failures = getattr(e, "output_validation_failures", 0)
            out[key("tracedagent_output_validation_failures_total", agent=e.agent)] += failures
        elif hook == "on_model_call_end":
            labels = {"agent": e.agent, "provider": e.provider, "model": e.model}
            out[key("tracedagent_model_calls_total", **labels, status=e.status)] += 1
            out[key("tracedagent_model_call_duration_seconds_count", **labels)] += 1
            if e.time_to_first_token_s is not None:
                out[key("tracedagent_model_time_to_first_token_seconds_count", **labels)] += 1
            for kind in ("input", "output", "cache_read", "reasoning"):
                out[key("tracedagent_tokens_total", **labels, type=kind)] += getattr(e.usage, f"{kind}_tokens")
            # absent from an event record when the call had no price
            out[key("tracedagent_cost_usd_total", **labels)] += getattr(e.usage, "cost_usd", None) or 0.0
        elif hook == "on_tool_call_end":
            out[key("tracedagent_tool_calls_total", agent=e.agent, tool=e.tool, status=e.status)] += 1
            out[key("tracedagent_tool_call_duration_seconds_count", agent=e.agent, tool=e.tool)] += 1
            if e.status in ("rejected", "circuit_open"):
                assert e.reason, f"a refusal without a reason: {e!r}"
                out[key("tracedagent_tool_rejections_total", tool=e.tool, reason=e.reason)] += 1
        elif hook == "on_retry":
            out[key("tracedagent_retries_total", target=e.target, kind=e.kind)] += 1
        elif hook == "on_interrupt":
            out[key("tracedagent_interrupts_total", agent=e.agent)] += 1
        elif hook == "on_resume":
            out[key("tracedagent_resumes_total", agent=e.agent)] += 1
        elif hook == "on_compaction":
            out[key("tracedagent_compactions_total", agent=e.agent, strategy=e.strategy)] += 1
            out[key("tracedagent_compaction_tokens_removed_total", agent=e.agent)] += e.tokens_before - e.tokens_after
        elif hook == "on_handoff":
            out[key("tracedagent_handoffs_total", from_agent=e.from_agent, to_agent=e.to_agent)] += 1
    return {k: v for k, v in out.items() if v}


def observed(registry: CollectorRegistry) -> dict[Key, float]:
    """The registry's counters and histogram counts (zeros left out)."""
    out: dict[Key, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name in EVENT_DRIVEN and sample.value:
                out[key(sample.name, **sample.labels)] = sample.value
    return out


def durations(events: Iterable[Event], kind: type[Event], attribute: str = "duration_s") -> list[float]:
    return [getattr(e, attribute) for e in events if isinstance(e, kind) and getattr(e, attribute) is not None]


def buckets(registry: CollectorRegistry, name: str, **labels: str) -> dict[float, float]:
    """A histogram's cumulative buckets for one label set: upper bound -> count."""
    out: dict[float, float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name != f"{name}_bucket":
                continue
            rest = {k: v for k, v in sample.labels.items() if k != "le"}
            if rest == labels:
                out[float(sample.labels["le"])] = sample.value
    return out


def cumulative(observations: Iterable[float], bounds: Iterable[float]) -> dict[float, float]:
    """How many observations each bucket of ``bounds`` (and +Inf) must hold."""
    values = list(observations)
    return {b: float(sum(1 for v in values if v <= b)) for b in (*bounds, math.inf)}


# ------------------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(every)


async def until(condition: Callable[[], Any], what: str, within: float = 10.0) -> Any:
    """``wait_until`` inside an event loop: poll between turns of the loop."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {within:g} s waiting for {what}")
        await asyncio.sleep(0.001)


_ids = itertools.count(1)


def unique(name: str) -> str:
    """A tool or agent name no other test uses (tools live in a process-wide set until collected)."""
    return f"{name}_{next(_ids)}"


def long_history(pairs: int = 6) -> list[Message]:
    """An earlier conversation far over a 60-token budget."""
    history: list[Message] = []
    for i in range(pairs):
        history.append(Message.user(f"Earlier question {i} about the weather in a city far away. " * 3))
        history.append(Message.assistant(f"Earlier answer {i}: pack a coat and an umbrella, just in case. " * 3))
    return history


class RetryOnce:
    """A model that retries its first request once (as an HTTP provider does after a 503)."""

    def __init__(self, inner: ScriptedModel) -> None:
        self.inner = inner
        self.retried = False

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def provider(self) -> str:
        return self.inner.provider

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
        if not self.retried and request.on_retry is not None:
            self.retried = True
            request.on_retry(1, 0.0, ConnectionError(f"503 from the provider for {SECRET}"))
        return self.inner.stream(request)


# ------------------------------------------------------------------------------- the varied scenario


class VariedScenario:
    """Runs that make every event the tracer counts: tools that succeed, fail, time out, are refused by
    a bulkhead and by an open breaker, a tool retry and a model retry, an interrupt and its resume, a
    failed run, both compaction strategies, and a handoff. ``SECRET`` is in every content field.

    It is also a plugin (given to its agents): it lets the first call of the one-slot tool go on once the
    second call has been refused, so the refusal does not depend on timing.
    """

    name = "scenario-gate"

    def __init__(self) -> None:
        self.tools = {
            name: unique(name) for name in ("lookup", "explode", "stall", "flaky", "single", "fragile", "approve")
        }
        self._refused: asyncio.Event | None = None
        self._flaky_calls = 0
        t = self.tools

        async def lookup(query: str) -> str:
            return f"found {query}"

        async def explode(query: str) -> str:
            raise RuntimeError(f"exploded on {query}")

        async def stall() -> str:
            await asyncio.Event().wait()  # never set: the tool's timeout ends the call
            return "never"

        async def flaky() -> str:
            self._flaky_calls += 1
            if self._flaky_calls == 1:
                raise ConnectionError("the upstream dropped the request")
            return "steady now"

        async def single() -> str:
            assert self._refused is not None
            await self._refused.wait()  # the other call of this turn has been refused
            return "done alone"

        async def fragile() -> str:
            raise ConnectionError("fragile upstream is down")

        def approve(item: str) -> str:
            return f"approved {item}"

        self.lookup = Tool(lookup, name=t["lookup"])
        self.explode = Tool(explode, name=t["explode"])
        self.stall = Tool(stall, name=t["stall"], timeout=0.05)
        self.flaky = Tool(flaky, name=t["flaky"], retries=RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.001))
        self.single = Tool(single, name=t["single"], max_concurrency=1, max_queue=0, timeout=10.0)
        self.fragile = Tool(fragile, name=t["fragile"], breaker=CircuitBreaker(failure_threshold=1, reset_timeout=3600))
        self.approve = Tool(approve, name=t["approve"], needs_approval=True)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        if event.tool == self.tools["single"] and event.status == "rejected" and self._refused is not None:
            self._refused.set()

    async def run(self, *plugins: object) -> None:
        """Every run of the scenario, one after the other, with ``plugins`` on every agent."""
        self._refused = asyncio.Event()
        t = self.tools
        desk_model = ScriptedModel(
            [
                # run 1: four tools at once, a bulkhead refusal, a breaker opening then refusing, the answer
                Step(
                    tool_calls=[
                        (t["lookup"], {"query": SECRET}),
                        (t["explode"], {"query": SECRET}),
                        (t["stall"], {}),
                        (t["flaky"], {}),
                    ],
                    usage=Usage(120, 30, 40, 9, requests=1),
                ),
                Step(tool_calls=[(t["single"], {}), (t["single"], {})]),
                Step(tool_calls=[(t["fragile"], {})]),
                Step(tool_calls=[(t["fragile"], {})]),
                Step(text=f"The answer is {SECRET}", usage=Usage(200, 15, 0, 4, requests=1)),
                # run 2: a call that needs approval (interrupt), then its resume
                Step(tool_calls=[(t["approve"], {"item": SECRET})]),
                Step(text=f"Approved {SECRET}"),
                # run 3: the model fails
                Step(error=ConnectionError(f"model down while answering {SECRET}")),
            ],
            name="desk-model",
            price_as="openai:gpt-4o-mini",  # priced (tracedagent_cost_usd_total); the summarizer's model is not
        )
        gate = (self, *plugins)
        desk = Agent(
            "desk",
            desk_model,
            tools=[self.lookup, self.explode, self.stall, self.flaky, self.single, self.fragile, self.approve],
            plugins=gate,
            checkpoints=InMemoryCheckpointStore(),
        )
        first = await desk.run(f"Look up {SECRET}")
        assert first.status == "completed", first
        paused = await desk.run(f"Approve {SECRET}")
        assert paused.status == "interrupted", paused
        resumed = await desk.resume(paused.run_id, {i.id: True for i in paused.interruptions})
        assert resumed.status == "completed", resumed
        with pytest.raises(RunError):
            await desk.run(f"Fail on {SECRET}")
        desk_model.assert_all_used()

        summarizer_model = ScriptedModel([f"They asked about {SECRET}", f"Summed up {SECRET}"], name="summary-model")
        summarizer = Agent("summarizer", summarizer_model, compaction=Summarize(max_tokens=60), plugins=gate)
        assert (await summarizer.run(f"And now {SECRET}?", messages=long_history())).status == "completed"
        summarizer_model.assert_all_used()

        dropper = Agent(
            "dropper", ScriptedModel([f"Short {SECRET}"], name="drop-model"), compaction=DropOldest(60), plugins=gate
        )
        assert (await dropper.run(f"And then {SECRET}?", messages=long_history())).status == "completed"

        retrier = Agent("retrier", RetryOnce(ScriptedModel([f"Fine {SECRET}"], name="retry-model")), plugins=gate)
        assert (await retrier.run(f"Retry {SECRET}")).status == "completed"

        # structured output: an answer that is not JSON, corrected; then one run that fails validation
        typed = Agent(
            "typed",
            ScriptedModel([f"Not JSON {SECRET}", "[1, 2]", "nope", "still no"], name="typed-model"),
            output_type=list[int],
            plugins=gate,
        )
        assert (await typed.run(f"Numbers {SECRET}")).output == [1, 2]
        with pytest.raises(OutputValidationError):
            await typed.run(f"More numbers {SECRET}")
        # a handoff: the router hands its run to the specialist, which answers
        specialist = Agent("specialist", ScriptedModel([f"Specialist on {SECRET}"], name="specialist-model"))
        router_model = ScriptedModel([Step(tool_calls=[("transfer_to_specialist", {})])], name="router-model")
        router = Agent("router", router_model, handoffs=[specialist], plugins=gate)
        assert (await router.run(f"Route {SECRET}")).output == f"Specialist on {SECRET}"
