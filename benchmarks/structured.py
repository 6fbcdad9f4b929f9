"""Structured output's cost: a run returning a typed ~1 KB output against the same run returning it as text.

The model is an in-process test model answering with the same ~1 KB of JSON every time, so what is
measured is the loop plus validation, not a network: ``text`` (no ``output_type``), ``native`` (the
JSON is the answer's text, as with OpenAI's ``response_format``; a pydantic model with a nested list),
``tool`` (the output tool, as with ``ScriptedModel``: the arguments are the JSON) and ``stream`` (native,
through ``agent.stream`` with ``PartialOutput`` events, the answer in deltas of 8 characters, for
information). No plugin is registered and installed plugins are not loaded
(``TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD=1``): the bare run is the one the target compares with (issue 18:
a typed 1 KB output adds at most 10%). ``pydantic`` is no run: pydantic-core's ``validate_json`` of the
same JSON into the same model, alone, the floor any typed run pays; ``native`` and ``tool`` are also
given over ``text + pydantic``, which is what the framework itself adds.

Variants run interleaved in rounds, and each figure is the median of the rounds' per-run times, so a
busy neighbour on a shared machine moves every variant alike. ``--instructions`` counts instructions
instead (valgrind's callgrind, as ``instructions.py`` does: each variant in a fresh process with
``--n-low`` and ``--n-high`` runs, the difference divided by the difference of the counts), which the
machine's noise does not move.

    python benchmarks/structured.py                  # 15 rounds x 300 runs
    python benchmarks/structured.py --rounds 5 --runs 100
    python benchmarks/structured.py --instructions   # ~5 min
    python benchmarks/structured.py --instructions --variants text,stream --n-low 20 --n-high 70
    python benchmarks/structured.py --variants add_text,add_native,add_tool   # the bare benchmark's run

``add_text``, ``add_native`` and ``add_tool`` are the bare benchmark's own run (``workload.py``: ``add X
Y Z``, 3 model calls and 2 tool calls) ending in the same ~1 KB answer, as text or typed: "a bare run's
time" in the target's words. ``text``, ``native`` and ``tool`` are a run of one model call, where the
validation of 1 KB is a much larger share.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter

os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # bare means bare: no installed tracer either

from tracedagent import Agent, Message, ModelRequest, PartialOutput, ToolCall
from tracedagent.testing import FunctionModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload as W


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
        **_add_agents(),
    }


def _add_agents() -> dict[str, tuple[Agent, Any]]:
    """The bare benchmark's run (``workload.py``: ``add X Y Z``, 3 model calls and 2 tool calls) whose
    final answer is the same ~1 KB order: as text (``add_text``), or typed (``add_native``, ``add_tool``)."""

    def step(messages: Sequence[Message], final: Any) -> Any:
        results = [m.content for m in messages if m.role == "tool"]
        if len(results) == 2:
            return final
        a = 1 if not results else int(results[0])
        return [ToolCall(f"call_{len(results)}", "add", f'{{"a": {a}, "b": 2}}')]

    def text(messages: Sequence[Message], request: ModelRequest) -> Any:
        return step(messages, TEXT)

    def tool(messages: Sequence[Message], request: ModelRequest) -> Any:
        return step(messages, [ToolCall("call_2", "final_result", TEXT)])

    tools = [W.add]
    return {
        "add_text": (Agent("bench", FunctionModel(text), tools=tools), None),
        "add_native": (Agent("bench", FunctionModel(text, native_output=True), tools=tools, output_type=Order), Order),
        "add_tool": (Agent("bench", FunctionModel(tool), tools=tools, output_type=Order), Order),
    }


VARIANTS = ("text", "native", "tool", "stream", "pydantic", "add_text", "add_native", "add_tool")
_VALIDATE = TypeAdapter(Order).validator.validate_json


async def _round(agent: Agent | None, name: str, runs: int) -> float:
    start = time.perf_counter()
    if agent is None:  # pydantic alone
        for _ in range(runs):
            _VALIDATE(TEXT)
    elif name == "stream":
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


async def _checked(names: Sequence[str]) -> dict[str, Agent | None]:
    """The variants' agents, warmed up, each checked to return what it should."""
    agents = _agents()
    chosen: dict[str, Agent | None] = {}
    for name in names:
        if name == "pydantic":
            assert _VALIDATE(TEXT) == Order(**ORDER)
            chosen[name] = None
        else:
            agent = agents[name][0]
            result = await agent.run("order")
            expected = TEXT if name in ("text", "add_text") else Order(**ORDER)
            assert result.output == expected, (name, result.output)
            chosen[name] = agent
        await _round(chosen[name], name, 20)
    return chosen


