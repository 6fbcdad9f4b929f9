"""The demo's runs exported over OTLP/HTTP to a real receiver, Arize Phoenix, and read back from its REST API.

Phoenix's gRPC receiver binds every interface whatever ``PHOENIX_HOST`` says, so Phoenix and the demo run
together in a network namespace that has only loopback (``unshare -rn``). Phoenix is found through
``PHOENIX_BIN`` (its ``phoenix`` executable), else on ``PATH``, else in a ``phoenix-venv`` beside the
running interpreter's environment (it is large and pins packages of its own, so it is best kept in a
virtualenv of its own). The test is skipped, saying why, when Phoenix or ``unshare`` is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tracedagent_otlp import names as N

pytestmark = pytest.mark.integration

PROJECT = "tracedagent-it"

# Runs inside the namespace: bring loopback up, start Phoenix, wait for it, run the demo with the
# plugin on, then read the project's spans until their number stops growing and write them out.
SCRIPT = r"""
set -u
ip link set lo up
PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6006 PHOENIX_GRPC_PORT=4317 PHOENIX_WORKING_DIR="$WORK/phoenix" \
    "$PHOENIX_BIN" serve > "$WORK/phoenix.log" 2>&1 &
phoenix=$!
trap 'kill $phoenix 2>/dev/null; wait $phoenix 2>/dev/null' EXIT
"$PYTHON" - <<'EOF'
import time, urllib.request
deadline = time.monotonic() + 180
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:6006/healthz", timeout=2).read()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("phoenix did not start; see phoenix.log")
        time.sleep(0.5)
EOF
OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:6006 \
OTEL_SERVICE_NAME=trip-desk \
OTEL_RESOURCE_ATTRIBUTES="openinference.project.name=$PROJECT" \
TRACEDAGENT_PLUGINS=otlp TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD=1 \
    "$PYTHON" -m tracedagent demo --quiet --runs 3 > "$WORK/demo.out" 2>&1 || { cat "$WORK/demo.out"; exit 3; }
if [ "$GRPC" = 1 ]; then
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
    OTEL_SERVICE_NAME=trip-desk \
    OTEL_RESOURCE_ATTRIBUTES="openinference.project.name=$PROJECT-grpc" \
    TRACEDAGENT_PLUGINS=otlp TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD=1 \
        "$PYTHON" -m tracedagent demo --quiet --runs 1 > "$WORK/demo-grpc.out" 2>&1 \
        || { cat "$WORK/demo-grpc.out"; exit 4; }
fi
"$PYTHON" - <<'EOF'
import json, os, time, urllib.request
projects = [os.environ["PROJECT"]] + ([os.environ["PROJECT"] + "-grpc"] if os.environ["GRPC"] == "1" else [])
for project in projects:
    url = f"http://127.0.0.1:6006/v1/projects/{project}/spans?limit=1000"
    seen, stable, spans = -1, 0, []
    deadline = time.monotonic() + 60
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            spans = json.load(urllib.request.urlopen(url, timeout=5))["data"]
        except OSError:
            continue
        stable = stable + 1 if len(spans) == seen and spans else 0
        seen = len(spans)
    with open(os.path.join(os.environ["WORK"], f"{project}.json"), "w") as f:
        json.dump(spans, f)
