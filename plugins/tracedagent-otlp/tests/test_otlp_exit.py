"""At the exit deadline the sender gives up at once, even when the exporter's ``shutdown`` waits for the
export in flight (the stock gRPC exporter's does); the exporter built from ``OTEL_*`` gets a timeout
that fits in ``TRACEDAGENT_EXIT_TIMEOUT``."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tracedagent_otlp import _providers, _settings
from tracedagent_otlp._sender import SpanSender

GUARD_S = 30.0


class StuckExporter(SpanExporter):
    """An export that never returns until shut down, and a shutdown that waits for the export."""

    def __init__(self) -> None:
        self.exporting = threading.Event()
        self.release = threading.Event()
        self.shutdown_started = threading.Event()
        self.export_lock = threading.Lock()

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        with self.export_lock:
            self.exporting.set()
            self.release.wait(GUARD_S)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.shutdown_started.set()
        with self.export_lock:  # waits for the export in flight
            pass


def test_abandon_returns_without_waiting_for_the_exporter_and_fails_what_is_queued() -> None:
    exporter = StuckExporter()
    sender = SpanSender(exporter, max_batches=4)
    sender.submit(["a"], 1)
    assert exporter.exporting.wait(GUARD_S)
    sender.submit(["b", "c"], 2)  # queued behind the stuck export
    sender.abandon()  # returns although the exporter's shutdown cannot finish yet
    assert exporter.shutdown_started.wait(GUARD_S)
    assert sender.spans_failed == 2
    assert sender.events_failed == 2
    sender.submit(["d"], 1)  # after abandon: fails at once
    assert sender.spans_failed == 3
    assert sender.close(0.0) is False  # a later shutdown returns at once too
    exporter.release.set()


def test_the_exporter_built_from_env_gets_a_timeout_within_the_exit_timeout() -> None:
    assert _settings.export_timeout_from_env({"TRACEDAGENT_EXIT_TIMEOUT": "2"}) == 2.0
    assert _settings.export_timeout_from_env({}) == 5.0  # the core's default exit timeout
    assert _settings.export_timeout_from_env({"TRACEDAGENT_EXIT_TIMEOUT": "60"}) == 10.0  # OTel's default
    assert _settings.export_timeout_from_env({"TRACEDAGENT_EXIT_TIMEOUT": "0"}) == 1.0
    assert _settings.export_timeout_from_env({"TRACEDAGENT_EXIT_TIMEOUT": "nan"}) == 5.0
    assert _settings.export_timeout_from_env({"OTEL_EXPORTER_OTLP_TIMEOUT": "30"}) is None  # the user's
    assert _settings.export_timeout_from_env({"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "30"}) is None
    _providers.span_exporter_from_env({"TRACEDAGENT_EXIT_TIMEOUT": "2"}).shutdown()  # it takes the timeout
