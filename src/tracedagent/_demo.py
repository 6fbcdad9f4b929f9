"""``tracedagent demo``: a built-in agent driven through every stage of a run, offline.

The demo agent is a small "trip desk": it looks up the weather of two cities at once (two tool calls
in one turn, run concurrently), checks a flight with a tool that fails for one flight code (the model
is told and carries on), and answers; ``--runs`` says how many such questions. On top of them come the
scene runs (:data:`._demo_scenes.SCENES`), each showing one stage: a run from a long earlier conversation,
compacted (summarised by the model) before its first model call; a booking that pauses for approval and
is resumed; a burst of quotes refused by backpressure; a flaky service retried; a flight change the trip
desk hands off (``handoffs=``) to the rebooking agent, which answers with its own tool; and a seat map
outage that opens a circuit breaker and closes it again. The summary counts both. The models are scripted
(:class:`FunctionModel`), so the demo needs no network and no key.

The event stream goes through the stdout tracer (``TRACEDAGENT_STDOUT`` defaults to on here); other
tracers switch on through their own environment variables, so the demo also shows each sink working.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import pydantic

from . import _plugins
from ._agent import Agent
from ._compaction import Summarize
from ._demo_mcp import QUESTION as MCP_QUESTION
from ._demo_mcp import mcp_answer, mcp_server
from ._demo_scenes import SCENE_RUNS, scenes_text
from ._events import CircuitStateChanged, HandoffOccurred, ModelCallEnded, RunEnded, ToolCallEnded
from ._export import flush
from ._messages import Message, ToolCall, Usage
from ._model import Model, ModelRequest, ModelResponse
from ._tools import Tool, tool
from ._toolsource import ToolSource
from .exceptions import RunError
from .hookspecs import hookimpl
from .resilience import CircuitBreaker, RetryPolicy
from .testing import FunctionModel

__all__ = ["DemoSummary", "build_demo_agent", "build_rebooking_agent", "run_demo"]

CITIES = ("Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Denver", "Tunis", "Hobart")
FAILING_FLIGHT = "TA404"
REBOOKING = "rebooking"  # the agent the trip desk hands flight changes to


@tool
async def get_weather(city: str) -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: The city's name, in English.
    """
    await asyncio.sleep(0.005)
    seed = sum(map(ord, city))
    return {"city": city, "celsius": seed % 30, "sky": ("clear", "cloudy", "rain")[seed % 3]}


@tool
def flight_status(code: str) -> str:
    """The status of a flight, by its code (for example TA101).

    Args:
        code: The flight's code.
    """
    time.sleep(0.002)  # a blocking client: sync tools run in a worker thread
    if code == FAILING_FLIGHT:
        raise ConnectionError(f"flight status service unreachable for {code}")
    return f"{code} is on time"


@tool(needs_approval=True)
def book_seat(code: str, seat: str) -> str:
    """Book a seat on a flight. A person must approve every booking.

    Args:
        code: The flight's code.
        seat: The seat, for example 14A.
    """
    return f"seat {seat} booked on {code}"


class _SeatMapService:
    """The seat map service of the demo: down during an outage, then back."""

    down = False


SEAT_MAP = _SeatMapService()


@tool(breaker=CircuitBreaker(failure_threshold=2, reset_timeout=0.05))
async def seat_map(code: str) -> str:
    """Free seats on a flight. Its breaker opens after 2 failures in a row and probes again after 50 ms.

    Args:
        code: The flight's code.
    """
    await asyncio.sleep(0)
    if SEAT_MAP.down:
        raise ConnectionError("seat map service is down")
    return f"{code}: 14A, 14F and 22C are free"


@tool(max_concurrency=2, max_queue=2)
async def fare_quote(code: str, fare_class: str) -> str:
    """A fare quote. At most 2 quotes are asked at once and 2 wait; more are refused (backpressure).

    Args:
        code: The flight's code.
        fare_class: economy, premium or business.
    """
    await asyncio.sleep(0.01)
    return f"{code} {fare_class}: {100 + 7 * len(fare_class)} EUR"


