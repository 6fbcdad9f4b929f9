"""Checkpoints: the versioned record, damaged records, the SQLite and in-memory stores, what is saved
when (every step or only at interrupts), the default store, and stores of the user's own."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tracedagent import (
    Agent,
    Checkpoint,
    CheckpointError,
    CheckpointSaved,
    CheckpointStore,
    ConfigurationError,
    InMemoryCheckpointStore,
    Interruption,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelError,
    RunContext,
    RunEnded,
    RunInterrupted,
    RunResumed,
    SQLiteCheckpointStore,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    UserError,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

RUN_ID = "run-0123456789abcdef"


def full_checkpoint(**changes: Any) -> Checkpoint:
    """A checkpoint with every field set: tool calls, a failed tool result, usage, the turn in flight,
    pending calls, metadata."""
    search = ToolCall.of("call_a", "search", {"q": "wéather ☃"})
    deploy = ToolCall.of("call_b", "deploy", {"version": "1.2"})
    fields: dict[str, Any] = {
        "run_id": RUN_ID,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "agent": "ops",
        "status": "interrupted",
        "messages": (
            Message.system("be brief"),
            Message.user("look it up, then deploy"),
            Message.assistant(None, [ToolCall.of("call_0", "lookup", "{}")]),
            Message.tool("call_0", "lookup", "lookup failed: timeout", is_error=True),
            Message("assistant", "searching and deploying", (search, deploy), thinking="two calls"),
        ),
        "turn": 2,
        "usage": Usage(120, 30, 5, 7, 2, True, 0.0123, 0.0081, True),
        "turn_results": {"call_a": Message.tool("call_a", "search", "sunny")},
        "pending": (Interruption("call_b", "deploy", deploy.arguments, "tool 'deploy' needs approval"),),
        "approved_tools": ("search",),
        "metadata": {"user": "ada", "tags": ["a", 1, None], "nested": {"x": 1.5}},
        "session_id": "session-1",
        "segment_span_id": "00f067aa0ba902b7",
        "parent_span_id": "b7ad6b7169203331",
        "paused_at_ns": 1_700_000_000_000_000_000,
        "step": 4,
    }
    fields.update(changes)
    return Checkpoint(**fields)


def assert_names_the_run(error: CheckpointError, run_id: str = RUN_ID) -> None:
    assert error.run_id == run_id
    assert repr(run_id) in str(error)


# ------------------------------------------------------------------------------------ the record


def test_a_checkpoint_survives_encode_and_decode() -> None:
    checkpoint = full_checkpoint()
    data = checkpoint.encode()

    decoded = Checkpoint.decode(RUN_ID, data)

    assert decoded == checkpoint
    assert decoded.usage.estimated is True  # not part of Usage equality, so checked on its own
    assert (decoded.usage.cost_usd, decoded.usage.input_cost_usd) == (0.0123, 0.0081)  # not part of equality
    assert decoded.usage.cost_partial is True
    assert decoded.messages[-1].tool_calls[1] == ToolCall("call_b", "deploy", '{"version": "1.2"}')
    assert decoded.messages[3].is_error is True
    record = json.loads(data)
    assert (record["format"], record["version"]) == ("tracedagent.checkpoint", 1)


texts = st.text(max_size=12)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=8,
)
tool_calls = st.builds(ToolCall, texts, texts, texts)
messages = st.one_of(
    st.builds(Message.user, texts),
    st.builds(Message.system, texts),
    st.builds(
        Message,
        st.just("assistant"),
        st.none() | texts,
        st.lists(tool_calls, max_size=3).map(tuple),
        thinking=st.none() | texts,
    ),
    st.builds(Message.tool, texts, texts, texts, is_error=st.booleans()),
)
counts = st.integers(min_value=0, max_value=2**62)
dollars = st.none() | st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
checkpoints = st.builds(
    Checkpoint,
    run_id=st.just(RUN_ID),
    trace_id=texts,
    agent=texts,
    status=st.sampled_from(["running", "interrupted", "completed", "failed", "cancelled"]),
    messages=st.lists(messages, min_size=1, max_size=5).map(tuple),
    turn=counts,
    usage=st.builds(Usage, counts, counts, counts, counts, counts, st.booleans(), dollars, dollars, st.booleans()),
    turn_results=st.dictionaries(texts, messages, max_size=3),
    pending=st.lists(
        st.builds(Interruption, texts, texts, texts, texts, st.sampled_from(["approval", "external"])), max_size=3
    ).map(tuple),
    approved_tools=st.lists(texts, max_size=3).map(tuple),
    metadata=st.dictionaries(texts, json_values, max_size=4),
    session_id=st.none() | texts,
    segment_span_id=st.none() | texts,
    parent_span_id=st.none() | texts,
    paused_at_ns=st.none() | counts,
    step=counts,
)


def test_a_record_written_before_costs_decodes_without_a_cost() -> None:
    record = json.loads(full_checkpoint().encode())
    for key in ("cost_usd", "input_cost_usd", "cost_partial"):
        del record["usage"][key]
    decoded = Checkpoint.decode(RUN_ID, json.dumps(record).encode())
    assert decoded.usage == Usage(120, 30, 5, 7, 2)
    assert (decoded.usage.cost_usd, decoded.usage.input_cost_usd, decoded.usage.cost_partial) == (None, None, False)


@given(checkpoints)
def test_any_checkpoint_survives_encode_and_decode(checkpoint: Checkpoint) -> None:
    decoded = Checkpoint.decode(RUN_ID, checkpoint.encode())

    assert decoded == checkpoint
    # not part of Usage equality, so checked on their own
    assert decoded.usage.estimated == checkpoint.usage.estimated
    assert decoded.usage.cost_usd == checkpoint.usage.cost_usd
    assert decoded.usage.input_cost_usd == checkpoint.usage.input_cost_usd
    assert decoded.usage.cost_partial == checkpoint.usage.cost_partial


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (b"[1, 2, 3]", "not a tracedagent checkpoint"),
        (b'{"format": "tracedagent.session", "version": 1, "messages": []}', "not a tracedagent checkpoint"),
        (b'{"format": "something.else", "version": 1}', "not a tracedagent checkpoint"),
    ],
)
def test_a_record_that_is_no_checkpoint_is_a_checkpoint_error(data: bytes, says: str) -> None:
    with pytest.raises(CheckpointError, match=says) as caught:
        Checkpoint.decode(RUN_ID, data)
    assert_names_the_run(caught.value)


@pytest.mark.parametrize("version", [2, 99, 0, None, "1"])
def test_a_record_of_another_format_version_is_refused(version: Any) -> None:
    record = json.loads(full_checkpoint().encode())
    record["version"] = version

    with pytest.raises(CheckpointError, match="format version") as caught:
        Checkpoint.decode(RUN_ID, json.dumps(record).encode())

    assert_names_the_run(caught.value)
    assert repr(version) in str(caught.value)


def test_a_record_of_another_run_is_refused() -> None:
    data = full_checkpoint(run_id="someone-else").encode()

    with pytest.raises(CheckpointError, match="belongs to run 'someone-else'") as caught:
        Checkpoint.decode(RUN_ID, data)

    assert_names_the_run(caught.value)


def test_every_truncation_of_a_record_is_a_checkpoint_error() -> None:
    data = full_checkpoint().encode()
    assert len(data) > 500
    for end in range(len(data)):
        with pytest.raises(CheckpointError) as caught:
            Checkpoint.decode(RUN_ID, data[:end])
        assert_names_the_run(caught.value)


@given(checkpoints, st.data())
def test_any_truncated_record_is_a_checkpoint_error(checkpoint: Checkpoint, data: st.DataObject) -> None:
    record = checkpoint.encode()
    end = data.draw(st.integers(min_value=0, max_value=len(record) - 1))

    with pytest.raises(CheckpointError) as caught:
        Checkpoint.decode(RUN_ID, record[:end])

    assert_names_the_run(caught.value)


def assert_well_typed(checkpoint: Checkpoint) -> None:
    """What a resumed run relies on: every field has its declared type."""

    def message(m: Any) -> None:
        assert isinstance(m, Message)
        assert m.role in ("system", "user", "assistant", "tool")
        for value in (m.content, m.tool_call_id, m.name, m.thinking):
            assert value is None or isinstance(value, str)
        assert isinstance(m.is_error, bool)
        for call in m.tool_calls:
            assert all(isinstance(v, str) for v in (call.id, call.name, call.arguments))

    def count(value: Any) -> None:
        assert type(value) is int
        assert value >= 0

    for value in (checkpoint.run_id, checkpoint.trace_id, checkpoint.agent, checkpoint.status):
        assert isinstance(value, str)
    assert checkpoint.status in ("running", "interrupted", "completed", "failed", "cancelled")
    assert checkpoint.messages
    for m in checkpoint.messages:
        message(m)
    for key, m in checkpoint.turn_results.items():
        assert isinstance(key, str)
        message(m)
    u = checkpoint.usage
    for number in (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens, u.requests):
        count(number)
    assert isinstance(u.estimated, bool)
    for cost in (u.cost_usd, u.input_cost_usd):
        assert cost is None or (type(cost) is float and cost >= 0 and cost != float("inf"))
    assert isinstance(u.cost_partial, bool)
    count(checkpoint.turn)
    count(checkpoint.step)
    for p in checkpoint.pending:
        assert all(isinstance(v, str) for v in (p.id, p.tool, p.arguments, p.reason))
        assert p.kind in ("approval", "external")
    assert all(isinstance(t, str) for t in checkpoint.approved_tools)
    assert isinstance(checkpoint.metadata, dict)
    for optional in (checkpoint.session_id, checkpoint.segment_span_id, checkpoint.parent_span_id):
        assert optional is None or isinstance(optional, str)
    assert checkpoint.paused_at_ns is None or type(checkpoint.paused_at_ns) is int


FIELDS = sorted(json.loads(full_checkpoint().encode()))
NESTED: list[tuple[Any, ...]] = [
    *[("usage", key) for key in full_checkpoint().usage.to_dict()],
    *[("messages", 4, key) for key in ("role", "content", "tool_calls", "tool_call_id", "name", "is_error")],
    ("messages", 4, "tool_calls", 0),
    *[("messages", 4, "tool_calls", 0, key) for key in ("id", "name", "arguments")],
    ("messages", 0),
    *[("turn_results", "call_a", key) for key in ("role", "content", "is_error", "tool_call_id")],
    ("pending", 0),
    *[("pending", 0, key) for key in ("id", "tool", "arguments", "reason", "kind")],
    ("approved_tools", 0),
]
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,  # with NaN and infinities
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=400)
@given(
    path=st.sampled_from([(name,) for name in FIELDS] + NESTED),
    value=ANY_JSON,
    delete=st.booleans(),
)
def test_a_field_missing_or_of_the_wrong_type_is_a_checkpoint_error(
    path: tuple[Any, ...], value: Any, delete: bool
) -> None:
    record = json.loads(full_checkpoint().encode())
    *parents, last = path
    container = record
    for key in parents:
        container = container[key]
    if delete and isinstance(container, dict):
        assume(last in container)  # optional message keys are left out when they hold their default
        del container[last]
    else:
        before = container.get(last, object()) if isinstance(container, dict) else container[last]
        assume(before != value or type(before) is not type(value))
        container[last] = value

    try:
        decoded = Checkpoint.decode(RUN_ID, json.dumps(record).encode())
    except CheckpointError as error:
        assert_names_the_run(error)
    else:  # a value of the right type is a different checkpoint, not a damaged one
        assert_well_typed(decoded)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("messages", []),
        ("turn", float("inf")),
        ("turn", -1),
        ("turn", "3"),
        ("session_id", ["s"]),
        ("metadata", ["ab"]),
        ("status", "paused"),
        ("usage", {**Usage().to_dict(), "estimated": "no"}),
        ("usage", {**Usage().to_dict(), "cost_usd": -0.5}),
        ("usage", {**Usage().to_dict(), "cost_usd": "0.5"}),
        ("usage", {**Usage().to_dict(), "input_cost_usd": float("nan")}),
    ],
)
def test_a_record_a_run_could_not_go_on_from_is_refused(field: str, value: Any) -> None:
    record = json.loads(full_checkpoint().encode())
    record[field] = value

    with pytest.raises(CheckpointError, match="is corrupted") as caught:
        Checkpoint.decode(RUN_ID, json.dumps(record).encode())

    assert_names_the_run(caught.value)


# ------------------------------------------------------------------------ resuming a damaged record


@tool(needs_approval=True)
def deploy(version: str) -> str:
    """Deploy a version."""
    return f"deployed {version}"


def deploy_agent(store: CheckpointStore, *answers: Any, name: str = "ops", **options: Any) -> Agent:
    script = answers or (Step(tool_calls=[("deploy", {"version": "1.2"})]), "deployed 1.2")
    return Agent(name, ScriptedModel(list(script)), tools=[deploy], checkpoints=store, **options)


async def test_resuming_a_corrupted_record_restores_nothing_and_keeps_the_record(tracer: RecordingTracer) -> None:
    store = InMemoryCheckpointStore()
    paused = await deploy_agent(store).run("deploy 1.2")
    assert paused.status == "interrupted"
    good = store.raw(paused.run_id)
    assert good is not None
    damaged = good[: len(good) // 2]
    store.put_raw(paused.run_id, damaged)
    tracer.clear()

    resumer = deploy_agent(store, "deployed 1.2")
    with pytest.raises(CheckpointError, match="corrupted") as caught:
        await resumer.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert_names_the_run(caught.value, paused.run_id)
    assert store.raw(paused.run_id) == damaged  # nothing lost, nothing overwritten
    assert tracer.events == []  # nothing ran: no resume, no model call, no tool call
    assert resumer.model.calls == 0  # type: ignore[attr-defined]

    store.put_raw(paused.run_id, good)  # the good record still resumes
    done = await resumer.resume(paused.run_id, {paused.interruptions[0].id: True})
    assert (done.status, done.output, done.run_id) == ("completed", "deployed 1.2", paused.run_id)


async def test_resuming_a_record_of_a_newer_version_from_sqlite_keeps_it(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    path = tmp_path / "runs.db"
    paused = await deploy_agent(SQLiteCheckpointStore(path)).run("deploy 1.2")
    with sqlite3.connect(path) as db:
        (data,) = db.execute("SELECT data FROM checkpoints WHERE run_id = ?", (paused.run_id,)).fetchone()
        newer = json.dumps({**json.loads(data), "version": 2}).encode()
        db.execute("UPDATE checkpoints SET data = ? WHERE run_id = ?", (newer, paused.run_id))
    tracer.clear()

    with pytest.raises(CheckpointError, match="format version 2") as caught:
        await deploy_agent(SQLiteCheckpointStore(path), "ok").resume(paused.run_id, {paused.interruptions[0].id: True})

    assert_names_the_run(caught.value, paused.run_id)
    assert tracer.events == []
    with sqlite3.connect(path) as db:
        (kept,) = db.execute("SELECT data FROM checkpoints WHERE run_id = ?", (paused.run_id,)).fetchone()
    assert bytes(kept) == newer


# ------------------------------------------------------------------------------------ SQLite store


async def test_the_sqlite_store_uses_wal_and_a_file_only_its_owner_can_read(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    old_umask = os.umask(0)  # so a mode of 0600 is the store's doing, not the umask's
    try:
        store = SQLiteCheckpointStore(path)
        await store.save(full_checkpoint())
    finally:
        os.umask(old_umask)

    # the journal files SQLite makes beside it (open while the store's connection is) are as private
    for name in (path, f"{path}-wal", f"{path}-shm"):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert await store.load(RUN_ID) == full_checkpoint()
    store.close()


async def test_the_sqlite_store_reads_and_writes_on_one_thread_that_is_not_the_loops(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    threads: list[int] = []

    class Watched(SQLiteCheckpointStore):
        def _connection(self) -> sqlite3.Connection:
            threads.append(threading.get_ident())
            return super()._connection()

    store = Watched(tmp_path / "runs.db")
    paused = await deploy_agent(store).run("deploy 1.2")
    await deploy_agent(store, "done").resume(paused.run_id, {paused.interruptions[0].id: True})

    assert len(tracer.of_type(CheckpointSaved)) >= 3
    assert len(threads) >= 4  # every save, and the load of the resume
    assert threading.get_ident() not in threads
    assert len(set(threads)) == 1


async def test_two_sqlite_stores_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    first, second = SQLiteCheckpointStore(tmp_path / "runs.db"), SQLiteCheckpointStore(tmp_path / "runs.db")
    await first.save(full_checkpoint())

    assert await second.load(RUN_ID) == full_checkpoint()

    await second.save(full_checkpoint(status="completed", step=5))
    reloaded = await first.load(RUN_ID)
    assert reloaded is not None
    assert (reloaded.status, reloaded.step) == ("completed", 5)

    await first.delete(RUN_ID)
    assert await second.load(RUN_ID) is None
    assert await second.load("never-saved") is None


def test_a_directory_is_no_checkpoint_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        SQLiteCheckpointStore(tmp_path)
    with pytest.raises(ConfigurationError, match="is a directory"):
        Agent("a", ScriptedModel(["hi"]), checkpoints=tmp_path)


async def test_a_file_that_is_not_sqlite_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    store = SQLiteCheckpointStore(path)

    with pytest.raises(CheckpointError, match="is it a SQLite file") as caught:
        await store.load(RUN_ID)
    assert str(path) in str(caught.value)
    with pytest.raises(CheckpointError, match="is it a SQLite file"):
        await store.save(full_checkpoint())
    assert path.read_bytes() == b"these are my notes, not a database\n" * 200


def test_checkpoints_must_be_a_store_or_a_path() -> None:
    with pytest.raises(ConfigurationError, match="checkpoints must be a CheckpointStore"):
        Agent("a", ScriptedModel(["hi"]), checkpoints=42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="checkpoint_every must be"):
        Agent("a", ScriptedModel(["hi"]), checkpoint_every="always")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- what is saved, when


class KeepingStore(InMemoryCheckpointStore):
    """An in-memory store that also keeps every checkpoint it was given, with the bytes it stored."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[tuple[Checkpoint, bytes]] = []

    async def save(self, checkpoint: Checkpoint) -> int:
        written = await super().save(checkpoint)
        raw = self.raw(checkpoint.run_id)
        assert raw is not None
        self.saved.append((checkpoint, raw))
        return written


