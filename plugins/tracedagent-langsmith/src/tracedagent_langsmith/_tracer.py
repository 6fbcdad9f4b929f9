"""``LangSmithTracer``: hooks that queue events, a worker that turns them into LangSmith runs.

The hooks only put the event on the tracer's :class:`tracedagent.ExportPipeline` (a bounded queue that
takes or sheds whole traces, decided when a run starts or resumes; it never blocks the run). On the
pipeline's worker thread a :class:`~tracedagent_langsmith._tree.TraceBuilder` calls the SDK's
``create_run`` / ``update_run`` (one ``create_run`` for a model or tool call that starts and ends within
the batch), which serialise the run there and hand it to the SDK's own queue and background thread
(batching, multipart, zstd, retries). A dead, slow or failing endpoint therefore costs the run nothing:
the SDK's thread waits and its backlog grows; that backlog counts in the pipeline's pressure, so new
traces are shed whole (counted) while the traces already admitted still go to the SDK complete.

``tracedagent.flush(timeout)`` and ``shutdown(timeout)`` drain the queue and then flush the SDK client
(``Client.flush``; ``Client.cleanup`` on shutdown, which also stops its threads), all within the timeout:
the SDK call runs on a helper thread that is waited for no longer than what is left. At exit, when
``TRACEDAGENT_EXIT_TIMEOUT`` ran out first, the SDK's uploads are given up (:meth:`_Pipeline.abandon`).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracedagent import (
    ConfigurationError,
    Event,
    ExportPipeline,
    ExportStats,
    QueueingTracer,
    RunStarted,
    current_span,
    hookimpl,
)

from ._settings import Settings
from ._tree import RunClient, TraceBuilder

if TYPE_CHECKING:  # requests is imported with the SDK, when the client is made
    from ._transport import ExitBoundAdapter, SdkNotices

__all__ = ["LangSmithTracer"]

logger = logging.getLogger("tracedagent.langsmith")

SINK = "langsmith"


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Pipeline(ExportPipeline[Event]):
    """The tracer's queue and worker; flushing it also flushes the SDK, within the same timeout.

    Each time the worker has drained the queue (at least every ``interval_s``) it calls ``release``:
    the runs the builder held back long enough go to the SDK, and after a flush or shutdown was asked
    for, every held run does (the drain that serves the request releases them all)."""

    def __init__(
        self,
        export: Callable[[Sequence[Event]], None],
        after: Callable[[float | None, bool], bool],
        release: Callable[[bool], None],
        **kw: Any,
    ):
        super().__init__(SINK, export, **kw)
        self._after = after
        self._release = release
        self._release_asked = 0
        self._released = 0
        self.tracer: Callable[[], LangSmithTracer | None] = lambda: None

    def _drain(self) -> None:
        asked = self._release_asked  # read first: a flush asked for from here on is served by this drain
        super()._drain()
        everything = asked != self._released
        self._released = asked
        self._release(everything)

    def flush(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._release_asked += 1
        ok = super().flush(timeout)
        return self._after(_left(deadline), False) and ok

    def shutdown(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._release_asked += 1
        ok = super().shutdown(timeout)
        return self._after(_left(deadline), True) and ok

    def abandon(self) -> None:
        """At exit, once the exit timeout is spent: give up what the SDK still holds."""
        tracer = self.tracer()
        if tracer is not None:
            tracer._abandon_sdk()


class LangSmithTracer(QueueingTracer):
    """Send every agent run to LangSmith as a run tree: the run a ``chain``, model calls ``llm`` runs
    (with ``usage_metadata``, ``ls_provider`` and ``ls_model_name``), tool calls ``tool`` runs.

    ``client``: a :class:`langsmith.Client` of your own (its ``hide_inputs``, ``hide_outputs``,
    ``anonymizer``, sampling rate... apply); by default the tracer makes one, on its worker thread, from
    the SDK's variables (``LANGSMITH_ENDPOINT``, ``LANGSMITH_API_KEY``, ``LANGSMITH_TRACING_SAMPLING_RATE``,
    ``LANGSMITH_HIDE_INPUTS``, ``LANGSMITH_HIDE_OUTPUTS``), or from ``sampling_rate``, ``hide_inputs``
    and ``hide_outputs`` when given. The tracer's own client has bounded retries and is given up at the
    exit deadline (``TRACEDAGENT_EXIT_TIMEOUT``, see :mod:`._transport`); a client you pass in is yours and
    is not touched: its upload threads are not daemons, so a dead endpoint can hold your process past the
    exit timeout unless you bound it (``LANGSMITH_USE_DAEMON=true``, a ``retry_config``, or your own
    ``client.cleanup(timeout)``). ``project_name``: the LangSmith project (default
    ``LANGSMITH_PROJECT``, else ``default``). ``capture_content``: send message content; by default read
    from ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` or ``TRACEDAGENT_CAPTURE_CONTENT``.
    ``max_queue`` is the admission bound: a run that starts while the events waiting and the runs the SDK
    still holds, plus the room kept for the runs already admitted, would pass it is shed whole (counted);
    admitted runs' events are held up to twice that, and every one of them goes to the SDK.
    ``max_sdk_backlog``: while the SDK holds that many runs or more (LangSmith slow or down), every new
    trace is shed, so the SDK's memory stays bounded without giving up parts of traces.
    ``interval_s`` is how often the worker hands what is waiting to the SDK. ``hold_s``: how long the
    worker may hold a run back in wait for its end, so that it goes to the SDK as one operation instead
    of a create and a patch (a run still open then is sent as running; a flush sends every held run).
    ``environ``: where the
    settings above are read (default ``os.environ``; the SDK reads the endpoint and the key itself).
    """

    name = "langsmith-tracer"

    def __init__(
        self,
        client: Any = None,
        *,
        project_name: str | None = None,
        capture_content: bool | None = None,
        sampling_rate: float | None = None,
        hide_inputs: bool | None = None,
        hide_outputs: bool | None = None,
        max_queue: int = 65_536,
        interval_s: float = 0.2,
        max_sdk_backlog: int = 20_000,
        hold_s: float = 1.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        settings = Settings.from_env(os.environ if environ is None else environ)
        if client is not None and (sampling_rate, hide_inputs, hide_outputs) != (None, None, None):
            raise ConfigurationError(
                "LangSmithTracer: with client= given, set sampling and hidden inputs/outputs on that client "
                "(langsmith.Client(tracing_sampling_rate=..., hide_inputs=..., hide_outputs=...)), not here"
            )
        if isinstance(max_sdk_backlog, bool) or not isinstance(max_sdk_backlog, int) or max_sdk_backlog < 1:
            raise ConfigurationError(
                f"LangSmithTracer max_sdk_backlog must be a positive integer, not {max_sdk_backlog!r}"
            )
        self.max_sdk_backlog = max_sdk_backlog
        if sampling_rate is not None and not 0.0 <= sampling_rate <= 1.0:
            raise ConfigurationError(f"LangSmithTracer sampling_rate must be between 0 and 1, not {sampling_rate!r}")
        self.settings = settings
        self.project_name = project_name or settings.project
        self.capture_content = settings.capture_content if capture_content is None else bool(capture_content)
        self.sampling_rate = settings.sampling_rate if sampling_rate is None else float(sampling_rate)
        self.hide_inputs = settings.hide_inputs if hide_inputs is None else bool(hide_inputs)
        self.hide_outputs = settings.hide_outputs if hide_outputs is None else bool(hide_outputs)
        self._given_client = client
        self._client: Any = client
        #: The transport of the client this tracer made (None with a client of the application's).
        self._adapter: ExitBoundAdapter | None = None
        #: The filter that keeps the SDK's compression notice for that client off the logs (counted).
        self._notices: SdkNotices | None = None
        self._client_pid = os.getpid()
        #: Requests the SDK reported as failed (its ``tracing_error_callback``; our own client only).
        self.send_failures = 0
        #: Events the worker could not turn into runs (a bug, or an SDK error on the caller's side).
        self.failed = 0
        self._failure_logged = False
        #: True once the tracer gave up on what the SDK still held, at exit (see ``_abandon_sdk``).
        self.abandoned = False
        #: Runs taken out of the SDK's queue unsent when the exit timeout was spent.
        self.abandoned_runs = 0
        if isinstance(hold_s, bool) or not isinstance(hold_s, int | float) or not 0 <= hold_s < float("inf"):
            raise ConfigurationError(f"LangSmithTracer hold_s must be a number of seconds >= 0, not {hold_s!r}")
        self._builder = TraceBuilder(None, project=self.project_name, capture=self.capture_content, hold_s=hold_s)
        self._flusher: threading.Thread | None = None
        self._pipeline = _Pipeline(
            self._export,
            self._flush_client,
            self._release_held,
            max_queue=max_queue,
            interval_s=interval_s,
            backlog=self.sdk_backlog,
        )
        self._pipeline.tracer = weakref.ref(self)
        self._put = self._pipeline.put_event
        if client is None:
            _preload_the_sdk()

    def __repr__(self) -> str:
        content = "with content" if self.capture_content else "no content"
        return f"<LangSmithTracer project={self.project_name!r}, {content}>"

    # ------------------------------------------------------------------ hooks: O(1), no I/O

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        """Note the LangSmith run this run was started in (``@traceable``, ``langsmith.trace``): a
        context-variable read on the run's thread; the worker hangs the run's chain under it."""
        if current_span() is None:  # not inside one of our own tools: maybe inside the application's run
            helpers = sys.modules.get("langsmith.run_helpers")  # imported by the application's @traceable
            try:
                outer = helpers.get_current_run_tree() if helpers is not None else None
            except Exception:  # a run tree of someone else's that misbehaves: a trace of our own
                outer = None
            if outer is not None:
                try:
                    self._builder.outer[event.span_id] = (
                        uuid.UUID(str(outer.id)),
                        uuid.UUID(str(outer.trace_id)),
                        str(outer.dotted_order),
                    )
                except (AttributeError, TypeError, ValueError):
                    pass
        self._put(event)

    # ---------------------------------------------------------------- the pipeline's controls

    @property
    def sdk_notices(self) -> int:
        """The SDK's log records (warnings and errors of the client this tracer made) kept off stderr and
        counted: "Run compression is not enabled" when the endpoint does not offer zstd (a local receiver,
        an older LangSmith), and one line per failed upload (also counted in ``send_failures``)."""
        return self._notices.count if self._notices is not None else 0

    def tracedagent_status(self) -> str:
        """For ``tracedagent plugins``: what went to the SDK and what failed, and the SDK's log records
        that were counted instead of printed (with the first one)."""
        stats = self.stats()
        status = (
            f"{stats.exported} events handed to the SDK, {self.send_failures} uploads failed, "
            f"{self.sdk_notices} SDK log lines counted (not printed)"
        )
        notices = self._notices
        if notices is not None and notices.first is not None:
            status += f"; the first: {notices.first!r}"
        return status

    def stats(self) -> ExportStats:
        """Events waiting, dropped (of traces shed, or after shutdown), handed to the SDK, and failed;
        traces admitted, shed and broken."""
        return self._pipeline.stats()

    @property
    def dropped(self) -> int:
        """Events dropped: of traces shed because LangSmith or the SDK could not keep up."""
        return self._pipeline.dropped

    def sdk_backlog(self) -> int:
        """What the SDK client still holds, in runs (its queue, its compression buffer and, roughly, the
        uploads in flight); ``max_queue`` itself while it holds ``max_sdk_backlog`` or more, so that new
        traces are shed. Called at each run start on the run's thread: O(1), no waiting."""
        client = self._client
        if client is None:
            return 0
        held = self._builder.held
        queue = getattr(client, "tracing_queue", None)
        if queue is not None:
            held += queue.qsize()
        compressed = getattr(client, "compressed_traces", None)
        if compressed is not None:
            held += int(getattr(compressed, "trace_count", 0))
        futures = getattr(client, "_futures", None)
        if futures is not None:
            held += _RUNS_PER_UPLOAD * len(futures)
        return self._pipeline.max_queue if held >= self.max_sdk_backlog else held

    @property
    def orphaned(self) -> int:
        """Events left out because their parent run is unknown (see the README)."""
        return self._builder.orphaned

    @property
    def client(self) -> Any:
        """The SDK client in use (None until the first event, unless one was given)."""
        return self._client

    def flush(self, timeout: float | None = 5.0) -> bool:
        """Hand every queued event to the SDK and flush it; True if done within ``timeout`` seconds."""
        return self._pipeline.flush(timeout)

    def shutdown(self, timeout: float | None = 5.0) -> bool:
        """Flush, then stop the worker and the SDK client's threads; later events are dropped."""
        return self._pipeline.shutdown(timeout)

    # ---------------------------------------------------------------------- the worker's side

    def _client_here(self) -> RunClient:
        """The client, made on first use; after a fork the child makes its own (the SDK's threads did not
        survive it)."""
        if self._given_client is not None:
            return self._given_client  # type: ignore[no-any-return]
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            from langsmith import Client

            from ._transport import (
                SDK_LOGGER,
                TIMEOUT_MS,
                SdkNotices,
                bounded_retry,
                exit_bound_session,
                wrap_client_adapter,
            )

            session, adapter = exit_bound_session()
            # Before the client: its tracing thread reads /info and may log the notice at once.
            notices = SdkNotices(adapter)
            sdk_logger = logging.getLogger(SDK_LOGGER)
            if self._notices is not None:  # a client made before a fork: its filter goes with it
                notices.count, notices.first = self._notices.count, self._notices.first
                sdk_logger.removeFilter(self._notices)
            sdk_logger.addFilter(notices)
            self._notices = notices
            self._client = Client(
                tracing_sampling_rate=self.sampling_rate,
                hide_inputs=self.hide_inputs,
                hide_outputs=self.hide_outputs,
                tracing_error_callback=self._send_failed,
                session=session,
                retry_config=bounded_retry(),
                timeout_ms=TIMEOUT_MS,
            )
            wrap_client_adapter(session, adapter)
            self._adapter = adapter
            self._client_pid = pid
        return self._client  # type: ignore[no-any-return]

    def _send_failed(self, error: Exception) -> None:
        self.send_failures += 1

    def _export(self, batch: Sequence[Event]) -> None:
        builder = self._builder
        builder.client = self._client_here()
        # Every event of an admitted trace goes to the SDK: what it holds counts in the admission of new
        # traces (``sdk_backlog``), so a slow or dead endpoint sheds whole traces, never parts of them.
        builder.handle_batch(batch, self._event_failed)

    def _release_held(self, everything: bool) -> None:
        """On the worker, after each drain: hand the SDK the runs held long enough (or all of them)."""
        if self._client is None:
            return  # no event yet, so nothing held
        builder = self._builder
        builder.client = self._client_here()
        try:
            builder.release(everything)
        except Exception:
            logger.exception("LangSmith: could not hand the held runs to the SDK")

    def _event_failed(self, event: Event) -> None:
        """Count an event the SDK could not take (called in the ``except`` block); log the first."""
        self.failed += 1
        if not self._failure_logged:
            self._failure_logged = True
            logger.exception(
                "LangSmith: could not send %s of run %s; it is left out, and later failures are "
                "counted (LangSmithTracer.failed), not logged",
                event.hook,
                event.run_id,
            )

    def _flush_client(self, timeout: float | None, stop: bool) -> bool:
        """Flush (on ``stop``: clean up) the SDK client on a helper thread, waiting at most ``timeout``.

        The helper waits for the SDK without a limit, so whether it is still waiting says whether the
        SDK finished (``Client.flush(timeout)`` returns the same way either way). One helper at a time:
        a flush while one is still waiting (a slow backend) waits for that one first."""
        client = self._client
        if client is None or (self._given_client is None and self._client_pid != os.getpid()):
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        flusher = self._flusher
        if flusher is not None and flusher.is_alive():
            flusher.join(timeout)
            if flusher.is_alive():
                return False
        action = client.cleanup if stop and self._given_client is None else client.flush
        flusher = self._flusher = threading.Thread(
            target=_quietly, args=(action,), name="tracedagent-langsmith-flush", daemon=True
        )
        flusher.start()
        flusher.join(_left(deadline))
        return not flusher.is_alive()

    def _abandon_sdk(self) -> None:
        """At exit, once the exit timeout is spent: give up what the SDK still holds, at once.

        Python waits at exit for the SDK's threads (they are not daemons), and against an endpoint that
        does not answer each upload holds its thread for seconds of timeouts and retries. Only a client
        this tracer made is touched: its transport (:class:`~._transport.ExitBoundAdapter`) releases the
        SDK threads waiting in a request and fails every later request at once, and ``Client.cleanup(0)``
        tells its threads to stop; they then finish their queue, every upload failing at once (counted
        in ``send_failures`` by the SDK's error callback), and the process exits. Logged once here."""
        client, adapter = self._client, self._adapter
        if client is None or adapter is None or self._given_client is not None or self._client_pid != os.getpid():
            return
        adapter.abandon()
        self.abandoned = True
        # What the SDK's threads would still serialise (and fail to send, logging each batch) is taken out
        # of its queue: the runs are given up, and the threads only finish the batch in their hands.
        self.abandoned_runs += _drain(getattr(client, "tracing_queue", None))
        try:
            client.cleanup(timeout=0)  # no drain: only the SDK's flag that stops its threads
        except Exception:
            logger.debug("LangSmith: Client.cleanup(0) failed at exit", exc_info=True)
        logger.warning(
            "LangSmith: the endpoint did not take the last runs within TRACEDAGENT_EXIT_TIMEOUT; what the "
            "SDK still holds is dropped so that the process can exit"
        )


def _drain(tracing_queue: Any) -> int:
    """Empty the SDK client's queue of runs to upload (our own client's, at exit); how many were in it."""
    if tracing_queue is None:
        return 0
    taken = 0
    while True:
        try:
            tracing_queue.get_nowait()
        except queue.Empty:
            return taken
        except Exception:  # another SDK version's queue: leave it to the SDK
            return taken
        taken += 1
        tracing_queue.task_done()


_preloading: list[threading.Thread] = []


def _preload_the_sdk() -> None:
    """Import the SDK's client on a daemon thread of its own, once per process, as the first tracer is
    made. The worker makes the client at the first event, and the import is most of that (a second or
    more on a busy machine): a short process whose runs end before it would pay it at exit."""
    if _preloading or "langsmith.client" in sys.modules:
        return

    def preload() -> None:
        try:
            import langsmith.client  # noqa: F401

            from . import _transport  # noqa: F401
        except Exception:  # the worker's own import reports it
            pass

    thread = threading.Thread(target=preload, name="tracedagent-langsmith-import", daemon=True)
    _preloading.append(thread)
    thread.start()


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception:
        logger.debug("LangSmith: flushing the SDK client failed", exc_info=True)


#: Runs counted for each upload the SDK has in flight (a batch; the SDK's default batch is 100 runs).
_RUNS_PER_UPLOAD = 100
