"""The demo, run as a user runs it: a subprocess, with a plugin named by module path in
TRACEDAGENT_PLUGINS that records the event stream. Checks the stream's invariants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

# a run segment opens with on_run_start (the first) or on_resume (each later one)
STARTS = {
    ("on_run_start", "on_resume"): "on_run_end",
    ("on_model_call_start",): "on_model_call_end",
    ("on_tool_call_start",): "on_tool_call_end",
}


def run_demo(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    events_file = tmp_path / "events.jsonl"
    environ = {
        **os.environ,
        "TRACEDAGENT_PLUGINS": "tracedagent.testing.event_log",
        "TRACEDAGENT_EVENT_LOG": str(events_file),
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tracedagent", "demo", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.exists() else []
    return proc, events


def test_demo_event_stream_invariants(tmp_path: Path) -> None:
    proc, events = run_demo(tmp_path, "--runs", "5", "--concurrency", "3", "--quiet")
    assert proc.returncode == 0, proc.stderr
    hooks = Counter(e["hook"] for e in events)
    # every stage that exists so far fires
    for hook in (
        "on_interrupt",
        "on_resume",
        "on_circuit_change",
        "on_retry",
        "on_run_start",
        "on_run_end",
        "on_model_call_start",
        "on_model_call_end",
        "on_tool_call_start",
        "on_tool_call_end",
        "on_compaction",
        "on_handoff",
    ):
        assert hooks[hook] > 0, f"{hook} never fired: {hooks}"
    # 5 runs, the compaction run, the booking, the burst of quotes, the flaky rate, the flight change
    # and 4 seat map runs
    assert hooks["on_run_start"] == 15
    assert hooks["on_interrupt"] == hooks["on_resume"] == 1  # the booking waits for approval
    # one end per start, sharing the span id
    for start, end in STARTS.items():
        starts = Counter(e["span_id"] for e in events if e["hook"] in start)
        ends = Counter(e["span_id"] for e in events if e["hook"] == end)
        assert starts == ends, f"{start}/{end} do not pair up"
        assert set(starts.values()) == {1}
    # ids are consistent: each run has one trace; children point at their run's segment span
    runs = {e["run_id"]: e for e in events if e["hook"] == "on_run_start"}
    segments: dict[str, set[str]] = {}  # each run's segment spans: its start, then each resume
    for event in events:
        if event["hook"] in ("on_run_start", "on_resume"):
            segments.setdefault(event["run_id"], set()).add(event["span_id"])
    for event in events:
        run = runs[event["run_id"]]
        assert event["trace_id"] == run["trace_id"]
        assert len(event["trace_id"]) == 32
        assert len(event["span_id"]) == 16
        int(event["trace_id"], 16), int(event["span_id"], 16)
        if event["hook"] in ("on_model_call_start", "on_model_call_end", "on_tool_call_start", "on_tool_call_end"):
            assert event["parent_span_id"] in segments[event["run_id"]]
    assert len({r["trace_id"] for r in runs.values()}) == len(runs)
    # the scenario: a failing tool, two tools in one turn, a compaction model call
    tool_ends = [e for e in events if e["hook"] == "on_tool_call_end"]
    assert {"ok", "error"} <= {e["status"] for e in tool_ends}
    assert any(e["purpose"] == "compaction" for e in events if e["hook"] == "on_model_call_start")
    assert "completed 15" in proc.stdout
    # the flight change: the trip desk hands the run to the rebooking agent, which changes the flight
    (handoff,) = [e for e in events if e["hook"] == "on_handoff"]
    assert (handoff["from_agent"], handoff["to_agent"], handoff["agent"]) == ("trip-desk", "rebooking", "trip-desk")
    assert handoff["span_id"] in segments[handoff["run_id"]]
    handed = [e for e in tool_ends if e["run_id"] == handoff["run_id"]]
    assert [(e["agent"], e["tool"], e["status"]) for e in handed] == [
        ("trip-desk", "transfer_to_rebooking", "ok"),
        ("rebooking", "change_flight", "ok"),
    ]
    assert "trip-desk -> rebooking 1" in proc.stdout
    changes = [(e["old"], e["new"]) for e in events if e["hook"] == "on_circuit_change"]
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert {"circuit_open", "rejected"} <= {e["status"] for e in tool_ends}


def test_demo_prints_event_stream_through_stdout_tracer(tmp_path: Path) -> None:
    pytest.importorskip("tracedagent_stdout")
    proc, events = run_demo(
        tmp_path,
        "--runs",
        "2",
        TRACEDAGENT_LOG_FORMAT="json",
        TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD="0",
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == len(events), "one stdout line per event"
    assert {line["run_id"] for line in lines} == {e["run_id"] for e in events}


def test_demo_rejects_bad_options(tmp_path: Path) -> None:
    proc, _ = run_demo(tmp_path, "--runs", "0")
    assert proc.returncode == 2
    assert "--runs" in proc.stderr
    assert "at least 1" in proc.stderr


def test_plugins_command_lists_module_path_plugin(tmp_path: Path) -> None:
    (tmp_path / "demo_recorder.py").write_text(
        "import tracedagent\n\n@tracedagent.hookimpl\ndef on_tool_call_end(event):\n    pass\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "tracedagent", "plugins"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "TRACEDAGENT_PLUGINS": "demo_recorder"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "demo_recorder" in proc.stdout
    assert "module path from TRACEDAGENT_PLUGINS" in proc.stdout
    assert "on_tool_call_end" in proc.stdout


def test_demo_summary_shows_what_the_runs_cost(tmp_path: Path) -> None:
    """The scripted model is priced as gpt-4o-mini: each model call has a cost, and the summary's cost
    row is their sum."""
    pytest.importorskip("genai_prices")
    proc, events = run_demo(tmp_path, "--runs", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    costs = [e["usage"].get("cost_usd") for e in events if e["hook"] == "on_model_call_end"]
    assert costs
    assert all(isinstance(c, float) and c > 0 for c in costs), costs
    rows = [line.split(None, 1)[1] for line in proc.stdout.splitlines() if line.startswith("cost ")]
    assert rows == [f"${sum(costs):.6f} (on estimated tokens)"]
    # a run's usage is its whole usage so far: the last segment's end (a resumed run has two) has it all
    runs = {e["run_id"]: e["usage"] for e in events if e["hook"] == "on_run_end"}
    assert sum(u["cost_usd"] for u in runs.values()) == pytest.approx(sum(costs))


def test_demo_on_an_openai_compatible_server(tmp_path: Path) -> None:
    """`tracedagent demo --model openai:MODEL` with OPENAI_BASE_URL at a local server (here a loopback
    server replaying a recorded answer): the demo agent runs on it, with model spans and traceparent."""
    from wire_server import Reply, wire_server

    transcript = (Path(__file__).parent / "transcripts" / "openai" / "text.sse").read_bytes()
    with wire_server() as server:
        # 1 run, the compaction run (2 calls) and 8 more runs answered without tools here
        server.queue(*[Reply(chunks=[transcript]) for _ in range(11)])
        proc, events = run_demo(
            tmp_path, "--runs", "1", "--quiet", "--model", "openai:local-model", OPENAI_BASE_URL=server.url + "/v1"
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "completed 10" in proc.stdout
    assert "\ncost " not in proc.stdout  # genai-prices has no price for local-model
    model_starts = [e for e in events if e["hook"] == "on_model_call_start"]
    assert {e["provider"] for e in model_starts} == {"openai"}
    assert len(server.requests) == len(model_starts) == 11
    sent = sorted(r.headers["traceparent"] for r in server.requests)
    assert sent == sorted(f"00-{e['trace_id']}-{e['span_id']}-01" for e in model_starts)
