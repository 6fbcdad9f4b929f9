"""The overload benchmark's analysis (``benchmarks/overload.py``): what arrived at a sink is sorted into
complete, broken and absent traces. Checked on hand-made traces, then on what real tracers sent for a
tiny workload, with parts of it taken away."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tracedagent

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str) -> Any:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


overload = _load("overload")
Seen = overload.Seen


def whole(root: str = "r") -> dict[str, Any]:
    """A whole trace of the workload: the run's segment and its 5 children, all started and ended."""
    spans = {root: Seen(None, True, True)}
    for k in range(overload.SPANS_PER_TRACE - 1):
        spans[f"c{k}"] = Seen(root, True, True)
    return spans


def test_a_whole_trace_is_complete_and_a_missing_one_absent() -> None:
    verdict = overload.classify(["t1", "t2"], {"t1": whole()})
    assert (verdict.complete, verdict.broken, verdict.absent, verdict.foreign) == (1, 0, 1, 0)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda t: t.pop("r"), "no root"),
        (lambda t: setattr(t["c1"], "ended", False), "a span never ended"),
        (lambda t: setattr(t["c1"], "started", False), "a span never started"),
        (lambda t: setattr(t["c2"], "parent", "gone"), "a child without its parent"),
        (lambda t: t.pop("c3"), "spans missing"),
        (lambda t: t.update(extra=Seen(None, True, True)), "several roots"),
    ],
)
def test_a_trace_with_any_part_missing_unended_or_orphaned_is_broken(damage: Any, why: str) -> None:
    trace = whole()
    damage(trace)
    verdict = overload.classify(["t1"], {"t1": trace, "other": whole()})
    assert (verdict.complete, verdict.broken, verdict.absent) == (0, 1, 0)
    assert why in verdict.why
    assert verdict.foreign == 1


def test_a_langsmith_run_patched_but_never_posted_breaks_its_trace() -> None:
    trace = "0" * 31 + "1"
    root = "00000000-0000-0000-0000-000000000001"
    kids = [f"kid-{k}" for k in range(overload.SPANS_PER_TRACE - 1)]
    records = [["post", root, root, "", False], ["patch", root, "", "", True]]  # its trace found by its post
    records += [["post", kid, root, root, True] for kid in kids[1:]]
    records += [["patch", kids[0], root, root, True]]  # the post of this run was lost
    verdict = overload.classify([trace], overload.langsmith_traces(records))
    assert (verdict.broken, dict(verdict.why)) == (1, {"a span never started": 1})
    records.append(["post", kids[0], root, root, False])
    assert overload.classify([trace], overload.langsmith_traces(records)).complete == 1


@pytest.fixture
def registered(fresh_registry: Any) -> Iterator[list[Any]]:
    plugins: list[Any] = []
    yield plugins
    for plugin in plugins:
        if hasattr(plugin, "serve_forever"):  # a loopback stand-in
            plugin.shutdown()
            plugin.server_close()
        else:
            plugin.shutdown(5)
            tracedagent.unregister(plugin)


def _runs(count: int) -> list[str]:
    async def main() -> list[str]:
        agent = overload.make_agent(0.0)
        results = await asyncio.gather(*(agent.run(f"add {i} 3 7") for i in range(count)))
        assert [r.output for r in results] == [f"The answer is {i + 10}" for i in range(count)]
        return [r.trace_id for r in results]

    return asyncio.run(main())


def test_the_stdout_lines_of_a_complete_a_broken_and_an_absent_trace(registered: list[Any]) -> None:
    from tracedagent_stdout import StdoutTracer  # the workspace installs every plugin

    stream = io.StringIO()
    tracer = StdoutTracer(stream, format="json", capture_content=False)
    tracedagent.register(tracer, "overload-test-stdout")
    registered.append(tracer)
    complete, broken, absent = _runs(3)
    assert tracer.flush(10)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 * 2 * overload.SPANS_PER_TRACE
    assert overload.classify([complete, broken, absent], overload.stdout_traces(lines)).complete == 3

    def keep(line: str) -> bool:
        record = json.loads(line)
        if record["trace_id"] == absent:
            return False
        return not (record["trace_id"] == broken and record["event"] == "tool.end")  # tools never end

    verdict = overload.classify([complete, broken, absent], overload.stdout_traces(filter(keep, lines)))
    assert (verdict.complete, verdict.broken, verdict.absent, verdict.foreign) == (1, 1, 1, 0)
    assert dict(verdict.why) == {"a span never ended": 1}


def _records(url: str) -> list[list[Any]]:
    with urllib.request.urlopen(url + "/records?clear=1", timeout=10) as response:
        return json.loads(response.read())["records"]  # type: ignore[no-any-return]


def test_what_the_otlp_and_langsmith_stand_ins_record_makes_whole_traces(registered: list[Any]) -> None:
    import langsmith
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from tracedagent_langsmith import LangSmithTracer
    from tracedagent_otlp import OtlpTracer

    sinks = _load("sinks")
    servers: list[Any] = []
    urls = sinks.serve(record=True, servers=servers)
    registered.extend(servers)
    otlp = OtlpTracer(span_exporter=OTLPSpanExporter(endpoint=f"{urls['otlp']}/v1/traces"), metrics=False)
    client = langsmith.Client(api_url=urls["langsmith"], api_key="lsv2_pt_test-0000", auto_batch_tracing=True)
    smith = LangSmithTracer(client, project_name="overload-test")
    for name, tracer in (("otlp", otlp), ("langsmith", smith)):
        tracedagent.register(tracer, f"overload-test-{name}")
        registered.append(tracer)
    trace_ids = _runs(3)
    assert otlp.flush(10)
    assert smith.flush(10)

    spans = _records(urls["otlp"])
    runs = _records(urls["langsmith"])
    assert overload.classify(trace_ids, overload.otlp_traces(spans)).complete == 3
    assert overload.classify(trace_ids, overload.langsmith_traces(runs)).complete == 3

    _complete, broken, absent = trace_ids
    # OTLP: the broken trace lost its root span (its children are orphans); the absent one lost everything
    spans = [s for s in spans if s[0] != absent and not (s[0] == broken and s[2] == "")]
    verdict = overload.classify(trace_ids, overload.otlp_traces(spans))
    assert (verdict.complete, verdict.broken, verdict.absent) == (1, 1, 1)
    assert {"no root", "a child without its parent"} <= set(verdict.why)

    # LangSmith: the broken trace lost the patches or end times of its runs; the absent one everything
    def trace_of(run: list[Any]) -> str:
        return str(run[2]).replace("-", "")

    kept = []
    for run in runs:
        if trace_of(run) == absent:
            continue
        if trace_of(run) == broken:
            if run[0] == "patch":
                continue
            run = [*run[:4], False]
        kept.append(run)
    verdict = overload.classify(trace_ids, overload.langsmith_traces(kept))
    assert (verdict.complete, verdict.broken, verdict.absent) == (1, 1, 1)
    assert "a span never ended" in verdict.why