class _Flaky:
    """Fails every other call: the retry gets it."""

    calls = 0


_FLAKY = _Flaky()


@tool(retries=RetryPolicy(attempts=3, initial_delay=0.005, max_delay=0.02))
def exchange_rate(currency: str) -> str:
    """The euro's exchange rate to a currency; its upstream drops every other request, so it retries.

    Args:
        currency: A currency code such as JPY.
    """
    _FLAKY.calls += 1
    if _FLAKY.calls % 2:
        raise TimeoutError("rate service did not answer")
    return f"1 EUR = {150 + len(currency)} {currency}"


@tool
def change_flight(code: str, day: str) -> str:
    """Move a booking to another flight day (the rebooking agent's tool).

    Args:
        code: The flight's code.
        day: The new day, for example Friday.
    """
    return f"{code} moved to {day}"


def _special(question: str, tool_results: list[Message]) -> ModelResponse | str | list[ToolCall] | None:
    """The demo's resilience scenes: a breaker, a burst of quotes, a flaky rate service."""
    flight = (re.findall(r"\b[A-Z]{2}\d{3}\b", question) or ["TA101"])[0]
    if question.startswith("Seat map"):
        if not tool_results:
            return [ToolCall.of("s0", "seat_map", {"code": flight})]
        result = tool_results[-1]
        return f"Seat map: {result.content}" if not result.is_error else f"No seat map now ({result.content})"
    if question.startswith("Quote"):
        if not tool_results:
            classes = ["economy", "premium", "business", "economy", "premium", "business"]
            return [
                ToolCall.of(f"q{i}", "fare_quote", {"code": flight, "fare_class": c}) for i, c in enumerate(classes)
            ]
        quoted = sum(1 for m in tool_results if not m.is_error)
        return f"{quoted} of {len(tool_results)} quotes came back; ask again for the rest."
    if question.startswith("Convert"):
        if not tool_results:
            return [ToolCall.of("x0", "exchange_rate", {"currency": "JPY"})]
        return f"Rate: {tool_results[-1].content}"
    if question.startswith("Change"):  # changes are the rebooking agent's: hand the run to it
        return [ToolCall.of("h0", f"transfer_to_{REBOOKING}", {})]
    return None


class TripCard(pydantic.BaseModel):
    """The structured answer of the demo's structured-output scene (``output_type=TripCard``)."""

    flight: str
    status: str
    advice: str


CARD_QUESTION = "Summarise my trip on TA101 as a card."


def _card_answer(messages: Sequence[Message]) -> str | None:
    """The structured-output scene: a first answer that is not the card (the run sends it back as a
    correction), then the card as JSON."""
    users = [m for m in messages if m.role == "user"]
    if not users or (
        CARD_QUESTION not in (users[0].content or "")
        and not any((m.content or "").startswith(CARD_QUESTION) for m in users)
    ):
        return None
    if (users[-1].content or "").startswith(CARD_QUESTION):
        return "TA101 is on time and the weather is mild: have a good trip!"  # prose: not a TripCard
    return '{"flight": "TA101", "status": "on time", "advice": "Pack a light jacket."}'


def _demo_brain(messages: Sequence[Message], request: ModelRequest) -> ModelResponse | str | list[ToolCall]:
    """The scripted model: decides the next step from the conversation, so runs are independent."""
    if request.purpose == "compaction":
        users = [m.content for m in messages if m.role == "user" and m.content]
        return f"The traveller asked {len(users) - 1} earlier questions about trips; nothing is pending."
    card = _card_answer(messages)
    if card is not None:
        return card
    question = next(m.content or "" for m in reversed(messages) if m.role == "user")
    asked = re.findall(r"[A-Z][a-z]+", question)
    cities = [c for c in asked if c in CITIES][:2] or ["Lisbon", "Oslo"]
    flight = (re.findall(r"\b[A-Z]{2}\d{3}\b", question) or ["TA101"])[0]
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    tool_results = [m for m in messages[last_user:] if m.role == "tool"]
    special = _special(question, tool_results)
    if special is None:
        special = mcp_answer(question, tool_results, request)
    if special is not None:
        return special
    if question.startswith("Book"):
        if not tool_results:
            return [ToolCall.of("b0", "book_seat", {"code": flight, "seat": "14A"})]
        return f"Done: {tool_results[-1].content}." if not tool_results[-1].is_error else "The booking was not made."
    if not tool_results:
        return [ToolCall.of(f"w{i}", "get_weather", {"city": c}) for i, c in enumerate(cities)]
    if len(tool_results) == len(cities):
        return [ToolCall.of("f0", "flight_status", {"code": flight})]
    flight_result = tool_results[-1]
    flight_text = (
        f"I could not check flight {flight} ({flight_result.content})."
        if flight_result.is_error
        else f"Flight {flight_result.content}."
    )
    return f"Weather in {' and '.join(cities)} looks fine for travel. {flight_text}"


