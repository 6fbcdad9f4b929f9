"""From events to LangSmith runs, without the network: real runs' events fed to a TraceBuilder whose
client is a fake that records create_run / update_run / flush."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from ls_support import (
    SENTINEL,
    FakeClient,
    approval_agent,
    assert_well_formed,
    by_type,
    calc_agent,
    failing_model_agent,
    merge_runs,
    norm,
)

from tracedagent import (
    Agent,
    ErrorInfo,
    Event,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel
from tracedagent_langsmith import TraceBuilder, nested_root_uuid, span_uuid, trace_uuid


def feed(events: Sequence[Event], *, capture: bool = False, **kwargs: Any) -> tuple[TraceBuilder, FakeClient]:
    client = FakeClient()
    builder = TraceBuilder(client, project="tests", capture=capture, **kwargs)
    for event in events:
        builder.handle(event)
    return builder, client


def calc_events() -> RecordingTracer:
    recorder = RecordingTracer()
    result = calc_agent(recorder).run_sync(f"{SENTINEL} question")
    assert result.status == "completed"
    return recorder


def approval_events() -> tuple[RecordingTracer, int]:
    """A run that pauses for approval and is resumed; also where the resumed segment's events begin."""
    recorder = RecordingTracer()
    agent = approval_agent(recorder)
    paused = agent.run_sync(f"{SENTINEL} ship it")
    assert paused.status == "interrupted"
    first = len(recorder)
    done = agent.resume_sync(paused.run_id, {"d1": True})
    assert done.status == "completed"
    return recorder, first


# ------------------------------------------------------------------------------------------ the tree


def test_a_run_is_a_chain_with_an_llm_run_per_model_call_and_a_tool_run_per_tool_call() -> None:
    recorder = calc_events()
    (started,) = recorder.of_type(RunStarted)
    _, client = feed(recorder.events)
    runs = client.runs()

    assert_well_formed(runs)
    root = runs[str(trace_uuid(started.trace_id))]
    assert (root["name"], root["run_type"], root["parent_run_id"]) == ("calc", "chain", None)
    assert root["project_name"] == "tests"
    assert root["outputs"]["status"] == "completed"
    assert root["outputs"]["usage"]["total_tokens"] == 280
    llms, tools = by_type(runs, "llm"), by_type(runs, "tool")
    assert [r["name"] for r in llms] == ["gpt-test", "gpt-test"]
    assert sorted(r["name"] for r in tools) == ["broken", "lookup"]
    assert {norm(r["parent_run_id"]) for r in [*llms, *tools]} == {norm(root["id"])}
    assert all(r.get("end_time") is not None for r in runs.values())
    assert len(runs) == 5


def test_an_llm_run_has_usage_metadata_and_the_provider_and_model_for_pricing() -> None:
    _, client = feed(calc_events().events)
    first, second = by_type(client.runs(), "llm")

    expected = {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "input_token_details": {"cache_read": 30},
        "output_token_details": {"reasoning": 7},
    }
    assert first["outputs"]["usage_metadata"] == expected
    assert first["extra"]["metadata"]["usage_metadata"] == expected  # kept when outputs are hidden
    assert first["extra"]["metadata"]["ls_provider"] == "openai"
    assert first["extra"]["metadata"]["ls_model_name"] == "gpt-test"
    assert first["extra"]["metadata"]["finish_reason"] == "tool_calls"
    assert second["outputs"]["usage_metadata"]["total_tokens"] == 160


def test_errors_say_the_exception_type_and_only_with_capture_its_message() -> None:
    events = calc_events().events
    tool_runs = {r["name"]: r for r in by_type(feed(events)[1].runs(), "tool")}
    assert tool_runs["broken"]["error"] == "ValueError"
    assert tool_runs["broken"]["outputs"]["status"] == "error"
    assert tool_runs["lookup"].get("error") is None

    captured = {r["name"]: r for r in by_type(feed(events, capture=True)[1].runs(), "tool")}
    assert captured["broken"]["error"] == f"ValueError: {SENTINEL} cannot read {SENTINEL}"


