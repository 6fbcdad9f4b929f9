"""The first benchmark workload: "add X Y Z" in 3 model calls and 2 tool calls.

It is the peers' workload (``shared/peers/harness.py``), copied here so the benchmark runs without it:

    user "add X Y Z"
    -> model call 1 asks add(a=X, b=Y)      -> the tool returns X+Y
    -> model call 2 reads that result and asks add(a=X+Y, b=Z)  -> the tool returns X+Y+Z
    -> model call 3 reads that result and answers "The answer is X+Y+Z"

The scripted model is stateless: it decides its step by counting the tool results in the history it is
given, so it is safe under concurrency and proves that the loop handed the tool results back. It
answers at once but yields to the event loop once per call (``asyncio.sleep(0)``), as a network call
would, so concurrent runs really are in flight together.

Three ways to run it:

* :func:`run_handwritten`: the same loop written by hand with plain dicts (the peers' ``bare``
  baseline), the reference every figure is compared with;
* :func:`make_agent`: a tracedagent ``Agent`` with an ``@tool`` and a ``FunctionModel``; run it with
  or without the :class:`NoopPlugin` tracers registered process-wide.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import tracedagent
from tracedagent import Agent, Message, ModelRequest, ModelResponse, ToolCall, Usage, hookimpl, tool
from tracedagent.testing import FunctionModel

__all__ = [
    "EVENTS_PER_RUN",
    "MODEL_CALLS_PER_RUN",
    "NoopPlugin",
    "TOOL_CALLS_PER_RUN",
    "expected_text",
    "make_agent",
    "prompt_for",
    "run_handwritten",
    "script_step",
    "tool_calls",
]

MODEL_CALLS_PER_RUN = 3
TOOL_CALLS_PER_RUN = 2
#: run start/end + 3 x model call start/end + 2 x tool call start/end
EVENTS_PER_RUN = 2 + 2 * MODEL_CALLS_PER_RUN + 2 * TOOL_CALLS_PER_RUN

_NUMS = re.compile(r"-?\d+")
_tool_calls = [0]


def tool_calls() -> int:
    """How many times a tool body ran in this process (both implementations count)."""
    return _tool_calls[0]


# -------------------------------------------------------------------- the workload (as in harness.py)


def prompt_for(i: int) -> tuple[str, int]:
    x, y, z = i % 1000, 3, 7
    return f"add {x} {y} {z}", x + y + z


def expected_text(i: int) -> str:
    return f"The answer is {prompt_for(i)[1]}"


def script_step(user_text: str, tool_results: list[Any]) -> tuple[str, Any]:
    """The scripted model's brain, framework-independent: ``("tool", {"a":..,"b":..})`` or
    ``("text", "The answer is N")``."""
    x, y, z = (int(v) for v in _NUMS.findall(user_text)[:3])
    n = len(tool_results)
    if n == 0:
        return "tool", {"a": x, "b": y}
    if n == 1:
        r1 = int(tool_results[0])
        assert r1 == x + y, (r1, x, y)
        return "tool", {"a": r1, "b": z}
    r2 = int(tool_results[1])
    assert r2 == x + y + z, (r2, x, y, z)
    return "text", f"The answer is {r2}"


# ----------------------------------------------------------------- the hand-written loop (reference)


async def _hand_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    await asyncio.sleep(0)
    user = messages[0]["content"]
    tool_results = [m["content"] for m in messages if m["role"] == "tool"]
    kind, payload = script_step(user, tool_results)
    if kind == "tool":
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": f"call_{len(tool_results)}", "name": "add", "arguments": payload}],
        }
    return {"role": "assistant", "content": payload}


async def _hand_add(a: int, b: int) -> int:
    _tool_calls[0] += 1
    return a + b


_HAND_TOOLS = {"add": _hand_add}


async def run_handwritten(i: int) -> str:
    """The peers' ``bare`` baseline: the agent loop by hand, plain dicts, no validation, no events."""
    text, _ = prompt_for(i)
    messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
    while True:
        resp = await _hand_model(messages)
        messages.append(resp)
        calls = resp.get("tool_calls")
        if not calls:
            return resp["content"]  # type: ignore[no-any-return]
        for c in calls:
            r = await _HAND_TOOLS[c["name"]](**c["arguments"])
            messages.append({"role": "tool", "tool_call_id": c["id"], "content": r})


# -------------------------------------------------------------------------------- tracedagent


@tool
async def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    _tool_calls[0] += 1
    return a + b


_USAGE = Usage(input_tokens=10, output_tokens=5, requests=1)


def _model_function(messages: Sequence[Message], request: ModelRequest) -> ModelResponse:
    """The same brain behind tracedagent's ``FunctionModel``. It answers as a provider does: the tool
    arguments as JSON text, and the usage reported (so nothing is estimated by the framework)."""
    user = messages[0].content or ""
    tool_results = [m.content for m in messages if m.role == "tool"]
    kind, payload = script_step(user, tool_results)
    if kind == "tool":
        # What json.dumps(payload) gives, without paying for json.dumps in the "model".
        arguments = f'{{"a": {payload["a"]}, "b": {payload["b"]}}}'
        call = ToolCall(f"call_{len(tool_results)}", "add", arguments)
        return ModelResponse(Message("assistant", None, (call,)), _USAGE, "tool_calls")
    return ModelResponse(Message("assistant", payload), _USAGE, "stop")


def make_agent() -> Agent:
    """The workload as a tracedagent agent. ``FunctionModel`` yields to the loop once per call."""
    return Agent("bench", FunctionModel(_model_function, name="scripted"), tools=[add], max_turns=5)


# ---------------------------------------------------------------------------------------- plugins


class NoopPlugin:
    """A tracer that implements every observer hook and does nothing: the cost of dispatch alone."""

    @hookimpl
    def on_run_start(self, event: tracedagent.RunStarted) -> None:
        pass

    @hookimpl
    def on_run_end(self, event: tracedagent.RunEnded) -> None:
        pass

    @hookimpl
    def on_model_call_start(self, event: tracedagent.ModelCallStarted) -> None:
        pass

    @hookimpl
    def on_model_call_end(self, event: tracedagent.ModelCallEnded) -> None:
        pass

    @hookimpl
    def on_tool_call_start(self, event: tracedagent.ToolCallStarted) -> None:
        pass

    @hookimpl
    def on_tool_call_end(self, event: tracedagent.ToolCallEnded) -> None:
        pass

    @hookimpl
    def on_interrupt(self, event: tracedagent.RunInterrupted) -> None:
        pass

    @hookimpl
    def on_resume(self, event: tracedagent.RunResumed) -> None:
        pass

    @hookimpl
    def on_compaction(self, event: tracedagent.ContextCompacted) -> None:
        pass

    @hookimpl
    def on_checkpoint(self, event: tracedagent.CheckpointSaved) -> None:
        pass

    @hookimpl
    def on_circuit_change(self, event: tracedagent.CircuitStateChanged) -> None:
        pass

    @hookimpl
    def on_retry(self, event: tracedagent.RetryScheduled) -> None:
        pass
