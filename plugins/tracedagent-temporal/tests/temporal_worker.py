"""A worker process for the crash test: ``python temporal_worker.py ADDRESS TASK_QUEUE AGENT_FACTORY``.

It prints ``ready`` once polling and runs until it is killed."""

from __future__ import annotations

import asyncio
import sys

import temporal_agents
from temporalio.client import Client

from tracedagent import load_plugins
from tracedagent_temporal import TemporalAgent


async def main(address: str, task_queue: str, factory: str) -> None:
    load_plugins()  # TRACEDAGENT_PLUGINS (the event log) in this process
    agent = TemporalAgent(getattr(temporal_agents, factory)(), heartbeat_timeout=2.0)
    client = await Client.connect(address)
    async with agent.worker(client, task_queue=task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