def _rebooking_brain(messages: Sequence[Message], request: ModelRequest) -> str | list[ToolCall]:
    """The rebooking agent's scripted model: after the handoff, change the flight, then say so."""
    question = next(m.content or "" for m in reversed(messages) if m.role == "user")
    flight = (re.findall(r"\b[A-Z]{2}\d{3}\b", question) or ["TA101"])[0]
    day = (re.findall(r"\b(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day\b", question) or ["Friday"])[0]
    last_user = max(i for i, m in enumerate(messages) if m.role == "user")
    changed = [m for m in messages[last_user:] if m.role == "tool" and m.name == "change_flight"]
    if not changed:
        return [ToolCall.of("c0", "change_flight", {"code": flight, "day": day})]
    result = changed[-1]
    return f"Rebooking here: {result.content}." if not result.is_error else "The change was not made."


def scripted_demo_model() -> FunctionModel:
    # Priced as gpt-4o-mini (on its estimated tokens), so the summary and the metrics show what a run costs.
    return FunctionModel(_demo_brain, name="trip-desk-scripted", provider="scripted", price_as=DEMO_PRICE_AS)


#: The model whose price the scripted demo model's calls are given (genai-prices, offline).
DEMO_PRICE_AS = "openai:gpt-4o-mini"


def scripted_rebooking_model() -> FunctionModel:
    return FunctionModel(_rebooking_brain, name="rebooking-scripted", provider="scripted", price_as=DEMO_PRICE_AS)


def build_rebooking_agent(model: Model | None = None) -> Agent:
    """The agent the trip desk hands flight changes to: its own instructions, tool and model."""
    return Agent(
        REBOOKING,
        model or scripted_rebooking_model(),
        instructions="You change travellers' flight bookings, then confirm the change briefly.",
        tools=[change_flight],
        max_turns=6,
    )


def build_demo_agent(model: Model | None = None, mcp: ToolSource | None = None) -> Agent:
    """The demo's agent: the trip desk with its tools (booking needs approval), summarising compaction,
    a handoff to the rebooking agent (on the same ``model`` when one is given), and an MCP server's tools
    when ``mcp`` is given."""
    tools: list[Tool | ToolSource] = [get_weather, flight_status, book_seat, seat_map, fare_quote, exchange_rate]
    if mcp is not None:
        tools.append(mcp)
    return Agent(
        "trip-desk",
        model or scripted_demo_model(),
        instructions="You help travellers: check the weather of their cities and their flight, then answer briefly. "
        "Hand flight changes to the rebooking agent.",
        tools=tools,
        handoffs=[build_rebooking_agent(model)],
        max_turns=6,
        compaction=Summarize(max_tokens=400),
    )


def demo_questions(runs: int) -> list[str]:
    questions = []
    for i in range(runs):
        a, b = CITIES[i % len(CITIES)], CITIES[(i + 3) % len(CITIES)]
        flight = FAILING_FLIGHT if i % 3 == 2 else f"TA{101 + i:03d}"
        questions.append(f"I fly from {a} to {b} on {flight}. What should I expect?")
    return questions


