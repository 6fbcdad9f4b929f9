"""A plugin that appends every event to a JSON-lines file: :class:`RecordingTracer` for another process.

Name it by module path and say where the lines go, and the process under test (a CLI, a worker, a run
resumed elsewhere) records its event stream for the test that started it::

    TRACEDAGENT_PLUGINS=tracedagent.testing.event_log TRACEDAGENT_EVENT_LOG=/tmp/events.jsonl my-agent

Each line holds ``hook``, ``type`` (the event class), ``pid`` and the event's fields whose values are
strings, numbers, booleans or None; ``usage`` is written as its ``to_dict()``. Lines are written and
flushed in the hook, under a lock, so the file is complete when the process exits. That is I/O on the
run's thread: this is a test tool, not a tracer to run in production.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import Any

from .._events import Event
from .._messages import Usage
from ..exceptions import ConfigurationError
from ..hookspecs import OBSERVER_HOOKS, hookimpl

__all__ = ["ENV_EVENT_LOG", "line_of", "record"]

ENV_EVENT_LOG = "TRACEDAGENT_EVENT_LOG"

_path = os.environ.get(ENV_EVENT_LOG, "").strip()
if not _path:
    raise ConfigurationError(
        f"{ENV_EVENT_LOG} is not set: the tracedagent.testing.event_log plugin writes every event to the file "
        f"it names; set it to a path (for example {ENV_EVENT_LOG}=/tmp/events.jsonl)"
    )
_lock = threading.Lock()
try:
    _out = open(_path, "a", encoding="utf-8")  # noqa: SIM115  (open for the process's life)
except OSError as exc:
    raise ConfigurationError(
        f"{ENV_EVENT_LOG}={_path!r} cannot be opened for appending ({exc.strerror or exc}); set it to a path "
        "in a directory this process can write"
    ) from None


def line_of(event: Event) -> dict[str, Any]:
    """The JSON object written for ``event``."""
    data: dict[str, Any] = {"hook": event.hook, "type": type(event).__name__, "pid": os.getpid()}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, (str, int, float, bool)) or value is None:
            data[field.name] = value
        elif isinstance(value, Usage):
            data[field.name] = value.to_dict()
    return data


def record(event: Event) -> None:
    """Append ``event``'s line to the file and flush it."""
    text = json.dumps(line_of(event)) + "\n"
    with _lock:
        _out.write(text)
        _out.flush()


def _hook(name: str) -> Any:
    @hookimpl(specname=name)
    def impl(event: Event) -> None:
        record(event)

    impl.__name__ = name
    return impl


for _name in OBSERVER_HOOKS:
    globals()[_name] = _hook(_name)
