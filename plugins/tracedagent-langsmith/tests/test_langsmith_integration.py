"""The real langsmith SDK, driven by the tracer, sending to a capture server on loopback.

Each test runs agents with a ``LangSmithTracer`` whose SDK client points at the capture server, calls
``tracer.flush()`` (which returns once the SDK has sent everything) and checks what arrived: the run tree
as LangSmith would hold it, and the raw requests. Timeouts are guards only, never asserted on.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from langsmith import Client
from langsmith_server import CaptureServer, capture_server
from ls_support import API_KEY, SENTINEL, MakeTracer, approval_agent, assert_well_formed, by_type, calc_agent, norm

from tracedagent_langsmith import span_uuid, trace_uuid

pytestmark = pytest.mark.integration

GUARD_S = 60.0  # only a guard against hanging; never asserted on
TESTS = Path(__file__).parent


def flushed(tracer: Any) -> None:
    assert tracer.flush(GUARD_S), "the tracer did not flush within the guard"


# ------------------------------------------------------------------------------------------ the tree


@pytest.mark.parametrize(
    ("multipart", "zstd", "path", "encoding"),
    [
        (True, True, "/runs/multipart", "zstd"),
        (True, False, "/runs/multipart", None),
        (False, False, "/runs/batch", None),
    ],
    ids=["multipart-zstd", "multipart", "batch"],
)
def test_a_run_arrives_as_a_chain_with_llm_and_tool_runs(
    point_at: Callable[[str], None],
    make_tracer: MakeTracer,
    multipart: bool,
    zstd: bool,
    path: str,
    encoding: str | None,
) -> None:
    with capture_server(multipart=multipart, zstd=zstd) as server:
        point_at(server.url)
        tracer = make_tracer()
        warm_up = calc_agent(tracer).run_sync("question")  # the SDK reads /info as its client starts
        flushed(tracer)
        sent_before = len(server.ingest_requests())
        result = calc_agent(tracer).run_sync("question")
        flushed(tracer)
        runs = {k: v for k, v in server.runs().items() if norm(v["trace_id"]) == str(trace_uuid(result.trace_id))}

        assert (warm_up.status, result.status) == ("completed", "completed")
        assert {r.path for r in server.ingest_requests()} == {path}
        # Compressed when the server offers it (once the SDK has read /info: the first batch may not be).
        assert {r.headers.get("content-encoding") for r in server.ingest_requests()[sent_before:]} == {encoding}
    assert_well_formed(runs)
    root = runs[str(trace_uuid(result.trace_id))]
    assert (root["name"], root["run_type"], root["session_name"]) == ("calc", "chain", "tracedagent-tests")
    assert root["outputs"]["status"] == "completed"
    assert root["extra"]["metadata"]["tracedagent_run_id"] == result.run_id
    assert root["extra"]["runtime"]["sdk"] == "langsmith-py"  # the SDK filled it in
    llms, tools = by_type(runs, "llm"), by_type(runs, "tool")
    assert [r["name"] for r in llms] == ["gpt-test", "gpt-test"]
    assert {r["name"]: r.get("error") for r in tools} == {"lookup": None, "broken": "ValueError"}
    assert {norm(r["parent_run_id"]) for r in llms + tools} == {norm(root["id"])}
    first = llms[0]
    assert first["outputs"]["usage_metadata"] == {
        "input_tokens": 100,
        "output_tokens": 20,
        "total_tokens": 120,
        "input_token_details": {"cache_read": 30},
        "output_token_details": {"reasoning": 7},
    }
    assert first["extra"]["metadata"]["ls_provider"] == "openai"
    assert first["extra"]["metadata"]["ls_model_name"] == "gpt-test"
    assert all(r["start_time"] <= r["end_time"] for r in runs.values())


def test_a_priced_model_call_sends_its_costs_in_usage_metadata(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    pytest.importorskip("genai_prices")
    point_at(server.url)
    tracer = make_tracer()
    result = calc_agent(tracer, model_name="gpt-4o-mini").run_sync("question")
    unpriced = calc_agent(tracer).run_sync("question")  # gpt-test: no price
    flushed(tracer)
    runs = server.runs()

    def llm_usage(trace_id: str) -> list[dict[str, Any]]:
        trace = {k: v for k, v in runs.items() if norm(v["trace_id"]) == str(trace_uuid(trace_id))}
        return [r["outputs"]["usage_metadata"] for r in by_type(trace, "llm")]

    priced = llm_usage(result.trace_id)
    assert len(priced) == 2
    assert result.usage.cost_usd is not None
    assert result.usage.cost_usd > 0
    assert sum(u["total_cost"] for u in priced) == pytest.approx(result.usage.cost_usd)
    assert result.usage.input_cost_usd is not None
    assert sum(u["input_cost"] for u in priced) == pytest.approx(result.usage.input_cost_usd)
    for u in priced:
        assert u["input_cost"] > 0
        assert u["output_cost"] > 0
        assert u["input_cost"] + u["output_cost"] == pytest.approx(u["total_cost"])
    for u in llm_usage(unpriced.trace_id):
        assert not {"input_cost", "output_cost", "total_cost"} & set(u)


def test_a_paused_run_resumed_in_the_same_process_continues_its_trace(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    point_at(server.url)
    tracer = make_tracer()
    agent = approval_agent(tracer)
    paused = agent.run_sync("ship it")
    flushed(tracer)
    while_paused = server.runs()[str(trace_uuid(paused.trace_id))]
    done = agent.resume_sync(paused.run_id, {"d1": True})
    flushed(tracer)
    runs = server.runs()

    assert (paused.status, done.status, done.output) == ("interrupted", "completed", f"{SENTINEL} deployed")
    assert while_paused["outputs"]["status"] == "interrupted"
    assert_well_formed(runs)
    assert {norm(r["trace_id"]) for r in runs.values()} == {str(trace_uuid(paused.trace_id))}
    root = runs[str(trace_uuid(paused.trace_id))]
    assert root["outputs"]["status"] == "completed"
    assert root["end_time"] > while_paused["end_time"]
    assert [e["name"] for e in root["events"]] == ["interrupt", "checkpoint"]
    (segment,) = [r for r in by_type(runs, "chain") if r is not root]
    assert (segment["name"], norm(segment["parent_run_id"])) == ("ops (resumed)", norm(root["id"]))
    assert [e["name"] for e in segment["events"]] == ["resume"]
    assert sorted(r["name"] for r in runs.values() if norm(r.get("parent_run_id")) == norm(segment["id"])) == [
        "deploy",
        "gpt-test",
    ]


SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from tracedagent import SQLiteCheckpointStore
    from ls_support import approval_agent

    phase = sys.argv[1]
    store = SQLiteCheckpointStore(os.environ["CHECKPOINT_DB"])
    if phase == "start":
        result = approval_agent(store=store).run_sync("ship it")
    else:
        result = approval_agent(store=store, resuming=True).resume_sync(sys.argv[2], {"d1": True})
    print(json.dumps({"status": result.status, "run_id": result.run_id, "trace_id": result.trace_id}))
    # No flush: the plugin hands what is queued to the SDK at exit, before the SDK's threads stop.
    """
)


