"""The hooks only queue: formatting and writing happen on the worker, and a stuck stream costs the run
nothing but dropped lines."""

from __future__ import annotations

import io
import json
import logging
import threading

from stdout_support import one_of_each

import tracedagent
from tracedagent import Agent, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@tool
def ping(n: int) -> str:
    """Answer pong."""
    return f"pong {n}"


def busy_agent(*plugins: object) -> Agent:
    """Three turns of three concurrent tool calls, then the answer: 28 events."""
    steps = [Step(tool_calls=[("ping", {"n": i}) for i in range(3)]) for _ in range(3)]
    return Agent("busy", ScriptedModel([*steps, "done"]), tools=[ping], plugins=plugins)


class RecordingStream(io.StringIO):
    """Remembers which threads wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def write(self, text: str) -> int:
        self.threads.add(threading.current_thread().name)
        return super().write(text)


class BlockingStream(io.StringIO):
    """A stream whose writes hang until released, like a paused terminal or a full pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the stream")
        return super().write(text)


class BrokenPipe(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        raise BrokenPipeError(32, "Broken pipe")


async def test_hooks_only_queue_and_the_worker_writes(make_tracer):
    stream = RecordingStream()
    # An hour between wake-ups: nothing is written until a flush asks for it.
    tracer, _ = make_tracer(stream, format="json", interval_s=3600)
    recorder = RecordingTracer()
    await busy_agent(tracer, recorder).run("go")

    assert stream.getvalue() == ""
    assert tracer.stats().queue_depth == len(recorder.events) == 28
    assert tracedagent.flush()
    assert len(stream.getvalue().splitlines()) == 28
    assert stream.threads == {"tracedagent-export-stdout"}
    assert tracer.stats().exported == 28


async def test_a_blocked_stream_does_not_block_the_run_and_sheds_whole_runs(make_tracer):
    stream = BlockingStream()
    # Room for one 28-event run and its reserve (12), not for a second run's reserve on top of it.
    tracer, _ = make_tracer(stream, format="json", max_queue=39)
    try:
        tracer.on_checkpoint(one_of_each()[6])  # outside any run: taken while the queue has room
        tracer.flush(timeout=0)  # wake the worker; it takes the event and hangs in write()
        assert stream.entered.wait(10)

        first, second = RecordingTracer(), RecordingTracer()
        assert (await busy_agent(tracer, first).run("go")).status == "completed"
        assert (await busy_agent(tracer, second).run("go")).status == "completed"

        stats = tracer.stats()
        assert stats.queue_depth == len(first.events) == 28  # the first run, whole
        assert (stats.traces_admitted, stats.traces_shed, stats.traces_broken) == (1, 1, 0)
        assert tracer.dropped == len(second.events)  # the second, shed whole
        shown = [s for s in tracedagent.export_stats() if s.sink == "stdout" and s.traces_shed == 1]
        assert shown, "the shed trace shows in tracedagent.export_stats()"
    finally:
        stream.release.set()
    assert tracedagent.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "checkpoint.save"
    assert {line["run_id"] for line in lines[1:]} == {first.events[0].run_id}
    assert len(lines) == 29


async def test_a_closed_pipe_stops_printing_quietly(make_tracer, caplog):
    stream = BrokenPipe()
    tracer, _ = make_tracer(stream, format="json")
    with caplog.at_level(logging.WARNING):
        await busy_agent(tracer).run("go")
        assert tracedagent.flush()
        await busy_agent(tracer).run("go")
        assert tracedagent.flush()
    assert stream.writes == 1
    assert tracer.stats().failed == 0
    assert caplog.records == []


def test_flush_after_shutdown_returns_at_once(make_tracer):
    tracer, stream = make_tracer(format="json")
    tracer.on_checkpoint(one_of_each()[6])
    assert tracer.shutdown()
    assert len(stream.getvalue().splitlines()) == 1
    tracer.on_checkpoint(one_of_each()[6])  # after shutdown: dropped, counted
    assert tracer.dropped == 1
    assert tracer.flush(timeout=None)  # would hang without the worker if it waited for it
    assert tracedagent.flush()
