"""Nothing leaks: with content capture off (the default) no secret reaches any telemetry channel.

One scenario puts a distinct sentinel in each place a secret can come from: the prompt, a tool's
arguments, a tool's result, an error message, the model's answer, and the API key of a model from
``tracedagent.models`` talking to the loopback wire server (which echoes the key back in an error body,
a retried error and an error in the middle of a stream, as some servers do). Every tracer is on the
agent: stdout (JSON lines and console), OTLP (spans to the SDK's in-memory exporter, GenAI metrics to an
in-memory reader), LangSmith (a fake client recording every payload), Prometheus (its exposition); and
python logging is captured at DEBUG for every logger, httpx's included.

* capture off: no sentinel appears in any of those channels;
* capture on (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``): the content appears where the
  README says (stdout, spans, LangSmith), still never in metrics or logs, and the API key nowhere;
* checkpoints store content by design (a paused run must resume with its conversation), so the sentinels
  are in the SQLite file, but never the API key, and the file and its WAL and shared-memory files are
  created readable by their owner only.

Extends ``test_model_openai.py::test_the_api_key_appears_in_no_event_log_or_error`` (the key in events,
logs and errors) and the plugins' own content tests to every channel at once.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wire_server import Reply, WireServer, wire_server

from tracedagent import Agent, ModelError, ModelHTTPError, ModelStreamError, RetryScheduled, tool
from tracedagent.models import OpenAIChatModel
from tracedagent.testing import RecordingTracer

PROMPT = "SENTINEL-PROMPT-51d0"
ARGUMENT = "SENTINEL-ARGUMENT-77e2"
RESULT = "SENTINEL-RESULT-0c9b"
ERROR = "SENTINEL-ERROR-e41a"
ANSWER = "SENTINEL-ANSWER-3f6d"
API_KEY = "sk-SENTINEL-KEY-9a8b7c6d5e4f3a2b1c0d"
CONTENT = {"prompt": PROMPT, "argument": ARGUMENT, "result": RESULT, "error": ERROR, "answer": ANSWER}
CAPTURE = ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "TRACEDAGENT_CAPTURE_CONTENT")
GUARD_S = 10.0

HAS_OTLP = importlib.util.find_spec("tracedagent_otlp") is not None
HAS_LANGSMITH = importlib.util.find_spec("tracedagent_langsmith") is not None
HAS_PROMETHEUS = importlib.util.find_spec("tracedagent_prometheus") is not None
StdoutTracer = pytest.importorskip("tracedagent_stdout").StdoutTracer


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"{RESULT} for {key}"


@tool
def broken(key: str) -> str:
    """Always fails."""
    raise ValueError(f"{ERROR} while reading {key}")


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"


def call(index: int, name: str) -> str:
    arguments = json.dumps({"key": ARGUMENT})
    return chunk(
        {"tool_calls": [{"index": index, "id": f"c{index}", "function": {"name": name, "arguments": arguments}}]}
    )


USAGE = 'data: {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}}\n\n'
DONE = "data: [DONE]\n\n"


def script(server: WireServer) -> None:
    """Run 1: an overloaded answer echoing the key (retried), tool calls, the answer. Run 2: a 401 that
    echoes the key. Run 3: an error in the middle of the stream that quotes the key."""
    server.queue(
        Reply.json(503, {"error": {"message": f"overloaded; your key {API_KEY} is fine", "type": "server_error"}}),
        Reply(chunks=[call(0, "lookup"), call(1, "broken"), chunk({}, "tool_calls"), USAGE, DONE]),
        Reply(chunks=[chunk({"content": ANSWER}, "stop"), USAGE, DONE]),
        Reply.json(401, {"error": {"message": f"Incorrect API key provided: {API_KEY}.", "type": "auth"}}),
        Reply.sse([f'data: {{"error": {{"message": "key {API_KEY} revoked", "type": "auth"}}}}']),
    )


class FakeLangSmith:
    """Records every payload the LangSmith tracer hands the SDK."""

    def __init__(self) -> None:
        self.payloads: list[Any] = []

    def create_run(self, name: str, inputs: Any, run_type: Any, **kwargs: Any) -> None:
        self.payloads.append({"name": name, "inputs": inputs, "run_type": run_type, **kwargs})

    def update_run(self, run_id: Any, **kwargs: Any) -> None:
        self.payloads.append({"id": run_id, **kwargs})

    def flush(self, timeout: float | None = None) -> None:
        pass


class Channels:
    """Every tracer on one agent, and what each one let out."""

    def __init__(self) -> None:
        self.json = io.StringIO()
        self.console = io.StringIO()
        self.recorder = RecordingTracer()
        self.plugins: list[Any] = [
            StdoutTracer(self.json, format="json", interval_s=0.01),
            StdoutTracer(self.console, format="console", colors=False, interval_s=0.01),
            self.recorder,
        ]
        self.spans: Any = None
        self.metrics: Any = None
        self.langsmith: FakeLangSmith | None = None
        self.registry: Any = None
        if HAS_OTLP:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            from tracedagent_otlp import OtlpTracer

            self.spans, self.metrics = InMemorySpanExporter(), InMemoryMetricReader()
            meters = MeterProvider(metric_readers=[self.metrics])
            self.plugins.append(OtlpTracer(span_exporter=self.spans, meter_provider=meters, interval_s=0.01))
        if HAS_LANGSMITH:
            from tracedagent_langsmith import LangSmithTracer

            self.langsmith = FakeLangSmith()
            self.plugins.append(LangSmithTracer(self.langsmith, interval_s=0.01))
        if HAS_PROMETHEUS:
            from prometheus_client import CollectorRegistry

            from tracedagent_prometheus import PrometheusTracer

            self.registry = CollectorRegistry()
            self.plugins.append(PrometheusTracer(self.registry))

    def drain(self) -> None:
        for plugin in self.plugins:
            flush = getattr(plugin, "flush", None)
            if callable(flush):
                assert flush(GUARD_S)

    def shutdown(self) -> None:
        for plugin in self.plugins:
            stop = getattr(plugin, "shutdown", None)
            if callable(stop):
                stop(GUARD_S)

    def texts(self) -> dict[str, str]:
        """What each channel let out, as text."""
        self.drain()
        out = {"stdout json": self.json.getvalue(), "stdout console": self.console.getvalue()}
        if self.spans is not None:
            out["otlp spans"] = "\n".join(span.to_json() for span in self.spans.get_finished_spans())
            out["otlp metrics"] = self.metrics.get_metrics_data().to_json()
        if self.langsmith is not None:
            out["langsmith payloads"] = json.dumps(self.langsmith.payloads, default=str, ensure_ascii=False)
        if self.registry is not None:
            from prometheus_client import generate_latest

            out["prometheus exposition"] = generate_latest(self.registry).decode()
        return out


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No capture switch, LangSmith or OpenTelemetry setting from the shell."""
    for name in list(os.environ):
        if name in CAPTURE or name.startswith(("LANGSMITH_", "LANGCHAIN_", "OTEL_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def make_channels(clean_env: pytest.MonkeyPatch, fresh_registry: Any) -> Iterator[Any]:
    """Build the channels once the environment is as the test wants it (tracers read it when built)."""
    made: list[Channels] = []

    def make() -> Channels:
        made.append(Channels())
        return made[-1]

    yield make
    for channels in made:
        channels.shutdown()


async def run_scenario(server: WireServer, channels: Channels, **options: Any) -> tuple[Agent, list[BaseException]]:
    script(server)
    model = OpenAIChatModel(
        "gpt-test",
        base_url=f"{server.url}/v1",
        api_key=API_KEY,
        max_retries=1,
        retry_initial_delay=0.001,
        retry_max_delay=0.002,
    )
    agent = Agent("leaks", model, tools=[lookup, broken], plugins=channels.plugins, **options)
    errors: list[BaseException] = []
    try:
        async with asyncio.timeout(GUARD_S):
            result = await agent.run(f"Please look up {PROMPT}")
            assert (result.status, result.output) == ("completed", ANSWER)
            for _ in range(2):
                with pytest.raises(ModelError) as caught:
                    await agent.run(f"again {PROMPT}")
                errors.append(caught.value)
    finally:
        await model.aclose()
    assert [type(e) for e in errors] == [ModelHTTPError, ModelStreamError]
    return agent, errors


@pytest.fixture
def server() -> Iterator[WireServer]:
    with wire_server() as running:
        yield running


@pytest.mark.parametrize("capture", [False, True], ids=["capture off", "capture on"])
async def test_secrets_reach_only_the_channels_that_are_asked_for(
    server: WireServer,
    make_channels: Any,
    clean_env: pytest.MonkeyPatch,
    capture: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if capture:
        clean_env.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    channels = make_channels()
    caplog.set_level(logging.DEBUG)  # every logger: tracedagent's, httpx's, the SDKs'
    _, errors = await run_scenario(server, channels)
    texts = channels.texts()
    texts["python logging"] = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    texts["errors raised"] = "\n".join(f"{e!s} {e!r} {getattr(e, 'provider_message', '')}" for e in errors)

    # the scenario really carried every secret: the model got them, the recorder saw the content
    requests = json.dumps([r.body for r in server.requests], ensure_ascii=False)
    for secret in (PROMPT, ARGUMENT, RESULT, ERROR):
        assert secret in requests
    recorded = "\n".join(repr(e) for e in channels.recorder.events)
    for secret in CONTENT.values():
        assert secret in recorded
    assert channels.recorder.of_type(RetryScheduled)  # the 503 that echoed the key was retried
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in server.requests)
    assert API_KEY not in requests  # the key goes in its header only
    assert API_KEY not in recorded
    assert "[redacted]" in texts["errors raised"]

    assert set(texts) >= {"stdout json", "stdout console", "python logging", "errors raised"}
    for channel, text in texts.items():
        assert text.strip() or channel == "python logging", f"{channel} is empty: the check would be blind"
        assert API_KEY not in text, f"the API key leaked into {channel}"
        always_clean = channel in ("otlp metrics", "prometheus exposition", "python logging", "errors raised")
        for what, secret in CONTENT.items():
            if capture and not always_clean:
                continue
            if channel == "errors raised" and what in ("prompt", "argument", "result", "answer"):
                continue
            assert secret not in text, f"the {what} leaked into {channel} with capture {'on' if capture else 'off'}"

    if capture:  # where the README says content goes when asked for
        for channel in ("stdout json", "stdout console", "otlp spans", "langsmith payloads"):
            if channel in texts:
                for what, secret in CONTENT.items():
                    assert secret in texts[channel], f"the {what} is missing from {channel} with capture on"


async def test_checkpoints_keep_content_but_never_the_key_in_owner_only_files(
    server: WireServer, make_channels: Any, tmp_path: Path
) -> None:
    channels = make_channels()
    path = tmp_path / "state" / "runs.db"
    old_umask = os.umask(0o022)  # the usual umask: group and others could read what is not made private
    try:
        await run_scenario(server, channels, checkpoints=path, checkpoint_every="step")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}
        stored = b"".join(f.read_bytes() for f in files if f.exists())
    finally:
        os.umask(old_umask)
    assert set(modes) == {"runs.db", "runs.db-wal", "runs.db-shm"}  # open while the store's connection is
    assert modes == dict.fromkeys(modes, 0o600)
    # by design: a paused or failed run resumes with its conversation, so the content is stored...
    for secret in (PROMPT, ARGUMENT, RESULT, ERROR, ANSWER):
        assert secret.encode() in stored
    # ...but the key, which no message carries, never is
    assert API_KEY.encode() not in stored