def test_a_failed_model_call_fails_its_llm_run_and_the_chain() -> None:
    recorder = RecordingTracer()
    with pytest.raises(Exception, match="provider exploded"):
        failing_model_agent(recorder).run_sync("hi")
    runs = feed(recorder.events)[1].runs()

    (llm,) = by_type(runs, "llm")
    (chain,) = by_type(runs, "chain")
    assert llm["error"] == "ModelError"
    assert chain["error"] == "ModelError"
    assert chain["outputs"]["status"] == "failed"
    assert SENTINEL not in repr(runs)


def test_without_capture_no_content_reaches_langsmith_and_with_it_all_of_it_does() -> None:
    recorder, _ = approval_events()
    events = [*calc_events().events, *recorder.events]

    assert SENTINEL not in repr(feed(events)[1].calls)
    runs = feed(events, capture=True)[1].runs()
    text = repr(runs)
    for run in runs.values():
        if run["run_type"] == "llm":
            assert SENTINEL in repr(run["inputs"]["messages"])
            assert SENTINEL in repr(run["outputs"]["choices"])
    assert f"'arguments': {{'key': '{SENTINEL}'}}" in text  # tool arguments, parsed
    assert f"'output': '{SENTINEL} value of {SENTINEL}'" in text  # a tool's result
    assert f"'output': '{SENTINEL} the answer'" in text  # the run's answer
    assert "'reason': \"tool 'deploy' needs approval" in text  # an interruption's reason


def test_messages_are_in_the_openai_chat_format() -> None:
    runs = feed(calc_events().events, capture=True)[1].runs()
    _, second = by_type(runs, "llm")
    user, assistant, *tool_messages = second["inputs"]["messages"]
    assert user == {"role": "user", "content": f"{SENTINEL} question"}
    assert assistant["tool_calls"][0] == {
        "id": "c1",
        "type": "function",
        "function": {"name": "lookup", "arguments": f'{{"key": "{SENTINEL}"}}'},
    }
    assert [m["tool_call_id"] for m in tool_messages] == ["c1", "c2"]
    assert second["outputs"]["choices"][0]["message"] == {"role": "assistant", "content": f"{SENTINEL} the answer"}


# ------------------------------------------------------------------------------ interrupt and resume


def test_a_resumed_segment_is_a_chain_under_the_root_and_the_root_shows_how_the_run_ended() -> None:
    recorder, _ = approval_events()
    (started,) = recorder.of_type(RunStarted)
    (resumed,) = recorder.of_type(RunResumed)
    _, client = feed(recorder.events)
    runs = client.runs()

    assert_well_formed(runs)
    root = runs[str(trace_uuid(started.trace_id))]
    segment = runs[str(span_uuid(resumed.trace_id, resumed.span_id))]
    assert (segment["name"], segment["run_type"], norm(segment["parent_run_id"])) == (
        "ops (resumed)",
        "chain",
        norm(root["id"]),
    )
    assert root["outputs"]["status"] == "completed"  # the root's last patch: the run's end
    assert segment["outputs"]["status"] == "completed"
    assert [e["name"] for e in root["events"]] == ["interrupt", "checkpoint"]
    assert root["events"][0]["kwargs"] == {"interruptions": [{"id": "d1", "tool": "deploy", "kind": "approval"}]}
    assert [e["name"] for e in segment["events"]] == ["resume"]
    assert segment["events"][0]["kwargs"]["previous_span_id"] == started.span_id
    # The first segment's calls hang from the root, the resumed segment's from its chain (the call
    # waiting for approval runs only once approved).
    parents = sorted((r["name"], norm(r["parent_run_id"])) for r in runs.values() if r["run_type"] != "chain")
    assert parents == sorted(
        [("gpt-test", norm(root["id"])), ("deploy", norm(segment["id"])), ("gpt-test", norm(segment["id"]))]
    )
    assert root.get("error") is None  # a pause is not a failure


