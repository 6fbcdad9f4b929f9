"""The OTLP protobuf bytes of the builder's spans, written directly: the fast path of :class:`ExporterSink`.

The stock OTLP span exporters (``opentelemetry-exporter-otlp-proto-http`` and ``-grpc``) turn a batch of
``ReadableSpan`` objects into an ``ExportTraceServiceRequest`` with ``encode_spans`` from
``opentelemetry-exporter-otlp-proto-common``, which builds one protobuf message per span, attribute and
value in Python: about 45 us per span, three quarters of the worker's time. Here the same request is
written as protobuf wire bytes from the builder's data (names, keys and the resource and scope encoded
once), then parsed back into a real ``ExportTraceServiceRequest`` by protobuf's C parser.

The bytes are those of ``encode_spans(spans).SerializePartialToString()`` for the same spans: the fields
in field-number order (as protobuf writes them), the same presence rules (a proto3 scalar at its default
is left out, a oneof member or a sub-message set to its default is written), the same value mapping as
``_encode_value``. :class:`FastPath` checks this when it is made, against the SDK's encoder, on spans
that use every field the builder sets; if the bytes differ (a later SDK encodes differently), the fast
path is not used. A batch that the fast path cannot encode (a value of an unexpected type, a string that
is not UTF-8, a number out of range) goes to the SDK's encoder as ``ReadableSpan`` objects, so it fails,
logs or drops an attribute exactly as it would have.

Only the plugin's own exporter (:class:`~._http.OtlpHttpSender`, the one it builds from ``OTEL_*``) takes
these batches: it posts :meth:`EncodedBatch.encoded`. Nothing here changes another library's module:
an exporter the application passes in, and the application's own exporters, encode with the SDK.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from struct import Struct
from typing import Any, overload

from opentelemetry.exporter.otlp.proto.common._internal import _encode_instrumentation_scope, _encode_resource
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as _sdk_encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode

from ._sinks import _SAMPLED, _UNSET, SpanEvent, SpanRecord, readable_span

__all__ = ["EncodedBatch", "FastPath", "probe_records"]

logger = logging.getLogger("tracedagent.otlp")

_fixed64 = Struct("<Q").pack
_times = Struct("<BQBQ").pack
_double = Struct("<d").pack
_fixed32 = Struct("<I").pack

#: ``Span.flags``: the SDK encoder's ``SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK``, and ``..._IS_REMOTE_MASK``.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_INT64_MIN = -(1 << 63)
_INT64_END = 1 << 63
_UINT64 = 1 << 64
_CACHE_MAX = 4096
#: Attribute strings up to this long are kept with their encoding (ids, names, statuses; not content).
_CACHED_STR = 128


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"negative varint {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


#: The varint of every length below 16 KiB (longer ones are worked out).
_SIZES = tuple(bytes((n,)) for n in range(0x80)) + tuple(bytes((n & 0x7F | 0x80, n >> 7)) for n in range(0x80, 1 << 14))
_SMALL = 1 << 14


def _size(n: int) -> bytes:
    return _SIZES[n] if n < _SMALL else _varint(n)


def _int64(value: int) -> bytes:
    if 0 <= value < _INT64_END:
        return _SIZES[value] if value < _SMALL else _varint(value)
    if _INT64_MIN <= value < 0:
        return _varint(value + _UINT64)
    raise ValueError(f"integer out of the int64 range: {value}")


_SPAN_KINDS = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_TRUE = b"\x10\x01"
_FALSE = b"\x10\x00"
_UNSET_STATUS = b"\x7a\x00"  # the SDK always sets the status message, empty when unset
_LOCAL_FLAGS = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE)
_REMOTE_FLAGS = b"\x85\x01" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE)  # the parent is another process's


class _Writer:
    """Writes spans as the payload of ``ScopeSpans.spans`` fields; keeps the bytes of keys and names."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._names: dict[str, bytes] = {}
        #: (tag, key, value) -> the attribute's field, for short strings and for ints (apart: 1 == True).
        self._strs: dict[tuple[bytes, str, str], bytes] = {}
        self._ints: dict[tuple[bytes, str, int], bytes] = {}

    # --------------------------------------------------------------------------------- values

    def _any(self, value: Any) -> bytes:
        """An ``AnyValue``'s payload, as ``_encode_value`` makes it."""
        kind = type(value)
        if kind is str:
            data: bytes = value.encode()
            return b"\x0a" + (_SIZES[len(data)] if len(data) < _SMALL else _varint(len(data))) + data
        if kind is int:
            return b"\x18" + _int64(value)
        if kind is bool:
            return _TRUE if value else _FALSE
        if kind is float:
            return b"\x21" + _double(value)
        if kind is tuple:
            return self._array(value)
        return self._any_other(value)

    def _any_other(self, value: Any) -> bytes:
        # The SDK's order of checks, for subclasses and the rarer types.
        if value is None:
            return b""
        if isinstance(value, bool):
            return _TRUE if value else _FALSE
        if isinstance(value, str):
            data = str.encode(value)
            return b"\x0a" + _size(len(data)) + data
        if isinstance(value, int):
            return b"\x18" + _int64(int(value))
        if isinstance(value, float):
            return b"\x21" + _double(float(value))
        if isinstance(value, bytes):
            return b"\x3a" + _size(len(value)) + bytes(value)
        if isinstance(value, Sequence):
            return self._array(value)
        if isinstance(value, Mapping):
            pairs = b"".join(self._key_value(b"\x0a", str(k), v) for k, v in value.items())
            return b"\x32" + _size(len(pairs)) + pairs
        raise TypeError(f"invalid type {type(value)} of value {value!r}")

    def _array(self, values: Sequence[Any]) -> bytes:
        items = []
        for item in values:
            encoded = self._any(item)
            items.append(b"\x0a" + _size(len(encoded)) + encoded)
        array = b"".join(items)
        return b"\x2a" + _size(len(array)) + array

    def _key(self, key: str) -> bytes:
        prefix = self._keys.get(key)
        if prefix is None:
            if not isinstance(key, str):
                raise TypeError(f"attribute key {key!r} is not a string")
            data = str.encode(key)
            prefix = b"\x0a" + _size(len(data)) + data if data else b""
            if len(self._keys) >= _CACHE_MAX:
                self._keys.clear()
            self._keys[key] = prefix
        return prefix

    def _key_value(self, tag: bytes, key: str, value: Any) -> bytes:
        """A ``KeyValue`` field ``tag``."""
        prefix = self._keys.get(key)
        if prefix is None:
            prefix = self._key(key)
        encoded = self._any(value)
        n = len(encoded)
        pair = prefix + b"\x12" + (_SIZES[n] if n < _SMALL else _varint(n)) + encoded
        n = len(pair)
        return tag + (_SIZES[n] if n < _SMALL else _varint(n)) + pair

    def _attributes(self, tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
        """The repeated ``KeyValue`` fields ``tag`` of ``attributes``."""
        if not attributes:
            return []
        out = []
        strs, ints, key_value = self._strs, self._ints, self._key_value
        for key, value in attributes.items():
            kind = type(value)
            if kind is str and len(value) <= _CACHED_STR:
                cached = strs.get((tag, key, value))
                if cached is None:
                    cached = key_value(tag, key, value)
                    if len(strs) >= _CACHE_MAX:
                        strs.clear()
                    strs[(tag, key, value)] = cached
                out.append(cached)
            elif kind is int:
                cached = ints.get((tag, key, value))
                if cached is None:
                    cached = key_value(tag, key, value)
                    if len(ints) >= _CACHE_MAX:
                        ints.clear()
                    ints[(tag, key, value)] = cached
                out.append(cached)
            else:
                out.append(key_value(tag, key, value))
        return out

    def _string(self, tag: bytes, text: str) -> bytes:
        if not text:
            return b""
        data = str.encode(text)
        return tag + _size(len(data)) + data

    def _name(self, name: str) -> bytes:
        field = self._names.get(name)
        if field is None:
            field = self._string(b"\x2a", name)
            if len(self._names) >= _CACHE_MAX:
                self._names.clear()
            self._names[name] = field
        return field

    # ---------------------------------------------------------------------------------- spans

    def span(self, record: SpanRecord) -> bytes:
        """A ``ScopeSpans.spans`` field (tag, size, ``Span``) for one span."""
        name, kind, trace_id, span_id, parent_id, attributes, events, links, status, start_ns, end_ns, remote = record
        parts = [b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")]
        if parent_id is not None:
            parts.append(b"\x22\x08" + parent_id.to_bytes(8, "big"))
        parts.append(self._name(name))
        parts.append(_SPAN_KINDS[kind])
        if start_ns and end_ns:
            parts.append(_times(0x39, start_ns, 0x41, end_ns))
        elif start_ns:
            parts.append(b"\x39" + _fixed64(start_ns))
        elif end_ns:
            parts.append(b"\x41" + _fixed64(end_ns))
        parts += self._attributes(b"\x4a", attributes)
        for event_name, event_attributes, timestamp in events:
            body = b"".join(
                [
                    b"\x09" + _fixed64(timestamp) if timestamp else b"",
                    self._string(b"\x12", event_name),
                    *self._attributes(b"\x1a", event_attributes),
                ]
            )
            parts.append(b"\x5a" + _size(len(body)) + body)
        for link in links:
            linked = link.context
            body = b"".join(
                [
                    b"\x0a\x10" + linked.trace_id.to_bytes(16, "big") + b"\x12\x08" + linked.span_id.to_bytes(8, "big"),
                    *self._attributes(b"\x22", link.attributes),
                    b"\x35" + _fixed32(_HAS_IS_REMOTE | _IS_REMOTE if linked.is_remote else _HAS_IS_REMOTE),
                ]
            )
            parts.append(b"\x6a" + _size(len(body)) + body)
        if status is None:
            parts.append(_UNSET_STATUS)
        else:
            code = status.status_code.value
            body = self._string(b"\x12", status.description or "") + (b"\x18" + _varint(code) if code else b"")
            parts.append(b"\x7a" + _size(len(body)) + body)
        parts.append(_REMOTE_FLAGS if remote else _LOCAL_FLAGS)
        span = b"".join(parts)
        return b"\x12" + _size(len(span)) + span


class FastPath:
    """Writes a batch's ``ExportTraceServiceRequest`` for one resource and instrumentation scope."""

    def __init__(self, resource: Resource, scope: InstrumentationScope) -> None:
        self.resource = resource
        self.scope = scope
        encoded_resource: bytes = _encode_resource(resource).SerializePartialToString()
        encoded_scope: bytes = _encode_instrumentation_scope(scope).SerializePartialToString()
        self._resource_head = b"\x0a" + _size(len(encoded_resource)) + encoded_resource
        self._resource_tail = _Writer()._string(b"\x1a", resource.schema_url or "")
        self._scope_head = b"\x0a" + _size(len(encoded_scope)) + encoded_scope
        self._scope_tail = _Writer()._string(b"\x1a", scope.schema_url or "")
        self._writer = _Writer()

    def encode(self, records: Sequence[SpanRecord]) -> bytes:
        """``encode_spans(spans).SerializePartialToString()`` for the spans of ``records``."""
        if not records:
            return b""
        span = self._writer.span  # its caches are only ever added to or cleared: safe from any thread
        spans = b"".join([span(record) for record in records])
        scope_spans = self._scope_head + spans + self._scope_tail
        resource_spans = self._resource_head + b"\x12" + _size(len(scope_spans)) + scope_spans + self._resource_tail
        return b"\x0a" + _size(len(resource_spans)) + resource_spans

    def matches_the_sdk(self, records: Sequence[SpanRecord]) -> bool:
        """Whether this writes exactly the bytes of the SDK's encoder for ``records``."""
        try:
            ours = self.encode(records)
        except Exception:
            return False
        spans = [readable_span(r, self.resource, self.scope) for r in records]
        theirs: bytes = _sdk_encode_spans(spans).SerializePartialToString()
        return ours == theirs

    def batch(self, records: list[SpanRecord]) -> EncodedBatch:
        return EncodedBatch(self, records)

    @classmethod
    def checked(cls, resource: Resource, scope: InstrumentationScope, probe: Sequence[SpanRecord]) -> FastPath | None:
        """A fast path for ``resource`` and ``scope`` if its bytes match the SDK's for ``probe``."""
        fast = cls(resource, scope)
        if not fast.matches_the_sdk(probe):
            logger.debug("tracedagent-otlp: the OTLP encoder differs from this SDK's; using the SDK's")
            return None
        return fast


def probe_records() -> list[SpanRecord]:
    """Spans using every field and value type the builder sets (and a few it may), to check the fast
    path's bytes against the SDK's encoder."""
    trace_id, root, child, other = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, 0x00F067AA0BA902B7, 1
    remote = SpanContext(trace_id, 0x1F067AA0BA902B70, True, _SAMPLED)
    long_text = "x\u00e9\u4e2d\U0001f600" * 50 + "y" * 20_000
    attributes: dict[str, Any] = {
        "text": "chat",
        "empty": "",
        "": "no key",
        "long": long_text,
        "zero": 0,
        "int": 1234567,
        "big": (1 << 63) - 1,
        "negative": -5,
        "false": False,
        "true": True,
        "float": 0.25,
        "float_zero": 0.0,
        "tuple": ("stop", "", "length"),
        "empty_tuple": (),
        "mixed": (1, True, 2.5, "a"),
        "none": None,
        "list": ["a", "b"],
        "mapping": {"k": "v", "n": 1},
        "bytes": b"\x00\x01",
    }
    events: list[SpanEvent] = [
        ("tracedagent.retry", {"tracedagent.retry.attempt": 2, "error.type": "Timeout"}, 1_700_000_000_123_456_789),
        ("", None, 0),
        ("tracedagent.interrupt", {"ids": ("a", "b")}, 1),
    ]
    local = SpanContext(trace_id, root, False, _SAMPLED)
    ok = Status(StatusCode.OK)
    links = [Link(remote, {"tracedagent.previous_span_id": "1f067aa0ba902b70"}), Link(local), Link(local, {})]
    invoke = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "a", "tracedagent.turns": 3}
    start, end = 1 << 60, (1 << 60) + 9
    return [
        ("invoke_agent a", SpanKind.INTERNAL, trace_id, root, None, invoke, (), (), None, start, end, False),
        ("invoke_agent a", SpanKind.INTERNAL, trace_id, root, None, invoke, (), (), None, start, end, False),
        # a run started inside an application's span: its parent is remote
        ("invoke_agent b", SpanKind.INTERNAL, trace_id, other, 0x1F067AA0BA902B70, invoke, (), (), None, 3, 4, True),
        (
            "chat gpt-x",
            SpanKind.CLIENT,
            trace_id,
            child,
            root,
            attributes,
            events,
            links,
            Status(StatusCode.ERROR, "Timeout: " + long_text),
            1,
            2,
            False,
        ),
        ("", SpanKind.SERVER, 1, other, 0, {}, (), (), Status(StatusCode.ERROR), 0, 0, False),
        ("execute_tool t", SpanKind.PRODUCER, trace_id, other, child, {"a": 1}, (), (), ok, 5, 6, False),
        ("x", SpanKind.CONSUMER, trace_id, root, child, {"a": 1}, (), (), _UNSET, 5, 1 << 63, False),
    ]


class EncodedBatch(Sequence[ReadableSpan]):
    """A batch for the plugin's own exporter, which posts :meth:`encoded`. As a sequence it holds the
    batch's ``ReadableSpan`` objects, made when first asked for, so that anything else reading it sees
    the spans."""

    __slots__ = ("_data", "_fast", "_readable", "_records")

    def __init__(self, fast: FastPath, records: list[SpanRecord]) -> None:
        self._fast = fast
        self._records = records
        self._readable: list[ReadableSpan] | None = None
        self._data: bytes | None = None

    def __len__(self) -> int:
        return len(self._records)

    def spans(self) -> list[ReadableSpan]:
        if self._readable is None:
            fast = self._fast
            self._readable = [readable_span(r, fast.resource, fast.scope) for r in self._records]
        return self._readable

    @overload
    def __getitem__(self, index: int) -> ReadableSpan: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ReadableSpan]: ...

    def __getitem__(self, index: int | slice) -> ReadableSpan | Sequence[ReadableSpan]:
        return self.spans()[index]

    def __iter__(self) -> Iterator[ReadableSpan]:
        return iter(self.spans())

    def encoded(self) -> bytes:
        """The batch's ``ExportTraceServiceRequest`` as protobuf bytes (the same bytes if asked again, as
        on a retry). A batch the fast path cannot write is encoded by the SDK's ``encode_spans``, which
        fails, logs or drops an attribute exactly as it would have."""
        if self._data is None:
            try:
                self._data = self._fast.encode(self._records)
            except Exception:
                self._data = _sdk_encode_spans(self.spans()).SerializePartialToString()
        return self._data
