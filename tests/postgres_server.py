"""A throwaway PostgreSQL cluster on loopback for the tests (and the benchmark): ``initdb`` into a
temporary folder, ``pg_ctl start`` on a free port bound to 127.0.0.1 (no Unix socket), ``pg_ctl stop
-m immediate`` at the end.

The binaries are found as ``$TRACEDAGENT_PG_BIN/initdb`` if that is set, else ``initdb`` on PATH, else the
newest ``/usr/lib/postgresql/*/bin`` (where Debian's ``postgresql`` package puts them, off PATH). The
server refuses to run as root, so as root the cluster is made and run as the ``postgres`` user (which
that package creates) through ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

GUARD_S = 60


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    named = os.environ.get("TRACEDAGENT_PG_BIN")
    if named:
        return Path(named)
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_cluster(*, durable: bool = False) -> Iterator[str]:
    """Start a cluster and yield its DSN (superuser ``tracedagent``, trust auth on loopback). Without
    ``durable`` it skips fsync (tests); with it, the server's defaults (the benchmark)."""
    folder = pg_bin()
    if folder is None or not (folder / "initdb").exists():
        pytest.skip("PostgreSQL is not installed: apt-get install -y postgresql (CI installs it)")
    as_user: list[str] = []
    home = Path(tempfile.mkdtemp(prefix="tracedagent-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(home, "postgres", "postgres")
    data, log, port = home / "data", home / "server.log", free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": GUARD_S}
    subprocess.run(
        [
            *as_user,
            str(folder / "initdb"),
            "-D",
            str(data),
            "-U",
            "tracedagent",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        **run,  # type: ignore[arg-type]
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    started = subprocess.run(
        [
            *as_user,
            str(folder / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            options,
            "-w",
            "-t",
            str(GUARD_S),
            "start",
        ],
        capture_output=True,
        text=True,
        timeout=GUARD_S + 10,
    )
    if started.returncode != 0:
        server_log = log.read_text() if log.exists() else ""
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start on port {port}: {started.stderr}\n{server_log}")
    try:
        yield f"postgresql://tracedagent@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(folder / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], **run)  # type: ignore[arg-type]
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of the session's throwaway PostgreSQL cluster (its default database)."""
    with postgres_cluster() as dsn:
        yield dsn


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_dsn(postgres_server: str) -> str:
    """A new, empty database in the session's cluster, for one test: its own schema, its own rows."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a name made above
    return postgres_server.rsplit("/", 1)[0] + "/" + name
