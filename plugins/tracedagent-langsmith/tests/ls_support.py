"""Agents, a fake LangSmith client and tree helpers shared by the LangSmith tests."""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tracedagent import Agent, ToolCall, Usage, tool
from tracedagent.testing import ScriptedModel, Step

#: Put in every piece of content a run carries: it must never reach LangSmith without content capture.
SENTINEL = "SENTINEL-7f3a-content"
#: The API key the tests give the SDK; it must appear only in the x-api-key header.
API_KEY = "lsv2_pt_capture-test-key-0f9e8d7c6b5a"
#: The conftest's ``make_tracer`` fixture: builds a LangSmithTracer (shut down after the test).
MakeTracer = Callable[..., Any]


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"{SENTINEL} value of {key}"


@tool
def broken(key: str) -> str:
    """Always fails."""
    raise ValueError(f"{SENTINEL} cannot read {key}")


@tool(needs_approval=True)
def deploy(target: str) -> str:
    """Deploy (needs a person's approval)."""
    return f"{SENTINEL} deployed {target}"


def calc_agent(*plugins: Any, name: str = "calc", model_name: str = "gpt-test") -> Agent:
    """One tool call (ok), one failing tool call, then the answer; usage with cache and reasoning."""
    model = ScriptedModel(
        [
            Step(
                text=f"{SENTINEL} thinking aloud",
                tool_calls=[
                    ToolCall.of("c1", "lookup", {"key": SENTINEL}),
                    ToolCall.of("c2", "broken", {"key": SENTINEL}),
                ],
                usage=Usage(100, 20, cache_read_tokens=30, reasoning_tokens=7, requests=1),
            ),
            Step(text=f"{SENTINEL} the answer", usage=Usage(150, 10, requests=1)),
        ],
        name=model_name,
        provider="openai",
    )
    return Agent(name, model, tools=[lookup, broken], plugins=list(plugins))


def approval_agent(*plugins: Any, store: Any = None, resuming: bool = False) -> Agent:
    """Asks to deploy (pauses for approval), then answers once resumed. ``resuming``: the model of a
    process that only resumes the run (its script starts at the answer)."""
    steps = [
        Step(tool_calls=[ToolCall.of("d1", "deploy", {"target": SENTINEL})], usage=Usage(40, 8, requests=1)),
        Step(text=f"{SENTINEL} deployed", usage=Usage(60, 5, requests=1)),
    ]
    model = ScriptedModel(steps[1:] if resuming else steps, name="gpt-test", provider="openai")
    return Agent("ops", model, tools=[deploy], plugins=list(plugins), checkpoints=store)


def failing_model_agent(*plugins: Any) -> Agent:
    model = ScriptedModel([Step(error=RuntimeError(f"{SENTINEL} provider exploded"))], name="gpt-test")
    return Agent("fragile", model, plugins=list(plugins))


class FakeClient:
    """Records ``create_run`` / ``update_run`` / ``flush`` calls (deep copies: the SDK serialises at once)
    and the thread each was made on."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.threads: dict[str, set[str]] = {}
        self.fail = fail
        self._lock = threading.Lock()

    def _record(self, kind: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append((kind, copy.deepcopy(fields)))
            self.threads.setdefault(kind, set()).add(threading.current_thread().name)
        if self.fail and kind != "flush":
            raise RuntimeError(f"fake client failing on purpose ({kind})")

    def create_run(self, name: str, inputs: dict[str, Any], run_type: Any, **kwargs: Any) -> None:
        self._record("create", {"name": name, "inputs": inputs, "run_type": run_type, **kwargs})

    def update_run(self, run_id: Any, **kwargs: Any) -> None:
        self._record("update", {"id": run_id, **kwargs})

    def flush(self, timeout: float | None = None) -> None:
        self._record("flush", {"timeout": timeout})

    def runs(self) -> dict[str, dict[str, Any]]:
        return merge_runs(self.calls)


def merge_runs(calls: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Runs as LangSmith holds them: created, then changed by each patch's non-null fields."""
    runs: dict[str, dict[str, Any]] = {}
    for kind, fields in calls:
        if kind == "flush":
            continue
        run_id = str(fields["id"])
        if kind == "create":
            runs[run_id] = dict(fields)
        else:
            runs.setdefault(run_id, {}).update({k: v for k, v in fields.items() if v is not None})
    return runs


def norm(value: Any) -> str | None:
    """A run id or parent id as a string (the wire has strings, the fake UUIDs)."""
    return None if value is None else str(uuid.UUID(str(value)))


def by_type(runs: Mapping[str, Mapping[str, Any]], run_type: str) -> list[Mapping[str, Any]]:
    return sorted((r for r in runs.values() if r.get("run_type") == run_type), key=lambda r: str(r["dotted_order"]))


def assert_well_formed(runs: Mapping[str, Mapping[str, Any]]) -> None:
    """Every run's ``dotted_order`` is its parent's plus its own ``<start><id>`` segment, the root's first
    segment is the trace id, and a child never starts before its parent."""
    for run_id, run in runs.items():
        order = str(run["dotted_order"])
        segments = order.split(".")
        own = segments[-1]
        assert own.endswith(run_id), (order, run_id)
        assert segments[0].endswith(norm(run["trace_id"]) or ""), order
        parent = norm(run.get("parent_run_id"))
        if parent is None:
            assert len(segments) == 1, order
            assert norm(run["trace_id"]) == run_id
        else:
            assert parent in runs, f"run {run_id} hangs from {parent}, which was never sent"
            assert order.rsplit(".", 1)[0] == runs[parent]["dotted_order"]
            assert norm(runs[parent]["trace_id"]) == norm(run["trace_id"])
            assert own[:22] >= segments[-2][:22]  # the start time never goes back
