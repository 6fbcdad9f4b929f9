"""The per-tool drill-down: one tool's calls, latency, failures, breaker, bulkhead and retries."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard

from .panels import breaker_timeline, dashboard, label_variable, row, timeseries
from .promql import AGENT, FAILED, TOOL, N, gauge, per_second, quantile, ratio, worst

UID = "tracedagent-tool"
RATE = "ops"


def build() -> Dashboard:
    variables = [
        label_variable("agent", "Agent", N.RUNS_TOTAL),
        label_variable(
            "tool", "Tool", N.TOOL_CALLS_TOTAL, AGENT, multi=False, description="The tool to look at (one at a time)."
        ),
    ]
    return dashboard(
        "tracedagent / Tool",
        UID,
        "One tool in detail: its calls, latency and failures, and the resilience layers around it "
        "(circuit breaker, bulkhead, retries).",
        variables,
        [
            row("Calls of $tool"),
            timeseries(
                "Calls per second by status",
                "Calls of the tool per second, by status.",
                RATE,
                ("{{status}}", per_second(N.TOOL_CALLS_TOTAL, AGENT, TOOL, by=("status",))),
            ),
            timeseries(
                "Calls per second by agent",
                "Which agents call the tool, per second.",
                RATE,
                ("{{agent}}", per_second(N.TOOL_CALLS_TOTAL, AGENT, TOOL, by=("agent",))),
            ),
            timeseries(
                "Latency",
                "Quantiles of the tool's call duration (from the call to its result, retries included).",
                "s",
                ("p50", quantile(0.5, N.TOOL_CALL_DURATION, AGENT, TOOL)),
                ("p95", quantile(0.95, N.TOOL_CALL_DURATION, AGENT, TOOL)),
                ("p99", quantile(0.99, N.TOOL_CALL_DURATION, AGENT, TOOL)),
            ),
            timeseries(
                "Error ratio",
                "Share of the tool's calls that failed (error or timeout); empty while none fail.",
                "percentunit",
                (
                    "{{tool}}",
                    ratio(
                        per_second(N.TOOL_CALLS_TOTAL, AGENT, TOOL, FAILED, by=("tool",)),
                        per_second(N.TOOL_CALLS_TOTAL, AGENT, TOOL, by=("tool",)),
                    ),
                ),
                max_value=1,
            ),
            row("Resilience of $tool"),
            breaker_timeline(
                "Breaker state",
                "The tool's circuit breaker: closed, half-open (probing) or open (refusing calls). Tools "
                "without a breaker have no line.",
                ("{{tool}}", worst(N.CIRCUIT_STATE, TOOL, by=("tool",))),
            ),
            timeseries(
                "In flight and queued",
                "Calls running now and calls waiting for a slot of the tool's bulkhead.",
                "short",
                ("in flight", gauge(N.TOOL_INFLIGHT, TOOL)),
                ("queued", gauge(N.TOOL_QUEUE_DEPTH, TOOL)),
            ),
            timeseries(
                "Refusals by reason",
                "Calls refused before running, per second: queue_full, queue_timeout (backpressure) and "
                "circuit_open (the breaker).",
                RATE,
                ("{{reason}}", per_second(N.TOOL_REJECTIONS_TOTAL, TOOL, by=("reason",))),
            ),
            timeseries(
                "Retries",
                "Retries of the tool's calls scheduled per second.",
                RATE,
                ("retries", per_second(N.RETRIES_TOTAL, 'kind="tool"', 'target=~"$tool"')),
            ),
        ],
    )
