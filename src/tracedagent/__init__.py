"""tracedagent: an observable-first agent framework.

Every stage of a run fires a pluggy hook; tracer plugins fan the events out to stdout, LangSmith,
OTLP and Prometheus. See the README for a tour.
"""

from ._agent import Agent
from ._approval import Approval, approval_granted
from ._checkpoint import Checkpoint, CheckpointStore, InMemoryCheckpointStore, SQLiteCheckpointStore
from ._compaction import CharEstimate, CompactionContext, CompactionStrategy, DropOldest, Summarize, TokenCounter
from ._context import RunContext
from ._events import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Event,
    HandoffOccurred,
    Interruption,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
)
from ._export import ExportPipeline, ExportStats, export_stats, flush, is_exporting, shutdown
from ._ids import SpanContext, current_span
from ._messages import Image, Message, ThinkingBlock, ToolCall, Usage
from ._model import Model, ModelRequest, ModelResponse, ModelStreamPart, OutputRequest, TextDelta, ThinkingDelta
from ._otel import OtelSpanSource, use_otel_spans
from ._plugin_context import PluginContext
from ._plugin_errors import plugin_errors
from ._plugins import PluginInfo, list_plugins, load_plugins, register, unregister
from ._postgres import PostgresCheckpointStore
from ._queueing import QueueingTracer
from ._result import RunResult
from ._stream import FinalResult, PartialOutput, StreamEvent, UsageUpdated
from ._tools import Tool, ToolCallRequest, ToolSpec, external_tool, tool
from .exceptions import (
    ApprovalRequired,
    BackpressureRejected,
    CheckpointError,
    CircuitOpen,
    ConfigurationError,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelStreamError,
    OutputValidationError,
    PluginError,
    RunError,
    RunRejected,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolError,
    ToolTimeout,
    TracedAgentError,
    UnknownToolError,
    UserError,
)
from .hookspecs import hookimpl, hookspec

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "Approval",
    "ApprovalRequired",
    "BackpressureRejected",
    "CharEstimate",
    "Checkpoint",
    "CheckpointError",
    "CheckpointSaved",
    "CheckpointStore",
    "CircuitOpen",
    "CircuitStateChanged",
    "CompactionContext",
    "CompactionStrategy",
    "ConfigurationError",
    "ContextCompacted",
    "DropOldest",
    "ErrorInfo",
    "Event",
    "ExportPipeline",
    "ExportStats",
    "FinalResult",
    "HandoffOccurred",
    "Image",
    "InMemoryCheckpointStore",
    "Interruption",
    "MaxTurnsExceeded",
    "Message",
    "Model",
    "ModelBehaviorError",
    "ModelCallEnded",
    "ModelCallStarted",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelRequest",
    "ModelResponse",
    "ModelStreamError",
    "ModelStreamPart",
    "OtelSpanSource",
    "OutputRequest",
    "OutputValidationError",
    "PartialOutput",
    "PluginContext",
    "PluginError",
    "PluginInfo",
    "PostgresCheckpointStore",
    "QueueingTracer",
    "RetryScheduled",
    "RunContext",
    "RunEnded",
    "RunError",
    "RunInterrupted",
    "RunRejected",
    "RunResult",
    "RunResumed",
    "RunStarted",
    "SQLiteCheckpointStore",
    "SpanContext",
    "StreamEvent",
    "Summarize",
    "TextDelta",
    "ThinkingBlock",
    "ThinkingDelta",
    "TokenCounter",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallEnded",
    "ToolCallRequest",
    "ToolCallStarted",
    "ToolDefinitionError",
    "ToolError",
    "ToolSpec",
    "ToolTimeout",
    "TracedAgentError",
    "UnknownToolError",
    "Usage",
    "UsageUpdated",
    "UserError",
    "approval_granted",
    "current_span",
    "export_stats",
    "external_tool",
    "flush",
    "hookimpl",
    "hookspec",
    "is_exporting",
    "list_plugins",
    "load_plugins",
    "plugin_errors",
    "register",
    "shutdown",
    "tool",
    "unregister",
    "use_otel_spans",
]
