"""Every error tracedagent raises, as one tree.

::

    TracedAgentError
    ├── UserError                  the API was misused; the message says how to call it
    │   ├── ConfigurationError     a setting (argument or environment variable) is invalid
    │   ├── ToolDefinitionError    a function cannot be turned into a tool
    │   └── PluginError            a plugin cannot be found, imported or registered
    ├── RunRejected                a new run was refused: the agent has ``max_concurrent_runs`` running
    ├── RunError                   a run failed; ``.result`` holds its state (status ``failed``)
    │   ├── MaxTurnsExceeded       the model kept calling tools past ``max_turns``
    │   ├── OutputValidationError  the answer did not match ``output_type``, corrections included
    │   └── ModelError             the model call failed (``.__cause__`` is the underlying error)
    │       ├── ModelBehaviorError the model answered with something the run cannot use
    │       ├── ModelHTTPError     the provider answered with an HTTP error (``status_code``)
    │       ├── ModelConnectionError  no answer: connection refused or reset, or a timeout
    │       └── ModelStreamError   the answer's stream was cut off or malformed
    ├── CheckpointError            a checkpoint cannot be read (corrupted, unknown version); names the run
    └── ToolError                  a tool call failed; the model sees the message and can correct it
        ├── ToolArgumentsError     the arguments did not match the tool's schema
        ├── UnknownToolError       the model asked for a tool that does not exist
        ├── ToolTimeout            the tool ran past its ``timeout`` (the timeout layer)
        ├── CircuitOpen            refused by the tool's circuit breaker (the breaker layer)
        └── BackpressureRejected   refused by the tool's bulkhead: ``reason`` is queue_full or queue_timeout

Cancellation is not an error here: ``asyncio.CancelledError`` propagates unchanged, after every open
span has ended with status ``cancelled``. Neither is an interrupt: a tool that raises
:class:`ApprovalRequired` pauses the run (status ``interrupted``) until a person decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._result import RunResult

__all__ = [
    "ApprovalRequired",
    "BackpressureRejected",
    "CheckpointError",
    "CircuitOpen",
    "ConfigurationError",
    "MaxTurnsExceeded",
    "ModelBehaviorError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelStreamError",
    "OutputValidationError",
    "PluginError",
    "RunError",
    "RunRejected",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolError",
    "ToolTimeout",
    "TracedAgentError",
    "UnknownToolError",
    "UserError",
]


class TracedAgentError(Exception):
    """The root of every tracedagent error."""


class UserError(TracedAgentError):
    """The API was used in a way it cannot work; the message says what to do instead."""


class ConfigurationError(UserError):
    """A setting, from an argument or an environment variable, is invalid."""


class ToolDefinitionError(UserError):
    """A function cannot be turned into a tool (for example, an argument has no type annotation)."""


class PluginError(UserError):
    """A plugin cannot be found, imported or registered."""


class RunError(TracedAgentError):
    """A run failed. ``result`` is the run's state when it stopped (status ``failed``)."""

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class MaxTurnsExceeded(RunError):
    """The model was still asking for tools after ``max_turns`` model calls."""


class OutputValidationError(RunError):
    """The model's answer did not validate against the run's ``output_type``, and the corrections it was
    given (``output_retries``) did not fix it. ``errors`` are the last answer's validation errors
    (pydantic's ``errors()`` without the input values), ``raw_output`` the text of that answer. The
    message names the fields that failed but never quotes the answer, so it is safe in telemetry."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        raw_output: str | None = None,
        result: RunResult | None = None,
    ) -> None:
        super().__init__(message, result)
        self.errors: list[dict[str, Any]] = errors or []
        self.raw_output = raw_output


class ModelError(RunError):
    """A model call failed; the provider's own error is chained as ``__cause__``."""


class ModelBehaviorError(ModelError):
    """The model's answer cannot be used (for example, it is empty)."""


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error. ``status_code`` is the status, ``provider_message`` the
    provider's own explanation; ``attempts`` how many requests were made (retries included)."""

    def __init__(self, message: str, *, status_code: int, provider_message: str = "", attempts: int = 1) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.provider_message = provider_message
        self.attempts = attempts


class ModelConnectionError(ModelError):
    """The provider could not be reached or did not answer in time (after any retries)."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__(message)
        self.attempts = attempts


class ModelStreamError(ModelError):
    """The answer's stream broke: cut off before its end, or a chunk that cannot be read."""


class CheckpointError(TracedAgentError):
    """A checkpoint or session record cannot be used: corrupted, truncated, from an unknown format
    version, or for another run. ``run_id`` names the run; nothing was restored."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ApprovalRequired(Exception):
    """Raised by a tool to pause the run until a person approves this call (``reason`` says why).

    When the run is resumed with an approval, the tool is called again and
    :func:`tracedagent.approval_granted` returns True inside it.
    """

    def __init__(self, reason: str = "this call needs a person's approval") -> None:
        super().__init__(reason)
        self.reason = reason


class ToolError(TracedAgentError):
    """A tool call failed. The message goes back to the model, which can try again."""

    status: str = "error"

    def __init__(self, message: str, *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


class ToolArgumentsError(ToolError):
    """The model's arguments are not valid JSON or do not match the tool's schema."""


class UnknownToolError(ToolError):
    """The model asked for a tool the agent does not have."""


class ToolTimeout(ToolError):
    """The tool did not finish within its ``timeout``."""

    status = "timeout"


class CircuitOpen(ToolError):
    """The tool's circuit breaker is open: the call was refused at once, without running the tool."""

    status = "circuit_open"
    layer = "breaker"

    def __init__(self, message: str, *, tool: str = "", retry_in: float = 0.0) -> None:
        super().__init__(message, tool=tool)
        self.retry_in = retry_in
        self.reason = "circuit_open"


class BackpressureRejected(ToolError):
    """The tool's bulkhead refused the call: ``reason`` is ``queue_full`` or ``queue_timeout``."""

    status = "rejected"
    layer = "backpressure"

    def __init__(self, message: str, *, tool: str = "", reason: str = "queue_full") -> None:
        super().__init__(message, tool=tool)
        self.reason = reason


class RunRejected(TracedAgentError):
    """A new run was refused because the agent already has ``max_concurrent_runs`` runs going."""
