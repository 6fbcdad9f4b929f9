"""Every span name, attribute, span event, metric and bucket this plugin exports, in one place.

The names follow the OpenTelemetry GenAI semantic conventions v1.41 (``gen_ai.*``, ``error.type``), plus
the OpenInference attributes Arize Phoenix reads (``openinference.span.kind``, ``llm.*``, ``tool.name``,
``input.value``...). Anything tracedagent adds of its own is under ``tracedagent.``. Dashboards, queries
and tests depend on these strings: change them here and nowhere else.
"""

from __future__ import annotations

#: The schema the names follow, set on the instrumentation scope.
SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"
SCOPE_NAME = "tracedagent"
SCOPE_VERSION = "0.1.0"

# ------------------------------------------------------------------------------------ span names

OP_INVOKE_AGENT = "invoke_agent"
OP_CHAT = "chat"
OP_EXECUTE_TOOL = "execute_tool"


def agent_span_name(agent: str) -> str:
    """``invoke_agent {agent}``: one span per run segment."""
    return f"{OP_INVOKE_AGENT} {agent}" if agent else OP_INVOKE_AGENT


def chat_span_name(model: str) -> str:
    """``chat {model}``: one span per model request (kind CLIENT)."""
    return f"{OP_CHAT} {model}" if model else OP_CHAT


def tool_span_name(tool: str) -> str:
    """``execute_tool {tool}``: one span per tool call."""
    return f"{OP_EXECUTE_TOOL} {tool}" if tool else OP_EXECUTE_TOOL


# ---------------------------------------------------------------------- GenAI semantic conventions

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
#: What a model call cost in US dollars (Usage.cost_usd, from genai-prices); only on ``chat`` spans, only
#: when the model has a price. Not (yet) in the GenAI conventions.
GEN_AI_USAGE_COST = "gen_ai.usage.cost"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"

# Content (opt-in: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT)
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT = "gen_ai.tool.call.result"

TOOL_TYPE_FUNCTION = "function"
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"
#: ``error.type`` when a failure has no exception type to name.
ERROR_TYPE_OTHER = "_OTHER"

# ----------------------------------------------------------------------- OpenInference (Phoenix)

OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
KIND_AGENT = "AGENT"
KIND_LLM = "LLM"
KIND_TOOL = "TOOL"
OI_SESSION_ID = "session.id"
OI_LLM_MODEL_NAME = "llm.model_name"
OI_LLM_PROVIDER = "llm.provider"
OI_LLM_TOKEN_COUNT_PROMPT = "llm.token_count.prompt"
OI_LLM_TOKEN_COUNT_COMPLETION = "llm.token_count.completion"
OI_LLM_TOKEN_COUNT_TOTAL = "llm.token_count.total"
OI_TOOL_NAME = "tool.name"
# Content only, like the gen_ai content attributes.
OI_INPUT_VALUE = "input.value"
OI_INPUT_MIME_TYPE = "input.mime_type"
OI_OUTPUT_VALUE = "output.value"
OI_OUTPUT_MIME_TYPE = "output.mime_type"
MIME_JSON = "application/json"

# ------------------------------------------------------------------------- tracedagent's own

TD_RUN_ID = "tracedagent.run_id"
#: The core's span and trace id of a span made through an application's provider, when the provider chose
#: other ids (it picks its own span ids; the trace id is the core's whenever the run has a parent).
TD_SPAN_ID = "tracedagent.span_id"
TD_TRACE_ID = "tracedagent.trace_id"
#: The core's status of the segment or call: completed, interrupted, ok, denied, timeout...
TD_STATUS = "tracedagent.status"
TD_CANCELLED = "tracedagent.cancelled"
TD_TURN = "tracedagent.turn"
TD_TURNS = "tracedagent.turns"
TD_PURPOSE = "tracedagent.purpose"
TD_REFUSAL_REASON = "tracedagent.refusal_reason"
TD_RESUMED = "tracedagent.resumed"
TD_TOKENS_ESTIMATED = "tracedagent.tokens_estimated"
#: A run segment's token totals (the run's so far). Not ``gen_ai.usage.*``: backends that add up the
#: usage of a span and its children (Phoenix does) would count every model call twice.
TD_USAGE_INPUT_TOKENS = "tracedagent.usage.input_tokens"
TD_USAGE_OUTPUT_TOKENS = "tracedagent.usage.output_tokens"
TD_USAGE_REQUESTS = "tracedagent.usage.requests"

