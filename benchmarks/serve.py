"""What ``tracedagent serve`` adds to a run, and 1,000 concurrent SSE streams.

1. Overhead: the same run (the ``add X Y Z`` workload: 3 model calls, 2 tool calls, a scripted model)
   in-process (``await agent.run``), then over HTTP as JSON and as SSE, against one uvicorn in another
   process. What the server adds (HTTP time minus in-process time) is set beside a bare Starlette
   endpoint's round trip on the same uvicorn: a JSON echo, and an SSE stream of as many events as the
   run sends. Targets: at most 1.5x over JSON, 2x over SSE. Medians of sequential requests on one
   keep-alive connection.
2. 1,000 concurrent SSE streams on one server process, each a run whose tool waits 1 s (so they are all
   open at once): errors, and the server's memory (RSS) before, at its peak and after, over two rounds.

    python benchmarks/serve.py                   # both parts
    python benchmarks/serve.py --quick           # fewer requests, 200 streams
    python benchmarks/serve.py --part overhead   # the first part only (--part streams: the second)

The first part also prints CPU time per request (the server process's, each kind in a block of its
own), which a loaded machine disturbs much less than the wall-clock medians.

Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def build_agent(tool_wait_s: float = 0.0) -> Any:
    from tracedagent import Agent, Message, ModelResponse, ToolCall, Usage, tool
    from tracedagent.testing import FunctionModel

    @tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        if tool_wait_s:
            await asyncio.sleep(tool_wait_s)
        return a + b

    def brain(messages: list[Message], request: Any) -> ModelResponse:
        x, y, z = (int(t) for t in next(m.content for m in messages if m.role == "user").split()[1:4])  # type: ignore[union-attr]
        results = [int(m.content or 0) for m in messages if m.role == "tool"]
        usage = Usage(input_tokens=20, output_tokens=8, requests=1)
        if not results:
            message = Message.assistant(tool_calls=[ToolCall.of("c1", "add", {"a": x, "b": y})])
        elif len(results) == 1:
            message = Message.assistant(tool_calls=[ToolCall.of("c2", "add", {"a": results[0], "b": z})])
        else:
            message = Message.assistant(f"The answer is {results[-1]}")
        return ModelResponse(message, usage=usage, finish_reason="stop" if len(results) > 1 else "tool_calls")

    return Agent("adder", FunctionModel(brain), tools=[add])


def server_app(tool_wait_s: float, max_runs: int) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route

    from tracedagent.serve import asgi_app

    payload = json.dumps({"kind": "x", "span_id": "0" * 16, "trace_id": "0" * 32, "text": "y" * 120})

    async def bare_json(request: Request) -> JSONResponse:
        return JSONResponse({"echo": json.loads(await request.body())})

    async def bare_sse(request: Request) -> StreamingResponse:
        count = int(request.query_params.get("events", "16"))
        await request.body()

        async def events() -> Any:
            for _ in range(count):
                yield f"event: x\ndata: {payload}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    agent_app = asgi_app(build_agent(tool_wait_s), max_concurrent_runs=max_runs, token="")
    return Starlette(
        routes=[
            Route("/bare/json", bare_json, methods=["POST"]),
            Route("/bare/sse", bare_sse, methods=["POST"]),
            Mount("/", app=agent_app),
        ]
    )


def run_server(port: int, tool_wait_s: float, max_runs: int) -> None:
    import uvicorn

    os.environ.setdefault("TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD", "1")
    uvicorn.run(server_app(tool_wait_s, max_runs), host="127.0.0.1", port=port, log_level="warning", backlog=4096)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, tool_wait_s: float = 0.0, max_runs: int = 100) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        args = [sys.executable, __file__, "--server", str(self.port), str(tool_wait_s), str(max_runs)]
        self.proc = subprocess.Popen(args, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(self.url + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.1)

    def cpu_s(self) -> float:
        import psutil

        times = psutil.Process(self.proc.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mb(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 2**20

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def overhead(requests: int) -> None:
    os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    agent = build_agent()

    async def in_process(n: int) -> tuple[list[float], list[float]]:
        runs, streams = [], []
        for i in range(n):
            t = time.perf_counter()
            result = await agent.run(f"add {i} 2 3")
            runs.append(time.perf_counter() - t)
            assert result.output == f"The answer is {i + 5}"
            t = time.perf_counter()
            async for _ in agent.stream(f"add {i} 2 3"):
                pass
            streams.append(time.perf_counter() - t)
        return runs, streams

    async def in_process_cpu(n: int) -> tuple[float, float]:
        t = time.process_time()
        for i in range(n):
            await agent.run(f"add {i} 2 3")
        run_cpu = (time.process_time() - t) / n
        t = time.process_time()
        for i in range(n):
            async for _ in agent.stream(f"add {i} 2 3"):
                pass
        return run_cpu, (time.process_time() - t) / n

    asyncio.run(in_process(50))  # warm up
    local_run, local_stream = asyncio.run(in_process(requests))
    local_cpu = asyncio.run(in_process_cpu(requests))
    server = Server()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            sse = {"accept": "text/event-stream"}
            probe = client.post("/v1/runs", json={"input": "add 1 2 3"}, headers=sse)
            events = probe.text.count("\nevent: ") + probe.text.startswith("event: ")
            samples: dict[str, list[float]] = {"run_json": [], "run_sse": [], "bare_json": [], "bare_sse": []}

            def request(name: str, i: int) -> httpx.Response:
                body = {"input": f"add {i} 2 3"}
                if name == "run_json":
                    return client.post("/v1/runs", json=body)
                if name == "bare_json":
                    return client.post("/bare/json", json=body)
                if name == "run_sse":
                    return client.post("/v1/runs", json=body, headers=sse)
                return client.post(f"/bare/sse?events={events}", json=body, headers=sse)

            for i in range(requests + 50):
                for name in samples:
                    t = time.perf_counter()
                    r = request(name, i)
                    elapsed = time.perf_counter() - t
                    assert r.status_code == 200, r.text
                    if name == "run_json":
                        assert r.json()["output"] == f"The answer is {i + 5}"
                    if i >= 50:
                        samples[name].append(elapsed)
            # The server's CPU time per request, each kind in a block of its own: on a loaded machine the
            # wall-clock medians carry the scheduler's delays, CPU time much less.
            cpu: dict[str, float] = {}
            for name in samples:
                before = server.cpu_s()
                for i in range(requests):
                    request(name, i)
                cpu[name] = (server.cpu_s() - before) / requests
    finally:
        server.stop()
    m = {k: median_ms(v) for k, v in samples.items()}
    run_ms, stream_ms = median_ms(local_run), median_ms(local_stream)
    added_json, added_sse = m["run_json"] - run_ms, m["run_sse"] - stream_ms
    print(f"\n== what the server adds to a run ({requests} sequential requests each, medians, ms)")
    print(
        f"{'':10} {'in-process':>11} {'over HTTP':>10} {'added':>8} {'bare round trip':>16} {'added/bare':>11} target"
    )
    print(
        f"{'JSON':10} {run_ms:11.3f} {m['run_json']:10.3f} {added_json:8.3f} {m['bare_json']:16.3f} "
        f"{added_json / m['bare_json']:10.2f}x <= 1.5x"
    )
    print(
        f"{'SSE':10} {stream_ms:11.3f} {m['run_sse']:10.3f} {added_sse:8.3f} {m['bare_sse']:16.3f} "
        f"{added_sse / m['bare_sse']:10.2f}x <= 2x   ({events} events per stream, the bare one sends as many)"
    )
    print("\n   CPU time per request (us): the run in-process, the server's for the run and for the bare endpoint")
    print(f"{'':10} {'in-process':>11} {'server':>10} {'added':>8} {'bare server':>16} {'added/bare':>11}")
    for label, local, run_key, bare_key in (("JSON", local_cpu[0], "run_json", "bare_json"),
                                            ("SSE", local_cpu[1], "run_sse", "bare_sse")):  # fmt: skip
        added = cpu[run_key] - local
        print(
            f"{label:10} {local * 1e6:11.0f} {cpu[run_key] * 1e6:10.0f} {added * 1e6:8.0f} "
            f"{cpu[bare_key] * 1e6:16.0f} {added / cpu[bare_key]:10.2f}x"
        )


def many_streams(count: int) -> None:
    server = Server(tool_wait_s=1.0, max_runs=count * 2)
    try:
        before = server.rss_mb()
        print(f"\n== {count} concurrent SSE streams on one server process (each run's tool waits 1 s)")
        print(f"server RSS before: {before:.1f} MiB")
        for round_no in (1, 2):
            peak = [server.rss_mb()]

            async def sample(stop: asyncio.Event, peak: list[float] = peak) -> None:
                while not stop.is_set():
                    peak.append(server.rss_mb())
                    await asyncio.sleep(0.05)

            async def one(client: httpx.AsyncClient, i: int) -> str:
                async with client.stream(
                    "POST", "/v1/runs", json={"input": f"add {i} 2 3"}, headers={"accept": "text/event-stream"}
                ) as r:
                    if r.status_code != 200:
                        return f"HTTP {r.status_code}"
                    text = "".join([chunk async for chunk in r.aiter_text()])
                ends = text.count("event: final_result")
                ok = ends == 1 and f"The answer is {i + 5}" in text
                return "ok" if ok else f"bad stream ({ends} final results)"

            async def round_() -> tuple[list[str | BaseException], float]:
                limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
                async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:
                    stop = asyncio.Event()
                    sampler = asyncio.create_task(sample(stop))
                    t = time.perf_counter()
                    outcomes = await asyncio.gather(*(one(client, i) for i in range(count)), return_exceptions=True)
                    elapsed = time.perf_counter() - t
                    stop.set()
                    await sampler
                return outcomes, elapsed

            outcomes, elapsed = asyncio.run(round_())
            errors = [o for o in outcomes if o != "ok"]
            after = server.rss_mb()
            print(
                f"round {round_no}: {count - len(errors)}/{count} streams complete, {len(errors)} errors"
                f"{' (' + repr(errors[0]) + ')' if errors else ''}, {elapsed:.2f} s; "
                f"RSS peak {max(peak):.1f} MiB, after {after:.1f} MiB"
            )
    finally:
        server.stop()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--server":
        run_server(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests and 200 streams")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--part", choices=("all", "overhead", "streams"), default="all")
    args = parser.parse_args()
    if args.part in ("all", "overhead"):
        overhead(args.requests or (100 if args.quick else 500))
    if args.part in ("all", "streams"):
        many_streams(args.streams or (200 if args.quick else 1000))


if __name__ == "__main__":
    main()
