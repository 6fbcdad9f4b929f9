"""The export pipeline: a bounded queue and a worker thread per sink; hooks never wait on a backend."""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

import tracedagent
from tracedagent import ConfigurationError, ExportPipeline, ExportStats

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on
HOUR = 3600.0  # an interval that never elapses during a test

_names = itertools.count()


class Sink:
    """Records batches; ``gate`` (when given) holds every export in this process (not in a forked child)
    until it is set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[Any]] = []
        self.gate = gate
        self.pid = os.getpid()
        self.entered = threading.Event()
        self.exported = threading.Event()
        self.threads: list[threading.Thread] = []
        self.exporting_flags: list[bool] = []

    def __call__(self, batch: Sequence[Any]) -> None:
        self.threads.append(threading.current_thread())
        self.exporting_flags.append(tracedagent.is_exporting())
        self.entered.set()
        if self.gate is not None and os.getpid() == self.pid:
            self.gate.wait()
        self.batches.append(list(batch))
        self.exported.set()

    @property
    def items(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]


@pytest.fixture
def pipelines() -> Iterator[Callable[..., ExportPipeline[Any]]]:
    """Make pipelines with unique names; each is shut down after the test."""
    made: list[ExportPipeline[Any]] = []
    gates: list[threading.Event] = []

    def make(export: Callable[[Sequence[Any]], None], **options: Any) -> ExportPipeline[Any]:
        pipeline: ExportPipeline[Any] = ExportPipeline(f"test-sink-{next(_names)}", export, **options)
        made.append(pipeline)
        if isinstance(export, Sink) and export.gate is not None:
            gates.append(export.gate)
        return pipeline

    yield make
    for gate in gates:
        gate.set()  # release sinks that block, so no worker thread is left hanging
    for pipeline in made:
        pipeline.shutdown(GUARD_S)


def worker_threads(pipeline: ExportPipeline[Any]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"tracedagent-export-{pipeline.name}"]


def in_thread(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a helper thread and fail (instead of hanging) if it does not return."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    thread.start()
    thread.join(GUARD_S)
    assert not thread.is_alive(), f"{fn} blocked"
    return out[0]


# ------------------------------------------------------------------------------------------ batching


def test_a_full_batch_is_exported_without_waiting_for_the_interval(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink, max_batch=3, interval_s=HOUR)
    for i in range(3):
        assert pipeline.put(i) is True
    assert sink.exported.wait(GUARD_S)
    assert sink.batches == [[0, 1, 2]]

    # fewer than a batch waits for the interval (an hour) or a flush
    pipeline.put(3)
    pipeline.put(4)
    assert pipeline.queue_depth == 2
    assert sink.batches == [[0, 1, 2]]
    assert pipeline.flush(GUARD_S) is True
    assert sink.batches == [[0, 1, 2], [3, 4]]
    assert pipeline.queue_depth == 0


def test_a_partial_batch_is_exported_when_the_interval_passes(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink, max_batch=100, interval_s=0.01)
    pipeline.put("lonely")
    assert sink.exported.wait(GUARD_S)  # no flush, no full batch: only the interval can have done it
    assert sink.items == ["lonely"]


def test_batches_never_exceed_max_batch(pipelines: Any) -> None:
    gate = threading.Event()
    sink = Sink(gate)
    pipeline = pipelines(sink, max_batch=4, interval_s=HOUR)
    for i in range(23):
        pipeline.put(i)
    gate.set()
    assert pipeline.flush(GUARD_S) is True
    assert sink.items == list(range(23))
    assert all(1 <= len(batch) <= 4 for batch in sink.batches)
    assert pipeline.stats() == ExportStats(pipeline.name, 0, 0, 23, 0)


def test_flush_exports_everything_queued(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink, max_batch=1000, interval_s=HOUR)
    for i in range(10):
        pipeline.put(i)
    assert pipeline.flush(GUARD_S) is True
    assert sink.items == list(range(10))
    assert pipeline.stats().exported == 10


def test_items_the_export_gives_up_on_are_dropped_not_exported(pipelines: Any) -> None:
    """A sink whose backend is too far behind gives part of a batch up: counted as dropped."""
    pipeline: ExportPipeline[int] | None = None

    def export(batch: Sequence[int]) -> None:
        assert pipeline is not None
        pipeline.give_up(sum(1 for item in batch if item % 3 == 0))

    pipeline = pipelines(export, max_batch=4, interval_s=HOUR)
    for i in range(10):
        pipeline.put(i)
    assert pipeline.flush(GUARD_S) is True
    stats = pipeline.stats()
    assert (stats.exported, stats.dropped, stats.failed, stats.queue_depth) == (6, 4, 0, 0)


def test_flush_of_an_unused_pipeline_is_immediate(pipelines: Any) -> None:
    pipeline = pipelines(Sink())
    assert pipeline.flush(GUARD_S) is True
    assert worker_threads(pipeline) == []  # no worker until the first item


def test_module_flush_drains_every_pipeline(pipelines: Any) -> None:
    sinks = [Sink(), Sink()]
    made = [pipelines(sink, interval_s=HOUR) for sink in sinks]
    made[0].put("a")
    made[1].put("b")
    tracedagent.flush(GUARD_S)
    assert [sink.items for sink in sinks] == [["a"], ["b"]]
    names = {stats.sink for stats in tracedagent.export_stats()}
    assert {p.name for p in made} <= names


# ---------------------------------------------------------------------------------------- shutdown


def test_shutdown_exports_what_is_queued_then_drops_later_puts(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink, interval_s=HOUR)
    pipeline.put(1)
    pipeline.put(2)
    assert pipeline.shutdown(GUARD_S) is True
    assert sink.items == [1, 2]

    assert pipeline.put(3) is False
    assert pipeline.put(4) is False
    assert pipeline.stats().dropped == 2
    assert pipeline.stats().exported == 2
    assert pipeline.shutdown(GUARD_S) is True  # a second shutdown is harmless
    for thread in worker_threads(pipeline):
        thread.join(GUARD_S)
    assert worker_threads(pipeline) == []
    # flushing a stopped pipeline has nothing to wait for
    assert in_thread(lambda: pipeline.flush(None)) is True
    assert sink.items == [1, 2]


def test_shutdown_of_an_unused_pipeline_drops_later_puts(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink)
    assert pipeline.shutdown(GUARD_S) is True
    assert pipeline.put("late") is False
    assert pipeline.stats().dropped == 1
    assert worker_threads(pipeline) == []


# ------------------------------------------------------------------------------------ a dead backend


def test_a_blocked_sink_never_blocks_put_and_drops_are_counted(pipelines: Any) -> None:
    gate = threading.Event()  # never set during the test: the backend is dead
    sink = Sink(gate)
    pipeline = pipelines(sink, max_queue=5, max_batch=1, interval_s=HOUR)

    pipeline.put("stuck")
    assert sink.entered.wait(GUARD_S)  # the worker holds "stuck" and is blocked in export

    accepted = in_thread(lambda: [pipeline.put(i) for i in range(5)])
    assert accepted == [True] * 5
    assert pipeline.queue_depth == 5
    dropped = in_thread(lambda: [pipeline.put(i) for i in range(5, 12)])
    assert dropped == [False] * 7
    stats = pipeline.stats()
    assert (stats.queue_depth, stats.dropped, stats.exported) == (5, 7, 0)

    # flush gives up after its timeout and says so
    assert pipeline.flush(0.05) is False
    assert tracedagent.flush(0.05) is False

    gate.set()
    assert pipeline.flush(GUARD_S) is True
    assert sink.items == ["stuck", 0, 1, 2, 3, 4]
    assert pipeline.stats().dropped == 7


def test_shutdown_gives_up_on_a_blocked_sink(pipelines: Any) -> None:
    gate = threading.Event()
    sink = Sink(gate)
    pipeline = pipelines(sink, max_batch=1, interval_s=HOUR)
    pipeline.put("stuck")
    assert sink.entered.wait(GUARD_S)
    assert pipeline.shutdown(0.05) is False
    assert pipeline.put("late") is False
    assert in_thread(lambda: pipeline.flush(0.05)) is False  # the worker is still busy
    gate.set()
    assert in_thread(lambda: pipeline.flush(GUARD_S)) is True  # ...and finishes once the backend answers
    assert sink.items == ["stuck"]


def test_a_failing_export_is_counted_and_logged_once(pipelines: Any, caplog: pytest.LogCaptureFixture) -> None:
    attempts: list[list[Any]] = []

    def failing(batch: Sequence[Any]) -> None:
        attempts.append(list(batch))
        raise ConnectionError("backend down")

    pipeline = pipelines(failing, interval_s=HOUR)
    with caplog.at_level(logging.ERROR, logger="tracedagent.export"):
        for round_ in range(3):
            pipeline.put(round_)
            pipeline.put(round_)
            assert pipeline.flush(GUARD_S) is True

    assert len(attempts) == 3
    stats = pipeline.stats()
    assert (stats.failed, stats.exported, stats.dropped, stats.queue_depth) == (6, 0, 0, 0)
    logged = [r for r in caplog.records if r.name == "tracedagent.export"]
    assert len(logged) == 1
    assert pipeline.name in logged[0].getMessage()
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[0] is ConnectionError
    # the worker survived: a working export afterwards still goes through
    assert worker_threads(pipeline) != []


def test_is_exporting_is_true_only_inside_export(pipelines: Any) -> None:
    sink = Sink()
    pipeline = pipelines(sink, interval_s=HOUR)
    pipeline.put("x")
    assert pipeline.flush(GUARD_S) is True
    assert sink.exporting_flags == [True]
    assert tracedagent.is_exporting() is False
    assert in_thread(tracedagent.is_exporting) is False
    assert sink.threads != []
    assert threading.current_thread() not in sink.threads


@pytest.mark.parametrize(
    "options",
    [{"max_queue": 0}, {"max_batch": 0}, {"max_queue": 1.5}, {"interval_s": 0}, {"interval_s": -1}],
)
def test_bad_settings_are_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ExportPipeline("bad", Sink(), **options)


# -------------------------------------------------------------------------------------------- fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_gets_a_fresh_pipeline_with_its_own_worker(pipelines: Any) -> None:
    gate = threading.Event()
    sink = Sink(gate)
    pipeline = pipelines(sink, max_batch=1, interval_s=HOUR)
    pipeline.put("held")
    assert sink.entered.wait(GUARD_S)  # the parent's worker is busy exporting
    pipeline.put("queued in the parent")
    (parent_worker,) = sink.threads

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into pytest
        code = 1
        try:
            problems = []
            if pipeline.queue_depth != 0:
                problems.append(f"queue not empty: {pipeline.queue_depth}")
            if not pipeline.put("from the child"):
                problems.append("put dropped")
            if not pipeline.flush(GUARD_S):
                problems.append("flush timed out")
            if sink.items != ["from the child"]:
                problems.append(f"exported {sink.items!r}")
            workers = sink.threads[1:]
            if len(workers) != 1 or workers[0] in (parent_worker, threading.current_thread()):
                problems.append(f"export did not run on a new worker thread: {workers!r}")
            elif not workers[0].is_alive() or worker_threads(pipeline) != workers:
                problems.append("the child's worker is not running")
            if sink.exporting_flags != [True, True]:
                problems.append(f"is_exporting flags {sink.exporting_flags!r}")
            os.write(write_end, ("; ".join(problems) or "ok").encode())
            code = 0 if not problems else 1
        except BaseException as exc:
            os.write(write_end, f"child raised {exc!r}".encode())
        finally:
            os._exit(code)

    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        report = reader.read().decode()
    _, status = os.waitpid(pid, 0)
    assert report == "ok"
    assert os.waitstatus_to_exitcode(status) == 0

    # the parent's pipeline is unaffected
    gate.set()
    assert pipeline.flush(GUARD_S) is True
    assert sink.items == ["held", "queued in the parent"]
    assert sys.modules["tracedagent"] is tracedagent