def test_a_second_patch_of_the_root_waits_for_the_sdk_to_send_the_first() -> None:
    recorder, _ = approval_events()
    (started,) = recorder.of_type(RunStarted)
    root_id = trace_uuid(started.trace_id)
    _, client = feed(recorder.events)

    kinds = [(kind, fields.get("id")) for kind, fields in client.calls if kind != "create"]
    first, second = (i for i, (kind, run_id) in enumerate(kinds) if kind == "update" and run_id == root_id)
    assert ("flush", None) in kinds[first + 1 : second]
    root_patches = [fields for kind, fields in client.calls if kind == "update" and fields["id"] == root_id]
    assert root_patches[0]["events"] is not None
    assert root_patches[0]["extra"] is not None
    assert root_patches[1]["events"] is None  # never overwritten
    assert root_patches[1]["extra"] is None


def test_a_run_resumed_in_another_process_joins_the_tree_the_first_process_made() -> None:
    recorder, first = approval_events()
    events = recorder.events
    builder_a, client_a = feed(events[:first])
    builder_b, client_b = feed(events[first:])  # a fresh builder: another process

    runs = merge_runs([*client_a.calls, *client_b.calls])
    assert_well_formed(runs)
    assert builder_a.orphaned == builder_b.orphaned == 0
    assert len({norm(r["trace_id"]) for r in runs.values()}) == 1
    assert [r["outputs"]["status"] for r in by_type(runs, "chain")] == ["completed", "completed"]
    assert not [kind for kind, _ in client_b.calls if kind == "flush"]  # it never patched the root before
    (started,) = [e for e in events if isinstance(e, RunStarted)]
    root = runs[str(trace_uuid(started.trace_id))]
    assert [e["name"] for e in root["events"]] == ["interrupt", "checkpoint"]  # kept from the first process


def test_a_resumed_nested_run_without_its_root_in_this_process_is_counted_not_sent() -> None:
    resumed = RunResumed(
        run_id="r1",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="1" * 16,
        parent_span_id="2" * 16,  # inside a tool of another run: its root cannot be derived
        agent="inner",
        timestamp_ns=1_700_000_000_000_000_000,
        run_started_ns=1_699_999_999_000_000_000,
    )
    builder, client = feed([resumed])
    assert builder.orphaned == 1
    assert client.calls == []


# ------------------------------------------------------------------------------------ other shapes


def test_a_run_started_inside_a_tool_hangs_from_that_tool_run() -> None:
    recorder = RecordingTracer()
    inner = Agent("inner", ScriptedModel(["inner answer"]), plugins=[recorder])

    @tool
    async def delegate(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.run(question)).output or ""

    model = ScriptedModel([("delegate", {"question": "why?"}), "done"])
    result = asyncio.run(Agent("outer", model, tools=[delegate], plugins=[recorder]).run("go"))
    assert result.output == "done"
    outer_start, inner_start = recorder.of_type(RunStarted)
    runs = feed(recorder.events)[1].runs()

    assert_well_formed(runs)
    (delegate_run,) = by_type(runs, "tool")
    inner_root = runs[str(nested_root_uuid(inner_start.trace_id, inner_start.run_id))]
    assert (inner_root["name"], inner_root["run_type"]) == ("inner", "chain")
    assert norm(inner_root["parent_run_id"]) == norm(delegate_run["id"])
    assert norm(inner_root["trace_id"]) == str(trace_uuid(outer_start.trace_id))


def test_point_events_go_on_the_run_of_their_span() -> None:
    ids = {"run_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent": "a"}
    t0 = 1_700_000_000_000_000_000
    events = [
        RunStarted(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0, **ids),
        ModelCallStarted(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 + 1000, model="m", **ids),
        RetryScheduled(
            span_id="b" * 16,
            parent_span_id="a" * 16,
            timestamp_ns=t0 + 2000,
            target="m",
            attempt=1,
            delay_s=0.5,
            error=ErrorInfo("TimeoutError", SENTINEL),
            **ids,
        ),
        ModelCallEnded(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 + 3000, model="m", **ids),
        RunEnded(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0 + 4000, **ids),
    ]
    runs = feed(events)[1].runs()
    (llm,) = by_type(runs, "llm")
    assert llm["events"] == [
        {
            "name": "retry",
            "time": "2023-11-14T22:13:20.000002+00:00",
            "kwargs": {"target": "m", "kind": "model", "attempt": 1, "delay_s": 0.5, "error_type": "TimeoutError"},
        }
    ]
    captured = by_type(feed(events, capture=True)[1].runs(), "llm")[0]
    assert captured["events"][0]["kwargs"]["error_message"] == SENTINEL


