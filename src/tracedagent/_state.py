"""The state of one run: what the loop changes as it goes, and what a checkpoint saves and restores.

:class:`RunState` is the one place a run's mutable state lives. The loop works on it directly (the
messages, the results of the turn in flight, the calls waiting for a person, usage, ids), and a
checkpoint is a snapshot of the same object (:meth:`RunState.snapshot`): every field is saved and
restored generically, so nothing is copied field by field and what resumes is what ran. ``Checkpoint``
(the public name stores use) is this class.

Encoding is versioned JSON; a record that is unreadable, from an unknown format version or for another
run gives a :class:`CheckpointError` naming the run, and a run is never half restored.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ._events import Interruption
from ._messages import Message, Usage
from .exceptions import CheckpointError

__all__ = ["FORMAT", "FORMAT_VERSION", "RunState"]

FORMAT = "tracedagent.checkpoint"
FORMAT_VERSION = 1

T = TypeVar("T")

_NO_USAGE = Usage()


@dataclass(slots=True, eq=True)
class RunState:
    """A run's state: everything needed to go on from here, in this or another process.

    While the run goes, ``messages`` and ``pending`` are lists and ``approved_tools`` a set; in a
    snapshot (what a store saves and loads) they are tuples, so a saved state never changes under the
    store that encodes it.
    """

    run_id: str
    trace_id: str
    agent: str
    status: str = "running"
    messages: list[Message] | tuple[Message, ...] = field(default_factory=list)
    turn: int = 0
    usage: Usage = _NO_USAGE
    #: Results of the turn in flight, by call id, until every call of the turn has one.
    turn_results: dict[str, Message] = field(default_factory=dict)
    #: Calls waiting for a person or for the caller; non-empty when the run pauses.
    pending: list[Interruption] | tuple[Interruption, ...] = field(default_factory=list)
    #: Tools approved for the rest of the run (``Approval.allow(remember=True)``).
    approved_tools: set[str] | tuple[str, ...] = field(default_factory=set)
    metadata: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    #: The span of the segment that saved this state, and that segment's parent.
    segment_span_id: str | None = None
    parent_span_id: str | None = None
    paused_at_ns: int | None = None
    #: Checkpoints written so far.
    step: int = 0
    #: When the run began (its ``RunStarted`` timestamp), so a resume elsewhere can place it in its trace.
    started_ns: int | None = None
    #: Corrections of invalid structured output sent to the model so far (bounded by ``output_retries``).
    output_retries: int = 0
    #: The agent the run is with after a handoff (``Agent(handoffs=...)``); None while it is with ``agent``.
    active_agent: str | None = None
    #: The name of the run's output type (``"text"`` without one), so a resume without the type it ran
    #: with is refused instead of returning text; None in records written before it was kept.
    output_type: str | None = None
    #: The W3C ``tracestate`` of the trace the run joined (the application's span, or a served request's
    #: header), sent beside ``traceparent`` by its requests and kept across a resume; None when there was none.
    tracestate: str | None = None

    # ------------------------------------------------------------------------ live and saved forms

    def snapshot(self, **changes: Any) -> RunState:
        """A frozen copy of every field (containers copied, lists as tuples, the set sorted), with
        ``changes`` applied: what a store saves. O(messages) pointer copies."""
        values = {f.name: _frozen(getattr(self, f.name)) for f in _FIELDS}
        values.update(changes)
        return RunState(**values)

    def live(self) -> RunState:
        """A working copy of a saved state: tuples back to lists, the approved tools to a set."""
        values = {f.name: _thawed(f, getattr(self, f.name)) for f in _FIELDS}
        return RunState(**values)

    # ----------------------------------------------------------------------------------- the record

    def encode(self) -> bytes:
        record: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION}
        for f in _FIELDS:
            record[f.name] = _ENCODERS.get(f.name, _same)(getattr(self, f.name))
        return json.dumps(record, separators=(",", ":"), default=str).encode()

    @classmethod
    def decode(cls, run_id: str, data: bytes) -> RunState:
        """Read a record; anything wrong with it is a :class:`CheckpointError` naming ``run_id``."""
        try:
            record = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} is corrupted (not valid JSON: {exc}); it cannot be resumed",
                run_id=run_id,
            ) from None
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise CheckpointError(f"the checkpoint of run {run_id!r} is not a tracedagent checkpoint", run_id=run_id)
        version = record.get("version")
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} has format version {version!r}; this tracedagent reads "
                f"version {FORMAT_VERSION}. Resume it with the tracedagent version that wrote it",
                run_id=run_id,
            )
        if record.get("run_id") != run_id:
            raise CheckpointError(
                f"the checkpoint stored for run {run_id!r} belongs to run {record.get('run_id')!r}", run_id=run_id
            )
        try:
            values = {}
            for f in _FIELDS:
                if f.name in _OPTIONAL_IN_OLD_RECORDS and f.name not in record:
                    continue
                values[f.name] = _DECODERS[f.name](record[f.name])
            if not values["messages"]:
                raise ValueError("it holds no messages")
            return cls(**values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(
                f"the checkpoint of run {run_id!r} is corrupted ({type(exc).__name__}: {exc}); it cannot be resumed",
                run_id=run_id,
            ) from None


_FIELDS = dataclasses.fields(RunState)


def _frozen(value: Any) -> Any:
    if type(value) is list:
        return tuple(value)
    if type(value) is set:
        return tuple(sorted(value))
    if type(value) is dict:
        return dict(value)
    return value


def _thawed(f: dataclasses.Field[Any], value: Any) -> Any:
    factory = f.default_factory
    if factory is list or factory is set or factory is dict:
        return factory(value)
    return value


def _same(value: Any) -> Any:
    return value


def _encode_interruption(p: Interruption) -> dict[str, str]:
    return {"id": p.id, "tool": p.tool, "arguments": p.arguments, "reason": p.reason, "kind": p.kind}


_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "messages": lambda ms: [m.to_dict() for m in ms],
    "usage": lambda u: u.to_dict(),
    "turn_results": lambda rs: {k: m.to_dict() for k, m in rs.items()},
    "pending": lambda ps: [_encode_interruption(p) for p in ps],
    "approved_tools": list,
}

#: Fields a record written before they existed may lack.
_OPTIONAL_IN_OLD_RECORDS = frozenset({"started_ns", "output_retries", "active_agent", "output_type", "tracestate"})


# Strict readers: a field of the wrong type is a corrupted record, never a run restored with it.
_STATUSES = frozenset({"running", "interrupted", "completed", "failed", "cancelled"})


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"expected a non-negative integer, found {value!r}")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, found {value!r}")
    return value


def _dollars(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise TypeError(f"expected a non-negative amount of dollars, found {value!r}")
    return float(value)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, found {type(value).__name__}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, found {type(value).__name__}")
    return value


def _optional(read: Callable[[Any], T], value: Any) -> T | None:
    return None if value is None else read(value)


def _status(value: Any) -> str:
    status = _str(value)
    if status not in _STATUSES:
        raise ValueError(f"unknown run status {status!r}")
    return status


def _message(value: Any) -> Message:
    data = _dict(value)
    for key in ("content", "tool_call_id", "name", "thinking"):
        _optional(_str, data.get(key))
    _bool(data.get("is_error", False))
    for call in _list(data.get("tool_calls", [])):
        for key in ("id", "name", "arguments"):
            _str(_dict(call)[key])
    return Message.from_dict(data)


def _interruption(value: Any) -> Interruption:
    p = _dict(value)
    kind = p["kind"]
    if kind not in ("approval", "external"):
        raise ValueError(f"unknown interruption kind {kind!r}")
    return Interruption(_str(p["id"]), _str(p["tool"]), _str(p["arguments"]), _str(p["reason"]), kind)


def _usage(value: Any) -> Usage:
    usage = _dict(value)
    return Usage(
        _count(usage["input_tokens"]),
        _count(usage["output_tokens"]),
        _count(usage["cache_read_tokens"]),
        _count(usage["reasoning_tokens"]),
        _count(usage["requests"]),
        _bool(usage["estimated"]),
        # absent from records written before costs, and whenever the price was unknown
        _optional(_dollars, usage.get("cost_usd")),
        _optional(_dollars, usage.get("input_cost_usd")),
        _bool(usage.get("cost_partial", False)),
    )


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "run_id": _str,
    "trace_id": _str,
    "agent": _str,
    "status": _status,
    "messages": lambda v: tuple(_message(m) for m in _list(v)),
    "turn": _count,
    "usage": _usage,
    "turn_results": lambda v: {_str(k): _message(m) for k, m in _dict(v).items()},
    "pending": lambda v: tuple(_interruption(p) for p in _list(v)),
    "approved_tools": lambda v: tuple(_str(t) for t in _list(v)),
    "metadata": lambda v: dict(_dict(v)),
    "session_id": lambda v: _optional(_str, v),
    "segment_span_id": lambda v: _optional(_str, v),
    "parent_span_id": lambda v: _optional(_str, v),
    "paused_at_ns": lambda v: _optional(_count, v),
    "step": _count,
    "started_ns": lambda v: _optional(_count, v),
    "output_retries": _count,
    "active_agent": lambda v: _optional(_str, v),
    "output_type": lambda v: _optional(_str, v),
    "tracestate": lambda v: _optional(_str, v),
}
assert set(_DECODERS) == {f.name for f in _FIELDS}, "every field of RunState needs a decoder"
