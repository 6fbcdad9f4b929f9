"""Handoffs and agents as tools through the real langsmith SDK, to the capture server on loopback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from langsmith_server import CaptureServer
from ls_support import MakeTracer, assert_well_formed, by_type, norm

from tracedagent import Agent, Usage
from tracedagent.testing import ScriptedModel, Step
from tracedagent_langsmith import trace_uuid

pytestmark = pytest.mark.integration

GUARD_S = 60.0  # only a guard against hanging; never asserted on


def test_a_handoff_is_a_run_event_and_a_sub_agent_a_child_of_its_tool_run(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    point_at(server.url)
    tracer = make_tracer()
    researcher = Agent("researcher", ScriptedModel([Step("Paris.", usage=Usage(7, 3, requests=1))]), plugins=[tracer])
    billing = Agent(
        "billing",
        ScriptedModel(
            [
                Step(tool_calls=[("researcher", {"input": "capital?"})], usage=Usage(20, 2, requests=1)),
                Step("Paris, refunded.", usage=Usage(30, 5, requests=1)),
            ]
        ),
        tools=[researcher.as_tool()],
    )
    triage = Agent(
        "triage",
        ScriptedModel([Step(tool_calls=[("transfer_to_billing", {})], usage=Usage(10, 1, requests=1))]),
        handoffs=[billing],
        plugins=[tracer],
    )

    result = triage.run_sync("refund and tell me the capital")
    assert tracer.flush(GUARD_S), "the tracer did not flush within the guard"

    runs: dict[str, Any] = server.runs()
    assert_well_formed(runs)
    assert {norm(r["trace_id"]) for r in runs.values()} == {str(trace_uuid(result.trace_id))}
    root = runs[str(trace_uuid(result.trace_id))]
    handoffs = [e for e in root["events"] if e["name"] == "handoff"]
    assert [e["kwargs"] for e in handoffs] == [{"from_agent": "triage", "to_agent": "billing"}]
    (sub,) = [r for r in by_type(runs, "chain") if r is not root]
    (call,) = [r for r in by_type(runs, "tool") if r["name"] == "researcher"]
    assert norm(sub["parent_run_id"]) == norm(call["id"])
    assert norm(call["parent_run_id"]) == norm(root["id"])
    # each llm run carries its own call's usage; the root's totals include the sub-agent's run once
    llm_tokens = sum(r["outputs"]["usage_metadata"]["input_tokens"] for r in by_type(runs, "llm"))
    assert llm_tokens == result.usage.input_tokens == 67
    assert root["outputs"]["usage"]["input_tokens"] == 67
    assert sub["outputs"]["usage"]["input_tokens"] == 7
