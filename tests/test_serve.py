"""``tracedagent.serve``: the HTTP, SSE and AG-UI API on a real uvicorn on 127.0.0.1, driven with httpx."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter
from serve_server import uvicorn_server

from tracedagent import Agent, RunEnded, RunStarted, SQLiteCheckpointStore, ToolCall, tool
from tracedagent._demo import build_demo_agent
from tracedagent.serve import asgi_app
from tracedagent.testing import FunctionModel, RecordingTracer

ag_ui_core = pytest.importorskip("ag_ui.core")

TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = "b7ad6b7169203331"


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        kind, data = None, None
        for line in block.split("\n"):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        if data is not None:
            events.append((kind or "message", data))
    return events


class Gate:
    """Holds the slow tool until the test opens it; ``entered`` says the tool is waiting."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()


def slow_agent(gate: Gate, plugins: list[object] = (), checkpoints: Any = None) -> Agent:  # type: ignore[assignment]
    @tool
    async def wait_here() -> str:
        """Waits until the test lets it go."""
        gate.entered.set()
        while not gate.open.is_set():  # noqa: ASYNC110  # a threading.Event, set from the test's thread
            await asyncio.sleep(0.01)
        return "let go"

    def brain(messages: Any, request: Any) -> Any:
        from tracedagent import ToolCall

        if messages[-1].role == "tool":
            return "done waiting"
        return [ToolCall.of("w0", "wait_here", {})]

    return Agent("slow", FunctionModel(brain), tools=[wait_here], plugins=list(plugins), checkpoints=checkpoints)


@pytest.fixture
def demo() -> Iterator[str]:
    with uvicorn_server(asgi_app(build_demo_agent())) as running:
        yield running.url


# ------------------------------------------------------------------------------------------ runs