@tool
def lookup(city: str) -> str:
    """Look a city up."""
    return f"{city}: sunny"


def lookup_script() -> list[Any]:
    return [
        Step(tool_calls=[("lookup", {"city": "Paris"})]),
        Step(tool_calls=[("lookup", {"city": "Oslo"})]),
        "Paris and Oslo are sunny",
    ]


async def test_every_step_saves_after_each_model_call_and_each_finished_tool_call(tracer: RecordingTracer) -> None:
    store = KeepingStore()
    agent = Agent("weather", ScriptedModel(lookup_script()), tools=[lookup], checkpoints=store)
    # no checkpoint_every given: a store of its own means every step (checked by the saves below)

    result = await agent.run("weather in Paris and Oslo?")

    assert result.status == "completed"
    saved_events = tracer.of_type(CheckpointSaved)
    assert [e.step for e in saved_events] == list(range(1, len(saved_events) + 1))
    assert [e.bytes for e in saved_events] == [len(raw) for _, raw in store.saved]
    assert all(e.duration_s >= 0 and e.store == "memory" for e in saved_events)
    assert [c.step for c, _ in store.saved] == [e.step for e in saved_events]
    by_step = {c.step: c for c, _ in store.saved}

    # each model call that asked for tools, and each finished tool call, is saved before anything else starts
    stages: list[Any] = [
        e
        for e in tracer.events
        if isinstance(e, (ModelCallStarted, ModelCallEnded, ToolCallStarted, ToolCallEnded, CheckpointSaved, RunEnded))
    ]
    model_steps = [e for e in stages if isinstance(e, ModelCallEnded) and e.output and e.output.tool_calls]
    tool_steps = [e for e in stages if isinstance(e, ToolCallEnded)]
    assert (len(model_steps), len(tool_steps)) == (2, 2)
    finished: Any
    for finished in [*model_steps, *tool_steps]:
        after = stages[stages.index(finished) + 1]
        assert isinstance(after, CheckpointSaved), f"{finished.hook} was not followed by a checkpoint"
        checkpoint = by_step[after.step]
        if isinstance(finished, ModelCallEnded):
            assert checkpoint.messages[-1] == finished.output
        else:
            assert checkpoint.turn_results[finished.call_id].content == finished.result
    final, raw = store.saved[-1]
    assert final.status == "completed"
    assert raw == store.raw(result.run_id)
    assert list(final.messages) == result.messages


