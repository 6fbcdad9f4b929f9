"""Agents the tests run on Temporal; importable by a worker subprocess (``python temporal_worker.py``).

A tool's side effects go to the file named by ``TD_SIDE_EFFECTS`` (one line per start and per end), so a
test sees how many times a tool really ran, in any process."""

from __future__ import annotations

import asyncio
import os

from tracedagent import Agent, tool
from tracedagent.testing import ScriptedModel


def _note(line: str) -> None:
    path = os.environ.get("TD_SIDE_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    _note(f"add {a} {b}")
    return a + b


@tool(needs_approval=True)
def refund(order: str) -> str:
    """Refund an order (a person approves it)."""
    _note(f"refund {order}")
    return f"refunded {order}"


@tool(timeout=60)
async def slow_charge(order: str) -> str:
    """Charge an order; slow, so a test can kill its worker while it runs."""
    _note(f"charge-start {order}")
    await asyncio.sleep(float(os.environ.get("TD_CHARGE_S", "0")))
    _note(f"charge-done {order}")
    return f"charged {order}"


def math_agent() -> Agent:
    return Agent(
        "math",
        ScriptedModel(
            [[("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})], ("add", {"a": 3, "b": 7}), "10"], per_run=True
        ),
        tools=[add],
    )


def refund_agent() -> Agent:
    return Agent("refunds", ScriptedModel([("refund", {"order": "A1"}), "refund done"], per_run=True), tools=[refund])


def charge_agent() -> Agent:
    return Agent(
        "charges", ScriptedModel([("slow_charge", {"order": "B2"}), "charged"], per_run=True), tools=[slow_charge]
    )