def test_a_run_as_json_joins_the_callers_trace_and_names_its_span() -> None:
    recording = RecordingTracer()
    agent = build_demo_agent()
    agent_with_tracer = Agent(
        agent.name, agent.model, instructions=agent.instructions, tools=agent.tools.values(), plugins=[recording]
    )
    with uvicorn_server(asgi_app(agent_with_tracer)) as running:
        r = httpx.post(
            running.url + "/v1/runs",
            json={"input": "I fly from Lisbon to Oslo on TA101. What should I expect?"},
            headers={"traceparent": f"00-{TRACE}-{CALLER}-01"},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed"
    assert body["output"].startswith("Weather in Lisbon and Oslo")
    assert body["trace_id"] == TRACE
    (started,) = recording.of_type(RunStarted)
    assert started.trace_id == TRACE
    assert started.parent_span_id == CALLER
    assert r.headers["traceparent"] == f"00-{TRACE}-{started.span_id}-01"
    assert r.headers["x-tracedagent-run-id"] == body["run_id"]


def test_an_invalid_or_unsampled_traceparent_starts_a_trace_of_its_own(demo: str) -> None:
    for header in (f"00-{TRACE}-{CALLER}-00", "00-zz-nope-01", f"ff-{TRACE}-{CALLER}-01"):
        r = httpx.post(demo + "/v1/runs", json={"input": "Lisbon and Oslo?"}, headers={"traceparent": header})
        assert r.status_code == 200
        assert r.json()["trace_id"] != TRACE
        assert r.headers["traceparent"].split("-")[1] == r.json()["trace_id"]


def test_a_run_as_sse_streams_its_events_and_spans_and_ends_with_one_final_result(demo: str) -> None:
    r = httpx.post(
        demo + "/v1/runs",
        json={"input": "I fly from Lisbon to Oslo on TA404."},
        headers={"accept": "text/event-stream", "traceparent": f"00-{TRACE}-{CALLER}-01"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "run_started"
    assert kinds[-1] == "final_result"
    assert kinds.count("final_result") == 1
    assert kinds[-2] == "run_ended"
    assert {"model_call_started", "model_call_ended", "tool_call_started", "tool_call_ended", "usage_updated"} <= set(
        kinds
    )
    run = events[0][1]
    assert run["parent_span_id"] == CALLER
    assert run["trace_id"] == TRACE
    assert r.headers["traceparent"] == f"00-{TRACE}-{run['span_id']}-01"
    # Every span that starts ends, and children name their parent.
    spans = {d["span_id"]: d for k, d in events if k.endswith("_started")}
    ended = {d["span_id"] for k, d in events if k.endswith("_ended")}
    assert set(spans) == ended
    for k, d in events:
        if k in ("model_call_started", "tool_call_started"):
            assert d["parent_span_id"] == run["span_id"]
    # Start events come before their end events.
    order = [d["span_id"] for k, d in events if k.endswith(("_started", "_ended"))]
    for span in spans:
        assert order.index(span) < len(order) - 1 - order[::-1].index(span)
    failed = [d for k, d in events if k == "tool_call_ended" and d["status"] == "error"]
    assert failed
    assert failed[0]["tool"] == "flight_status"
    assert events[-1][1]["status"] == "completed"
    assert "messages" not in dict(events)["model_call_started"]  # the conversation is not repeated per call


def test_a_quiet_stream_gets_keepalive_comments() -> None:
    gate = Gate()
    with uvicorn_server(asgi_app(slow_agent(gate), keepalive_s=0.05)) as running, httpx.Client() as client:  # noqa: SIM117
        with client.stream(
            "POST", running.url + "/v1/runs", json={"input": "wait"}, headers={"accept": "text/event-stream"}
        ) as r:
            seen = ""
            for chunk in r.iter_text():
                seen += chunk
                if ": keep-alive" in seen:
                    gate.open.set()
                if "event: final_result" in seen:
                    break
    assert ": keep-alive\n\n" in seen
    assert sse_events(seen)[-1][1]["output"] == "done waiting"


def test_a_session_continues_across_requests(demo: str) -> None:
    first = httpx.post(demo + "/v1/runs", json={"input": "Lisbon and Oslo?", "session_id": "s1"}).json()
    second = httpx.post(demo + "/v1/runs", json={"input": "And Lima?", "session_id": "s1"}).json()
    assert len(second["messages"]) > len(first["messages"])
    assert second["messages"][: len(first["messages"])] == first["messages"]


def test_messages_continue_a_conversation(demo: str) -> None:
    first = httpx.post(demo + "/v1/runs", json={"input": "Lisbon and Oslo?"}).json()
    second = httpx.post(demo + "/v1/runs", json={"input": "And Lima?", "messages": first["messages"]}).json()
    assert second["messages"][: len(first["messages"])] == first["messages"]


# ------------------------------------------------------------------------------------ approvals


@pytest.mark.parametrize("stream", [False, True])
def test_a_paused_run_is_looked_up_and_resumed_with_an_approval(demo: str, stream: bool) -> None:
    headers = {"accept": "text/event-stream"} if stream else {}
    r = httpx.post(demo + "/v1/runs", json={"input": "Book me a window seat on TA555, please."}, headers=headers)
    assert r.status_code == 200
    paused = sse_events(r.text)[-1][1] if stream else r.json()
    assert paused["status"] == "interrupted"
    (call,) = paused["interruptions"]
    assert call["tool"] == "book_seat"
    assert call["kind"] == "approval"
    run_id = paused["run_id"]

    looked = httpx.get(f"{demo}/v1/runs/{run_id}").json()
    assert looked["status"] == "interrupted"
    assert [i["id"] for i in looked["interruptions"]] == [call["id"]]
    assert looked["trace_id"] == paused["trace_id"]
    assert looked["usage"]["requests"] == 1

    resumed = httpx.post(f"{demo}/v1/runs/{run_id}/resume", json={"approvals": {call["id"]: True}}, headers=headers)
    assert resumed.status_code == 200
    if stream:
        events = sse_events(resumed.text)
        kinds = [k for k, _ in events]
        assert kinds[0] == "run_resumed"
        assert kinds[-1] == "final_result"
        assert "tool_call_started" in kinds
        assert "model_call_ended" in kinds
        done = events[-1][1]
    else:
        done = resumed.json()
    assert done["status"] == "completed"
    assert done["output"] == "Done: seat 14A booked on TA555."
    assert resumed.headers["traceparent"].split("-")[1] == paused["trace_id"]
    assert httpx.get(f"{demo}/v1/runs/{run_id}").json()["status"] == "completed"


def test_a_denied_call_is_not_made(demo: str) -> None:
    paused = httpx.post(demo + "/v1/runs", json={"input": "Book me a seat on TA555."}).json()
    call = paused["interruptions"][0]["id"]
    done = httpx.post(
        f"{demo}/v1/runs/{paused['run_id']}/resume",
        json={"approvals": {call: {"approved": False, "reason": "too expensive"}}},
    ).json()
    assert done["output"] == "The booking was not made."


def test_unknown_runs_are_404(demo: str) -> None:
    assert httpx.get(demo + "/v1/runs/nope").status_code == 404
    r = httpx.post(demo + "/v1/runs/nope/resume", json={"approvals": {}})
    assert r.status_code == 404
    assert "nope" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------------------- AG-UI


def agui_events(text: str) -> list[Any]:
    adapter: TypeAdapter[Any] = TypeAdapter(ag_ui_core.Event)
    return [adapter.validate_python(data) for _, data in sse_events(text)]


def test_agui_runs_the_agent_with_the_protocols_events(demo: str) -> None:
    body = {
        "threadId": "thread-1",
        "runId": "client-run-1",
        "state": {"shown": True},
        "messages": [{"id": "m1", "role": "user", "content": "I fly from Lisbon to Oslo on TA101."}],
        "tools": [],
        "context": [],
        "forwardedProps": {},
    }
    r = httpx.post(demo + "/agui", json=body, headers={"accept": "text/event-stream"})
    assert r.status_code == 200, r.text
    events = agui_events(r.text)
    types = [e.type.value for e in events]
    assert types[0] == "RUN_STARTED"
    assert events[0].thread_id == "thread-1"
    assert events[0].run_id == "client-run-1"
    assert types[1] == "STATE_SNAPSHOT"
    assert events[1].snapshot["shown"] is True
    assert types[-1] == "RUN_FINISHED"
    assert events[-1].outcome.type == "success"
    for wanted in ("TOOL_CALL_START", "TOOL_CALL_ARGS", "TOOL_CALL_END", "TOOL_CALL_RESULT"):
        assert wanted in types
    assert types.index("TEXT_MESSAGE_START") < types.index("TEXT_MESSAGE_CONTENT") < types.index("TEXT_MESSAGE_END")
    text = "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT")
    assert text.startswith("Weather in Lisbon and Oslo")
    starts = [e.tool_call_name for e in events if e.type.value == "TOOL_CALL_START"]
    assert starts == ["get_weather", "get_weather", "flight_status"]
    final_state = [e for e in events if e.type.value == "STATE_SNAPSHOT"][-1].snapshot["tracedagent"]
    assert final_state["status"] == "completed"
    assert r.headers["traceparent"].split("-")[1] == final_state["trace_id"]


def test_agui_interrupts_for_approval_and_resumes(demo: str) -> None:
    body = {
        "threadId": "thread-2",
        "runId": "r1",
        "state": {},
        "messages": [{"id": "m1", "role": "user", "content": "Book me a window seat on TA555, please."}],
        "tools": [],
        "context": [],
        "forwardedProps": {},
    }
    events = agui_events(httpx.post(demo + "/agui", json=body).text)
    finished = events[-1]
    assert finished.type.value == "RUN_FINISHED"
    assert finished.outcome.type == "interrupt"
    (interrupt,) = finished.outcome.interrupts
    assert interrupt.tool_call_id == "b0"
    assert interrupt.metadata["tool"] == "book_seat"
    again = {**body, "runId": "r2", "resume": [{"interruptId": interrupt.id, "status": "resolved", "payload": True}]}
    events = agui_events(httpx.post(demo + "/agui", json=again).text)
    assert events[-1].type.value == "RUN_FINISHED"
    assert events[-1].outcome.type == "success"
    text = "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT")
    assert text == "Done: seat 14A booked on TA555."
    results = [e for e in events if e.type.value == "TOOL_CALL_RESULT"]
    assert results[0].content == "seat 14A booked on TA555"


def agui_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "threadId": "thread-r",
        "runId": "r1",
        "state": {},
        "messages": [{"id": "m1", "role": "user", "content": text}],
        "tools": [],
        "context": [],
        "forwardedProps": {},
        **extra,
    }


