"""A run inside the application's LangSmith trace (``@traceable``, ``langsmith.trace``) is a child of the
current run tree, in its trace; a run inside an application's OpenTelemetry span is a trace of its own in
LangSmith, never an orphan. The real langsmith SDK sends both to the capture server (issue 17)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import langsmith
import pytest
from langsmith_server import CaptureServer
from ls_support import MakeTracer, assert_well_formed, calc_agent, norm
from opentelemetry.sdk.trace import TracerProvider

pytestmark = pytest.mark.integration

GUARD_S = 60.0


def sent(server: CaptureServer, tracer: Any) -> dict[str, dict[str, Any]]:
    assert tracer.flush(GUARD_S)
    return server.runs()


def test_a_run_inside_traceable_is_its_child_in_its_trace(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    point_at(server.url)
    tracer = make_tracer()
    client = langsmith.Client(api_url=server.url, api_key="test-key")

    @langsmith.traceable(name="handle_request", client=client)
    def handle(question: str) -> str:
        run_tree = langsmith.get_current_run_tree()
        assert run_tree is not None
        seen.append((str(run_tree.id), str(run_tree.trace_id), run_tree.dotted_order))
        return calc_agent(tracer).run_sync(question).output or ""

    seen: list[tuple[str, str, str]] = []
    with langsmith.tracing_context(enabled=True):
        assert handle("question")
    client.flush()
    runs = sent(server, tracer)
    (outer_id, outer_trace, outer_order) = seen[0]
    (chain,) = [r for r in runs.values() if r["name"] == "calc" and r["run_type"] == "chain"]
    assert norm(chain["parent_run_id"]) == outer_id
    assert norm(chain["trace_id"]) == outer_trace
    assert str(chain["dotted_order"]).startswith(outer_order + ".")
    mine = {k: v for k, v in runs.items() if norm(v["trace_id"]) == outer_trace}
    assert outer_id in mine  # the application's own run arrived too (same capture server)
    assert_well_formed(mine)
    assert len([r for r in mine.values() if r["run_type"] in ("llm", "tool")]) == 4


def test_a_run_inside_an_application_span_is_a_langsmith_trace_of_its_own(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    point_at(server.url)
    tracer = make_tracer()
    app = TracerProvider().get_tracer("the-app")
    with app.start_as_current_span("POST /chat"):
        first = calc_agent(tracer).run_sync("question")
        second = calc_agent(tracer).run_sync("again")
    assert first.trace_id == second.trace_id  # both joined the request's OpenTelemetry trace
    runs = sent(server, tracer)
    assert tracer._builder.orphaned == 0
    chains = [r for r in runs.values() if r["name"] == "calc" and r["run_type"] == "chain"]
    assert len(chains) == 2
    assert all(r.get("parent_run_id") is None for r in chains)
    assert len({norm(r["trace_id"]) for r in chains}) == 2  # two LangSmith traces, never one id twice
    assert_well_formed(runs)


def test_a_run_inside_langsmith_trace_is_its_child_in_its_trace(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    """``langsmith.trace`` (the context manager), with a client of the application's own: the chain run
    is the child of that run tree, in its trace."""
    point_at(server.url)
    tracer = make_tracer()
    client = langsmith.Client(api_url=server.url, api_key="test-key")
    with langsmith.tracing_context(enabled=True), langsmith.trace("job", client=client) as outer:
        assert calc_agent(tracer).run_sync("question").status == "completed"
    client.flush()
    runs = sent(server, tracer)
    (chain,) = [r for r in runs.values() if r["name"] == "calc" and r["run_type"] == "chain"]
    assert norm(chain["parent_run_id"]) == str(outer.id)
    assert norm(chain["trace_id"]) == str(outer.trace_id)
    assert str(chain["dotted_order"]).startswith(outer.dotted_order + ".")
    assert_well_formed({k: v for k, v in runs.items() if norm(v["trace_id"]) == str(outer.trace_id)})
