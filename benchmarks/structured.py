"""Structured output's cost: a run returning a typed ~1 KB output against the same run returning it as text.

The model is an in-process test model answering with the same ~1 KB of JSON every time, so what is
measured is the loop plus validation, not a network: ``text`` (no ``output_type``), ``native`` (the
JSON is the answer's text, as with OpenAI's ``response_format``; a pydantic model with a nested list),
``tool`` (the output tool, as with ``ScriptedModel``: the arguments are the JSON) and ``stream`` (native,
through ``agent.stream`` with ``PartialOutput`` events, for information). No plugin is registered: the
bare run is the one the target compares with (issue 18: a typed 1 KB output adds at most 10%).

Variants run interleaved in rounds, and each figure is the median of the rounds' per-run times, so a
busy neighbour on a shared machine moves every variant alike.

    python benchmarks/structured.py                  # 15 rounds x 300 runs
    python benchmarks/structured.py --rounds 5 --runs 100

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from tracedagent import Agent, Message, ModelRequest, PartialOutput, ToolCall
from tracedagent.testing import FunctionModel


class Item(BaseModel):
    sku: str
    title: str
    quantity: int
    price: float
    tags: list[str]


class Order(BaseModel):
    order_id: str
    customer: str
    items: list[Item]
    note: str


ORDER = {
    "order_id": "ord-000123",
    "customer": "Ada Lovelace",
    "items": [
        {
            "sku": f"sku-{i:04d}",
            "title": f"Item number {i}",
            "quantity": i,
            "price": 9.5 + i,
            "tags": ["tag-a", "tag-b"],
        }
        for i in range(8)
    ],
    "note": "Leave at the door, please. " * 2,
}
TEXT = json.dumps(ORDER)


def _agents() -> dict[str, tuple[Agent, Any]]:
    def text(messages: Sequence[Message], request: ModelRequest) -> str:
        return TEXT

    def tool(messages: Sequence[Message], request: ModelRequest) -> list[ToolCall]:
        return [ToolCall("call_1", "final_result", TEXT)]

    chunks = max(1, len(TEXT) // 8)  # about what a provider streams: a few characters a delta
    return {
        "text": (Agent("bench", FunctionModel(text)), None),
        "native": (Agent("bench", FunctionModel(text, native_output=True), output_type=Order), Order),
        "tool": (Agent("bench", FunctionModel(tool), output_type=Order), Order),
        "stream": (Agent("bench", FunctionModel(text, native_output=True, chunks=chunks), output_type=Order), Order),
    }


async def _round(agent: Agent, name: str, runs: int) -> float:
    start = time.perf_counter()
    if name == "stream":
        for _ in range(runs):
            partials = 0
            async for event in agent.stream("order"):
                partials += isinstance(event, PartialOutput)
            assert partials, "no partial output was streamed"
    else:
        for _ in range(runs):
            result = await agent.run("order")
            assert result.status == "completed"
    return (time.perf_counter() - start) / runs


async def main(rounds: int, runs: int) -> None:
    agents = _agents()
    for name, (agent, _) in agents.items():  # warm-up, and a check that each variant returns what it should
        result = await agent.run("order")
        expected = TEXT if name == "text" else Order(**ORDER)
        assert result.output == expected, (name, result.output)
        await _round(agent, name, 20)
    times: dict[str, list[float]] = {name: [] for name in agents}
    for _ in range(rounds):
        for name, (agent, _) in agents.items():
            times[name].append(await _round(agent, name, runs))
    base = statistics.median(times["text"])
    print(f"structured output: {len(TEXT)} bytes of JSON, {rounds} rounds x {runs} runs, median per run")
    print(f"{'variant':<8} {'us/run':>9} {'vs text':>9}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<8} {median * 1e6:>9.1f} {100 * (median / base - 1):>+8.1f}%")
    print("target: native and tool at most +10% over text (issue 18)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.runs))
