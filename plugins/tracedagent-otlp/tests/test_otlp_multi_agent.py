"""Handoffs and agents as tools over the real OTLP path: a loopback HTTP collector receives the protobuf."""

from __future__ import annotations

import gzip
from typing import Any

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from otlp_support import MakeTracer
from test_otlp_wire import _Collector, collector  # noqa: F401  (the loopback collector and its fixture)

from tracedagent import Agent, Usage
from tracedagent.testing import ScriptedModel, Step
from tracedagent_otlp import names as N


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def _received(c: _Collector) -> list[PbSpan]:
    spans: list[PbSpan] = []
    for _, body in c.requests:
        request = ExportTraceServiceRequest.FromString(gzip.decompress(body))
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    return spans


async def test_a_handoff_and_a_sub_agent_reach_the_collector_nested_and_counted_once(
    make_tracer: MakeTracer,
    collector: _Collector,  # noqa: F811
) -> None:
    exporter = OTLPSpanExporter(endpoint=collector.url, compression=Compression.Gzip)
    tracer, _ = make_tracer(span_exporter=exporter, metrics=False)
    researcher = Agent("researcher", ScriptedModel([Step("Paris.", usage=Usage(7, 3, requests=1))]), plugins=[tracer])
    billing = Agent(
        "billing",
        ScriptedModel(
            [
                Step(tool_calls=[("researcher", {"input": "capital?"})], usage=Usage(20, 2, requests=1)),
                Step("Paris, refunded.", usage=Usage(30, 5, requests=1)),
            ]
        ),
        tools=[researcher.as_tool()],
    )
    triage = Agent(
        "triage",
        ScriptedModel([Step(tool_calls=[("transfer_to_billing", {})], usage=Usage(10, 1, requests=1))]),
        handoffs=[billing],
        plugins=[tracer],
    )

    result = await triage.run("refund and tell me the capital")
    assert tracer.flush(10.0)

    spans = _received(collector)
    runs = {_attrs(s.attributes)[N.GEN_AI_AGENT_NAME]: s for s in spans if s.name.startswith("invoke_agent")}
    assert set(runs) == {"triage", "researcher"}
    assert {s.trace_id.hex() for s in spans} == {result.trace_id}
    # the handoff is a span event on the run segment's span
    (handoff,) = [e for e in runs["triage"].events if e.name == N.EVENT_HANDOFF]
    assert _attrs(handoff.attributes) == {N.TD_HANDOFF_FROM: "triage", N.TD_HANDOFF_TO: "billing"}
    # the sub-agent's run is a child of the execute_tool span that called it
    (call,) = [s for s in spans if s.name == "execute_tool researcher"]
    assert runs["researcher"].parent_span_id == call.span_id
    assert call.parent_span_id == runs["triage"].span_id
    assert _attrs(call.attributes)[N.GEN_AI_AGENT_NAME] == "billing"
    # tokens: gen_ai.usage.* only on chat spans, each call once; the run spans carry no gen_ai.usage.*
    chats = [_attrs(s.attributes) for s in spans if s.name.startswith("chat")]
    assert sum(a[N.GEN_AI_USAGE_INPUT_TOKENS] for a in chats) == result.usage.input_tokens == 67
    assert sum(a[N.GEN_AI_USAGE_OUTPUT_TOKENS] for a in chats) == result.usage.output_tokens == 11
    for run in runs.values():
        assert N.GEN_AI_USAGE_INPUT_TOKENS not in _attrs(run.attributes)
    # the root run's tracedagent.usage.* is the run's total, sub-agents included
    assert _attrs(runs["triage"].attributes)[N.TD_USAGE_INPUT_TOKENS] == 67
    assert _attrs(runs["researcher"].attributes)[N.TD_USAGE_INPUT_TOKENS] == 7
