"""The overview dashboard: runs, models, cost, tools, resilience, context and the telemetry pipeline."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row, TextBoxVariable
from grafana_foundation_sdk.builders.timeseries import Panel as TimeSeries

from .panels import breaker_timeline, dashboard, label_variable, row, textbox_variable, timeseries
from .promql import AGENT, FAILED, FROM_AGENT, MODEL, RETRY_TARGET, TOOL, N, gauge, per_second, quantile, ratio, worst

UID = "tracedagent-overview"
RATE = "ops"  # Grafana shows "ops/s": events per second
TOKENS_PER_SECOND = "suffix: tokens/s"
USD = "currencyUSD"  # Grafana shows dollars
#: The cost alert's threshold in dollars per hour per agent (TracedAgentCostRateHigh in alerts.yml).
COST_ALERT_USD_PER_HOUR = "10"


def _cost_threshold_variable() -> TextBoxVariable:
    return textbox_variable(
        "cost_threshold",
        "Cost threshold (USD/h)",
        COST_ALERT_USD_PER_HOUR,
        "The line drawn on the cost panel, in US dollars per hour. Keep it at the threshold of the "
        "TracedAgentCostRateHigh alert (alerts.yml: 10 USD per hour per agent) or set your own.",
    )


def _cost_panels() -> list[TimeSeries | Row]:
    """The Cost row: what model calls cost per hour (genai-prices), by agent and model."""
    return [
        row("Cost"),
        timeseries(
            "Cost per hour by agent and model",
            "What model calls cost, in US dollars per hour at the current rate, by agent and model (prices of "
            "genai-prices; a model without a known price adds nothing). The threshold line is the "
            "cost_threshold variable.",
            USD,
            ("{{agent}} {{model}}", f"{per_second(N.COST_USD_TOTAL, AGENT, MODEL, by=('agent', 'model'))} * 3600"),
            ("threshold", "vector($cost_threshold)"),
        ),
        timeseries(
            "Cost per model call",
            "Average cost of one model call, in US dollars, by model: the cost rate over the rate of calls "
            "with a price.",
            USD,
            (
                "{{model}}",
                ratio(
                    per_second(N.COST_USD_TOTAL, AGENT, MODEL, by=("model",)),
                    per_second(N.MODEL_CALLS_TOTAL, AGENT, MODEL, by=("model",)),
                ),
            ),
        ),
    ]


def build() -> Dashboard:
    variables = [
        label_variable("agent", "Agent", N.RUNS_TOTAL),
        label_variable("model", "Model", N.MODEL_CALLS_TOTAL, AGENT),
        label_variable("tool", "Tool", N.TOOL_CALLS_TOTAL, AGENT),
        _cost_threshold_variable(),
    ]
    return dashboard(
        "tracedagent / Overview",
        UID,
        "Agent runs and handoffs, model and tool calls, resilience (breakers, bulkheads, retries), context compaction "
        "and the health of tracedagent's own telemetry. Metrics of the tracedagent-prometheus plugin.",
        variables,
        [
            row("Runs"),
            timeseries(
                "Runs per second by status",
                "Run segments ended per second: completed, failed, cancelled, or interrupted (paused for approval).",
                RATE,
                ("{{status}}", per_second(N.RUNS_TOTAL, AGENT, by=("status",))),
            ),
            timeseries(
                "Run duration",
                "Quantiles of run segment duration (a resumed run is a new segment).",
                "s",
                ("p50", quantile(0.5, N.RUN_DURATION, AGENT)),
                ("p95", quantile(0.95, N.RUN_DURATION, AGENT)),
                ("p99", quantile(0.99, N.RUN_DURATION, AGENT)),
            ),
            timeseries(
                "Active runs",
                "Runs going on now, by agent.",
                "short",
                ("{{agent}}", gauge(N.RUNS_ACTIVE, AGENT, by=("agent",))),
            ),
            timeseries(
                "Interrupts and resumes",
                "Runs paused for a person (approval or input) and paused runs resumed, per second. "
                "A gap between the two is runs still waiting.",
                RATE,
                ("interrupts", per_second(N.INTERRUPTS_TOTAL, AGENT)),
                ("resumes", per_second(N.RESUMES_TOTAL, AGENT)),
            ),
            timeseries(
                "Output validation failures",
                "Model answers that did not validate against the run's output_type, per second, by agent "
                "(corrected or not; runs that failed on one also count as failed runs).",
                RATE,
                ("{{agent}}", per_second(N.OUTPUT_VALIDATION_FAILURES_TOTAL, AGENT, by=("agent",))),
            ),
            timeseries(
                "Handoffs between agents",
                "Runs handed from one agent to another per second (Agent(handoffs=...)), by the agent handing off "
                "and the agent taking over. The agent variable selects the agents handing off.",
                RATE,
                (
                    "{{from_agent}} -> {{to_agent}}",
                    per_second(N.HANDOFFS_TOTAL, FROM_AGENT, by=("from_agent", "to_agent")),
                ),
                width=24,
            ),
            row("Models"),
            timeseries(
                "Model calls per second",
                "Model requests per second, by model and status.",
                RATE,
                ("{{model}} {{status}}", per_second(N.MODEL_CALLS_TOTAL, AGENT, MODEL, by=("model", "status"))),
            ),
            timeseries(
                "Model call latency",
                "Quantiles of model call duration, by model (OpenTelemetry GenAI buckets, 10 ms to 82 s).",
                "s",
                ("{{model}} p50", quantile(0.5, N.MODEL_CALL_DURATION, AGENT, MODEL, by=("model",))),
                ("{{model}} p95", quantile(0.95, N.MODEL_CALL_DURATION, AGENT, MODEL, by=("model",))),
            ),
            timeseries(
                "Time to first token",
                "Quantiles of the time from sending a model request to its first streamed part, by model.",
                "s",
                ("{{model}} p50", quantile(0.5, N.MODEL_TTFT, AGENT, MODEL, by=("model",))),
                ("{{model}} p95", quantile(0.95, N.MODEL_TTFT, AGENT, MODEL, by=("model",))),
            ),
            timeseries(
                "Tokens per second",
                "Tokens per second by model and type (input, output, cache_read, reasoning).",
                TOKENS_PER_SECOND,
                ("{{model}} {{type}}", per_second(N.TOKENS_TOTAL, AGENT, MODEL, by=("model", "type"))),
            ),
            *_cost_panels(),
            row("Tools"),
            timeseries(
                "Tool calls per second",
                "Tool calls per second by tool and status: ok, error, timeout, rejected (backpressure), "
                "circuit_open (refused by the breaker), denied (approval refused).",
                RATE,
                ("{{tool}} {{status}}", per_second(N.TOOL_CALLS_TOTAL, AGENT, TOOL, by=("tool", "status"))),
            ),
            timeseries(
                "Tool latency p95",
                "95th percentile of tool call duration, by tool (1 ms to 60 s buckets).",
                "s",
                ("{{tool}}", quantile(0.95, N.TOOL_CALL_DURATION, AGENT, TOOL, by=("tool",))),
            ),
            timeseries(
                "Tool error ratio",
                "Share of tool calls that failed (error or timeout), by tool. Only tools with failures in the "
                "window have a line; refusals are under Refusals.",
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
            timeseries(
                "Refusals by reason",
                "Tool calls refused before running, per second: queue_full and queue_timeout (the bulkhead's "
                "backpressure), circuit_open (the breaker).",
                RATE,
                ("{{tool}} {{reason}}", per_second(N.TOOL_REJECTIONS_TOTAL, TOOL, by=("tool", "reason"))),
            ),
            row("Resilience"),
            breaker_timeline(
                "Breaker state",
                "Each tool's circuit breaker over time: closed, half-open (probing) or open (refusing calls). "
                "A breaker that opens and closes between two scrapes does not show; Refusals counts its refusals.",
                ("{{tool}}", worst(N.CIRCUIT_STATE, TOOL, by=("tool",))),
                width=8,
            ),
            timeseries(
                "In flight and queued",
                "Tool calls running now and waiting for a slot (bulkheads with max_concurrency), by tool.",
                "short",
                ("{{tool}} in flight", gauge(N.TOOL_INFLIGHT, TOOL, by=("tool",))),
                ("{{tool}} queued", gauge(N.TOOL_QUEUE_DEPTH, TOOL, by=("tool",))),
                width=8,
            ),
            timeseries(
                "Retries",
                "Retries scheduled per second, by kind (model or tool) and target.",
                RATE,
                ("{{kind}} {{target}}", per_second(N.RETRIES_TOTAL, RETRY_TARGET, by=("kind", "target"))),
                width=8,
            ),
            row("Context"),
            timeseries(
                "Compactions",
                "Context compactions per second, by strategy.",
                RATE,
                ("{{strategy}}", per_second(N.COMPACTIONS_TOTAL, AGENT, by=("strategy",))),
            ),
            timeseries(
                "Tokens removed by compaction",
                "Tokens taken out of the context by compaction, per second.",
                TOKENS_PER_SECOND,
                ("{{agent}}", per_second(N.COMPACTION_TOKENS_REMOVED_TOTAL, AGENT, by=("agent",))),
            ),
            row("Telemetry pipeline"),
            timeseries(
                "Plugin errors",
                "Plugin hook implementations that raised, per second, by plugin and hook. The run goes on; "
                "this is empty until a plugin fails.",
                RATE,
                ("{{plugin}} {{hook}}", per_second(N.PLUGIN_ERRORS_TOTAL, by=("plugin", "hook"))),
                width=8,
            ),
            timeseries(
                "Export queue depth",
                "Items waiting in each sink's export queue (OTLP, LangSmith, stdout).",
                "short",
                ("{{sink}}", gauge(N.EXPORT_QUEUE_DEPTH, by=("sink",))),
                width=8,
            ),
            timeseries(
                "Export drops",
                "Events each sink dropped per second, and whole traces it shed at run start because it was behind "
                "(a shed trace is absent, never broken): telemetry lost, the run unharmed.",
                RATE,
                ("{{sink}} events", per_second(N.EXPORT_DROPPED_TOTAL, by=("sink",))),
                ("{{sink}} traces shed", per_second(N.TRACES_SHED_TOTAL, by=("sink",))),
                width=8,
            ),
        ],
    )
