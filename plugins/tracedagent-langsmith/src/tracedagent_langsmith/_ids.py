"""LangSmith run ids and ``dotted_order``, derived from tracedagent's ids so any process agrees on them.

LangSmith names a run by a UUID and places it in its trace by ``dotted_order``: the ancestors' and the
run's own ``<start time><run id>`` segments joined by dots, the root's first. The root run's id is the
trace's id. Every id here is a pure function of tracedagent's ids, so a run resumed in another process
finds the runs the first process created:

* the trace, and the root run of a top-level agent run: the W3C trace id read as a UUID (the same 128
  bits, so the LangSmith trace id and the OpenTelemetry trace id are one number);
* the root run of a run started inside another run's tool: ``uuid5`` of the trace id and the run id;
* every other run (a resumed segment, a model call, a tool call): ``uuid5`` of the trace id and its span id.

A ``dotted_order`` segment needs the run's start time too; times are cut to microseconds, the SDK's
precision, and the same :class:`~datetime.datetime` is sent as the run's ``start_time``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

__all__ = [
    "NAMESPACE",
    "dotted_order",
    "dotted_segment",
    "nested_root_uuid",
    "root_uuid",
    "span_uuid",
    "time_of",
    "trace_uuid",
]

#: The uuid5 namespace of tracedagent's LangSmith run ids (fixed forever: changing it splits traces).
NAMESPACE = uuid.UUID("3d0f5e0c-7b7a-5c4e-9a53-6c1d2f7e8b91")

_HEX = frozenset("0123456789abcdef")


def trace_uuid(trace_id: str) -> uuid.UUID:
    """The LangSmith trace id (and top-level root run id) of a tracedagent trace."""
    if len(trace_id) == 32 and _HEX.issuperset(trace_id) and trace_id != "0" * 32:
        return uuid.UUID(hex=trace_id)
    return uuid.uuid5(NAMESPACE, f"trace/{trace_id}")  # not a W3C id (hand-made events): still stable


def nested_root_uuid(trace_id: str, run_id: str) -> uuid.UUID:
    """The root run of an agent run that started inside another run (it has a parent span)."""
    return uuid.uuid5(NAMESPACE, f"run/{trace_id}/{run_id}")


def root_uuid(trace_id: str, run_id: str, parent_span_id: str | None) -> uuid.UUID:
    """The run that stands for a whole agent run, across all of its segments."""
    return trace_uuid(trace_id) if parent_span_id is None else nested_root_uuid(trace_id, run_id)


def span_uuid(trace_id: str, span_id: str) -> uuid.UUID:
    """The run of one span: a resumed segment, a model call or a tool call."""
    return uuid.uuid5(NAMESPACE, f"span/{trace_id}/{span_id}")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_of(timestamp_ns: int) -> datetime:
    """A wall-clock timestamp in nanoseconds as an aware UTC datetime, cut to microseconds."""
    return _EPOCH + timedelta(microseconds=timestamp_ns // 1000)  # exact (integers), and twice as fast


def dotted_segment(start: datetime, run_id: uuid.UUID) -> str:
    """One run's own part of a ``dotted_order``: ``20240101T120000123456Z<uuid>``."""
    # ``f"{start:%Y%m%dT%H%M%S%f}Z{run_id}"`` without strftime: on the export worker's hot path, and
    # %-formatting is the fastest way here (1.3 us against 2.9 us, and 2.2 us for format specs).
    d = start
    return "%04d%02d%02dT%02d%02d%02d%06dZ%s" % (  # noqa: UP031
        d.year,
        d.month,
        d.day,
        d.hour,
        d.minute,
        d.second,
        d.microsecond,
        run_id,
    )


def dotted_order(parent: str | None, start: datetime, run_id: uuid.UUID) -> str:
    """The ``dotted_order`` of a run that starts at ``start`` under the run whose order is ``parent``."""
    own = dotted_segment(start, run_id)
    return own if parent is None else f"{parent}.{own}"
