"""The stores that keep checkpoints, and sessions.

A :class:`Checkpoint` is a snapshot of a run's :class:`~tracedagent._state.RunState` (the same class),
taken on the loop's thread in O(messages) pointer copies. Encoding it (versioned JSON) and writing it
happen in the store, off the event loop's thread for the SQLite store.

Stores: :class:`SQLiteCheckpointStore` (stdlib ``sqlite3``, WAL, one writer thread, each write one
transaction, the file readable by its owner only) and :class:`InMemoryCheckpointStore`. Both also keep
sessions: the messages of a conversation under a session id, and list their paused runs
(:meth:`list_paused`, what ``tracedagent runs`` shows).

A store that is also a :class:`ResumeLeaser` (the SQLite store, and ``PostgresCheckpointStore``) gives
each resume a lease on its run: while one process resumes a run, another that resumes it gets a
:class:`CheckpointError` saying it is being resumed elsewhere. A lease has a deadline, renewed while the
segment runs and released when it ends, so the lease of a process that died expires by itself.

The lease is also a fencing token. A segment that holds one (a resume, and a new run from its first
checkpoint on) sets its :class:`Fence` in a context variable, and such a store writes that run's
checkpoint only while the lease is still the segment's: each lease taken has a new holder id, so a
process whose lease expired and was taken over (it was paused, partitioned, or thought dead) gets a
:class:`CheckpointError` from its next save instead of writing over the new owner's checkpoint.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from ._messages import Message
from ._state import FORMAT_VERSION, RunState
from .exceptions import CheckpointError, ConfigurationError

__all__ = [
    "Checkpoint",
    "CheckpointStore",
    "Fence",
    "InMemoryCheckpointStore",
    "PausedRunLister",
    "ResumeLeaser",
    "SQLiteCheckpointStore",
    "list_paused",
]

#: A checkpoint is a saved :class:`RunState`: the run's state object itself, not a copy of its fields.
Checkpoint = RunState

SESSION_FORMAT = "tracedagent.session"

#: How long a resume lease lasts unless renewed (the segment renews it every third of this).
LEASE_S = 30.0

T = TypeVar("T")


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


@runtime_checkable
class PausedRunLister(Protocol):
    """A store that can list its paused runs (``tracedagent runs``). Both built-in stores can; it is a
    protocol of its own so that a store of the user's own with only :class:`CheckpointStore`'s methods
    stays a store."""

    async def list_paused(self, agent: str | None = None) -> list[Checkpoint]: ...


async def list_paused(store: CheckpointStore, agent: str | None = None) -> list[Checkpoint]:
    """The paused runs in ``store`` (of ``agent`` only, if given), oldest pause first, or a
    :class:`ConfigurationError` saying that the store cannot list them."""
    if not isinstance(store, PausedRunLister):
        raise ConfigurationError(
            f"checkpoint store {store!r} cannot list its paused runs: give it an "
            "`async def list_paused(self, agent=None) -> list[Checkpoint]` method"
        )
    return await store.list_paused(agent)


@runtime_checkable
class ResumeLeaser(Protocol):
    """A store that leases a run to one resuming process at a time. A protocol of its own, like
    :class:`PausedRunLister`: a store without it still resumes runs, without that guarantee.

    ``acquire_lease`` takes (or takes over an expired) lease of ``run_id`` for ``holder`` and returns its
    length in seconds, None when the store has no such run, or raises :class:`CheckpointError` when
    another holder's lease has not expired. ``renew_lease`` pushes the deadline back and returns False
    when the lease is no longer ``holder``'s; ``release_lease`` gives it up (if still ``holder``'s).
    """

    async def acquire_lease(self, run_id: str, holder: str) -> float | None: ...

    async def renew_lease(self, run_id: str, holder: str) -> bool: ...

    async def release_lease(self, run_id: str, holder: str) -> None: ...


def leased_elsewhere(run_id: str, remaining_s: float) -> CheckpointError:
    """The error of a resume that finds the run leased to another process."""
    return CheckpointError(
        f"run {run_id!r} is being resumed elsewhere (another process holds its lease for {max(remaining_s, 0.0):.1f} "
        "s more, renewed while it runs); wait for that resume to end, or retry once its lease has expired if "
        "that process died",
        run_id=run_id,
    )


@dataclass(slots=True)
class Fence:
    """The lease a segment holds on its run, as its saves present it to the store: ``holder`` is the
    lease's holder id (new for each lease taken, so it is the fencing token), ``held`` whether the store
    has recorded it (False for a new run until its first checkpoint, which takes the lease)."""

    run_id: str
    holder: str
    held: bool


_fence: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("tracedagent_fence", default=None)


def fence_of(run_id: str) -> Fence | None:
    """The lease the current segment holds on ``run_id``, if any (a run inside a tool has its own)."""
    fence = _fence.get()
    return fence if fence is not None and fence.run_id == run_id else None


def set_fence(fence: Fence | None) -> contextvars.Token[Fence | None]:
    return _fence.set(fence)


def reset_fence(token: contextvars.Token[Fence | None]) -> None:
    _fence.reset(token)


def lease_lost(run_id: str) -> CheckpointError:
    """The error of a save by a segment whose lease another process has taken over."""
    return CheckpointError(
        f"run {run_id!r}: this process lost its lease on the run (it expired and another process took the run "
        "over), so its checkpoint was not written and the other process's is kept; this segment stops here",
        run_id=run_id,
    )


def _paused_order(checkpoint: Checkpoint) -> tuple[int, str]:
    return (checkpoint.paused_at_ns or 0, checkpoint.run_id)


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

    async def list_paused(self, agent: str | None = None) -> list[Checkpoint]:
        """The checkpoints with status ``interrupted`` (of ``agent`` only, if given), oldest pause first."""
        found = [Checkpoint.decode(run_id, data) for run_id, data in list(self._runs.items())]
        paused = [c for c in found if c.status == "interrupted" and (agent is None or c.agent == agent)]
        return sorted(paused, key=_paused_order)

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
CREATE INDEX IF NOT EXISTS checkpoints_by_status ON checkpoints (status, agent);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    updated_ns INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ns INTEGER NOT NULL
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

    def __init__(self, path: str | os.PathLike[str], *, lease_s: float = LEASE_S) -> None:
        if not lease_s > 0:
            raise ConfigurationError(f"lease_s must be a positive number of seconds, not {lease_s!r}")
        #: How long a resume's lease lasts unless renewed (see :class:`ResumeLeaser`).
        self.lease_s = lease_s
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
        """Write ``checkpoint``; inside a segment holding the run's lease (:class:`Fence`), only while the
        lease is still its own (else a :class:`CheckpointError`, and nothing written), renewing it."""
        fence = fence_of(checkpoint.run_id)

        def write() -> int:
            data = checkpoint.encode()
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")  # the file's write lock: no lease changes hands meanwhile
            try:
                now = time.time_ns()
                if fence is not None:
                    run_id = checkpoint.run_id
                    row = connection.execute("SELECT holder FROM leases WHERE run_id = ?", (run_id,)).fetchone()
                    if (row is None and fence.held) or (row is not None and row[0] != fence.holder):
                        raise lease_lost(run_id)
                    connection.execute(
                        "INSERT OR REPLACE INTO leases (run_id, holder, until_ns) VALUES (?, ?, ?)",
                        (run_id, fence.holder, now + int(self.lease_s * 1e9)),
                    )
                connection.execute(
                    "INSERT INTO checkpoints (run_id, agent, status, version, updated_ns, data)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET"
                    " agent=excluded.agent, status=excluded.status,"
                    " version=excluded.version, updated_ns=excluded.updated_ns, data=excluded.data",
                    (checkpoint.run_id, checkpoint.agent, checkpoint.status, FORMAT_VERSION, now, data),
                )
                connection.execute("COMMIT")
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            if fence is not None:
                fence.held = True
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
                connection.execute("DELETE FROM leases WHERE run_id = ?", (run_id,))

        await self._call(remove, run_id)

    async def acquire_lease(self, run_id: str, holder: str) -> float | None:
        """Lease ``run_id`` to ``holder`` (see :class:`ResumeLeaser`). ``BEGIN IMMEDIATE`` takes the
        file's write lock first, so of two processes leasing at once the second sees the first's lease."""

        def take() -> float | None:
            connection = self._connection()
            connection.execute("BEGIN IMMEDIATE")
            try:
                if connection.execute("SELECT 1 FROM checkpoints WHERE run_id = ?", (run_id,)).fetchone() is None:
                    return None
                now = time.time_ns()
                row = connection.execute("SELECT holder, until_ns FROM leases WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None and row[0] != holder and row[1] > now:
                    raise leased_elsewhere(run_id, (row[1] - now) / 1e9)
                connection.execute(
                    "INSERT OR REPLACE INTO leases (run_id, holder, until_ns) VALUES (?, ?, ?)",
                    (run_id, holder, now + int(self.lease_s * 1e9)),
                )
                connection.execute("COMMIT")
                return self.lease_s
            finally:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")

        return await self._call(take, run_id)

    async def renew_lease(self, run_id: str, holder: str) -> bool:
        def renew() -> bool:
            with self._connection() as connection:
                cursor = connection.execute(
                    "UPDATE leases SET until_ns = ? WHERE run_id = ? AND holder = ?",
                    (time.time_ns() + int(self.lease_s * 1e9), run_id, holder),
                )
            return cursor.rowcount == 1

        return await self._call(renew, run_id)

    async def release_lease(self, run_id: str, holder: str) -> None:
        def release() -> None:
            with self._connection() as connection:
                connection.execute("DELETE FROM leases WHERE run_id = ? AND holder = ?", (run_id, holder))

        await self._call(release, run_id)

    async def list_paused(self, agent: str | None = None) -> list[Checkpoint]:
        """The checkpoints with status ``interrupted`` (of ``agent`` only, if given), oldest pause first;
        the status column and its index find them without reading the others."""

        def read() -> list[tuple[str, bytes]]:
            sql = "SELECT run_id, data FROM checkpoints WHERE status = 'interrupted'"
            params: tuple[str, ...] = ()
            if agent is not None:
                sql, params = sql + " AND agent = ?", (agent,)
            rows = self._connection().execute(sql, params).fetchall()
            return [(str(run_id), _blob(data)) for run_id, data in rows]

        found = [Checkpoint.decode(run_id, data) for run_id, data in await self._call(read)]
        return sorted(found, key=_paused_order)

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