async def test_saved_bytes_are_the_length_of_the_stored_sqlite_record(tmp_path: Path, tracer: RecordingTracer) -> None:
    path = tmp_path / "runs.db"
    result = await Agent("weather", ScriptedModel(lookup_script()), tools=[lookup], checkpoints=path).run("go")

    last = tracer.of_type(CheckpointSaved)[-1]
    with sqlite3.connect(path) as db:
        (status, data) = db.execute(
            "SELECT status, data FROM checkpoints WHERE run_id = ?", (result.run_id,)
        ).fetchone()
    assert (status, last.bytes, last.store) == ("completed", len(data), "sqlite")


async def test_a_checkpoint_is_a_snapshot_even_of_metadata_changed_later(tracer: RecordingTracer) -> None:
    @tool
    def tag(ctx: RunContext) -> str:
        """Tag the run."""
        ctx.metadata["tagged"] = True
        return "tagged"

    store = KeepingStore()
    model = ScriptedModel([Step(tool_calls=[("tag", {})]), "done"])
    await Agent("tagger", model, tools=[tag], checkpoints=store).run("tag it", metadata={"user": "ada"})

    first, _ = store.saved[0]  # saved after the model asked for the tool, before the tool ran
    assert first.metadata == {"user": "ada"}
    assert json.loads(store.saved[0][1])["metadata"] == {"user": "ada"}
    assert store.saved[-1][0].metadata == {"user": "ada", "tagged": True}