def reasoning_of(events: list[Any]) -> list[str]:
    """Each reasoning message's text, checking that it is opened and closed as AG-UI says:
    REASONING_START, REASONING_MESSAGE_START (role reasoning), _CONTENT..., _END, REASONING_END, with
    one message id, and never inside an open text message."""
    found: list[str] = []
    current: str | None = None
    texting = False
    for e in events:
        kind = e.type.value
        if kind == "TEXT_MESSAGE_START":
            assert current is None
            texting = True
        elif kind == "TEXT_MESSAGE_END":
            texting = False
        elif kind == "REASONING_START":
            assert current is None
            assert not texting
            current = e.message_id
            found.append("")
        elif kind == "REASONING_MESSAGE_START":
            assert (e.message_id, e.role) == (current, "reasoning")
        elif kind == "REASONING_MESSAGE_CONTENT":
            assert e.message_id == current
            found[-1] += e.delta
        elif kind == "REASONING_MESSAGE_END":
            assert e.message_id == current
        elif kind == "REASONING_END":
            assert e.message_id == current
            current = None
        else:
            assert current is None or kind == "STATE_SNAPSHOT", f"{kind} inside a reasoning message"
    assert current is None
    return found


def test_agui_sends_the_models_thinking_as_reasoning_events() -> None:
    from tracedagent.testing import ScriptedModel, Step

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    model = ScriptedModel(
        [
            Step(
                thinking="The user asks about Lisbon: call the weather tool.",
                tool_calls=[("get_weather", {"city": "Lisbon"})],
            ),
            Step(thinking="It is sunny.", text="Sunny in Lisbon.", chunks=3),
        ]
    )
    with uvicorn_server(asgi_app(Agent("thinker", model, tools=[get_weather]))) as running:
        r = httpx.post(running.url + "/agui", json=agui_body("Weather in Lisbon?"))
    events = agui_events(r.text)
    types = [e.type.value for e in events]
    assert reasoning_of(events) == ["The user asks about Lisbon: call the weather tool.", "It is sunny."]
    # the first thinking comes before the tool call, the second after its result and before the answer
    starts = [i for i, t in enumerate(types) if t == "REASONING_START"]
    ends = [i for i, t in enumerate(types) if t == "REASONING_END"]
    assert ends[0] < types.index("TOOL_CALL_START")
    assert types.index("TOOL_CALL_RESULT") < starts[1]
    assert ends[1] < types.index("TEXT_MESSAGE_START")
    assert "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT") == "Sunny in Lisbon."
    assert types[-1] == "RUN_FINISHED"


