"""Issue 17, "touch nothing you don't own": after runs with every plugin on (stdout, OTLP through the
application's global provider, through ``tracer_provider=`` and with its own OTLP/HTTP exporter,
LangSmith to a loopback capture server, Prometheus), the application's tracer provider, its id
generator, sampler, resource, span processors and exporter are the same objects with the same state,
and the OpenTelemetry, OTLP exporter and langsmith modules (and the classes in them) hold the same
objects as before. In a child process, so every global starts as an application's would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, inspect, io, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import opentelemetry.context, opentelemetry.baggage, opentelemetry.propagate
    import opentelemetry.sdk.trace, opentelemetry.sdk.trace.id_generator, opentelemetry.sdk.trace.export
    import opentelemetry.exporter.otlp.proto.http.trace_exporter
    import opentelemetry.exporter.otlp.proto.common.trace_encoder
    import langsmith, langsmith.client, langsmith.run_helpers
    from prometheus_client import CollectorRegistry
    from langsmith_server import capture_server

    import tracedagent
    from tracedagent import Agent, tool
    from tracedagent.testing import ScriptedModel, Step
    from tracedagent_langsmith import LangSmithTracer
    from tracedagent_otlp import OtlpTracer
    from tracedagent_prometheus import PrometheusTracer
    from tracedagent_stdout import StdoutTracer

    MODULES = [
        trace, opentelemetry.context, opentelemetry.baggage, opentelemetry.propagate, opentelemetry.sdk.trace,
        opentelemetry.sdk.trace.id_generator, opentelemetry.sdk.trace.export,
        opentelemetry.exporter.otlp.proto.http.trace_exporter,
        opentelemetry.exporter.otlp.proto.common.trace_encoder, langsmith, langsmith.client,
        langsmith.run_helpers,
    ]

    def snapshot(obj):
        # every attribute that is not a module, by identity; for a class, its own dict
        return {k: id(v) for k, v in vars(obj).items() if not inspect.ismodule(v)}

    def modules():
        out = {}
        for module in MODULES:
            out[module.__name__] = snapshot(module)
            for name, value in vars(module).items():
                if inspect.isclass(value) and value.__module__ == module.__name__:
                    out[f"{module.__name__}.{name}"] = snapshot(value)
        return out

    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    app = provider.get_tracer("the-app")
    owned = {
        "provider": snapshot(provider), "id_generator": snapshot(provider.id_generator),
        "sampler": snapshot(provider.sampler), "resource": snapshot(provider.resource),
        "processor": snapshot(processor), "exporter": snapshot(memory),
        "multi_processor": snapshot(provider._active_span_processor),  # read, to compare after
    }
    ids = id(provider.id_generator), id(provider.sampler), id(provider.resource)
    processors = [id(p) for p in provider._active_span_processor._span_processors]
    before = modules()

    @tool
    def look(key: str) -> str:
        \"\"\"Look.\"\"\"
        with app.start_as_current_span("SELECT"):
            return key

    with capture_server() as server:
        plugins = [
            StdoutTracer(stream=io.StringIO()),
            OtlpTracer(metrics=False, interval_s=0.05),
            OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05),
            OtlpTracer(span_exporter=opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter(
                endpoint=sys.argv[1] + "/v1/traces"), metrics=False, interval_s=0.05),
            LangSmithTracer(interval_s=0.05, client=None),
            PrometheusTracer(CollectorRegistry()),
        ]
        import os
        os.environ["LANGSMITH_ENDPOINT"] = server.url
        model = ScriptedModel([Step(tool_calls=[("look", {"key": "k"})]), "ok"], per_run=True)
        agent = Agent("a", model, tools=[look], plugins=plugins)

        @langsmith.traceable(name="handler")
        def handle():
            return agent.run_sync("go")

        with app.start_as_current_span("request"):
            asyncio.run(agent.run("in a span"))
        agent.run_sync("no parent")
        handle()
        assert tracedagent.flush(10.0)
        tracedagent.shutdown(10.0)

    print(json.dumps({
        "same_provider": trace.get_tracer_provider() is provider,
        "ids": [id(provider.id_generator), id(provider.sampler), id(provider.resource)] == list(ids),
        "processors": [id(p) for p in provider._active_span_processor._span_processors] == processors,
        "owned": {k: v == snapshot(o) for (k, v), o in zip(owned.items(), [
            provider, provider.id_generator, provider.sampler, provider.resource, processor, memory,
            provider._active_span_processor])},
        "modules": sorted(k for k, v in modules().items() if before.get(k) != v),
        "spans": sorted({s.name for s in memory.get_finished_spans()}),
        "langsmith_ops": len(server.ops),
    }))
    """
)


def test_runs_with_every_plugin_on_change_nothing_the_application_or_the_sdks_own() -> None:
    paths = [
        str(ROOT / "plugins" / "tracedagent-langsmith" / "tests"),
        *[str(ROOT / "plugins" / p / "src") for p in ("tracedagent-otlp", "tracedagent-langsmith")],
        os.environ.get("PYTHONPATH", ""),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_API_KEY": "lsv2_pt_test",
        "LANGSMITH_ENDPOINT": "http://127.0.0.1:9",  # set to the capture server before the first event
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "http://127.0.0.1:9"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["same_provider"]
    assert report["ids"]
    assert report["processors"]
    assert report["owned"] == dict.fromkeys(report["owned"], True), report["owned"]
    assert report["modules"] == [], report["modules"]
    # the runs did go everywhere: both tracers on the application's provider, and LangSmith
    assert {"invoke_agent a", "execute_tool look", "chat scripted", "SELECT", "request"} <= set(report["spans"])
    assert report["langsmith_ops"] > 0
