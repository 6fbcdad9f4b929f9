"""Durable run state: checkpoints, the stores that keep them, and sessions.

A :class:`Checkpoint` is a snapshot of a run's mutable state (messages, the results of the turn in
flight, pending interruptions, usage, ids), taken on the loop's thread in O(messages) pointer copies.
Encoding it (versioned JSON) and writing it happen in the store, off the event loop's thread for the
SQLite store. A record that is unreadable, from an unknown format version or for another run gives a
:class:`CheckpointError` naming the run; a run is never half restored.

Stores: :class:`SQLiteCheckpointStore` (stdlib ``sqlite3``, WAL, one writer thread, each write one
transaction, the file readable by its owner only) and :class:`InMemoryCheckpointStore`. Both also keep
sessions: the messages of a conversation under a session id.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._events import Interruption
from ._messages import Message, Usage
from .exceptions import CheckpointError, ConfigurationError

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "InMemoryCheckpointStore",
    "SQLiteCheckpointStore",
]

FORMAT = "tracedagent.checkpoint"
FORMAT_VERSION = 1
SESSION_FORMAT = "tracedagent.session"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A run's state at one point: everything needed to go on from there, in this or another process."""

    run_id: str
    trace_id: str
    agent: str
    status: str
    messages: tuple[Message, ...]
    turn: int
    usage: Usage
    turn_results: dict[str, Message] = field(default_factory=dict)
    pending: tuple[Interruption, ...] = ()
    approved_tools: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    segment_span_id: str | None = None
    parent_span_id: str | None = None
    paused_at_ns: int | None = None
    step: int = 0
    #: When the run began (its ``RunStarted`` timestamp), so a resume elsewhere can place it in its trace.
    started_ns: int | None = None

    def encode(self) -> bytes:
        record = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "agent": self.agent,
            "status": self.status,
            "messages": [m.to_dict() for m in self.messages],
            "turn": self.turn,
            "usage": self.usage.to_dict(),
            "turn_results": {k: m.to_dict() for k, m in self.turn_results.items()},
            "pending": [
                {"id": p.id, "tool": p.tool, "arguments": p.arguments, "reason": p.reason, "kind": p.kind}
                for p in self.pending
            ],
            "approved_tools": list(self.approved_tools),
            "metadata": self.metadata,
            "session_id": self.session_id,
            "segment_span_id": self.segment_span_id,
            "parent_span_id": self.parent_span_id,
            "paused_at_ns": self.paused_at_ns,
            "step": self.step,
            "started_ns": self.started_ns,
        }
        return json.dumps(record, separators=(",", ":"), default=str).encode()

    @classmethod
    def decode(cls, run_id: str, data: bytes) -> Checkpoint:
        """Read a record; anything wrong with it is a :class:`CheckpointError` naming ``run_id``."""
        try:
            record = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} is corrupted (not valid JSON: {exc}); it cannot be resumed",
                run_id=run_id,
            ) from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CheckpointError(f"the checkpoint of run {run_id!r} is not a tracedagent checkpoint", run_id=run_id)
        version = record.get("version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} has format version {version!r}; this tracedagent reads "
                f"version {FORMAT_VERSION}. Resume it with the tracedagent version that wrote it",
                run_id=run_id,
            )
        if record.get("run_id") != run_id:
            raise CheckpointError(
                f"the checkpoint stored for run {run_id!r} belongs to run {record.get('run_id')!r}", run_id=run_id
            )
        try:
            usage = _dict(record["usage"])
            messages = tuple(_message(m) for m in _list(record["messages"]))
            if not messages:
                raise ValueError("it holds no messages")
            return cls(
                run_id=run_id,
                trace_id=_str(record["trace_id"]),
                agent=_str(record["agent"]),
                status=_status(record["status"]),
                messages=messages,
                turn=_count(record["turn"]),
                usage=Usage(
                    _count(usage["input_tokens"]),
                    _count(usage["output_tokens"]),
                    _count(usage["cache_read_tokens"]),
                    _count(usage["reasoning_tokens"]),
                    _count(usage["requests"]),
                    _bool(usage["estimated"]),
                ),
                turn_results={_str(k): _message(m) for k, m in _dict(record["turn_results"]).items()},
                pending=tuple(_interruption(p) for p in _list(record["pending"])),
                approved_tools=tuple(_str(t) for t in _list(record["approved_tools"])),
                metadata=dict(_dict(record["metadata"])),
                session_id=_optional(_str, record["session_id"]),
                segment_span_id=_optional(_str, record["segment_span_id"]),
                parent_span_id=_optional(_str, record["parent_span_id"]),
                paused_at_ns=_optional(_count, record["paused_at_ns"]),
                step=_count(record["step"]),
                started_ns=_optional(_count, record.get("started_ns")),  # absent in older records
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} is corrupted ({type(exc).__name__}: {exc}); it cannot be resumed",
                run_id=run_id,
            ) from None


