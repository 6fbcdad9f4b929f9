"""The hot path: a sink stuck in its export costs the runs nothing but the events it drops, and those are
counted (``export_stats()`` and ``tracedagent_export_dropped_total{sink}``); the tracer's hooks do no I/O.
No timing is measured: the runs complete while the sink's worker is provably blocked in its export."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_support import VariedScenario, unique, value

import tracedagent
import tracedagent_prometheus
from tracedagent import Agent, Event, ExportPipeline, Tool, hookimpl
from tracedagent.hookspecs import OBSERVER_HOOKS
from tracedagent.testing import ScriptedModel, Step

# ------------------------------------------------------------------------------------ a stuck sink


class QueueingSink:
    """A sink's tracer: every hook puts the event on the sink's pipeline (all a hook should do), and
    remembers what ``put`` returned and on which thread."""

    name = "queueing-sink"

    def __init__(self, pipeline: ExportPipeline[Any]) -> None:
        self.pipeline = pipeline
        self.returned: list[bool] = []
        self.threads: set[int] = set()

    def _put(self, event: Event) -> None:
        self.threads.add(threading.get_ident())
        self.returned.append(self.pipeline.put(event))


def _putter(hook: str) -> Callable[[QueueingSink, Event], None]:
    @hookimpl(specname=hook)
    def put(self: QueueingSink, event: Event) -> None:
        self._put(event)

    return put


for _hook in OBSERVER_HOOKS:
    setattr(QueueingSink, _hook, _putter(_hook))


class StuckExport:
    """An export function that blocks until the test ends, like a backend that never answers."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[Any]] = []

    def __call__(self, batch: list[Any]) -> None:
        self.batches.append(list(batch))
        self.entered.set()
        self.release.wait()


@pytest.fixture
def stuck() -> Iterator[tuple[StuckExport, ExportPipeline[Any]]]:
    export = StuckExport()
    # one item per batch, so the worker takes exactly one item into the stuck export
    pipeline: ExportPipeline[Any] = ExportPipeline(unique("stuck-sink"), export, max_queue=8, max_batch=1)
    yield export, pipeline
    export.release.set()
    pipeline.shutdown(10)


def busy_agent(*plugins: object) -> tuple[Agent, str]:
    """Three turns of three concurrent tool calls, then the answer: 28 events a run."""
    name = unique("ping")

    async def ping(n: int) -> str:
        return f"pong {n}"

    steps = [Step(tool_calls=[(name, {"n": i}) for i in range(3)]) for _ in range(3)]
    model = ScriptedModel([*steps, "all pinged"], per_run=True)
    return Agent("busy", model, tools=[Tool(ping, name=name)], plugins=plugins), name


async def test_a_stuck_sink_drops_and_counts_and_never_holds_up_a_run(stuck, registry, prom, recorder):
    export, pipeline = stuck
    assert pipeline.put("first item")  # the worker takes it and gets stuck exporting it
    assert export.entered.wait(10), "the sink's worker never started exporting"
    sink = QueueingSink(pipeline)
    agent, tool_name = busy_agent(sink, prom, recorder)

    results = [await agent.run(f"ping {i}") for i in range(3)]

    # every run finished, with its answer, while the worker was still inside the first export
    assert [r.output for r in results] == ["all pinged"] * 3
    assert [r.status for r in results] == ["completed"] * 3
    assert export.batches == [["first item"]]
    assert not export.release.is_set()
    assert sink.threads == {threading.get_ident()}  # put() ran on the run's own thread, and returned
    # the queue filled up, then every later event was dropped at once (put returned False)
    events = len(recorder.events)
    assert events == 3 * 28
    assert sink.returned == [True] * 8 + [False] * (events - 8)
    dropped = events - 8
    assert pipeline.dropped == dropped
    stats = {s.sink: s for s in tracedagent.export_stats()}[pipeline.name]
    assert (stats.queue_depth, stats.dropped, stats.exported) == (8, dropped, 0)
    assert value(registry, "tracedagent_export_dropped_total", sink=pipeline.name) == dropped
    assert value(registry, "tracedagent_export_queue_depth", sink=pipeline.name) == 8
    # the metrics tracer beside the stuck sink counted everything
    assert value(registry, "tracedagent_runs_total", agent="busy", status="completed") == 3
    assert value(registry, "tracedagent_tool_calls_total", agent="busy", tool=tool_name, status="ok") == 27

    # once the backend answers, what was queued is exported; the drops stay counted
    export.release.set()
    assert pipeline.flush(10)
    assert len(export.batches) == 1 + 8
    assert value(registry, "tracedagent_export_queue_depth", sink=pipeline.name) == 0
    assert value(registry, "tracedagent_export_dropped_total", sink=pipeline.name) == dropped


# ------------------------------------------------------------------------------- no I/O in a hook

TRACER_FILES = {str(Path(tracedagent_prometheus.__file__).with_name("_tracer.py"))}
#: Audit events that mean I/O or blocking (files, sockets, processes, imports from disk, HTTP, ...).
IO_EVENTS = ("open", "socket.", "os.", "subprocess.", "http.client.", "urllib.", "import", "sqlite3.", "shutil.")


class IOWatch:
    """Notes every audited I/O event (and ``time.sleep``) raised while a frame of the tracer module is on
    the stack, while armed. Audit hooks cannot be removed, so one watch serves the whole session."""

    _instance: IOWatch | None = None

    def __init__(self) -> None:
        self.armed = False
        self.seen: list[str] = []
        self._local = threading.local()

    @classmethod
    def get(cls) -> IOWatch:
        if cls._instance is None:
            cls._instance = cls()
            sys.addaudithook(cls._instance._audit)
        return cls._instance

    def _in_tracer(self) -> bool:
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_filename in TRACER_FILES:
                return True
            frame = frame.f_back
        return False

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.armed or not event.startswith(IO_EVENTS) or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            if self._in_tracer():
                self.seen.append(event)
        finally:
            self._local.busy = False

    def sleep(self, real: Callable[[float], None]) -> Callable[[float], None]:
        def watched(seconds: float) -> None:
            if self.armed and self._in_tracer():
                self.seen.append("time.sleep")
            real(seconds)

        return watched


@pytest.fixture
def io_watch(monkeypatch: pytest.MonkeyPatch) -> Iterator[IOWatch]:
    watch = IOWatch.get()
    watch.seen.clear()
    monkeypatch.setattr(time, "sleep", watch.sleep(time.sleep))
    watch.armed = True
    try:
        yield watch
    finally:
        watch.armed = False


async def test_the_hooks_do_no_io(io_watch, registry, prom, recorder, capsys):
    await VariedScenario().run(prom, recorder)
    io_watch.armed = False
    assert io_watch.seen == []
    assert value(registry, "tracedagent_runs_total", agent="desk", status="completed") == 2  # the hooks ran
    assert len(recorder.events) > 50
    assert capsys.readouterr() == ("", "")  # nothing printed or logged to the console either


async def test_the_io_watch_sees_io_in_a_hook(io_watch, registry, prom, monkeypatch):
    """The watch above is not blind: a metric whose labels() reads a file and sleeps is caught."""
    metric = prom.metrics.runs_total
    labels = metric.labels

    def labels_with_io(*values: str) -> Any:
        with open(__file__, "rb") as f:
            f.read(1)
        time.sleep(0)
        return labels(*values)

    monkeypatch.setattr(metric, "labels", labels_with_io)
    await Agent("watched", ScriptedModel(["hi"]), plugins=[prom]).run("hello")
    io_watch.armed = False
    assert "open" in io_watch.seen
    assert "time.sleep" in io_watch.seen