EOF
"""


def _phoenix() -> str | None:
    explicit = os.environ.get("PHOENIX_BIN")
    if explicit:
        return explicit
    found = shutil.which("phoenix")
    if found:
        return found
    beside = Path(sys.prefix).parent / "phoenix-venv" / "bin" / "phoenix"
    return str(beside) if beside.exists() else None


def _skip_reason() -> str | None:
    if _phoenix() is None:
        venv = Path(sys.prefix).parent / "phoenix-venv"  # where _phoenix() looks, as .ci/run installs it
        return (
            f"Arize Phoenix is not installed: python3 -m venv {venv} && {venv}/bin/pip install arize-phoenix "
            "(or set PHOENIX_BIN; CI installs it)"
        )
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return (
            "needs unshare and ip to give Phoenix a loopback-only network: apt-get install -y util-linux iproute2 "
            "(CI installs them)"
        )
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here (unshare -rn: {probe.stderr.strip()})"
    return None


def _grpc_installed() -> bool:
    return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None


@pytest.fixture(scope="module")
def phoenix_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run Phoenix and the demo (over HTTP, and over gRPC when installed); the spans end up in files."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("phoenix")
    env = {
        **os.environ,
        "WORK": str(work),
        "PHOENIX_BIN": str(_phoenix()),
        "PYTHON": sys.executable,
        "PROJECT": PROJECT,
        "GRPC": "1" if _grpc_installed() else "0",
    }
    for name in [n for n in env if n.startswith("OTEL_")]:
        del env[name]
    done = subprocess.run(["unshare", "-rn", "sh", "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=400)
    log = (work / "phoenix.log").read_text(errors="replace")[-3000:] if (work / "phoenix.log").exists() else ""
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- phoenix.log ---\n{log}"
    return work


@pytest.fixture(scope="module")
def phoenix_spans(phoenix_work: Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = json.loads((phoenix_work / f"{PROJECT}.json").read_text())
    assert spans, f"Phoenix has no spans in project {PROJECT!r}"
    return spans


def test_each_run_segment_is_an_invoke_agent_span_with_its_calls_as_children(
    phoenix_spans: list[dict[str, Any]],
) -> None:
    by_id = {s["context"]["span_id"]: s for s in phoenix_spans}
    segments = [s for s in phoenix_spans if s["name"] == "invoke_agent trip-desk"]
    # 3 questions + compaction + booking (2 segments) + quotes + exchange rate + flight change + trip card
    # (structured output) + 4 seat-map runs
    assert len(segments) == 3 + 1 + 2 + 1 + 1 + 1 + 1 + 4
    for segment in segments:
        assert segment["span_kind"] == "AGENT"
        assert segment["attributes"][N.GEN_AI_OPERATION_NAME] == "invoke_agent"
        assert segment["parent_id"] is None
        # Phoenix adds up token counts over a span and its children: only the chat spans may carry them.
        assert "llm.token_count.prompt" not in segment["attributes"]
    children = [s for s in phoenix_spans if s["name"] != "invoke_agent trip-desk"]
    assert {s["name"].split(" ")[0] for s in children} == {"chat", "execute_tool"}
    for child in children:
        parent = by_id[child["parent_id"]]
        assert parent["name"] == "invoke_agent trip-desk"
        assert parent["context"]["trace_id"] == child["context"]["trace_id"]
        expected = "LLM" if child["name"].startswith("chat ") else "TOOL"
        assert child["span_kind"] == expected


def test_model_calls_carry_usage_and_tool_failures_are_errors(phoenix_spans: list[dict[str, Any]]) -> None:
    chats = [s for s in phoenix_spans if s["name"] == "chat trip-desk-scripted"]
    assert chats
    for chat in chats:
        assert chat["attributes"][N.GEN_AI_USAGE_INPUT_TOKENS] > 0
        assert chat["attributes"][N.GEN_AI_PROVIDER_NAME] == "scripted"
    flights = [s for s in phoenix_spans if s["name"] == "execute_tool flight_status"]
    failed = [s for s in flights if s["status_code"] == "ERROR"]
    assert failed
    assert all(s["attributes"][N.ERROR_TYPE] == "ConnectionError" for s in failed)


def test_a_resumed_run_continues_its_trace(phoenix_spans: list[dict[str, Any]]) -> None:
    segments_by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in phoenix_spans:
        if span["name"] == "invoke_agent trip-desk":
            segments_by_trace[span["context"]["trace_id"]].append(span)
    (resumed_trace,) = [t for t, spans in segments_by_trace.items() if len(spans) == 2]
    first, second = sorted(segments_by_trace[resumed_trace], key=lambda s: s["start_time"])
    assert first["attributes"][N.TD_STATUS] == "interrupted"
    assert [e["name"] for e in first["events"]].count(N.EVENT_INTERRUPT) == 1
    assert second["attributes"][N.TD_RESUMED] is True
    resume = next(e for e in second["events"] if e["name"] == N.EVENT_RESUME)
    assert resume["attributes"][N.TD_PREVIOUS_SPAN_ID] == first["context"]["span_id"]
    booking = [s for s in phoenix_spans if s["name"] == "execute_tool book_seat"]
    assert [s["parent_id"] for s in booking] == [second["context"]["span_id"]]


def test_the_demo_scenes_show_as_span_events(phoenix_spans: list[dict[str, Any]]) -> None:
    events = {e["name"] for s in phoenix_spans for e in s["events"]}
    assert {N.EVENT_COMPACTION, N.EVENT_INTERRUPT, N.EVENT_RESUME, N.EVENT_CIRCUIT_CHANGE, N.EVENT_RETRY} <= events
    # the flight change: the trip desk's segment records the handoff; the rebooking agent's calls are its children
    (handoff,) = [(s, e) for s in phoenix_spans for e in s["events"] if e["name"] == N.EVENT_HANDOFF]
    segment, event = handoff
    assert segment["name"] == "invoke_agent trip-desk"
    assert (event["attributes"][N.TD_HANDOFF_FROM], event["attributes"][N.TD_HANDOFF_TO]) == ("trip-desk", "rebooking")
    (change,) = [s for s in phoenix_spans if s["name"] == "execute_tool change_flight"]
    assert change["parent_id"] == segment["context"]["span_id"]


def test_the_grpc_exporter_delivers_too(phoenix_work: Path) -> None:
    if not _grpc_installed():
        pytest.skip("the gRPC exporter is not installed (pip install 'tracedagent-otlp[grpc]')")
    spans = json.loads((phoenix_work / f"{PROJECT}-grpc.json").read_text())
    names = {s["name"] for s in spans}
    assert {"invoke_agent trip-desk", "chat trip-desk-scripted", "execute_tool get_weather"} <= names
