"""Sessions: ``run(..., session_id=...)`` continues the conversation kept under that id in the agent's store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tracedagent import (
    Agent,
    CheckpointStore,
    InMemoryCheckpointStore,
    Message,
    ModelError,
    SQLiteCheckpointStore,
    ToolCall,
    UserError,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@tool(needs_approval=True)
def delete(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"


@pytest.fixture
def sqlite_stores(tmp_path: Path) -> Iterator[Callable[[str], SQLiteCheckpointStore]]:
    """Open SQLite stores under ``tmp_path``; every one is closed after the test."""
    opened: list[SQLiteCheckpointStore] = []

    def open_store(name: str = "runs.db") -> SQLiteCheckpointStore:
        store = SQLiteCheckpointStore(tmp_path / name)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture(params=["default", "memory", "sqlite"])
def store(request: pytest.FixtureRequest, sqlite_stores: Callable[[str], SQLiteCheckpointStore]) -> Any:
    """The store an agent keeps sessions in: none given (the process's), in memory, or a SQLite file."""
    if request.param == "default":
        return None
    if request.param == "memory":
        return InMemoryCheckpointStore()
    return sqlite_stores("runs.db")


def session_name(request: pytest.FixtureRequest) -> str:
    """A session id of this test only (the process's default store is shared by every test)."""
    return f"session-{request.node.name}"


async def test_a_session_continues_the_conversation(
    tracer: RecordingTracer, store: CheckpointStore | None, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    model = ScriptedModel(["Hello Ada.", "Your name is Ada."])
    agent = Agent("chat", model, checkpoints=store)

    first = await agent.run("I am Ada.", session_id=session)
    second = await agent.run("What is my name?", session_id=session)

    assert first.status == second.status == "completed"
    assert first.run_id != second.run_id
    conversation = [
        Message.user("I am Ada."),
        Message.assistant("Hello Ada."),
        Message.user("What is my name?"),
    ]
    assert list(model.requests[0].messages) == conversation[:1]
    assert list(model.requests[1].messages) == conversation
    assert second.messages == [*conversation, Message.assistant("Your name is Ada.")]
    assert await agent.store().load_session(session) == second.messages


async def test_sessions_with_other_ids_are_kept_apart(
    tracer: RecordingTracer, store: CheckpointStore | None, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    model = ScriptedModel(["Noted, blue.", "Noted, red.", "Blue."])
    agent = Agent("chat", model, checkpoints=store)

    await agent.run("My colour is blue.", session_id=f"{session}-a")
    await agent.run("My colour is red.", session_id=f"{session}-b")
    await agent.run("What is my colour?", session_id=f"{session}-a")

    assert list(model.requests[1].messages) == [Message.user("My colour is red.")]
    assert list(model.requests[2].messages) == [
        Message.user("My colour is blue."),
        Message.assistant("Noted, blue."),
        Message.user("What is my colour?"),
    ]


async def test_a_run_without_a_session_id_neither_reads_nor_writes_one(
    tracer: RecordingTracer, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    store = InMemoryCheckpointStore()
    model = ScriptedModel(["One.", "Two.", "Three."])
    agent = Agent("chat", model, checkpoints=store)

    await agent.run("first", session_id=session)
    await agent.run("no session")
    await agent.run("second", session_id=session)

    assert list(model.requests[1].messages) == [Message.user("no session")]
    assert [m.content for m in model.requests[2].messages] == ["first", "One.", "second"]


async def test_sessions_are_kept_in_the_agents_store(
    tracer: RecordingTracer, sqlite_stores: Callable[[str], SQLiteCheckpointStore]
) -> None:
    model = ScriptedModel(["Hi from one.", "Hi from two.", "Again from one."])
    one = Agent("chat", model, checkpoints=InMemoryCheckpointStore())
    two = Agent("chat", model, checkpoints=sqlite_stores("two.db"))

    await one.run("hello", session_id="shared-name")
    await two.run("hello", session_id="shared-name")
    await one.run("again", session_id="shared-name")

    assert list(model.requests[1].messages) == [Message.user("hello")]  # two's store has no such session
    assert [m.content for m in model.requests[2].messages] == ["hello", "Hi from one.", "again"]
    assert [m.content for m in await two.store().load_session("shared-name")] == ["hello", "Hi from two."]


async def test_a_session_in_a_sqlite_file_survives_a_new_store_object(
    tracer: RecordingTracer, sqlite_stores: Callable[[str], SQLiteCheckpointStore]
) -> None:
    model = ScriptedModel(["Stored.", "You said: remember the milk."])
    before = Agent("chat", model, checkpoints=sqlite_stores("sessions.db"))
    await before.run("remember the milk", session_id="errands")

    after = Agent("chat", model, checkpoints=sqlite_stores("sessions.db"))
    result = await after.run("what did I say?", session_id="errands")

    assert after.store() is not before.store()
    assert [m.content for m in model.requests[1].messages] == ["remember the milk", "Stored.", "what did I say?"]
    assert result.output == "You said: remember the milk."


async def test_a_session_given_by_path_survives_a_new_agent(tracer: RecordingTracer, tmp_path: Path) -> None:
    path = tmp_path / "by-path.db"
    model = ScriptedModel(["Stored.", "Seen."])
    before = Agent("chat", model, checkpoints=path)
    after = Agent("chat", model, checkpoints=str(path))
    try:
        await before.run("one", session_id="s")
        await after.run("two", session_id="s")
    finally:
        for agent in (before, after):
            store = agent.store()
            assert isinstance(store, SQLiteCheckpointStore)
            store.close()

    assert [m.content for m in model.requests[1].messages] == ["one", "Stored.", "two"]


async def test_an_interrupted_session_run_saves_the_session_when_it_completes(
    tracer: RecordingTracer, store: CheckpointStore | None, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    model = ScriptedModel(
        [
            "Hello.",
            Step(tool_calls=[ToolCall.of("c1", "delete", {"path": "old"})]),
            "Deleted old.",
            "You asked me to delete old.",
        ]
    )
    agent = Agent("ops", model, tools=[delete], checkpoints=store)
    await agent.run("hi", session_id=session)

    paused = await agent.run("delete old", session_id=session)

    assert paused.status == "interrupted"
    # A paused run has not changed the session yet.
    assert [m.content for m in await agent.store().load_session(session)] == ["hi", "Hello."]

    resumed = await agent.resume(paused.run_id, {"c1": True})

    assert resumed.status == "completed"
    kept = await agent.store().load_session(session)
    assert kept == resumed.messages
    assert [m.role for m in kept] == ["user", "assistant", "user", "assistant", "tool", "assistant"]
    assert kept[4] == Message.tool("c1", "delete", "deleted old")

    await agent.run("what did I ask?", session_id=session)
    assert list(model.requests[-1].messages) == [*kept, Message.user("what did I ask?")]


async def test_a_failed_session_run_leaves_the_session_as_it_was(
    tracer: RecordingTracer, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    model = ScriptedModel(["First answer.", RuntimeError("provider down"), "Second answer."])
    agent = Agent("chat", model, checkpoints=InMemoryCheckpointStore())
    await agent.run("first", session_id=session)

    with pytest.raises(ModelError):
        await agent.run("lost", session_id=session)
    await agent.run("second", session_id=session)

    assert [m.content for m in model.requests[2].messages] == ["first", "First answer.", "second"]


async def test_a_session_combines_with_explicit_messages(
    tracer: RecordingTracer, request: pytest.FixtureRequest
) -> None:
    session = session_name(request)
    model = ScriptedModel(["A.", "B."])
    agent = Agent("chat", model, checkpoints=InMemoryCheckpointStore())
    await agent.run("first", session_id=session)

    await agent.run("third", messages=[Message.user("second")], session_id=session)

    assert [m.content for m in model.requests[1].messages] == ["first", "A.", "second", "third"]


@pytest.mark.parametrize("session_id", ["", 42, b"s", ["s"]], ids=["empty", "int", "bytes", "list"])
async def test_a_bad_session_id_is_a_user_error(tracer: RecordingTracer, session_id: Any) -> None:
    model = ScriptedModel(["never"])
    agent = Agent("chat", model, checkpoints=InMemoryCheckpointStore())

    with pytest.raises(UserError, match="session_id must be a non-empty string"):
        await agent.run("hi", session_id=session_id)

    assert model.calls == 0
    assert len(tracer) == 0


def test_run_sync_takes_a_session_id(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["One.", "Two."])
    agent = Agent("chat", model, checkpoints=InMemoryCheckpointStore())

    agent.run_sync("first", session_id="sync-session")
    result = agent.run_sync("second", session_id="sync-session")

    assert [m.content for m in result.messages] == ["first", "One.", "second", "Two."]


async def test_stream_takes_a_session_id(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["One.", "Two."])
    agent = Agent("chat", model, checkpoints=InMemoryCheckpointStore())
    await agent.run("first", session_id="stream-session")

    items = [item async for item in agent.stream("second", session_id="stream-session")]

    assert [m.content for m in model.requests[1].messages] == ["first", "One.", "second"]
    assert [m.content for m in items[-1].result.messages] == ["first", "One.", "second", "Two."]  # type: ignore[union-attr]