def long_history() -> list[Message]:
    """An earlier conversation long enough to be compacted."""
    history: list[Message] = []
    for i in range(12):
        history.append(
            Message.user(f"Earlier question {i}: what is a good month to visit {CITIES[i % len(CITIES)]}? " * 2)
        )
        history.append(Message.assistant(f"Answer {i}: spring and autumn are usually pleasant there. " * 2))
    return history


def _cost_text(usage: Usage) -> str:
    cost = usage.cost_usd or 0.0
    text = f"${cost:.6f}" if cost < 1 else f"${cost:,.2f}"
    if usage.estimated:
        text += " (on estimated tokens)"
    if usage.cost_partial:
        text += ", some calls without a price"
    return text


@dataclass
class DemoSummary:
    """What the demo's runs did, counted from the events."""

    runs: Counter[str] = field(default_factory=Counter)
    model_calls: Counter[str] = field(default_factory=Counter)
    tools: Counter[tuple[str, str]] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    compactions: int = 0
    interrupts: int = 0
    resumes: int = 0
    circuit: list[str] = field(default_factory=list)
    retries: int = 0
    handoffs: Counter[tuple[str, str]] = field(default_factory=Counter)
    wall_s: float = 0.0
    #: How many trip questions ``--runs`` asked; the rest of the runs are the scenes (:data:`SCENES`).
    asked: int | None = None
    #: Whether the scenes ran on the scripted model (only it plays the structured-output scene).
    scripted: bool = True

    def render(self) -> str:
        rows = [("runs", ", ".join(f"{k} {v}" for k, v in sorted(self.runs.items())) or "none")]
        if self.asked is not None:
            scenes = SCENE_RUNS if self.scripted else SCENE_RUNS - 1
            rows.append(
                ("  of which", f"{self.asked} asked with --runs, {scenes} scene runs ({scenes_text(self.scripted)})")
            )
        rows.append(("model calls", ", ".join(f"{k} {v}" for k, v in sorted(self.model_calls.items())) or "none"))
        rows.append(
            (
                "tokens",
                f"input {self.usage.input_tokens}, output {self.usage.output_tokens}"
                + (" (estimated)" if self.usage.estimated else ""),
            )
        )
        if self.usage.cost_usd is not None:  # the model has a price (and genai-prices is installed)
            rows.append(("cost", _cost_text(self.usage)))
        for (name, status), count in sorted(self.tools.items()):
            rows.append((f"tool {name}", f"{status} {count}"))
        rows.append(("compactions", str(self.compactions)))
        rows.append(("interrupts / resumes", f"{self.interrupts} / {self.resumes}"))
        rows.append(("breaker changes", ", ".join(self.circuit) or "none"))
        rows.append(("retries", str(self.retries)))
        rows.append(("handoffs", ", ".join(f"{a} -> {b} {n}" for (a, b), n in sorted(self.handoffs.items())) or "none"))
        rows.append(("time", f"{self.wall_s:.2f} s"))
        width = max(len(k) for k, _ in rows)
        line = "-" * (width + 40)
        return "\n".join([line, "tracedagent demo summary", line, *(f"{k:<{width}}  {v}" for k, v in rows), line])


class _SummaryCounter:
    """The demo's own plugin: counts what the summary shows."""

    name = "demo-summary"

    def __init__(self, summary: DemoSummary) -> None:
        self.summary = summary
        self._lock = threading.Lock()

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        if event.status == "interrupted":  # a paused segment; the run ends in a later one
            return
        with self._lock:
            self.summary.runs[event.status] += 1

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        with self._lock:
            self.summary.model_calls[event.status] += 1
            self.summary.usage = self.summary.usage + event.usage

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        with self._lock:
            self.summary.tools[(event.tool, event.status)] += 1

    @hookimpl
    def on_compaction(self) -> None:
        with self._lock:
            self.summary.compactions += 1

    @hookimpl
    def on_interrupt(self) -> None:
        with self._lock:
            self.summary.interrupts += 1

    @hookimpl
    def on_resume(self) -> None:
        with self._lock:
            self.summary.resumes += 1

    @hookimpl
    def on_circuit_change(self, event: CircuitStateChanged) -> None:
        with self._lock:
            self.summary.circuit.append(f"{event.tool} {event.old}->{event.new}")

    @hookimpl
    def on_retry(self) -> None:
        with self._lock:
            self.summary.retries += 1

    @hookimpl
    def on_handoff(self, event: HandoffOccurred) -> None:
        with self._lock:
            self.summary.handoffs[(event.from_agent, event.to_agent)] += 1