def test_an_end_whose_start_was_dropped_is_sent_as_a_whole_run() -> None:
    events = [e for e in calc_events().events if not isinstance(e, ToolCallStarted)]
    builder, client = feed(events)
    runs = client.runs()

    assert builder.orphaned == 0
    assert_well_formed(runs)
    tools = by_type(runs, "tool")
    assert sorted(r["name"] for r in tools) == ["broken", "lookup"]
    assert all(r["start_time"] <= r["end_time"] for r in tools)
    assert not [f for kind, f in client.calls if kind == "update" and f["id"] in {r["id"] for r in tools}]


def test_a_call_whose_parent_is_unknown_is_counted_not_sent() -> None:
    events = [e for e in calc_events().events if not isinstance(e, RunStarted)]
    builder, client = feed(events)
    assert client.calls == []
    assert builder.orphaned == len(events)


def test_a_child_never_starts_before_its_parent_even_if_the_clock_stepped_back() -> None:
    ids = {"run_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent": "a"}
    t0 = 1_700_000_000_000_000_000
    events = [
        RunStarted(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0, **ids),
        ToolCallStarted(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 - 5_000_000, tool="t", **ids),
        ToolCallEnded(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 - 4_000_000, tool="t", **ids),
        RunEnded(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0 + 1, **ids),
    ]
    runs = feed(events)[1].runs()
    assert_well_formed(runs)
    (tool_run,) = by_type(runs, "tool")
    (root,) = by_type(runs, "chain")
    assert tool_run["start_time"] == root["start_time"] == tool_run["end_time"]


def test_memory_is_bounded_the_oldest_open_span_is_forgotten() -> None:
    ids = {"run_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent": "a"}
    t0 = 1_700_000_000_000_000_000
    starts = [
        ModelCallStarted(span_id=f"{n:016x}", parent_span_id="f" * 16, timestamp_ns=t0 + n, model="m", **ids)
        for n in range(1, 4)
    ]
    root = RunStarted(span_id="f" * 16, parent_span_id=None, timestamp_ns=t0, **ids)
    builder, client = feed([root, *starts], max_open=3)
    # the root (oldest) was forgotten: the first call's end still has its own run, the root's end not
    builder.handle(RunEnded(span_id="f" * 16, parent_span_id=None, timestamp_ns=t0 + 9, **ids))
    assert builder.orphaned == 1
    assert len([kind for kind, _ in client.calls if kind == "create"]) == 4


def test_an_event_class_this_version_does_not_know_is_ignored() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Newer(Event):
        hook: ClassVar[str] = "on_something_new"

    ids = {"run_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent": "a"}
    builder, client = feed([Newer(span_id="a" * 16, parent_span_id=None, timestamp_ns=1, **ids)])
    assert (client.calls, builder.orphaned) == ([], 0)


def test_usage_totals_on_the_chain_are_the_runs_sums() -> None:
    recorder = calc_events()
    (ended,) = recorder.of_type(RunEnded)
    (chain,) = by_type(feed(recorder.events)[1].runs(), "chain")
    assert chain["outputs"]["usage"] == {**ended.usage.to_dict(), "total_tokens": ended.usage.total_tokens}
    assert ended.usage == Usage(250, 30, 30, 7, 2)


# ------------------------------------------------------------------ batches: one create per finished call


def feed_batches(
    batches: Sequence[Sequence[Event]], *, capture: bool = False, client: FakeClient | None = None
) -> tuple[TraceBuilder, FakeClient, list[Event]]:
    """Hand ``batches`` to a builder as the export worker does; also the events reported as failed."""
    client = client or FakeClient()
    builder = TraceBuilder(client, project="tests", capture=capture)
    failed: list[Event] = []
    for batch in batches:
        builder.handle_batch(batch, failed.append)
    return builder, client, failed