def _table(unit: str, figures: dict[str, float], scale: float, digits: int) -> None:
    """Each typed variant against its text run: ``native``/``tool`` against ``text`` (one model call),
    ``add_native``/``add_tool`` against ``add_text`` (the bare benchmark's run, 3 calls and 2 tools)."""
    pydantic = figures.get("pydantic")
    print(f"| variant | {unit} | vs its text run | vs text run + pydantic |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in figures.items():
        base = figures.get("add_text" if name.startswith("add_") else "text")
        if name == "pydantic":
            over = f"{100 * value / figures['text']:.1f}% of text" if "text" in figures else ""
        else:
            over = f"{100 * (value / base - 1):+.1f}%" if base else ""
        typed = name in ("native", "tool", "add_native", "add_tool")
        beyond = f"{100 * (value / (base + pydantic) - 1):+.1f}%" if typed and base and pydantic else ""
        print(f"| {name} | {value * scale:,.{digits}f} | {over} | {beyond} |")
    print("target: a typed 1 KB output at most +10% over the same run returning text (issue 18)")


async def main(rounds: int, runs: int, names: Sequence[str] = VARIANTS) -> None:
    agents = await _checked(names)
    times: dict[str, list[float]] = {name: [] for name in agents}
    for _ in range(rounds):
        for name, agent in agents.items():
            times[name].append(await _round(agent, name, runs))
    print(f"structured output: {len(TEXT)} bytes of JSON, {rounds} rounds x {runs} runs, median per run")
    _table("us/run", {name: statistics.median(values) for name, values in times.items()}, 1e6, 1)


def _child(name: str, runs: int) -> None:
    """Warm up and check the variant, then ``runs`` runs of it; exit at once (no exit handlers)."""

    async def go() -> None:
        agent = (await _checked((name,)))[name]
        await _round(agent, name, runs)

    asyncio.run(go())
    sys.stdout.flush()
    os._exit(0)


def _instructions(name: str, runs: int, workdir: str) -> int:
    out = os.path.join(workdir, f"{name}-{runs}.callgrind")
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
    # one hash seed for every child: string hashing changes dict and set work by a few percent otherwise
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run([*command, "--child", name, str(runs)], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} runs={runs} failed:\n{done.stderr[-3000:]}")
    with open(out) as f:
        match = re.search(r"^summary:\s+(\d+)", f.read(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"no summary line in {out}")
    return int(match.group(1))


def count_instructions(low: int, high: int, names: Sequence[str] = ("text", "native", "tool", "pydantic")) -> None:
    per_run: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            per_run[name] = (_instructions(name, high, workdir) - _instructions(name, low, workdir)) / (high - low)
    print(f"structured output: {len(TEXT)} bytes of JSON, instructions per run (callgrind, {high} - {low} runs)")
    _table("instructions/run", per_run, 1, 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--instructions", action="store_true", help="count instructions with callgrind instead")
    parser.add_argument("--n-low", type=int, default=50)
    parser.add_argument("--n-high", type=int, default=250)
    parser.add_argument("--variants", help=f"which of {VARIANTS} (default: all; with --instructions all but stream)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]))
    elif args.instructions:
        names = args.variants.split(",") if args.variants else [v for v in VARIANTS if v != "stream"]
        count_instructions(args.n_low, args.n_high, names)
    else:
        asyncio.run(main(args.rounds, args.runs, args.variants.split(",") if args.variants else VARIANTS))