async def test_checkpoint_every_interrupt_saves_only_when_the_run_pauses(tracer: RecordingTracer) -> None:
    store = KeepingStore()
    script = [Step(tool_calls=[("lookup", {"city": "Paris"})]), Step(tool_calls=[("deploy", {"version": "2"})])]
    agent = Agent(
        "ops",
        ScriptedModel([*script, "deployed"]),
        tools=[lookup, deploy],
        checkpoints=store,
        checkpoint_every="interrupt",
    )

    paused = await agent.run("look, then deploy")

    assert paused.status == "interrupted"
    (saved,) = tracer.of_type(CheckpointSaved)
    hooks = tracer.hooks()
    assert hooks.index("on_checkpoint") == hooks.index("on_interrupt") + 1
    ((checkpoint, raw),) = store.saved
    assert (checkpoint.status, saved.bytes) == ("interrupted", len(raw))
    assert [p.tool for p in checkpoint.pending] == ["deploy"]

    done = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert done.status == "completed"
    assert [c.status for c, _ in store.saved] == ["interrupted", "completed"]  # the end of a run that paused


async def test_the_default_store_writes_nothing_for_a_plain_run(
    monkeypatch: pytest.MonkeyPatch, tracer: RecordingTracer
) -> None:
    monkeypatch.delenv("TRACEDAGENT_CHECKPOINTS", raising=False)
    agent = Agent("weather", ScriptedModel(lookup_script()), tools=[lookup])
    store = agent.store()
    assert isinstance(store, InMemoryCheckpointStore)

    result = await agent.run("go")

    assert result.status == "completed"
    assert tracer.of_type(CheckpointSaved) == []
    assert store.raw(result.run_id) is None