def in_batches(events: Sequence[Event], size: int) -> list[Sequence[Event]]:
    return [events[k : k + size] for k in range(0, len(events), size)]


def calls_of(client: FakeClient, run_id: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, fields) for kind, fields in client.calls if kind != "flush" and fields["id"] == run_id]


def assert_parents_first(client: FakeClient) -> None:
    """A run is created only after the run it hangs from (when this process created that one)."""
    created: set[str] = set()
    sent = {str(fields["id"]) for kind, fields in client.calls if kind == "create"}
    for kind, fields in client.calls:
        if kind == "create":
            parent = norm(fields.get("parent_run_id"))
            assert parent is None or parent not in sent or parent in created, (fields["name"], parent)
            created.add(str(fields["id"]))


def test_a_call_that_starts_and_ends_in_one_batch_is_one_create_that_carries_its_end() -> None:
    recorder = calc_events()
    (started,) = recorder.of_type(RunStarted)
    _, client, failed = feed_batches([recorder.events])
    root_id = trace_uuid(started.trace_id)

    assert failed == []
    calls = [kind for kind, _ in client.calls]
    assert calls == ["create"] * 5  # the root too: it ended in the batch
    for call in [*recorder.of_type(ModelCallStarted), *recorder.of_type(ToolCallStarted)]:
        ((kind, run),) = calls_of(client, span_uuid(call.trace_id, call.span_id))
        assert kind == "create"
        assert run["end_time"] >= run["start_time"]
        assert run["outputs"]["status" if run["run_type"] == "tool" else "usage_metadata"]
        metadata = run["extra"]["metadata"]
        assert metadata["tracedagent_span_id"] == call.span_id  # the start's metadata ...
        assert "status" in metadata  # ... and the end's
    tools = {r["name"]: r for r in by_type(client.runs(), "tool")}
    assert tools["broken"]["error"] == "ValueError"
    assert "error" not in tools["lookup"]  # nothing null is sent
    ((kind, root),) = calls_of(client, root_id)
    assert kind == "create"
    assert root["outputs"]["status"] == "completed"
    assert root["end_time"] >= root["start_time"]
    assert client.calls[0][1]["id"] == root_id  # parents first


def test_a_call_whose_end_comes_in_a_later_batch_is_created_as_running_then_patched() -> None:
    events = calc_events().events
    cut = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStarted)) + 1
    tool_start = events[cut - 1]
    assert isinstance(tool_start, ToolCallStarted)
    tool_id = span_uuid(tool_start.trace_id, tool_start.span_id)
    client = FakeClient()
    builder = TraceBuilder(client, project="tests")
    builder.handle_batch(events[:cut], [].append)

    # Created when the batch was done, as started: LangSmith shows it running until the end comes.
    kind, fields = client.calls[-1]
    assert (kind, fields["id"], fields["name"]) == ("create", tool_id, "lookup")
    assert "end_time" not in fields
    assert "outputs" not in fields
    builder.handle_batch(events[cut:], [].append)
    (create, _), (update, patched) = calls_of(client, tool_id)
    assert (create, update) == ("create", "update")
    assert patched["end_time"] is not None
    assert patched["outputs"] == {"status": "ok"}
    assert patched["extra"]["metadata"]["status"] == "ok"
    assert_well_formed(client.runs())