def test_agui_sends_the_thinking_of_a_resumed_run_as_reasoning_events() -> None:
    from tracedagent.testing import ScriptedModel, Step

    @tool(needs_approval=True)
    def book(seat: str) -> str:
        """Book a seat."""
        return f"booked {seat}"

    model = ScriptedModel(
        [
            Step(thinking="Booking needs an approval.", tool_calls=[ToolCall.of("k1", "book", {"seat": "2C"})]),
            Step(thinking="The booking went through; say so.", text="Seat 2C is yours."),
        ]
    )
    with uvicorn_server(asgi_app(Agent("booker", model, tools=[book]))) as running:
        paused = agui_events(httpx.post(running.url + "/agui", json=agui_body("Book 2C")).text)
        assert reasoning_of(paused) == ["Booking needs an approval."]
        assert paused[-1].outcome.type == "interrupt"
        (interrupt,) = paused[-1].outcome.interrupts
        again = agui_body(
            "Book 2C", runId="r2", resume=[{"interruptId": interrupt.id, "status": "resolved", "payload": True}]
        )
        events = agui_events(httpx.post(running.url + "/agui", json=again).text)
    assert reasoning_of(events) == ["The booking went through; say so."]
    types = [e.type.value for e in events]
    assert types.index("TOOL_CALL_RESULT") < types.index("REASONING_START") < types.index("TEXT_MESSAGE_START")
    assert "".join(e.delta for e in events if e.type.value == "TEXT_MESSAGE_CONTENT") == "Seat 2C is yours."
    assert events[-1].outcome.type == "success"


def test_agui_streams_anthropic_thinking_over_the_wire_as_reasoning_events() -> None:
    """The Anthropic adapter against the loopback wire server (Anthropic's SSE bytes, real sockets): its
    streamed thinking deltas reach an AG-UI client as reasoning events, before the tool call."""
    from wire_server import Reply, wire_server

    from tracedagent.models import AnthropicModel

    transcripts = Path(__file__).parent / "transcripts" / "anthropic"

    def reply(name: str) -> Reply:
        body = (transcripts / f"{name}.sse").read_bytes()
        return Reply(chunks=[block + b"\n\n" for block in body.split(b"\n\n") if block])

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return {"Paris": "18°C"}[city]

    with wire_server() as wire:
        wire.queue(reply("thinking_tool"), reply("text"))
        model = AnthropicModel("claude-sonnet-4-5", base_url=wire.url, api_key="sk-ant-test", read_timeout=5.0)
        thinking = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
        agent = Agent("weather", model, tools=[get_weather], model_settings=thinking)
        with uvicorn_server(asgi_app(agent)) as running:
            r = httpx.post(running.url + "/agui", json=agui_body("Weather in Paris?"))
            asyncio.run_coroutine_threadsafe(model.aclose(), running.loop).result(30)
    events = agui_events(r.text)
    assert reasoning_of(events) == ["The user wants the weather in Paris. I should call get_weather."]
    types = [e.type.value for e in events]
    assert types.index("REASONING_END") < types.index("TOOL_CALL_START")
    assert [e.content for e in events if e.type.value == "TOOL_CALL_RESULT"] == ["18°C"]
    assert events[-1].outcome.type == "success"