async def _scenario(agent: Agent, runs: int, concurrency: int, mcp: ToolSource | None = None) -> list[str]:
    try:
        failures = await _trip_scenario(agent, runs, concurrency)
        if mcp is not None:
            failures += await _trip_scenario(agent, 0, 1, [MCP_QUESTION])
        return failures
    finally:
        if mcp is not None:
            await mcp.aclose()


async def _trip_scenario(agent: Agent, runs: int, concurrency: int, only: list[str] | None = None) -> list[str]:
    limit = asyncio.Semaphore(concurrency)
    failures: list[str] = []

    async def one(question: str, history: list[Message] | None = None, output_type: Any = None) -> None:
        async with limit:
            try:
                result = await agent.run(question, messages=history, output_type=output_type)
                while result.status == "interrupted":
                    # A person would decide here; the demo approves every booking it is asked about.
                    approvals = {i.id: True for i in result.interruptions if i.kind == "approval"}
                    result = await agent.resume(result.run_id, approvals)
            except RunError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    if only is not None:
        for question in only:
            await one(question)
        return failures
    jobs = [one(q) for q in demo_questions(runs)]
    jobs.append(one("I fly from Osaka to Lima on TA777. Anything to know?", long_history()))
    jobs.append(one("Book me a window seat on TA555, please."))
    jobs.append(one("Quote fares for TA321 in every class."))  # a burst: 2 in flight, 2 queued, 2 refused
    jobs.append(one("Convert 300 EUR to JPY for my trip."))  # a flaky service: retried
    jobs.append(one("Change my flight TA555 to Friday, please."))  # handed off to the rebooking agent
    if agent.model.provider == "scripted":  # the scripted model's first card is prose on purpose
        jobs.append(one(CARD_QUESTION, output_type=TripCard))  # structured output: corrected once, then a card
    await asyncio.gather(*jobs)
    # An outage: two failures open the seat map's breaker, the next call is refused at once; once the
    # service is back and the reset timeout has passed, a probe succeeds and the breaker closes.
    SEAT_MAP.down = True
    for _ in range(3):
        await one("Seat map for TA808, please.")
    SEAT_MAP.down = False
    await asyncio.sleep(0.06)
    await one("Seat map for TA808, please.")
    return failures


def run_demo(
    *,
    runs: int = 6,
    concurrency: int = 3,
    linger: float = 0.0,
    model: Model | None = None,
    quiet: bool = False,
    out: TextIO | None = None,
    mcp: str | None = None,
) -> int:
    """Run the demo scenario; returns the process exit code (0 when every run completed)."""
    import sys

    out = out or sys.stdout
    if not quiet:
        os.environ.setdefault("TRACEDAGENT_STDOUT", "1")
    _plugins.load_plugins()
    if not quiet and not any(info.name == "stdout" for info in _plugins.list_plugins()):
        print(
            "(install tracedagent-stdout to see the event stream: pip install -e plugins/tracedagent-stdout)", file=out
        )
    summary = DemoSummary(asked=runs, scripted=model is None)
    counter = _SummaryCounter(summary)
    name = _plugins.register(counter, "demo-summary")
    started = time.perf_counter()
    try:
        server = mcp_server(mcp) if mcp is not None else None
        failures = asyncio.run(_scenario(build_demo_agent(model, server), runs, concurrency, server))
    finally:
        summary.wall_s = time.perf_counter() - started
        flush(5.0)
        _plugins.unregister(name)
    print(summary.render(), file=out)
    for failure in failures:
        print(f"failed run: {failure}", file=out)
    if linger > 0:
        print(f"lingering {linger:g} s (Ctrl-C to stop)", file=out, flush=True)
        try:
            time.sleep(linger)
        except KeyboardInterrupt:
            pass
    return 1 if failures else 0
