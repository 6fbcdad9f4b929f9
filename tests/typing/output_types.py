"""What type checkers see of an agent's output; ``tests/test_typing.py`` runs mypy on this file.

Not run by pytest (no test here): every line is a claim mypy checks with ``assert_type``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, assert_type

from pydantic import BaseModel
from typing_extensions import TypedDict

from tracedagent import Agent, FinalResult, RunResult
from tracedagent.testing import ScriptedModel


class Trip(BaseModel):
    city: str
    days: int


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


model = ScriptedModel(["hi"])


async def text_agent() -> None:
    agent = Agent("chat", model)
    assert_type(agent, Agent[str])
    result = await agent.run("hi")
    assert_type(result, RunResult[str])
    assert_type(result.output, str | None)
    assert_type(agent.run_sync("hi"), RunResult[str])
    assert_type(await agent.resume("run-id"), RunResult[str])
    assert_type(agent.resume_sync("run-id", {"call": True}), RunResult[str])
    # one run asks for a type of its own
    assert_type(await agent.run("count", output_type=int), RunResult[int])
    assert_type(agent.run_sync("count", output_type=list[int]).output, list[int] | None)


async def typed_agents() -> None:
    trips = Agent("trips", model, output_type=Trip)
    assert_type(trips, Agent[Trip])
    result = await trips.run("Plan a trip")
    assert_type(result, RunResult[Trip])
    assert_type(result.output, Trip | None)
    assert_type(trips.run_sync("Plan a trip").output, Trip | None)
    assert_type(await trips.resume("run-id"), RunResult[Trip])
    assert_type(trips.resume_sync("run-id"), RunResult[Trip])
    assert_type(await trips.run("Where?", output_type=Point), RunResult[Point])
    assert_type(Agent("p", model, output_type=Point).run_sync("x"), RunResult[Point])
    assert_type(Agent("m", model, output_type=Movie).run_sync("x"), RunResult[Movie])
    assert_type(Agent("l", model, output_type=list[Movie]).run_sync("x"), RunResult[list[Movie]])
    assert_type(Agent("n", model, output_type=int).run_sync("x").output, int | None)
    # not a class (a union): any output
    assert_type(Agent("u", model, output_type=int | str), Agent[Any])
    # handoffs and agents as tools take agents of any output
    Agent("triage", model, handoffs=[trips, Agent("chat", model), lambda: trips], tools=[trips.as_tool()])


def annotations_written_before_agents_were_generic(agent: Agent, result: RunResult) -> None:
    # a bare Agent or RunResult is any output, so code annotated that way keeps checking
    assert_type(result.output, Any | None)
    kept: RunResult = Agent("trips", model, output_type=Trip).run_sync("x")
    also: Agent = Agent("trips", model, output_type=Trip)
    text: str | None = Agent("chat", model).run_sync("hi").output
    assert_type(agent.run_sync("hi"), RunResult[Any])
    print(kept, also, text)


async def streamed(agent: Agent[Trip]) -> None:
    async for event in agent.stream("Plan a trip"):
        if isinstance(event, FinalResult):
            assert_type(event.result, RunResult[Any])