def test_agui_refuses_a_body_that_is_not_run_agent_input(demo: str) -> None:
    r = httpx.post(demo + "/agui", json={"threadId": "t"})
    assert r.status_code == 422
    assert "RunAgentInput" in r.json()["error"]["message"]


# ---------------------------------------------------------------------------------- under load


def test_runs_past_max_concurrent_runs_get_429_with_retry_after() -> None:
    gate = Gate()
    app = asgi_app(slow_agent(gate), max_concurrent_runs=2)
    with uvicorn_server(app) as running, httpx.Client(base_url=running.url) as client:
        streams, readers = [], []
        try:
            for _ in range(2):
                cm = client.stream("POST", "/v1/runs", json={"input": "wait"}, headers={"accept": "text/event-stream"})
                response = cm.__enter__()
                streams.append(cm)
                readers.append(response.iter_lines())  # kept: a reader that is dropped closes its response
                assert next(readers[-1]) == "event: run_started"
            assert client.get("/healthz").json()["active_runs"] == 2
            refused = client.post("/v1/runs", json={"input": "one more"})
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert "max_concurrent_runs=2" in refused.json()["error"]["message"]
            refused_stream = client.post("/v1/runs", json={"input": "x"}, headers={"accept": "text/event-stream"})
            assert refused_stream.status_code == 429
        finally:
            gate.open.set()
            for cm in streams:
                cm.__exit__(None, None, None)
        # Once they are over, runs are taken again.
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["active_runs"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.post("/v1/runs", json={"input": "again"}).status_code == 200


def test_a_client_that_disconnects_mid_stream_cancels_the_run_with_one_end_event() -> None:
    gate = Gate()
    recording = RecordingTracer()
    with uvicorn_server(asgi_app(slow_agent(gate, [recording]))) as running, httpx.Client() as client:
        with client.stream(
            "POST", running.url + "/v1/runs", json={"input": "wait"}, headers={"accept": "text/event-stream"}
        ) as r:
            run_id = r.headers["x-tracedagent-run-id"]
            for line in r.iter_lines():
                if line == "event: tool_call_started":
                    break
        # The connection is closed; the server notices and cancels the run.
        deadline = time.monotonic() + 30
        while not recording.of_type(RunEnded) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # room for a second end event, if there were one
        ends = recording.of_type(RunEnded)
        assert [e.status for e in ends] == ["cancelled"]
        assert recording.unmatched() == []
        assert not gate.open.is_set()
        assert client.get(f"{running.url}/v1/runs/{run_id}").json()["status"] == "cancelled"
        assert client.get(running.url + "/healthz").json()["active_runs"] == 0


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_json_client_that_disconnects_cancels_the_run_and_leaves_a_resumable_checkpoint(tmp_path: Path) -> None:
    gate = Gate()
    recording = RecordingTracer()
    path = tmp_path / "runs.db"
    agent = slow_agent(gate, [recording], checkpoints=SQLiteCheckpointStore(path))
    with uvicorn_server(asgi_app(agent)) as running, httpx.Client(base_url=running.url) as client:
        body = json.dumps({"input": "wait"}).encode()
        head = (
            "POST /v1/runs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
            sock.sendall(head.encode() + body)
            assert gate.entered.wait(30)  # the run is in its tool call, the client waits for JSON...
        # ...and closes its socket: the server notices and cancels the run.
        _wait_for(lambda: recording.of_type(RunEnded), "the run's end")
        time.sleep(0.1)  # room for a second end event, if there were one
        assert [e.status for e in recording.of_type(RunEnded)] == ["cancelled"]
        assert recording.unmatched() == []
        assert not gate.open.is_set()
        (started,) = recording.of_type(RunStarted)
        run_id = started.run_id
        assert client.get(f"/v1/runs/{run_id}").json()["status"] == "cancelled"
        _wait_for(lambda: client.get("/healthz").json()["active_runs"] == 0, "no active run")
        # The checkpoint says so too (read from the file by a store of its own), and the run resumes from it.
        checkpoint = asyncio.run(SQLiteCheckpointStore(path).load(run_id))
        assert checkpoint is not None
        assert checkpoint.status == "cancelled"
        gate.open.set()
        resumed = client.post(f"/v1/runs/{run_id}/resume", json={})
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "completed"
        assert resumed.json()["output"] == "done waiting"
    assert [e.status for e in recording.of_type(RunEnded)] == ["cancelled", "completed"]


def test_span_events_are_forwarded_only_while_a_stream_is_open() -> None:
    """A run answered as JSON needs only its start and end: with a plugin on the span hooks every run of
    the process would build those events, so that plugin is there only while a stream is open."""
    from tracedagent import _plugins
    from tracedagent.serve._tap import FORWARDER, SPAN_FORWARDER

    gate = Gate()
    registered = _plugins.global_plugin_manager().is_registered
    with uvicorn_server(asgi_app(slow_agent(gate))) as running, httpx.Client(base_url=running.url) as client:
        assert not registered(SPAN_FORWARDER)
        with client.stream("POST", "/v1/runs", json={"input": "wait"}, headers={"accept": "text/event-stream"}) as r:
            lines = r.iter_lines()
            assert next(lines) == "event: run_started"
            assert registered(SPAN_FORWARDER)
            gate.open.set()
            assert "event: final_result" in list(lines)
        _wait_for(lambda: not registered(SPAN_FORWARDER), "the span forwarder to go")
        assert registered(FORWARDER)
        answered = client.post("/v1/runs", json={"input": "x"})
        assert answered.json()["output"] == "done waiting"
        assert answered.headers["traceparent"].split("-")[1] == answered.json()["trace_id"]  # from the run forwarder
        assert not registered(SPAN_FORWARDER)


# --------------------------------------------------------------------------------- bad requests


def test_a_10_mb_body_is_refused_with_413_and_the_server_goes_on(demo: str) -> None:
    big = json.dumps({"input": "x" * (10 * 1024 * 1024)}).encode()
    r = httpx.post(demo + "/v1/runs", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "at most 1048576" in r.json()["error"]["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(10):
            yield b"x" * (1024 * 1024)

    r = httpx.post(demo + "/v1/runs", content=chunks())
    assert r.status_code == 413
    assert httpx.post(demo + "/v1/runs", json={"input": "Lisbon?"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b'{"input": "hi", "inptu": 1}', 422, "inptu: Extra inputs are not permitted"),
        (b'{"input": 42}', 422, "input"),
        (b"{}", 422, "give `input`"),
        (b'{"input": "hi", "messages": [{"role": "robot"}]}', 422, "messages.0.role"),
        (b'{"input": "hi", "session_id": ""}', 422, "session_id"),
    ],
)
def test_malformed_and_unknown_bodies_are_refused_clearly(demo: str, body: bytes, status: int, says: str) -> None:
    r = httpx.post(demo + "/v1/runs", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert says in r.json()["error"]["message"]


def test_resume_bodies_are_checked(demo: str) -> None:
    paused = httpx.post(demo + "/v1/runs", json={"input": "Book me a seat on TA555."}).json()
    r = httpx.post(f"{demo}/v1/runs/{paused['run_id']}/resume", json={"aprovals": {}})
    assert r.status_code == 422
    assert "aprovals" in r.json()["error"]["message"]


# ----------------------------------------------------------------------------------------- token


def test_a_token_guards_every_route_but_healthz() -> None:
    with uvicorn_server(asgi_app(build_demo_agent(), token="s3cret")) as running, httpx.Client() as client:
        url = running.url
        assert client.get(url + "/healthz").status_code == 200
        for method, path in (("POST", "/v1/runs"), ("GET", "/v1/runs/x"), ("POST", "/agui"), ("GET", "/metrics"),
                             ("GET", "/"), ("GET", "/static/app.js")):  # fmt: skip
            assert client.request(method, url + path).status_code == 401
            bad = client.request(method, url + path, headers={"authorization": "Bearer s3cres"})
            assert bad.status_code == 401
            assert bad.json()["error"]["message"] == "the bearer token is wrong"
            assert bad.headers["www-authenticate"].startswith("Bearer")
        good = {"authorization": "Bearer s3cret"}
        assert client.post(url + "/v1/runs", json={"input": "Lisbon?"}, headers=good).status_code == 200
        assert client.get(url + "/", headers=good).status_code == 200
        # The page: ?token= lets a browser in and leaves a cookie its own requests carry.
        wrong = client.get(url + "/?token=wrong")
        assert wrong.status_code == 401
        assert "set-cookie" not in wrong.headers
        assert client.get(url + "/v1/runs/x?token=s3cret").status_code == 401  # only the page takes ?token=
        page = client.get(url + "/?token=s3cret")
        assert page.status_code == 200
        attributes = [a.strip() for a in page.headers["set-cookie"].split(";")]
        assert attributes[0] == "tracedagent_token=s3cret"
        assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes)
        assert client.get(url + "/static/app.js").status_code == 200  # with the cookie
        assert client.post(url + "/v1/runs", json={"input": "Lisbon?"}).status_code == 200


def test_the_token_is_compared_in_constant_time() -> None:
    import inspect

    from tracedagent.serve import _auth

    assert "hmac.compare_digest" in inspect.getsource(_auth.BearerAuth._matches)


# ---------------------------------------------------------------------------------- the rest


def test_metrics_come_from_the_prometheus_registry() -> None:
    prometheus = pytest.importorskip("tracedagent_prometheus")
    agent = build_demo_agent()
    served = Agent(agent.name, agent.model, tools=agent.tools.values(), plugins=[prometheus.PrometheusTracer()])
    with uvicorn_server(asgi_app(served)) as running:
        httpx.post(running.url + "/v1/runs", json={"input": "Lisbon?"})
        r = httpx.get(running.url + "/metrics")
    assert r.status_code == 200
    assert "tracedagent_runs_total" in r.text
    assert r.headers["content-type"].startswith("text/plain")


def test_healthz(demo: str) -> None:
    assert httpx.get(demo + "/healthz").json() == {
        "status": "ok",
        "agent": "trip-desk",
        "active_runs": 0,
        "max_concurrent_runs": 100,
    }


def test_the_page_is_static_files_in_the_package_with_nothing_from_elsewhere(demo: str) -> None:
    page = httpx.get(demo + "/")
    assert page.status_code == 200
    assert "<title>tracedagent</title>" in page.text
    static = Path(__file__).resolve().parents[1] / "src" / "tracedagent" / "serve" / "static"
    for name in ("index.html", "app.js", "style.css"):
        text = (static / name).read_text()
        assert "http://" not in text
        assert "https://" not in text
        assert "//cdn" not in text
        assert httpx.get(f"{demo}/static/{name}").status_code == 200


# ------------------------------------------------------------------------------------------ CLI


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACEDAGENT_SERVE_")}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return {**env, **extra}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            httpx.get(url + "/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not come up")


def test_cli_serve_binds_loopback_and_reads_its_variables(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text("from tracedagent._demo import build_demo_agent\nagent = build_demo_agent()\n")
    port = _free_port()
    env = _env(
        TRACEDAGENT_SERVE_PORT=str(port), TRACEDAGENT_SERVE_TOKEN="t0k", TRACEDAGENT_SERVE_MAX_CONCURRENT_RUNS="7"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracedagent", "serve", "served:agent"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        assert httpx.post(url + "/v1/runs", json={"input": "Lisbon?"}).status_code == 401
        ok = httpx.post(url + "/v1/runs", json={"input": "Lisbon?"}, headers={"authorization": "Bearer t0k"})
        assert ok.status_code == 200
        assert httpx.get(url + "/healthz").json()["max_concurrent_runs"] == 7
        import psutil

        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections() if c.status == "LISTEN"]
        assert [a.ip for a in listening] == ["127.0.0.1"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"serving agent 'trip-desk' on http://127.0.0.1:{port}/" in out


def test_cli_demo_serve_serves_the_demo_agent_and_its_page(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracedagent", "demo", "--serve", "--port", str(port), "--max-concurrent-runs", "3"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, proc)
        assert httpx.get(url + "/healthz").json()["max_concurrent_runs"] == 3
        assert "waterfall" in httpx.get(url + "/").text
        assert httpx.post(url + "/v1/runs", json={"input": "Lisbon and Oslo?"}).json()["status"] == "completed"
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