# Strict readers: a field of the wrong type is a corrupted record, never a run restored with it.
_STATUSES = frozenset({"running", "interrupted", "completed", "failed", "cancelled"})


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"expected a non-negative integer, found {value!r}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, found {value!r}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, found {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


def _optional(read: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else read(value)


def _status(value: Any) -> str:
    status = _str(value)
    if status not in _STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return status


def _message(value: Any) -> Message:
    data = _dict(value)
    for key in ("content", "tool_call_id", "name", "thinking"):
        _optional(_str, data.get(key))
    _bool(data.get("is_error", False))
    for call in _list(data.get("tool_calls", [])):
        for key in ("id", "name", "arguments"):
            _str(_dict(call)[key])
    return Message.from_dict(data)


def _interruption(value: Any) -> Interruption:
    p = _dict(value)
    kind = p["kind"]
    if kind not in ("approval", "external"):
        raise ValueError(f"unknown interruption kind {kind!r}")
    return Interruption(_str(p["id"]), _str(p["tool"]), _str(p["arguments"]), _str(p["reason"]), kind)


def encode_session(messages: Sequence[Message]) -> bytes:
    return json.dumps(
        {"format": SESSION_FORMAT, "version": FORMAT_VERSION, "messages": [m.to_dict() for m in messages]},
        separators=(",", ":"),
    ).encode()


def decode_session(session_id: str, data: bytes) -> list[Message]:
    try:
        record = json.loads(data)
        if record.get("format") != SESSION_FORMAT or record.get("version") != FORMAT_VERSION:
            raise ValueError(f"format {record.get('format')!r} version {record.get('version')!r}")
        return [Message.from_dict(m) for m in record["messages"]]
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CheckpointError(f"session {session_id!r} cannot be read ({exc})", run_id="") from None


@runtime_checkable
class CheckpointStore(Protocol):
    """Keeps checkpoints by run id and sessions by session id. ``save`` returns the bytes written."""

    name: str

    async def save(self, checkpoint: Checkpoint) -> int: ...

    async def load(self, run_id: str) -> Checkpoint | None: ...

    async def delete(self, run_id: str) -> None: ...

    async def save_session(self, session_id: str, messages: Sequence[Message]) -> None: ...

    async def load_session(self, session_id: str) -> list[Message]: ...


class InMemoryCheckpointStore:
    """Checkpoints in this process's memory (encoded, so they behave exactly like durable ones)."""

    name = "memory"

    def __init__(self) -> None:
        self._runs: dict[str, bytes] = {}
        self._sessions: dict[str, bytes] = {}

    async def save(self, checkpoint: Checkpoint) -> int:
        data = checkpoint.encode()
        self._runs[checkpoint.run_id] = data
        return len(data)

    async def load(self, run_id: str) -> Checkpoint | None:
        data = self._runs.get(run_id)
        return None if data is None else Checkpoint.decode(run_id, data)

    async def delete(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    async def save_session(self, session_id: str, messages: Sequence[Message]) -> None:
        self._sessions[session_id] = encode_session(messages)

    async def load_session(self, session_id: str) -> list[Message]:
        data = self._sessions.get(session_id)
        return [] if data is None else decode_session(session_id, data)

    def raw(self, run_id: str) -> bytes | None:
        """The stored record of ``run_id`` as bytes (for inspection and tests)."""
        return self._runs.get(run_id)

    def put_raw(self, run_id: str, data: bytes) -> None:
        """Store ``data`` as the record of ``run_id`` as it is (for tests of damaged records)."""
        self._runs[run_id] = data


_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_ns INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    updated_ns INTEGER NOT NULL,
    data BLOB NOT NULL
);
"""


class SQLiteCheckpointStore:
    """Checkpoints in a SQLite file (stdlib ``sqlite3``, WAL journal).

    One thread owns the connection and does every read and write, so the event loop never blocks on
    the disk and writes are applied in the order they were made. Each save is one transaction: a crash
    leaves the previous checkpoint or the new one, never a mix. The file is created readable and
    writable by its owner only (mode 0600).
    """

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigurationError(f"checkpoint store path {str(self.path)!r} is a directory; give a file path")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracedagent-checkpoints")
        self._local = threading.local()
        self._pid = os.getpid()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not self.path.exists():
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            except OSError as exc:
                raise CheckpointError(
                    f"checkpoint store {str(self.path)!r} cannot be created ({exc.strerror or exc}); give a path "
                    "in a directory this process can write (Agent(checkpoints=...) or TRACEDAGENT_CHECKPOINTS)",
                    run_id="",
                ) from None
            try:
                connection = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.executescript(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise CheckpointError(
                    f"checkpoint store {str(self.path)!r} cannot be opened ({exc}); is it a SQLite file?", run_id=""
                ) from exc
            self._local.connection = connection
        return connection

    async def _call(self, function: Callable[[], T], run_id: str = "") -> T:
        if os.getpid() != self._pid:  # forked: the parent's thread does not exist here
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracedagent-checkpoints")
            self._local = threading.local()
            self._pid = os.getpid()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function)
        except sqlite3.Error as exc:  # a damaged file ("malformed"), a full disk, a lock held too long
            of_run = f" on the checkpoint of run {run_id!r}" if run_id else ""
            raise CheckpointError(
                f"checkpoint store {str(self.path)!r} failed{of_run}: {exc}; check the file (a damaged file "
                "cannot be read, a full disk cannot be written)",
                run_id=run_id,
            ) from exc

    async def save(self, checkpoint: Checkpoint) -> int:
        def write() -> int:
            data = checkpoint.encode()
            with self._connection() as connection:
                connection.execute(
                    "INSERT INTO checkpoints (run_id, agent, status, version, updated_ns, data)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET"
                    " agent=excluded.agent, status=excluded.status,"
                    " version=excluded.version, updated_ns=excluded.updated_ns, data=excluded.data",
                    (checkpoint.run_id, checkpoint.agent, checkpoint.status, FORMAT_VERSION, time.time_ns(), data),
                )
            return len(data)

        return await self._call(write, checkpoint.run_id)

    async def load(self, run_id: str) -> Checkpoint | None:
        def read() -> bytes | None:
            row = self._connection().execute("SELECT data FROM checkpoints WHERE run_id = ?", (run_id,)).fetchone()
            return None if row is None else _blob(row[0])

        data = await self._call(read, run_id)
        return None if data is None else Checkpoint.decode(run_id, data)

    async def delete(self, run_id: str) -> None:
        def remove() -> None:
            with self._connection() as connection:
                connection.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))

        await self._call(remove, run_id)

    async def save_session(self, session_id: str, messages: Sequence[Message]) -> None:
        snapshot = tuple(messages)

        def write() -> None:
            with self._connection() as connection:
                connection.execute(
                    "INSERT INTO sessions (session_id, updated_ns, data) VALUES (?, ?, ?)"
                    " ON CONFLICT(session_id) DO UPDATE SET updated_ns=excluded.updated_ns, data=excluded.data",
                    (session_id, time.time_ns(), encode_session(snapshot)),
                )

        await self._call(write)

    async def load_session(self, session_id: str) -> list[Message]:
        def read() -> bytes | None:
            row = self._connection().execute("SELECT data FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            return None if row is None else _blob(row[0])

        data = await self._call(read)
        return [] if data is None else decode_session(session_id, data)

    def close(self) -> None:
        """Stop the writer thread (pending writes finish first)."""
        self._executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.path)!r})"


def _blob(value: object) -> bytes:
    """A stored record as bytes; a record someone rewrote as TEXT (or a number) is read the same way."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


def store_from(value: CheckpointStore | str | os.PathLike[str] | None) -> CheckpointStore | None:
    """``Agent(checkpoints=...)``: a store, a SQLite file path, or None."""
    if value is None or isinstance(value, CheckpointStore):
        return value
    if isinstance(value, (str, os.PathLike)):
        return SQLiteCheckpointStore(value)
    raise ConfigurationError(
        f"checkpoints must be a CheckpointStore (SQLiteCheckpointStore, InMemoryCheckpointStore) or a SQLite file "
        f"path, not {value!r}"
    )
