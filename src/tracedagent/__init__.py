"""tracedagent: an observable-first agent framework.

Every stage of a run fires a pluggy hook; tracer plugins fan the events out to stdout, LangSmith,
OTLP and Prometheus. See the README for a tour.
"""

from ._agent import Agent, RunResult
from ._compaction import CharEstimate, CompactionContext, CompactionStrategy, DropOldest, Summarize, TokenCounter
from ._context import RunContext
from ._dispatch import PluginContext, PluginInfo, list_plugins, load_plugins, plugin_errors, register, unregister
from ._events import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    ErrorInfo,
    Event,
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
from ._messages import Message, ToolCall, Usage
from ._model import Model, ModelRequest, ModelResponse, ModelStreamPart, TextDelta, ThinkingDelta
from ._stream import FinalResult, StreamEvent, UsageUpdated
from ._tools import Tool, ToolCallRequest, ToolSpec, tool
from .exceptions import (
    ConfigurationError,
    MaxTurnsExceeded,
    ModelBehaviorError,
    ModelError,
    PluginError,
    RunError,
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
    "CharEstimate",
    "CheckpointSaved",
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
    "Interruption",
    "MaxTurnsExceeded",
    "Message",
    "Model",
    "ModelBehaviorError",
    "ModelCallEnded",
    "ModelCallStarted",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "ModelStreamPart",
    "PluginContext",
    "PluginError",
    "PluginInfo",
    "RetryScheduled",
    "RunContext",
    "RunEnded",
    "RunError",
    "RunInterrupted",
    "RunResult",
    "RunResumed",
    "RunStarted",
    "SpanContext",
    "StreamEvent",
    "Summarize",
    "TextDelta",
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
    "current_span",
    "export_stats",
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
]
