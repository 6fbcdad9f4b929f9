"""``PostgresCheckpointStore``: checkpoints and sessions in PostgreSQL, for runs shared by many hosts.

psycopg 3 (``pip install "tracedagent[postgres]"``) is imported when a store is built, never by
``import tracedagent``. Like the SQLite store, the event loop never waits on the database: a small pool
of threads, each with its own connection (autocommit: each write is one transaction), does every read
and write, so a store works from any event loop (``run_sync`` makes a new one each time).

The schema is created on first use, under a transaction-scoped advisory lock so that hosts starting
together create it once, and versioned in ``tracedagent_schema``: a database whose schema is newer than
this tracedagent knows is refused with a :class:`CheckpointError`, and left untouched.

Resumes are leased (:class:`~tracedagent._checkpoint.ResumeLeaser`) with two columns of the run's row:
``UPDATE ... SET lease_holder = me, lease_until = now() + lease WHERE lease_holder IS NULL OR
lease_until < now() RETURNING``. Row locking makes that an atomic test-and-set across hosts, and the
deadline uses the server's clock, so hosts' clocks need not agree. The holder id is the fencing token:
a save made under a lease writes the row only ``WHERE lease_holder = me``, so a process whose lease was
taken over cannot write over the new owner's checkpoint (see :class:`~tracedagent._checkpoint.Fence`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ._checkpoint import (
    LEASE_S,
    Checkpoint,
    _paused_order,
    decode_session,
    encode_session,
    fence_of,
    lease_lost,
    leased_elsewhere,
)
from ._messages import Message
from ._state import FORMAT_VERSION
from .exceptions import CheckpointError, ConfigurationError

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "PostgresCheckpointStore"]

#: The version of the tables this module reads and writes (``tracedagent_schema.version``).
SCHEMA_VERSION = 1
#: The advisory lock key under which the schema is created or checked (any constant; "tdschema").
_SCHEMA_LOCK = 0x7464736368656D61

_SCHEMA_V1 = (
    """CREATE TABLE tracedagent_checkpoints (
        run_id text PRIMARY KEY,
        agent text NOT NULL,
        status text NOT NULL,
        version integer NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        data bytea NOT NULL,
        lease_holder text,
        lease_until timestamptz
    )""",
    "CREATE INDEX tracedagent_checkpoints_by_status ON tracedagent_checkpoints (status, agent)",
    """CREATE TABLE tracedagent_sessions (
        session_id text PRIMARY KEY,
        updated_at timestamptz NOT NULL DEFAULT now(),
        data bytea NOT NULL
    )""",
)

_SAVE = (
    "INSERT INTO tracedagent_checkpoints (run_id, agent, status, version, data)"
    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET"
    " agent = EXCLUDED.agent, status = EXCLUDED.status, version = EXCLUDED.version,"
    " updated_at = now(), data = EXCLUDED.data"
)
#: A save under a lease: the UPDATE's WHERE is the fence (row locking makes it atomic with a takeover).
_SAVE_FENCED = (
    "INSERT INTO tracedagent_checkpoints (run_id, agent, status, version, data, lease_holder, lease_until)"
    " VALUES (%s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT (run_id) DO UPDATE SET"
    " agent = EXCLUDED.agent, status = EXCLUDED.status, version = EXCLUDED.version,"
    " updated_at = now(), data = EXCLUDED.data, lease_until = EXCLUDED.lease_until"
    " WHERE tracedagent_checkpoints.lease_holder = EXCLUDED.lease_holder"
)

T = TypeVar("T")


class PostgresCheckpointStore:
    """Checkpoints and sessions in a PostgreSQL database, shared by every host that names it.

    ``dsn`` is a libpq connection string or URL (``postgresql://user:password@host:5432/dbname``).
    ``max_connections`` bounds the connections (and threads) this store opens; ``lease_s`` is how long a
    resume's lease lasts unless renewed (a resume renews it every third of that while it runs).
    """

    name = "postgres"

    def __init__(
        self, dsn: str, *, max_connections: int = 4, lease_s: float = LEASE_S, connect_timeout_s: int = 10
    ) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigurationError(
                'PostgresCheckpointStore needs psycopg 3: pip install "tracedagent[postgres]"'
            ) from None
        self._psycopg = psycopg
        if not isinstance(dsn, str):
            raise ConfigurationError(f"PostgresCheckpointStore needs a DSN string, not {dsn!r}")
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(
                f"PostgresCheckpointStore: the DSN cannot be parsed ({_first_line(exc)}); give a libpq connection "
                "string ('host=... dbname=...') or URL ('postgresql://user@host:5432/dbname')"
            ) from None
        if isinstance(max_connections, bool) or not isinstance(max_connections, int) or max_connections < 1:
            raise ConfigurationError(f"max_connections must be a whole number >= 1, not {max_connections!r}")
        if not lease_s > 0:
            raise ConfigurationError(f"lease_s must be a positive number of seconds, not {lease_s!r}")
        self.dsn = dsn
        self.lease_s = float(lease_s)
        self.max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        #: Where the database is, without the password (for messages and repr).
        self.where = _where(params)
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="tracedagent-pg")
        self._local = threading.local()
        self._open: list[psycopg.Connection[Any]] = []
        self._pid = os.getpid()

    # --------------------------------------------------------------------------- connections, schema

    def _connection(self) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if connection is not None and not connection.closed:
            return connection
        psycopg = self._psycopg
        try:
            connection = psycopg.connect(
                self.dsn, autocommit=True, connect_timeout=self._connect_timeout_s, application_name="tracedagent"
            )
        except psycopg.Error as exc:
            raise CheckpointError(
                f"checkpoint store {self!r} cannot connect to PostgreSQL ({_first_line(exc)}); check the DSN and "
                "that the server is running and reachable. Nothing was read or written",
                run_id="",
            ) from None
        try:
            self._ensure_schema(connection)
        except BaseException:
            connection.close()
            raise
        self._local.connection = connection
        self._open.append(connection)
        return connection

    def _ensure_schema(self, connection: psycopg.Connection[Any]) -> None:
        """Create the tables on first use, or check that their version is one this module reads."""
        with self._schema_lock:
            if self._schema_ready:
                return
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS tracedagent_schema"
                    " (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL)"
                )
                row = connection.execute("SELECT version FROM tracedagent_schema WHERE id = 1").fetchone()
                if row is None:
                    for statement in _SCHEMA_V1:
                        connection.execute(statement)
                    connection.execute("INSERT INTO tracedagent_schema (id, version) VALUES (1, %s)", (SCHEMA_VERSION,))
                elif row[0] > SCHEMA_VERSION:
                    raise CheckpointError(
                        f"checkpoint store {self!r}: the database's tracedagent schema is version {row[0]}, newer "
                        f"than this tracedagent knows (version {SCHEMA_VERSION}); upgrade tracedagent on this host. "
                        "The database was not changed",
                        run_id="",
                    )
            self._schema_ready = True

    async def _call(self, function: Callable[[psycopg.Connection[Any]], T], run_id: str = "") -> T:
        if os.getpid() != self._pid:  # forked: the parent's threads and connections are not ours
            self._start()

        def call() -> T:
            connection = self._connection()
            try:
                return function(connection)
            except self._psycopg.OperationalError:  # the connection may be gone: open a new one next time
                self._local.connection = None
                connection.close()
                raise

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except self._psycopg.Error as exc:
            of_run = f" on the checkpoint of run {run_id!r}" if run_id else ""
            raise CheckpointError(
                f"checkpoint store {self!r} failed{of_run}: {_first_line(exc)}", run_id=run_id
            ) from exc

    # ---------------------------------------------------------------------------------- checkpoints

    async def save(self, checkpoint: Checkpoint) -> int:
        """Write ``checkpoint``: one statement. Inside a segment holding the run's lease (:class:`Fence`)
        the row is written only while ``lease_holder`` is still the segment's (the fencing token), and the
        lease is renewed with it; a new run's first checkpoint takes the lease. Else a
        :class:`CheckpointError`, and nothing is written."""
        fence = fence_of(checkpoint.run_id)
        row = (checkpoint.run_id, checkpoint.agent, checkpoint.status, FORMAT_VERSION)

        def write(connection: psycopg.Connection[Any]) -> int:
            data = checkpoint.encode()
            if fence is None:
                connection.execute(_SAVE, (*row, data))
                return len(data)
            cursor = connection.execute(_SAVE_FENCED, (*row, data, fence.holder, self.lease_s))
            if cursor.rowcount != 1:  # the row's lease is another holder's: ours was taken over
                raise lease_lost(checkpoint.run_id)
            fence.held = True
            return len(data)

        return await self._call(write, checkpoint.run_id)

    async def load(self, run_id: str) -> Checkpoint | None:
        def read(connection: psycopg.Connection[Any]) -> bytes | None:
            row = connection.execute("SELECT data FROM tracedagent_checkpoints WHERE run_id = %s", (run_id,)).fetchone()
            return None if row is None else bytes(row[0])

        data = await self._call(read, run_id)
        return None if data is None else Checkpoint.decode(run_id, data)

    async def delete(self, run_id: str) -> None:
        def remove(connection: psycopg.Connection[Any]) -> None:
            connection.execute("DELETE FROM tracedagent_checkpoints WHERE run_id = %s", (run_id,))

        await self._call(remove, run_id)

    async def list_paused(self, agent: str | None = None) -> list[Checkpoint]:
        """The checkpoints with status ``interrupted`` (of ``agent`` only, if given), oldest pause first."""

        def read(connection: psycopg.Connection[Any]) -> list[tuple[str, bytes]]:
            if agent is None:
                cursor = connection.execute(
                    "SELECT run_id, data FROM tracedagent_checkpoints WHERE status = 'interrupted'"
                )
            else:
                cursor = connection.execute(
                    "SELECT run_id, data FROM tracedagent_checkpoints WHERE status = 'interrupted' AND agent = %s",
                    (agent,),
                )
            return [(str(run_id), bytes(data)) for run_id, data in cursor.fetchall()]

        found = [Checkpoint.decode(run_id, data) for run_id, data in await self._call(read)]
        return sorted(found, key=_paused_order)

    # ----------------------------------------------------------------------------------------- leases

    async def acquire_lease(self, run_id: str, holder: str) -> float | None:
        """Lease ``run_id`` to ``holder`` for ``lease_s`` (see :class:`ResumeLeaser`); the row lock the
        UPDATE takes makes two hosts' attempts at the same moment one winner and one
        :class:`CheckpointError`."""

        def take(connection: psycopg.Connection[Any]) -> float | None:
            won = connection.execute(
                "UPDATE tracedagent_checkpoints SET lease_holder = %s,"
                " lease_until = now() + make_interval(secs => %s)"
                " WHERE run_id = %s AND (lease_holder IS NULL OR lease_holder = %s OR lease_until < now())"
                " RETURNING 1",
                (holder, self.lease_s, run_id, holder),
            ).fetchone()
            if won is not None:
                return self.lease_s
            row = connection.execute(
                "SELECT EXTRACT(EPOCH FROM lease_until - now()) FROM tracedagent_checkpoints WHERE run_id = %s",
                (run_id,),
            ).fetchone()
            if row is None:
                return None
            raise leased_elsewhere(run_id, float(row[0] or 0.0))

        return await self._call(take, run_id)

    async def renew_lease(self, run_id: str, holder: str) -> bool:
        def renew(connection: psycopg.Connection[Any]) -> bool:
            cursor = connection.execute(
                "UPDATE tracedagent_checkpoints SET lease_until = now() + make_interval(secs => %s)"
                " WHERE run_id = %s AND lease_holder = %s",
                (self.lease_s, run_id, holder),
            )
            return cursor.rowcount == 1

        return await self._call(renew, run_id)

    async def release_lease(self, run_id: str, holder: str) -> None:
        def release(connection: psycopg.Connection[Any]) -> None:
            connection.execute(
                "UPDATE tracedagent_checkpoints SET lease_holder = NULL, lease_until = NULL"
                " WHERE run_id = %s AND lease_holder = %s",
                (run_id, holder),
            )

        await self._call(release, run_id)

    # --------------------------------------------------------------------------------------- sessions

    async def save_session(self, session_id: str, messages: Sequence[Message]) -> None:
        snapshot = tuple(messages)

        def write(connection: psycopg.Connection[Any]) -> None:
            connection.execute(
                "INSERT INTO tracedagent_sessions (session_id, data) VALUES (%s, %s)"
                " ON CONFLICT (session_id) DO UPDATE SET updated_at = now(), data = EXCLUDED.data",
                (session_id, encode_session(snapshot)),
            )

        await self._call(write)

    async def load_session(self, session_id: str) -> list[Message]:
        def read(connection: psycopg.Connection[Any]) -> bytes | None:
            row = connection.execute(
                "SELECT data FROM tracedagent_sessions WHERE session_id = %s", (session_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        data = await self._call(read)
        return [] if data is None else decode_session(session_id, data)

    def close(self) -> None:
        """Finish pending work and close the connections."""
        self._executor.shutdown(wait=True)
        for connection in self._open:
            connection.close()
        self._open.clear()

    def __repr__(self) -> str:
        return f"PostgresCheckpointStore({self.where!r})"


def _where(params: dict[str, Any]) -> str:
    """``postgresql://user@host:port/dbname`` from parsed DSN parameters, never the password."""
    user = f"{params['user']}@" if params.get("user") else ""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname', '')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