def test_a_run_started_inside_a_held_tool_waits_for_it_and_goes_out_after_it() -> None:
    recorder = RecordingTracer()
    inner = Agent("inner", ScriptedModel(["inner answer"]), plugins=[recorder])

    @tool
    async def delegate(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.run(question)).output or ""

    model = ScriptedModel([("delegate", {"question": "why?"}), "done"])
    asyncio.run(Agent("outer", model, tools=[delegate], plugins=[recorder]).run("go"))
    (delegate_start,) = recorder.of_type(ToolCallStarted)
    _, client, _ = feed_batches([recorder.events])

    assert_parents_first(client)
    # Everything ended in the batch: every run (the inner agent's root too) is one create with its end.
    assert {kind for kind, _ in client.calls} == {"create"}
    assert len(client.calls) == len(client.runs()) == 6
    delegate_id = span_uuid(delegate_start.trace_id, delegate_start.span_id)
    (inner_start,) = [e for e in recorder.of_type(RunStarted) if e.parent_span_id is not None]
    inner_root = nested_root_uuid(inner_start.trace_id, inner_start.run_id)
    order = [fields["id"] for _, fields in client.calls]
    assert order.index(delegate_id) < order.index(inner_root)
    assert_well_formed(client.runs())

    # Cut the batch inside the inner run: the delegate run must go out (as running) before it.
    cut = recorder.events.index(inner_start) + 1
    _, client, _ = feed_batches([recorder.events[:cut], recorder.events[cut:]])
    assert_parents_first(client)
    assert [kind for kind, _ in calls_of(client, delegate_id)] == ["create", "update"]
    assert client.runs() == feed(recorder.events)[1].runs()
    assert_well_formed(client.runs())


def _scenarios() -> dict[str, list[Event]]:
    approval, _ = approval_events()
    recorder = RecordingTracer()
    with pytest.raises(Exception, match="provider exploded"):
        failing_model_agent(recorder).run_sync("hi")
    ids = {"run_id": "r1", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "agent": "a"}
    t0 = 1_700_000_000_000_000_000
    retried: list[Event] = [
        RunStarted(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0, **ids),
        ModelCallStarted(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 + 1000, model="m", **ids),
        RetryScheduled(
            span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 + 2000, target="m", attempt=1, delay_s=0.5, **ids
        ),
        ModelCallEnded(span_id="b" * 16, parent_span_id="a" * 16, timestamp_ns=t0 + 3000, model="m", **ids),
        ToolCallStarted(span_id="c" * 16, parent_span_id="a" * 16, timestamp_ns=t0 - 5_000_000, tool="t", **ids),
        ToolCallEnded(span_id="c" * 16, parent_span_id="a" * 16, timestamp_ns=t0 - 4_000_000, tool="t", **ids),
        RunEnded(span_id="a" * 16, parent_span_id=None, timestamp_ns=t0 + 4000, **ids),
    ]
    calc = calc_events().events
    return {
        "calc": calc,
        "approval": approval.events,
        "failing model": recorder.events,
        "retry and clock step": retried,
        "dropped tool starts": [e for e in calc if not isinstance(e, ToolCallStarted)],
        "unknown parent": [e for e in calc if not isinstance(e, RunStarted)],
        "two runs interleaved": [e for pair in zip(calc, approval.events, strict=False) for e in pair],
    }


@pytest.mark.parametrize("capture", [False, True])
def test_batches_of_any_size_send_the_same_runs_as_one_event_at_a_time(capture: bool) -> None:
    for name, events in _scenarios().items():
        one_by_one, before = feed(events, capture=capture)
        expected = before.runs()
        for size in (1, 2, 3, 5, 8, len(events)):
            builder, client, failed = feed_batches(in_batches(events, size), capture=capture)
            assert client.runs() == expected, (name, size)
            assert (builder.orphaned, failed) == (one_by_one.orphaned, []), (name, size)
            assert_parents_first(client)
            if size == 1:  # nothing to merge: exactly the calls of before
                assert client.calls == before.calls, name
            else:
                assert len(client.calls) <= len(before.calls), (name, size)


def test_a_one_call_run_the_sdk_refuses_counts_both_its_events_and_a_refused_held_create_its_start() -> None:
    events = calc_events().events
    _, _, failed = feed_batches([events], client=FakeClient(fail=True))
    assert sorted(map(id, failed)) == sorted(map(id, events))  # every event once, as one at a time would

    cut = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStarted)) + 1
    _, _, failed = feed_batches([events[:cut]], client=FakeClient(fail=True))
    assert failed[-1] is events[cut - 1]  # the held create, sent when the batch was done
    assert sorted(map(id, failed)) == sorted(map(id, events[:cut]))


