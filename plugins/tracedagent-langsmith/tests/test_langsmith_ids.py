"""Run ids and dotted_order: pure functions of tracedagent's ids, in the SDK's exact format."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from langsmith.run_trees import _create_current_dotted_order, _parse_dotted_order

from tracedagent_langsmith import dotted_order, nested_root_uuid, root_uuid, span_uuid, trace_uuid
from tracedagent_langsmith._ids import dotted_segment, time_of

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_the_trace_id_is_the_w3c_trace_id_read_as_a_uuid() -> None:
    assert trace_uuid(TRACE) == uuid.UUID("4bf92f35-77b3-4da6-a3ce-929d0e0e4736")
    assert trace_uuid(TRACE).hex == TRACE


def test_a_top_level_run_is_rooted_at_the_trace_id_and_a_nested_one_at_its_own_id() -> None:
    assert root_uuid(TRACE, "run-1", None) == trace_uuid(TRACE)
    nested = root_uuid(TRACE, "run-1", SPAN)
    assert nested == nested_root_uuid(TRACE, "run-1")
    assert nested not in (trace_uuid(TRACE), nested_root_uuid(TRACE, "run-2"), span_uuid(TRACE, SPAN))


def test_ids_are_stable_across_calls_and_processes() -> None:
    # uuid5 of fixed inputs, pinned: every process and every version must agree (a resume elsewhere
    # finds the same runs).
    assert span_uuid(TRACE, SPAN) == span_uuid(TRACE, SPAN) == uuid.UUID("9908a25e-12d6-5909-af9f-d9e03e124fb2")
    assert span_uuid(TRACE, SPAN) != span_uuid("0" * 31 + "1", SPAN)
    assert span_uuid(TRACE, SPAN).version == 5


def test_a_trace_id_that_is_not_w3c_still_gets_a_stable_uuid() -> None:
    for odd in ("trace-1", "0" * 32, "XYZ", TRACE.upper() + "0"):
        assert trace_uuid(odd) == trace_uuid(odd)
        assert trace_uuid(odd).version == 5


def test_time_of_cuts_nanoseconds_to_utc_microseconds() -> None:
    moment = time_of(1_700_000_000_123_456_789)
    assert moment == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert time_of(999) == datetime(1970, 1, 1, tzinfo=UTC)


def test_the_dotted_order_is_the_sdks_format() -> None:
    run_id = span_uuid(TRACE, SPAN)
    start = time_of(1_700_000_000_123_456_789)
    assert dotted_segment(start, run_id) == _create_current_dotted_order(start, run_id)
    assert dotted_segment(start, run_id) == f"20231114T221320123456Z{run_id}"
    parsed = _parse_dotted_order(dotted_order(None, start, run_id))
    assert parsed == [(start.replace(tzinfo=None), run_id)]


def test_a_childs_dotted_order_extends_its_parents() -> None:
    root, child = trace_uuid(TRACE), span_uuid(TRACE, SPAN)
    root_start, child_start = time_of(1_700_000_000_000_000_000), time_of(1_700_000_001_000_000_000)
    root_order = dotted_order(None, root_start, root)
    child_order = dotted_order(root_order, child_start, child)

    assert child_order == f"{root_order}.{dotted_segment(child_start, child)}"
    assert [run_id for _, run_id in _parse_dotted_order(child_order)] == [root, child]
    assert child_order > root_order  # siblings and descendants sort after their parent


def test_times_and_dotted_orders_are_those_of_the_reference_formulas_at_any_moment() -> None:
    # time_of and dotted_segment avoid fromtimestamp().replace() and strftime (the export worker's hot
    # path); they must give exactly what those give, microseconds of zero and year boundaries included.
    run_id = span_uuid(TRACE, SPAN)
    moments = [0, 999, 1_000, 999_999_999, 1_700_000_000_000_000_000, 1_704_067_199_999_999_999]
    moments += [n * 7_919_000_000_017_003 for n in range(600)]  # ~1970 to ~2120, odd nanoseconds
    for ns in moments:
        seconds, rest = divmod(ns, 1_000_000_000)
        expected = datetime.fromtimestamp(seconds, UTC).replace(microsecond=rest // 1000)
        moment = time_of(ns)
        assert (moment, moment.tzinfo) == (expected, UTC)
        assert dotted_segment(moment, run_id) == f"{expected:%Y%m%dT%H%M%S%f}Z{run_id}"
        assert dotted_segment(moment, run_id) == _create_current_dotted_order(expected, run_id)
