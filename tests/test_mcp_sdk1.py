"""tracedagent.mcp on the mcp SDK's 1.x line: a subset of the MCP tests (tests/test_mcp.py,
tests/test_mcp_images.py, tests/test_mcp_tracestate.py) run by the Python of ./mcp1-venv (the latest mcp
1.x, which .ci/run installs from requirements-mcp1.txt), with this checkout's src/ on PYTHONPATH. The test
server is then built with 1.x's FastMCP. The subset covers what differs between the lines: stdio and
streamable HTTP sessions, listing, calls, text/structured/image/resource results, isError, JSON-RPC
errors, cancellation (the server gets notifications/cancelled), ``_meta.traceparent`` being the tool
call's span (with an OpenTelemetry SDK installed too), the HTTP ``traceparent`` header, ``tracestate`` in
``_meta`` and as a header, list changes (a tool added, and one taken away), a server killed mid-call, a
restarted HTTP server, and the bounds on a result with images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import tracedagent

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "mcp1-venv"
PYTHON = VENV / "bin" / "python"
CREATE = "python3 -m venv mcp1-venv && mcp1-venv/bin/pip install -r requirements-mcp1.txt"
GUARD_S = 600.0  # a guard against a hang only

SUBSET = [
    "tests/test_mcp.py::test_tools_are_listed_prefixed_filtered_and_called_as_ordinary_tool_calls",
    "tests/test_mcp.py::test_over_http_the_call_carries_traceparent_in_meta_and_as_a_header",
    "tests/test_mcp.py::test_text_structured_image_and_resource_results_reach_the_model",
    "tests/test_mcp.py::test_an_is_error_result_is_a_tool_error_the_model_sees",
    "tests/test_mcp.py::test_a_json_rpc_error_is_a_tool_error_that_says_so",
    "tests/test_mcp.py::test_over_http_a_json_rpc_error_is_the_servers_and_the_session_goes_on",
    "tests/test_mcp.py::test_server_defaults_and_per_tool_overrides",
    "tests/test_mcp.py::test_a_call_cancelled_mid_flight_tells_the_server_and_ends_once",
    "tests/test_mcp.py::test_over_http_a_call_cancelled_mid_flight_tells_the_server_and_ends_once",
    "tests/test_mcp.py::test_the_sdk_own_client_span_does_not_replace_the_tool_span",
    "tests/test_mcp.py::test_the_list_is_cached_and_listed_again_when_the_server_says_it_changed",
    "tests/test_mcp.py::test_a_server_killed_mid_call_is_a_tool_error_and_the_next_call_reconnects",
    "tests/test_mcp.py::test_the_session_reconnects_after_an_http_server_restart",
    "tests/test_mcp.py::test_a_run_sees_a_list_change_said_before_it_started_and_a_removed_tool_says_so[stdio]",
    "tests/test_mcp.py::test_a_run_sees_a_list_change_said_before_it_started_and_a_removed_tool_says_so[http]",
    "tests/test_mcp_images.py::test_the_tool_message_carries_the_image_and_describes_it",
    "tests/test_mcp_tracestate.py::test_an_mcp_call_over_stdio_carries_the_tracestate_in_meta",
    "tests/test_mcp_tracestate.py::test_an_mcp_call_over_http_carries_the_tracestate_in_meta_and_as_a_header",
    "tests/test_mcp_images.py::test_a_truncated_result_keeps_its_images_and_says_so[server]",
    "tests/test_mcp_images.py::test_the_images_of_a_result_are_bounded_by_max_image_bytes",
]


def _sdk_version() -> str:
    code = "import importlib.metadata as m; print(m.version('mcp'))"
    return subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_the_mcp_tests_pass_on_the_1x_sdk(tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.skip(f"the mcp 1.x virtualenv {VENV} is missing; create it (in {ROOT}): {CREATE}")
    version = _sdk_version()
    assert version.startswith("1."), f"{VENV} has mcp {version}, not a 1.x release"
    src = str(Path(tracedagent.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=src, TRACEDAGENT_NO_SKIPS="1")  # a skip in there is a failure here
    proc = subprocess.run(
        [str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "t"), *SUBSET],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=GUARD_S,
        env=env,
    )
    assert proc.returncode == 0, f"mcp {version}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert f"{len(SUBSET)} passed" in proc.stdout, proc.stdout[-2000:]