# Span events, each on the span its tracedagent event names.
EVENT_INTERRUPT = "tracedagent.interrupt"
EVENT_RESUME = "tracedagent.resume"
EVENT_COMPACTION = "tracedagent.compaction"
EVENT_CHECKPOINT = "tracedagent.checkpoint"
EVENT_CIRCUIT_CHANGE = "tracedagent.circuit_change"
EVENT_RETRY = "tracedagent.retry"
EVENT_HANDOFF = "tracedagent.handoff"

# Span event attributes.
TD_INTERRUPTION_COUNT = "tracedagent.interruption.count"
TD_INTERRUPTION_IDS = "tracedagent.interruption.ids"
TD_INTERRUPTION_TOOLS = "tracedagent.interruption.tools"
TD_INTERRUPTION_KINDS = "tracedagent.interruption.kinds"
TD_INTERRUPTION_REASONS = "tracedagent.interruption.reasons"  # content
TD_PREVIOUS_SPAN_ID = "tracedagent.previous_span_id"
TD_WAITED_S = "tracedagent.waited_s"
TD_STRATEGY = "tracedagent.compaction.strategy"
TD_TOKENS_BEFORE = "tracedagent.compaction.tokens_before"
TD_TOKENS_AFTER = "tracedagent.compaction.tokens_after"
TD_MESSAGES_BEFORE = "tracedagent.compaction.messages_before"
TD_MESSAGES_AFTER = "tracedagent.compaction.messages_after"
TD_COMPACTION_ESTIMATED = "tracedagent.compaction.estimated"
TD_CHECKPOINT_BYTES = "tracedagent.checkpoint.bytes"
TD_CHECKPOINT_DURATION = "tracedagent.checkpoint.duration_s"
TD_CHECKPOINT_STORE = "tracedagent.checkpoint.store"
TD_CHECKPOINT_STEP = "tracedagent.checkpoint.step"
TD_CIRCUIT_TOOL = "tracedagent.circuit.tool"
TD_CIRCUIT_OLD = "tracedagent.circuit.old"
TD_CIRCUIT_NEW = "tracedagent.circuit.new"
TD_CIRCUIT_REASON = "tracedagent.circuit.reason"
TD_RETRY_TARGET = "tracedagent.retry.target"
TD_HANDOFF_FROM = "tracedagent.handoff.from_agent"
TD_HANDOFF_TO = "tracedagent.handoff.to_agent"
TD_RETRY_KIND = "tracedagent.retry.kind"
TD_RETRY_ATTEMPT = "tracedagent.retry.attempt"
TD_RETRY_DELAY = "tracedagent.retry.delay_s"
TD_ERROR_MESSAGE = "tracedagent.error.message"  # content (error messages can quote it)

# --------------------------------------------------------------------------------------- metrics

METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
#: The conventions' advised bucket boundaries.
TOKEN_USAGE_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
OPERATION_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# ------------------------------------------------------------------------------------- settings

ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
ENV_MAX_CONTENT = "TRACEDAGENT_OTLP_MAX_CONTENT"
ENV_FAST_ENCODER = "TRACEDAGENT_OTLP_FAST_ENCODER"
ENV_SDK_DISABLED = "OTEL_SDK_DISABLED"
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
ENV_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
ENV_METRICS_PROTOCOL = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
ENV_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
ENV_TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
DEFAULT_MAX_CONTENT = 8192
