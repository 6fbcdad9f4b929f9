"""Every metric name, label and bucket in one place (the dashboards and alerts depend on them)."""

from __future__ import annotations

RUNS_TOTAL = "tracedagent_runs_total"
RUN_DURATION = "tracedagent_run_duration_seconds"
RUNS_ACTIVE = "tracedagent_runs_active"
MODEL_CALLS_TOTAL = "tracedagent_model_calls_total"
MODEL_CALL_DURATION = "tracedagent_model_call_duration_seconds"
MODEL_TTFT = "tracedagent_model_time_to_first_token_seconds"
TOKENS_TOTAL = "tracedagent_tokens_total"
COST_USD_TOTAL = "tracedagent_cost_usd_total"
TOOL_CALLS_TOTAL = "tracedagent_tool_calls_total"
TOOL_CALL_DURATION = "tracedagent_tool_call_duration_seconds"
TOOL_INFLIGHT = "tracedagent_tool_inflight"
TOOL_QUEUE_DEPTH = "tracedagent_tool_queue_depth"
TOOL_REJECTIONS_TOTAL = "tracedagent_tool_rejections_total"
CIRCUIT_STATE = "tracedagent_circuit_state"
RETRIES_TOTAL = "tracedagent_retries_total"
INTERRUPTS_TOTAL = "tracedagent_interrupts_total"
RESUMES_TOTAL = "tracedagent_resumes_total"
COMPACTIONS_TOTAL = "tracedagent_compactions_total"
COMPACTION_TOKENS_REMOVED_TOTAL = "tracedagent_compaction_tokens_removed_total"
PLUGIN_ERRORS_TOTAL = "tracedagent_plugin_errors_total"
EXPORT_QUEUE_DEPTH = "tracedagent_export_queue_depth"
EXPORT_DROPPED_TOTAL = "tracedagent_export_dropped_total"
TRACES_SHED_TOTAL = "tracedagent_traces_shed_total"
OUTPUT_VALIDATION_FAILURES_TOTAL = "tracedagent_output_validation_failures_total"
HANDOFFS_TOTAL = "tracedagent_handoffs_total"

#: Every metric this plugin exposes (without the _total/_bucket suffixes the exposition adds).
ALL = (
    RUNS_TOTAL,
    RUN_DURATION,
    RUNS_ACTIVE,
    MODEL_CALLS_TOTAL,
    MODEL_CALL_DURATION,
    MODEL_TTFT,
    TOKENS_TOTAL,
    COST_USD_TOTAL,
    TOOL_CALLS_TOTAL,
    TOOL_CALL_DURATION,
    TOOL_INFLIGHT,
    TOOL_QUEUE_DEPTH,
    TOOL_REJECTIONS_TOTAL,
    CIRCUIT_STATE,
    RETRIES_TOTAL,
    INTERRUPTS_TOTAL,
    RESUMES_TOTAL,
    COMPACTIONS_TOTAL,
    COMPACTION_TOKENS_REMOVED_TOTAL,
    PLUGIN_ERRORS_TOTAL,
    EXPORT_QUEUE_DEPTH,
    EXPORT_DROPPED_TOTAL,
    TRACES_SHED_TOTAL,
    OUTPUT_VALIDATION_FAILURES_TOTAL,
    HANDOFFS_TOTAL,
)

#: The OpenTelemetry GenAI conventions' buckets for gen_ai.client.operation.duration (seconds).
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
#: The GenAI conventions' buckets for time to first token (gen_ai.server.time_to_first_token).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Tools: from a cache hit to a slow API.
TOOL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Runs (one segment): from an instant answer to minutes of tool use.
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

#: tracedagent_circuit_state values.
CIRCUIT_VALUE = {"closed": 0, "half_open": 1, "open": 2}
#: Token types of tracedagent_tokens_total.
TOKEN_TYPES = ("input", "output", "cache_read", "reasoning")

#: The metrics the tracer updates in its hooks: (attribute, name, help, type, label names, buckets).
#: Both stores (prometheus-client's objects in multiprocess mode, plain numbers otherwise) are built
#: from this table, so they expose the same thing.
UPDATED: tuple[tuple[str, str, str, str, tuple[str, ...], tuple[float, ...]], ...] = (
    ("runs_total", RUNS_TOTAL, "Run segments ended, by status.", "counter", ("agent", "status"), ()),
    ("run_duration", RUN_DURATION, "Duration of run segments.", "histogram", ("agent",), RUN_BUCKETS),
    ("runs_active", RUNS_ACTIVE, "Runs going on now.", "gauge", ("agent",), ()),
    (
        "model_calls_total",
        MODEL_CALLS_TOTAL,
        "Model calls, by status.",
        "counter",
        ("agent", "provider", "model", "status"),
        (),
    ),
    (
        "model_call_duration",
        MODEL_CALL_DURATION,
        "Duration of model calls (GenAI operation duration buckets).",
        "histogram",
        ("agent", "provider", "model"),
        GENAI_DURATION_BUCKETS,
    ),
    (
        "model_ttft",
        MODEL_TTFT,
        "Time from sending a model request to its first streamed part.",
        "histogram",
        ("agent", "provider", "model"),
        TTFT_BUCKETS,
    ),
    (
        "tokens_total",
        TOKENS_TOTAL,
        "Tokens used, by type (input, output, cache_read, reasoning).",
        "counter",
        ("agent", "provider", "model", "type"),
        (),
    ),
    (
        "cost_usd_total",
        COST_USD_TOTAL,
        "What model calls cost in US dollars (genai-prices); calls of a model without a known price add nothing.",
        "counter",
        ("agent", "provider", "model"),
        (),
    ),
    ("tool_calls_total", TOOL_CALLS_TOTAL, "Tool calls, by status.", "counter", ("agent", "tool", "status"), ()),
    ("tool_call_duration", TOOL_CALL_DURATION, "Duration of tool calls.", "histogram", ("agent", "tool"), TOOL_BUCKETS),
    (
        "tool_rejections_total",
        TOOL_REJECTIONS_TOTAL,
        "Tool calls refused by a resilience layer, by reason.",
        "counter",
        ("tool", "reason"),
        (),
    ),
    (
        "retries_total",
        RETRIES_TOTAL,
        "Retries scheduled, by target and kind (model, tool).",
        "counter",
        ("target", "kind"),
        (),
    ),
    ("interrupts_total", INTERRUPTS_TOTAL, "Runs paused for a person.", "counter", ("agent",), ()),
    ("resumes_total", RESUMES_TOTAL, "Paused runs resumed.", "counter", ("agent",), ()),
    (
        "handoffs_total",
        HANDOFFS_TOTAL,
        "Runs handed from one agent to another (Agent(handoffs=...)).",
        "counter",
        ("from_agent", "to_agent"),
        (),
    ),
    ("compactions_total", COMPACTIONS_TOTAL, "Context compactions, by strategy.", "counter", ("agent", "strategy"), ()),
    (
        "compaction_tokens_removed_total",
        COMPACTION_TOKENS_REMOVED_TOTAL,
        "Tokens removed by compaction.",
        "counter",
        ("agent",),
        (),
    ),
    (
        "output_validation_failures_total",
        OUTPUT_VALIDATION_FAILURES_TOTAL,
        "Model answers that did not validate against the run's output_type (corrected or not).",
        "counter",
        ("agent",),
        (),
    ),
)
