"""``StdoutTracer``: one line per event, formatted on an export worker thread.

The hooks only put the event on the tracer's :class:`tracedagent.ExportPipeline` (a bounded queue that
takes or sheds whole traces, decided when a run starts or resumes; what it sheds is counted, and it never
blocks the run). The pipeline's worker turns each event into a
line with :func:`describe` and writes the batch to the stream in one call. Console lines go through a
structlog logger of the tracer's own (the process's structlog configuration is neither used nor
changed). JSON lines are the very lines structlog's ``JSONRenderer`` prints after ``add_log_level``
(``json.dumps`` of the same dict, in the same key order), encoded directly: the worker holds the GIL
while it renders, and every microsecond it saves is one the run loop does not wait.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog

from tracedagent import (
    ConfigurationError,
    Event,
    ExportPipeline,
    ExportStats,
    QueueingTracer,
)

from ._fields import describe

__all__ = ["ENV_CAPTURE", "ENV_FORMAT", "StdoutTracer", "capture_from_env", "format_from_env", "is_true"]

ENV_FORMAT = "TRACEDAGENT_LOG_FORMAT"
#: Either one set to true turns content capture on.
ENV_CAPTURE = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRACEDAGENT_CAPTURE_CONTENT")

Format = Literal["console", "json"]
FormatChoice = Literal["auto", "console", "json"]


class Writable(Protocol):
    """Where lines go: anything with ``write(str)``; ``flush()`` and ``isatty()`` are used if present."""

    def write(self, text: str, /) -> object: ...


def is_true(value: str | None) -> bool:
    """Whether an environment variable's value means yes (``1``, ``true``, ``yes``, ``on``)."""
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def capture_from_env(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for message content (either variable of :data:`ENV_CAPTURE`)."""
    return any(is_true(environ.get(name)) for name in ENV_CAPTURE)


def format_from_env(environ: Mapping[str, str]) -> FormatChoice:
    """The format ``TRACEDAGENT_LOG_FORMAT`` asks for: ``json``, ``console``, or ``auto`` when unset."""
    raw = environ.get(ENV_FORMAT, "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in ("json", "console"):
        return raw  # type: ignore[return-value]
    raise ConfigurationError(
        f"{ENV_FORMAT}={raw!r} is not a log format; set it to json or console, or unset it to print "
        "console lines on a terminal and JSON lines otherwise"
    )


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):  # a closed or detached stream
        return False


def _colors_from_env(stream: object, environ: Mapping[str, str]) -> tuple[bool, bool]:
    """structlog's rule: ``NO_COLOR`` turns colours off, ``FORCE_COLOR`` on, else only on a TTY.
    Returns ``(colors, force_colors)``."""
    if environ.get("NO_COLOR", ""):
        return False, False
    if environ.get("FORCE_COLOR", ""):
        return True, True
    return _isatty(stream), False


def _event_first(logger: Any, method_name: str, event_dict: Any) -> Any:
    """Put ``event`` first in a JSON line, where a reader's eye (and ``cut``) starts."""
    return {"event": event_dict.pop("event"), **event_dict}


def _console_renderer(colors: bool, force_colors: bool) -> structlog.dev.ConsoleRenderer:
    options: dict[str, Any] = {"sort_keys": False, "pad_event_to": 16}
    try:
        return structlog.dev.ConsoleRenderer(colors=colors, force_colors=force_colors, **options)
    except SystemError:  # colours on Windows need colorama; print plainly without it
        return structlog.dev.ConsoleRenderer(colors=False, **options)


#: The last second formatted by :func:`_utc_iso`: (seconds since the epoch, "YYYY-MM-DDTHH:MM:SS").
_last_second: tuple[int, str] = (-1, "")


def _utc_iso(ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``; the date and time of day are formatted once per second."""
    global _last_second
    seconds = ns // 1_000_000_000
    cached = _last_second
    if cached[0] == seconds:
        prefix = cached[1]
    else:
        prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (seconds, prefix)
    return f"{prefix}.{ns // 1000 % 1_000_000:06d}Z"


def _json_fallback(value: Any) -> Any:
    """What structlog's ``JSONRenderer`` does with a value JSON cannot hold: ``__structlog__()``, else
    its ``repr``."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


#: ``json.dumps(line, default=_json_fallback)`` without building an encoder per line: the same text.
_json_encode = json.JSONEncoder(default=_json_fallback).encode


def _local_clock(ns: int) -> str:
    stamp = datetime.fromtimestamp(ns // 1_000_000_000).replace(microsecond=ns // 1000 % 1_000_000)
    return stamp.strftime("%H:%M:%S.%f")[:-3]


class _Quoted:
    """A console value printed as its ``repr``: control characters (a newline, an ANSI escape a model
    may produce) are escaped instead of reaching the terminal."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


class StdoutTracer(QueueingTracer):
    """A tracer that prints one line per event: human-readable in a terminal, JSON lines otherwise.

    ``stream``: where lines go (default ``sys.stdout`` as it is when the tracer is built).
    ``format``: ``"json"``, ``"console"`` or ``"auto"`` (console on a TTY, JSON otherwise); by default
    read from ``TRACEDAGENT_LOG_FORMAT``. ``capture_content``: print message content and error
    messages; by default read from ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` or
    ``TRACEDAGENT_CAPTURE_CONTENT``. ``colors``: colour console lines; by default only on a TTY, with
    structlog's ``NO_COLOR`` / ``FORCE_COLOR``. ``max_queue`` is the admission bound: a run that starts
    while the events waiting plus the room kept for the runs already admitted would pass it is shed whole
    (counted); the events of admitted runs are held up to twice that. ``interval_s`` is how often the worker
    prints what is waiting.

    Use it per agent (``Agent(..., plugins=[StdoutTracer()])``) or process-wide
    (``tracedagent.register(StdoutTracer())``, or ``TRACEDAGENT_STDOUT=1`` with the plugin installed).
    """

    name = "stdout-tracer"

    def __init__(
        self,
        stream: Writable | None = None,
        *,
        format: FormatChoice | None = None,
        capture_content: bool | None = None,
        colors: bool | None = None,
        max_queue: int = 65_536,
        interval_s: float = 0.1,
    ) -> None:
        environ = os.environ
        self.stream: Writable = sys.stdout if stream is None else stream
        choice = format_from_env(environ) if format is None else format
        if choice not in ("auto", "console", "json"):
            raise ConfigurationError(f"StdoutTracer format must be 'auto', 'console' or 'json', not {choice!r}")
        self.format: Format = ("console" if _isatty(self.stream) else "json") if choice == "auto" else choice
        self.capture_content = capture_from_env(environ) if capture_content is None else bool(capture_content)
        force_colors = False
        if colors is None:
            colors, force_colors = _colors_from_env(self.stream, environ)
        self.colors = bool(colors) and self.format == "console"
        renderer: Any = (
            _console_renderer(self.colors, force_colors)
            if self.format == "console"
            else structlog.processors.JSONRenderer()
        )
        processors: list[Any] = [structlog.processors.add_log_level]
        if self.format == "json":
            processors.append(_event_first)
        processors.append(renderer)
        # JSON lines are rendered by _json_line (the same text); console lines go through this logger.
        # A logger of our own: the application's structlog configuration (levels, processors,
        # destination) must neither filter nor reshape these lines.
        self._logger: Any = structlog.wrap_logger(
            structlog.ReturnLogger(),
            processors=processors,
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=True,
        )
        self._broken_pipe = False
        self._pipeline: ExportPipeline[Event] = ExportPipeline(
            "stdout", self._export, max_queue=max_queue, interval_s=interval_s
        )
        self._put = self._pipeline.put_event

    def __repr__(self) -> str:
        content = "with content" if self.capture_content else "no content"
        return f"<StdoutTracer {self.format} to {self.stream!r}, {content}>"

    def tracedagent_identity(self) -> tuple[int, str, bool, bool]:
        """Two tracers printing the same lines to the same stream are one: an agent's own and the
        process-wide one (``TRACEDAGENT_STDOUT=1``) print each event once, from the agent's."""
        return (id(self.stream), self.format, self.capture_content, self.colors)

    # ------------------------------------------------------------------ hooks: O(1), no I/O

    # ---------------------------------------------------------------- the pipeline's controls

    def stats(self) -> ExportStats:
        """Events waiting, dropped (traces shed, or the queue full), printed, lost to write errors, and
        traces admitted, shed and broken."""
        return self._pipeline.stats()

    @property
    def dropped(self) -> int:
        """Events dropped: of traces shed because the stream could not keep up (or after shutdown)."""
        return self._pipeline.dropped

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Print every event queued so far; True if done within ``timeout`` seconds."""
        return self._pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = 5.0) -> bool:
        """Print what is queued and stop the worker; later events are dropped."""
        return self._pipeline.shutdown(timeout)

    # ---------------------------------------------------------------------- the worker's side

    def render(self, event: Event) -> str:
        """The line (without newline) this tracer prints for ``event``."""
        if self.format == "json":
            return self._json_line(event)
        return self._render_structlog(event)

    def _json_line(self, event: Event) -> str:
        # The dict structlog would render: the fields in the order the logger call gives them, "event"
        # moved first (_event_first), "level" added last (add_log_level).
        name, level, fields = describe(event, self.capture_content)
        line = {
            "event": name,
            "run_id": event.run_id,
            "trace_id": event.trace_id,
            "span_id": event.span_id,
            "parent_span_id": event.parent_span_id,
            "agent": event.agent,
            **fields,
            "timestamp": _utc_iso(event.timestamp_ns),
        }
        line["level"] = level
        return _json_encode(line)

    def _render_structlog(self, event: Event) -> str:
        """The line for ``event`` through the structlog processor chain (what :meth:`render` prints; JSON
        lines take a direct path to the same text)."""
        name, level, fields = describe(event, self.capture_content)
        line: dict[str, Any]
        if self.format == "json":
            line = {
                "run_id": event.run_id,
                "trace_id": event.trace_id,
                "span_id": event.span_id,
                "parent_span_id": event.parent_span_id,
                "agent": event.agent,
                **fields,
                "timestamp": _utc_iso(event.timestamp_ns),
            }
        else:
            # Short run id first so a reader can follow interleaved runs; the full ids close the line.
            line = {"timestamp": _local_clock(event.timestamp_ns), "run_id": event.run_id[:8], "agent": event.agent}
            line.update(fields)
            line["span_id"] = event.span_id
            if event.parent_span_id is not None:
                line["parent_span_id"] = event.parent_span_id
            line["trace_id"] = event.trace_id
            for key, value in line.items():
                if isinstance(value, str) and not value.isprintable():
                    line[key] = _Quoted(value)
        return str(getattr(self._logger, level)(name, **line))

    def _export(self, batch: Sequence[Event]) -> None:
        if self._broken_pipe:
            return
        render = self._json_line if self.format == "json" else self._render_structlog
        text = "".join([render(event) + "\n" for event in batch])
        stream = self.stream
        try:
            stream.write(text)
            flush = getattr(stream, "flush", None)
            if callable(flush):
                flush()
        except BrokenPipeError:
            # The reader went away (`tracedagent demo | head`): stop printing, quietly, like a CLI.
            self._broken_pipe = True
