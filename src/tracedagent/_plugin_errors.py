"""Plugin failures: counted per plugin and hook, logged once, and logged without user content.

A plugin's exception is often raised while the run handles a tool's own exception, whose message is
user content (a tool's arguments, a file's text). So unless content capture is on
(``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` or ``TRACEDAGENT_CAPTURE_CONTENT`` true), the log
line gives the plugin, the hook, the exception's type and its traceback's frames (file, line, function,
source line), and neither its message nor any chained exception.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
import warnings

__all__ = ["capture_content", "plugin_errors", "record_error"]

logger = logging.getLogger("tracedagent")

CAPTURE_VARIABLES = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRACEDAGENT_CAPTURE_CONTENT")

_lock = threading.Lock()
_errors: dict[tuple[str, str], int] = {}
_warned: set[tuple[str, str]] = set()


def capture_content() -> bool:
    """Whether message content may appear in telemetry and logs (read from the environment each time)."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in CAPTURE_VARIABLES)


def record_error(plugin: str, hook: str, exc: BaseException | None, coroutine: bool = False) -> None:
    """Count a failure of ``plugin`` in ``hook``; log the first one of each pair."""
    key = (plugin, hook)
    with _lock:
        _errors[key] = _errors.get(key, 0) + 1
        first = key not in _warned
        _warned.add(key)
    if not first:
        return
    if coroutine:
        message = (
            f"plugin {plugin!r} returned a coroutine from {hook}; observer hooks are synchronous and "
            "its result was discarded. Do the async work elsewhere (for example, put the event on a "
            "queue that a task or thread drains). This warning is shown once."
        )
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        logger.warning(message)
        return
    then = "the run goes on and other plugins still get the event"
    once = "further errors from this plugin in this hook are counted, not logged"
    if exc is None or capture_content():
        logger.error("plugin %r raised in %s; %s (%s)", plugin, hook, then, once, exc_info=exc)
        return
    frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
    logger.error(
        "plugin %r raised %s in %s; %s (%s). The message is not shown: content capture is off "
        "(TRACEDAGENT_CAPTURE_CONTENT=true shows it)\nTraceback (most recent call last):\n%s%s",
        plugin,
        type(exc).__name__,
        hook,
        then,
        once,
        frames,
        type(exc).__name__,
    )


def plugin_errors() -> dict[tuple[str, str], int]:
    """How many times each ``(plugin, hook)`` raised or misbehaved, since the process started."""
    with _lock:
        return dict(_errors)