# ------------------------------------------------------------------ holding a run across batches (hold_s)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def held_builder(hold_s: float) -> tuple[TraceBuilder, FakeClient, FakeClock]:
    client, clock = FakeClient(), FakeClock()
    return TraceBuilder(client, project="tests", hold_s=hold_s, clock=clock), client, clock


def test_a_run_whose_end_comes_in_a_later_batch_within_hold_s_is_one_create_that_carries_its_end() -> None:
    events = calc_events().events
    cut = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStarted)) + 1
    builder, client, clock = held_builder(5.0)
    builder.handle_batch(events[:cut], [].append)
    # The root and the open tool wait; the model call that ended waits for its parent, the root.
    assert client.calls == []
    assert builder.held == 3  # the root, the model call (ended, waiting for the root) and the tool
    clock.now += 1.0
    builder.release(everything=False)
    assert client.calls == []  # not held for hold_s yet
    builder.handle_batch(events[cut:], [].append)
    assert {kind for kind, _ in client.calls} == {"create"}
    assert len(client.calls) == 5
    assert client.runs() == feed(events)[1].runs()
    assert_parents_first(client)
    assert_well_formed(client.runs())


def test_a_run_held_for_hold_s_goes_out_as_running_and_its_end_is_a_patch() -> None:
    events = calc_events().events
    cut = next(i for i, e in enumerate(events) if isinstance(e, ToolCallStarted)) + 1
    tool_start = events[cut - 1]
    builder, client, clock = held_builder(5.0)
    builder.handle_batch(events[:cut], [].append)
    clock.now += 5.0
    builder.release(everything=False)
    # The root as running, the ended model call(s) with their end, the tool as running; parents first.
    root = client.calls[0][1]
    assert (root["run_type"], "end_time" in root) == ("chain", False)
    tool_id = span_uuid(tool_start.trace_id, tool_start.span_id)
    ((kind, tool_run),) = calls_of(client, tool_id)
    assert (kind, "end_time" in tool_run) == ("create", False)
    assert all("end_time" in fields for _, fields in client.calls[1:-1])  # the model calls, ended
    assert builder.held == 0
    builder.handle_batch(events[cut:], [].append)
    assert [kind for kind, _ in calls_of(client, tool_id)] == ["create", "update"]
    assert [kind for kind, _ in calls_of(client, root["id"])] == ["create", "update"]
    assert client.runs() == feed(events)[1].runs()
    assert_parents_first(client)


def test_release_of_everything_sends_every_held_run_at_once() -> None:
    events = calc_events().events
    builder, client, _ = held_builder(3600.0)
    builder.handle_batch(events[:1], [].append)
    assert client.calls == []
    builder.release(everything=True)
    assert [kind for kind, _ in client.calls] == ["create"]
    assert builder.held == 0
    builder.handle_batch(events[1:], [].append)
    builder.release(everything=True)
    assert client.runs() == feed(events)[1].runs()


def test_with_hold_s_batches_of_any_size_send_the_same_runs_with_fewer_calls() -> None:
    for name, events in _scenarios().items():
        one_by_one, before = feed(events)
        for size in (1, 2, 3, 5, 8):
            builder, client, _ = held_builder(3600.0)
            failed: list[Event] = []
            for batch in in_batches(events, size):
                builder.handle_batch(batch, failed.append)
            builder.release(everything=True)
            assert client.runs() == before.runs(), (name, size)
            assert (builder.orphaned, failed) == (one_by_one.orphaned, []), (name, size)
            assert_parents_first(client)
            assert len(client.calls) <= len(before.calls), (name, size)


def test_a_held_run_the_sdk_refuses_later_counts_its_start_and_its_end() -> None:
    events = calc_events().events
    builder, _, _ = held_builder(3600.0)
    builder.client = FakeClient(fail=True)
    failed: list[Event] = []
    for batch in in_batches(events, 3):
        builder.handle_batch(batch, failed.append)
    builder.release(everything=True)
    assert sorted(map(id, failed)) == sorted(map(id, events))  # every event once
