"""Context compaction: DropOldest and Summarize, the on_compaction event, and budgets."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracedagent import (
    Agent,
    CharEstimate,
    CompactionContext,
    ConfigurationError,
    ContextCompacted,
    DropOldest,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelRequest,
    RunEnded,
    Summarize,
    TokenCounter,
    ToolCall,
    tool,
)
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel


class PerMessage:
    """An exact counter for tests: every message costs one token."""

    estimated = False

    def count(self, messages: Sequence[Message]) -> int:
        return len(messages)


async def no_summary(messages: Sequence[Message], prompt: str) -> str:
    raise AssertionError("DropOldest must not ask for a summary")


def context(counter: TokenCounter) -> CompactionContext:
    return CompactionContext(counter, no_summary)


_ids = itertools.count()


def tool_unit(n: int, text: str = "") -> list[Message]:
    """An assistant message calling ``n`` tools, followed by the results."""
    calls = [ToolCall(f"call-{next(_ids)}", "lookup", '{"q": "x"}') for _ in range(n)]
    return [Message.assistant(text or None, calls)] + [Message.tool(c.id, c.name, f"result {c.id}") for c in calls]


def assert_no_orphan_tool_results(messages: Sequence[Message]) -> None:
    asked: set[str] = set()
    for m in messages:
        asked.update(call.id for call in m.tool_calls)
        if m.role == "tool":
            assert m.tool_call_id in asked, f"tool result {m.tool_call_id} has lost its call"


# ----------------------------------------------------------------------------------------- DropOldest


async def test_drop_oldest_keeps_a_history_that_fits() -> None:
    history = [Message.user("a"), Message.assistant("b")]
    assert await DropOldest(max_tokens=2, counter=PerMessage()).compact(history, context(PerMessage())) is None


async def test_drop_oldest_keeps_system_messages_and_the_newest_messages() -> None:
    system = [Message.system("rules"), Message.system("more rules")]
    history = [*system, *(Message.user(f"u{i}") for i in range(6))]
    strategy = DropOldest(max_tokens=5, counter=PerMessage())
    compacted = await strategy.compact(history, context(strategy.counter))

    assert compacted == [*system, Message.user("u3"), Message.user("u4"), Message.user("u5")]


async def test_drop_oldest_never_separates_tool_calls_from_their_results() -> None:
    calling = tool_unit(2)  # 3 messages
    history = [Message.user("old"), *calling, Message.assistant("said"), Message.user("now")]
    strategy = DropOldest(max_tokens=4, counter=PerMessage())
    compacted = await strategy.compact(history, context(strategy.counter))

    # the 3-message unit does not fit beside the last two, so it goes whole: no result without its call
    assert compacted == [Message.assistant("said"), Message.user("now")]
    strategy = DropOldest(max_tokens=5, counter=PerMessage())
    compacted = await strategy.compact(history, context(strategy.counter))
    assert compacted == [*calling, Message.assistant("said"), Message.user("now")]
    assert_no_orphan_tool_results(compacted)


async def test_drop_oldest_keeps_the_latest_unit_even_over_budget() -> None:
    last = tool_unit(3)  # 4 messages
    history = [Message.system("rules"), Message.user("go"), *last]
    strategy = DropOldest(max_tokens=2, counter=PerMessage())
    compacted = await strategy.compact(history, context(strategy.counter))

    assert compacted == [Message.system("rules"), *last]


async def test_drop_oldest_with_the_char_estimate_fits_the_budget() -> None:
    history = [Message.user("x" * 400) for _ in range(10)]
    strategy = DropOldest(max_tokens=350)
    compacted = await strategy.compact(history, context(strategy.counter))

    assert compacted is not None
    assert strategy.counter.count(compacted) <= 350
    assert len(compacted) == 3  # each message costs 104 tokens: 3 fit, 4 would not
    assert compacted == history[-3:]


# ------------------------------------------------------------------------------------------ Summarize


async def test_summarize_replaces_the_oldest_part_with_a_summary() -> None:
    asked: list[tuple[list[Message], str]] = []

    async def summarize(messages: Sequence[Message], prompt: str) -> str:
        asked.append((list(messages), prompt))
        return "they talked about u0 to u3"

    history = [Message.system("rules"), *(Message.user(f"u{i}") for i in range(6))]
    strategy = Summarize(max_tokens=5, keep_recent_tokens=2, counter=PerMessage(), prompt="Summarise!")
    compacted = await strategy.compact(history, CompactionContext(strategy.counter, summarize))

    assert asked == [([Message.user(f"u{i}") for i in range(4)], "Summarise!")]
    assert compacted is not None
    assert compacted[0] == Message.system("rules")
    assert compacted[1].role == "user"
    assert (compacted[1].content or "").endswith("they talked about u0 to u3")
    assert compacted[2:] == [Message.user("u4"), Message.user("u5")]


async def test_summarize_keeps_tool_units_whole() -> None:
    calling = tool_unit(2)

    async def summarize(messages: Sequence[Message], prompt: str) -> str:
        assert_no_orphan_tool_results(messages)
        return "summary"

    history = [Message.user("u0"), Message.assistant("a0"), Message.user("u1"), *calling]
    strategy = Summarize(max_tokens=4, keep_recent_tokens=2, counter=PerMessage())
    compacted = await strategy.compact(history, CompactionContext(strategy.counter, summarize))

    assert compacted is not None
    assert compacted[-3:] == calling  # the latest unit stays even though it is over keep_recent_tokens
    assert len(compacted) == 4
    assert_no_orphan_tool_results(compacted)


async def test_summarize_run_makes_a_compaction_model_call(tracer: RecordingTracer) -> None:
    instructions_seen: list[str | None] = []

    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        instructions_seen.append(request.instructions)
        if request.purpose == "compaction":
            return "SUMMARY-TEXT"
        return "final answer"

    model = FunctionModel(answer)
    history = [Message.system("rules"), *(Message.user(f"old {i}") for i in range(8))]
    strategy = Summarize(max_tokens=6, keep_recent_tokens=3, counter=PerMessage(), prompt="Please summarise.")
    result = await Agent("summariser", model, instructions="Be kind.", compaction=strategy).run(
        "new question", messages=history
    )

    assert result.output == "final answer"
    compaction_start, turn_start = tracer.of_type(ModelCallStarted)
    assert (compaction_start.purpose, turn_start.purpose) == ("compaction", "turn")
    assert compaction_start.tools == ()
    assert list(compaction_start.messages[:-1]) == history[1:7]  # what was summarised
    assert compaction_start.messages[-1].role == "user"  # asks for the summary now
    assert instructions_seen == ["Please summarise.", "Be kind."]  # the strategy's prompt, then the agent's
    assert [e.purpose for e in tracer.of_type(ModelCallEnded)] == ["compaction", "turn"]
    # the turn sees the summary in place of the old messages
    seen = list(turn_start.messages)
    assert seen[0] == Message.system("rules")
    assert seen[1].role == "user"
    assert (seen[1].content or "").endswith("SUMMARY-TEXT")
    assert seen[2:] == [Message.user("old 6"), Message.user("old 7"), Message.user("new question")]
    assert result.messages[: len(seen)] == seen
    # the compaction call is part of the run's usage and span tree
    assert result.usage.requests == 2
    assert tracer.format_span_tree() == "\n".join(
        [
            "run summariser [completed] {compaction}",
            "  model function:function (compaction) [ok]",
            "  model function:function [ok]",
        ]
    )


# ---------------------------------------------------------------------------------- on_compaction


async def test_on_compaction_reports_before_and_after_exactly_with_an_exact_counter(
    tracer: RecordingTracer,
) -> None:
    model = ScriptedModel(["ok"])
    history = [Message.system("rules"), *(Message.user(f"m{i}") for i in range(9))]
    agent = Agent("dropper", model, compaction=DropOldest(max_tokens=4, counter=PerMessage()))
    result = await agent.run("latest", messages=history)

    (event,) = tracer.of_type(ContextCompacted)
    assert event.strategy == "drop_oldest"
    assert (event.messages_before, event.messages_after) == (11, 4)
    assert (event.tokens_before, event.tokens_after) == (11, 4)
    assert event.estimated is False
    (run_end,) = tracer.of_type(RunEnded)
    assert (event.run_id, event.trace_id, event.span_id) == (run_end.run_id, run_end.trace_id, run_end.span_id)
    # compaction happened before the model call: the model saw the compacted history
    assert list(model.requests[0].messages) == [
        Message.system("rules"),
        Message.user("m7"),
        Message.user("m8"),
        Message.user("latest"),
    ]
    assert result.messages[:4] == list(model.requests[0].messages)
    assert tracer.hooks().index("on_compaction") < tracer.hooks().index("on_model_call_start")


async def test_on_compaction_says_estimated_with_the_default_counter(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["ok"])
    history = [Message.user("word " * 100) for _ in range(10)]
    await Agent("dropper", model, compaction=DropOldest(max_tokens=300)).run("latest", messages=history)

    (event,) = tracer.of_type(ContextCompacted)
    estimate = CharEstimate()
    assert event.estimated is True
    assert event.tokens_before == estimate.count([*history, Message.user("latest")])
    assert event.tokens_after == estimate.count(model.requests[0].messages)
    assert event.tokens_after <= 300 < event.tokens_before
    assert event.messages_after == len(model.requests[0].messages) < event.messages_before == 11


async def test_no_event_when_nothing_is_compacted(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["ok"])
    await Agent("roomy", model, compaction=DropOldest(max_tokens=10_000)).run("short")
    assert tracer.of_type(ContextCompacted) == []


async def test_compaction_runs_before_every_model_call(tracer: RecordingTracer) -> None:
    @tool
    def chatty() -> str:
        return "blah " * 200

    model = ScriptedModel([ToolCall("c1", "chatty"), ToolCall("c2", "chatty"), "done"])
    agent = Agent("a", model, tools=[chatty], compaction=DropOldest(max_tokens=300))
    await agent.run("go")

    assert len(tracer.of_type(ContextCompacted)) >= 1
    for request in model.requests:
        assert_no_orphan_tool_results(request.messages)
        assert CharEstimate().count(request.messages) <= 300 or len(request.messages) <= 2


# ---------------------------------------------------------------------------------------- budgets


@pytest.mark.parametrize("budget", [0, -5, 1.5, "100", None])
def test_bad_budgets_are_a_configuration_error(budget: object) -> None:
    with pytest.raises(ConfigurationError, match="max_tokens"):
        DropOldest(max_tokens=budget)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_tokens"):
        Summarize(max_tokens=budget)  # type: ignore[arg-type]


@pytest.mark.parametrize("keep", [0, -1, 101])
def test_bad_keep_recent_tokens_is_a_configuration_error(keep: int) -> None:
    with pytest.raises(ConfigurationError, match="keep_recent_tokens"):
        Summarize(max_tokens=100, keep_recent_tokens=keep)


def test_bad_counters_and_strategies_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="chars_per_token"):
        CharEstimate(chars_per_token=0)
    with pytest.raises(ConfigurationError, match="compaction"):
        Agent("a", ScriptedModel([]), compaction="drop oldest please")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- property

_text = st.text(alphabet="abc xyz", max_size=40)
_unit = st.one_of(
    _text.map(lambda t: [Message.user(t)]),
    _text.map(lambda t: [Message.assistant(t)]),
    st.tuples(st.integers(1, 3), _text).map(lambda a: tool_unit(*a)),
)


@settings(max_examples=300, deadline=None)
@given(
    system=st.lists(_text.map(Message.system), max_size=2),
    units=st.lists(_unit, min_size=1, max_size=12),
    budget=st.integers(1, 120),
    exact=st.booleans(),
)
async def test_drop_oldest_property(
    system: list[Message], units: list[list[Message]], budget: int, exact: bool
) -> None:
    counter: TokenCounter = PerMessage() if exact else CharEstimate()
    history = [*system, *(m for unit in units for m in unit)]
    strategy = DropOldest(max_tokens=budget, counter=counter)
    compacted = await strategy.compact(list(history), context(counter))

    if counter.count(history) <= budget:
        assert compacted is None
        return
    if compacted is None:  # nothing could go: only the latest unit is left
        assert len(units) == 1
        return
    # system messages kept, in front
    assert compacted[: len(system)] == system
    rest = compacted[len(system) :]
    # what is left is a non-empty suffix of whole units
    suffixes = [[m for unit in units[i:] for m in unit] for i in range(1, len(units))]
    assert rest in suffixes
    assert_no_orphan_tool_results(compacted)
    # it fits whenever the system messages and the latest unit fit
    if counter.count([*system, *units[-1]]) <= budget:
        assert counter.count(compacted) <= budget
    # and it dropped no more than it had to: one more unit would not fit
    kept_units = next(i for i in range(1, len(units)) if suffixes[i - 1] == rest)
    one_more = [*system, *units[kept_units - 1], *rest]
    assert counter.count(one_more) > budget