async def test_a_completed_run_is_recorded_in_an_explicit_store_and_cannot_be_resumed(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    result = await Agent("weather", ScriptedModel(lookup_script()), tools=[lookup], checkpoints=store).run("go")

    checkpoint = await store.load(result.run_id)
    assert checkpoint is not None
    assert checkpoint.status == "completed"
    assert list(checkpoint.messages) == result.messages
    tracer.clear()
    again = Agent("weather", ScriptedModel(["never"]), tools=[lookup], checkpoints=store)
    with pytest.raises(CheckpointError, match="has already completed"):
        await again.resume(result.run_id)
    assert tracer.events == []


async def test_the_default_memory_store_forgets_a_run_once_it_completes(
    monkeypatch: pytest.MonkeyPatch, tracer: RecordingTracer
) -> None:
    monkeypatch.delenv("TRACEDAGENT_CHECKPOINTS", raising=False)
    agent = Agent("ops", ScriptedModel([Step(tool_calls=[("deploy", {"version": "1"})]), "deployed"]), tools=[deploy])
    store = agent.store()
    assert isinstance(store, InMemoryCheckpointStore)

    paused = await agent.run("deploy 1")
    assert store.raw(paused.run_id) is not None
    done = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert done.status == "completed"
    assert store.raw(paused.run_id) is None
    with pytest.raises(UserError, match="no checkpoint of run"):
        await agent.resume(paused.run_id)


async def test_a_failed_run_is_recorded_and_resumes_with_a_model_that_works(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    path = tmp_path / "runs.db"
    looked_up: list[str] = []

    @tool
    def counted_lookup(city: str) -> str:
        """Look a city up."""
        looked_up.append(city)
        return f"{city}: sunny"

    broken = ScriptedModel([Step(tool_calls=[("counted_lookup", {"city": "Paris"})]), RuntimeError("model down")])
    with pytest.raises(ModelError, match="model down") as caught:
        await Agent("weather", broken, tools=[counted_lookup], checkpoints=path).run("Paris?")
    failed = caught.value.result
    assert failed is not None
    assert failed.status == "failed"
    checkpoint = await SQLiteCheckpointStore(path).load(failed.run_id)
    assert checkpoint is not None
    assert checkpoint.status == "failed"
    assert checkpoint.messages[-1] == Message.tool(
        checkpoint.messages[-2].tool_calls[0].id, "counted_lookup", "Paris: sunny"
    )

    working = ScriptedModel(["Paris is sunny"])
    done = await Agent("weather", working, tools=[counted_lookup], checkpoints=path).resume(failed.run_id)

    assert (done.status, done.output, done.run_id, done.trace_id) == (
        "completed",
        "Paris is sunny",
        failed.run_id,
        failed.trace_id,
    )
    assert looked_up == ["Paris"]  # the finished tool call did not run again
    assert list(working.requests[0].messages) == list(checkpoint.messages)
    (resumed,) = tracer.of_type(RunResumed)
    assert resumed.previous_span_id == checkpoint.segment_span_id
    assert [e.status for e in tracer.of_type(RunEnded)] == ["failed", "completed"]


async def test_the_environment_variable_makes_a_sqlite_file_the_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracer: RecordingTracer
) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv("TRACEDAGENT_CHECKPOINTS", str(path))
    agent = Agent("ops", ScriptedModel([Step(tool_calls=[("deploy", {"version": "1"})]), "deployed"]), tools=[deploy])
    store = agent.store()
    assert isinstance(store, SQLiteCheckpointStore)
    assert store.path == path

    paused = await agent.run("deploy 1")

    elsewhere = await SQLiteCheckpointStore(path).load(paused.run_id)  # in the file, for any process to resume
    assert elsewhere is not None
    assert (elsewhere.status, elsewhere.trace_id) == ("interrupted", paused.trace_id)
    assert tracer.of_type(CheckpointSaved)[-1].store == "sqlite"
    done = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
    assert done.status == "completed"


async def test_a_path_given_to_the_agent_is_a_sqlite_store(tmp_path: Path, tracer: RecordingTracer) -> None:
    path = tmp_path / "sub" / "agent.db"
    agent = Agent("weather", ScriptedModel(lookup_script()), tools=[lookup], checkpoints=str(path))
    assert isinstance(agent.store(), SQLiteCheckpointStore)

    result = await agent.run("go")

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT run_id, agent, status FROM checkpoints").fetchall()
    assert rows == [(result.run_id, "weather", "completed")]
    assert len(tracer.of_type(CheckpointSaved)) > 1  # every step, the default with a store


class DictStore:
    """A store of the user's own: not a subclass of anything, only the protocol's methods."""

    name = "dict"

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.sessions: dict[str, list[Message]] = {}
        self.calls: list[str] = []

    async def save(self, checkpoint: Checkpoint) -> int:
        self.calls.append(f"save {checkpoint.status}")
        data = checkpoint.encode()
        self.records[checkpoint.run_id] = data
        return len(data)

    async def load(self, run_id: str) -> Checkpoint | None:
        self.calls.append("load")
        data = self.records.get(run_id)
        return None if data is None else Checkpoint.decode(run_id, data)

    async def delete(self, run_id: str) -> None:
        self.records.pop(run_id, None)

    async def save_session(self, session_id: str, messages: Sequence[Message]) -> None:
        self.sessions[session_id] = list(messages)

    async def load_session(self, session_id: str) -> list[Message]:
        return list(self.sessions.get(session_id, []))


async def test_a_store_of_the_users_own_works(tracer: RecordingTracer) -> None:
    store = DictStore()
    assert isinstance(store, CheckpointStore)
    paused = await deploy_agent(store, checkpoint_every="interrupt").run("deploy 1.2")

    done = await deploy_agent(store, "deployed 1.2", checkpoint_every="interrupt").resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )

    assert (done.status, done.run_id) == ("completed", paused.run_id)
    assert store.calls == ["save interrupted", "load", "save completed"]
    assert [e.store for e in tracer.of_type(CheckpointSaved)] == ["dict", "dict"]
    assert [e.bytes for e in tracer.of_type(CheckpointSaved)][-1] == len(store.records[paused.run_id])
    assert len(tracer.of_type(RunInterrupted)) == 1


def test_the_protocol_tells_a_store_from_anything_else() -> None:
    assert isinstance(KeepingStore(), CheckpointStore)
    assert isinstance(DictStore(), CheckpointStore)
    assert not isinstance(object(), CheckpointStore)


async def test_env_store_saves_every_step_by_default(
    tracer: RecordingTracer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRACEDAGENT_CHECKPOINTS makes a durable default store, so crash recovery works without code."""
    monkeypatch.setenv("TRACEDAGENT_CHECKPOINTS", str(tmp_path / "env-step.db"))
    agent = Agent("weather", ScriptedModel(lookup_script()), tools=[lookup])
    await agent.run("weather in Paris and Oslo?")
    assert len(tracer.of_type(CheckpointSaved)) > 1