@pytest.mark.parametrize("zstd", [True, False], ids=["zstd", "uncompressed"])
def test_a_run_resumed_in_another_process_joins_the_same_tree(tmp_path: Path, zstd: bool) -> None:
    with capture_server(zstd=zstd) as server:
        check_resume_in_another_process(server, tmp_path)


def check_resume_in_another_process(server: CaptureServer, tmp_path: Path) -> None:
    script = tmp_path / "phase.py"
    script.write_text(SCRIPT)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))},
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "CHECKPOINT_DB": str(tmp_path / "runs.db"),
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_PLUGINS": "langsmith",  # through the entry point and tracedagent_configure
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": server.url,
        "LANGSMITH_API_KEY": API_KEY,
        "LANGSMITH_PROJECT": "resumes",
    }

    def phase(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=GUARD_S
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    first = phase("start")
    assert first["status"] == "interrupted"
    after_first = server.runs()
    second = phase("resume", first["run_id"])
    runs = server.runs()

    assert (second["status"], second["trace_id"]) == ("completed", first["trace_id"])
    root_id = str(trace_uuid(first["trace_id"]))
    assert after_first[root_id]["outputs"]["status"] == "interrupted"  # sent by the first process at exit
    assert_well_formed(runs)
    assert {norm(r["trace_id"]) for r in runs.values()} == {root_id}
    root = runs[root_id]
    assert root["outputs"]["status"] == "completed"  # patched by the second process
    assert root["session_name"] == "resumes"
    assert root["events"] == after_first[root_id]["events"]  # the first process's, kept
    assert [e["name"] for e in root["events"]] == ["checkpoint", "interrupt", "checkpoint"]  # a store: every step
    assert root["extra"]["metadata"]["tracedagent_run_id"] == first["run_id"]
    (segment,) = [r for r in by_type(runs, "chain") if r is not root]
    assert norm(segment["parent_run_id"]) == root_id
    assert segment["dotted_order"].startswith(root["dotted_order"] + ".")
    assert sorted(r["name"] for r in runs.values() if norm(r.get("parent_run_id")) == norm(segment["id"])) == [
        "deploy",
        "gpt-test",
    ]
    assert SENTINEL not in repr(runs)


# ------------------------------------------------------------------------------------------ settings


def test_content_is_absent_by_default_and_present_with_capture_on(
    server: CaptureServer,
    point_at: Callable[[str], None],
    make_tracer: MakeTracer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point_at(server.url)
    quiet = make_tracer()
    calc_agent(quiet).run_sync(f"{SENTINEL} question")
    flushed(quiet)
    assert server.ingest_requests()
    assert not [line for line, body in server.raw() if SENTINEL.encode() in body or SENTINEL in line]

    for variable in ("TRACEDAGENT_CAPTURE_CONTENT", "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"):
        with monkeypatch.context() as m:
            m.setenv(variable, "true")
            loud = make_tracer()
        result = calc_agent(loud).run_sync(f"{SENTINEL} question")
        flushed(loud)
        root = server.runs()[str(trace_uuid(result.trace_id))]
        assert root["inputs"]["messages"] == [{"role": "user", "content": f"{SENTINEL} question"}]
        assert root["outputs"]["output"] == f"{SENTINEL} the answer"


@pytest.mark.parametrize("variable", ["LANGSMITH_HIDE_INPUTS", "LANGSMITH_HIDE_OUTPUTS"])
def test_the_sdks_hide_inputs_and_outputs_settings_are_honoured(
    server: CaptureServer,
    point_at: Callable[[str], None],
    make_tracer: MakeTracer,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    point_at(server.url)
    monkeypatch.setenv("TRACEDAGENT_CAPTURE_CONTENT", "true")
    monkeypatch.setenv(variable, "true")
    tracer = make_tracer()
    calc_agent(tracer).run_sync(f"{SENTINEL} question")
    flushed(tracer)
    runs = server.runs()

    hidden, shown = ("inputs", "outputs") if variable.endswith("INPUTS") else ("outputs", "inputs")
    assert len(runs) == 5
    assert all(not run.get(hidden) for run in runs.values())
    assert all(run.get(shown) for run in runs.values())
    for llm in by_type(runs, "llm"):  # token usage survives in the metadata
        assert llm["extra"]["metadata"]["usage_metadata"]["total_tokens"] > 0


def test_a_client_of_your_own_brings_its_own_settings(
    server: CaptureServer, make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACEDAGENT_CAPTURE_CONTENT", "true")
    client = Client(api_url=server.url, api_key=API_KEY, hide_inputs=lambda inputs: {"redacted": True})
    tracer = make_tracer(client=client, project_name="mine")
    calc_agent(tracer).run_sync(f"{SENTINEL} question")
    flushed(tracer)
    runs = server.runs()

    assert tracer.client is client
    assert {r["session_name"] for r in runs.values() if "session_name" in r} == {"mine"}
    assert all(run["inputs"] == {"redacted": True} for run in runs.values())
    client.cleanup(GUARD_S)


def test_a_client_without_batching_posts_and_patches_each_run(server: CaptureServer, make_tracer: MakeTracer) -> None:
    client = Client(api_url=server.url, api_key=API_KEY, auto_batch_tracing=False)
    tracer = make_tracer(client=client)
    agent = approval_agent(tracer)
    paused = agent.run_sync("ship it")
    agent.resume_sync(paused.run_id, {"d1": True})
    flushed(tracer)
    runs = server.runs()

    assert {(r.method, r.path.rsplit("/", 1)[0]) for r in server.ingest_requests()} == {
        ("POST", ""),  # POST /runs
        ("PATCH", "/runs"),  # PATCH /runs/<id>
    }
    assert_well_formed(runs)
    assert runs[str(trace_uuid(paused.trace_id))]["outputs"]["status"] == "completed"
    assert len(runs) == 5  # root, resumed segment, two model calls, the approved tool call


def test_sampling_keeps_or_drops_whole_traces(
    server: CaptureServer,
    point_at: Callable[[str], None],
    make_tracer: MakeTracer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point_at(server.url)
    monkeypatch.setenv("LANGSMITH_TRACING_SAMPLING_RATE", "0")
    none = make_tracer()
    calc_agent(none).run_sync("question")
    flushed(none)
    assert server.runs() == {}

    monkeypatch.setenv("LANGSMITH_TRACING_SAMPLING_RATE", "0.5")
    half = make_tracer()
    traces = {uuid.UUID(hex=calc_agent(half).run_sync("question").trace_id) for _ in range(24)}
    flushed(half)
    runs = server.runs()
    arrived = {uuid.UUID(str(r["trace_id"])) for r in runs.values()}

    assert arrived  # some traces, not all (deterministic per trace id)
    assert arrived < traces
    assert len(runs) == 5 * len(arrived)  # never part of a trace
    assert {r["extra"]["metadata"]["ls_tracing_sample_rate"] for r in runs.values()} == {0.5}


def test_the_api_key_is_sent_only_in_the_auth_header(
    server: CaptureServer,
    point_at: Callable[[str], None],
    make_tracer: MakeTracer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tracedagent_langsmith import tracedagent_configure

    caplog.set_level(logging.DEBUG)
    point_at(server.url)
    tracer = make_tracer()
    calc_agent(tracer).run_sync("question")
    approval_agent(tracer).run_sync("ship it")
    flushed(tracer)

    assert server.requests
    for request in server.requests:
        assert request.headers["x-api-key"] == API_KEY
        others = {k: v for k, v in request.headers.items() if k != "x-api-key"}
        assert API_KEY not in f"{request.method} {request.path} {others}"
        assert API_KEY.encode() not in request.body
    assert API_KEY not in caplog.text
    assert API_KEY not in repr(tracer)
    assert API_KEY not in repr(tracer.settings)

    class Context:  # what tracedagent_configure gets: the environment and a way to register
        def __init__(self) -> None:
            self.environ = {**os.environ, "LANGSMITH_TRACING": "true"}
            self.registered: list[Any] = []

        def register(self, plugin: Any, name: str | None = None) -> None:
            self.registered.append(plugin)

    context: Any = Context()
    status = tracedagent_configure(context)
    assert API_KEY not in status
    for plugin in context.registered:
        plugin.shutdown(1.0)


def test_span_ids_name_the_runs(
    server: CaptureServer, point_at: Callable[[str], None], make_tracer: MakeTracer
) -> None:
    from tracedagent import ToolCallStarted
    from tracedagent.testing import RecordingTracer

    point_at(server.url)
    recorder = RecordingTracer()
    tracer = make_tracer()
    calc_agent(tracer, recorder).run_sync("question")
    flushed(tracer)
    runs = server.runs()
    for started in recorder.of_type(ToolCallStarted):
        run = runs[str(span_uuid(started.trace_id, started.span_id))]
        assert (run["name"], run["extra"]["metadata"]["tracedagent_span_id"]) == (started.tool, started.span_id)
