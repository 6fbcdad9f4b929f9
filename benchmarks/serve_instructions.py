"""What ``tracedagent serve`` adds to a run, in instructions (valgrind's callgrind): the wall-clock
figures of ``serve.py`` without the machine's noise.

The client (httpx) and the server (uvicorn, the app of ``serve.py``: the bare endpoints beside
``asgi_app``) run in one process on one event loop, talking over a loopback socket, under callgrind.
Each variant runs twice in a fresh process, with ``--n-low`` and ``--n-high`` requests after a warm-up;
the difference of the totals over the difference of the counts is one request, both sides of the
socket, in user space (the kernel's share is not counted, the same for every variant):

* ``run``: ``await agent.run(...)`` in-process, no server (the baseline);
* ``bare_json``: a round trip to the bare Starlette JSON endpoint;
* ``run_json``: ``POST /v1/runs`` answered as JSON.

"Added" is ``run_json - run``; the issue's target puts it at most 1.5x ``bare_json``.

    python benchmarks/serve_instructions.py                  # ~3 min
    python benchmarks/serve_instructions.py --n-low 50 --n-high 150

Needs valgrind (``apt-get install -y valgrind``). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = ("run", "bare_json", "run_json")


def child(variant: str, n: int) -> None:
    os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    sys.path.insert(0, str(HERE))
    import socket

    import httpx
    import uvicorn
    from serve import build_agent, server_app  # type: ignore[import-not-found]

    async def main() -> None:
        if variant == "run":
            agent = build_agent()
            for i in range(50 + n):
                result = await agent.run(f"add {i} 2 3")
                assert result.output == f"The answer is {i + 5}"
            return
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(server_app(0.0, 100), log_level="warning", lifespan="off"))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110  # uvicorn says so with a flag, not an event
            await asyncio.sleep(0.001)
        path = "/v1/runs" if variant == "run_json" else "/bare/json"
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url) as client:
            for i in range(50 + n):
                r = await client.post(path, json={"input": f"add {i} 2 3"})
                assert r.status_code == 200, r.text
        server.should_exit = True
        await serving

    asyncio.run(main())


def count(variant: str, n: int, scratch: Path) -> int:
    out = scratch / f"{variant}.{n}.out"
    args = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__]
    done = subprocess.run([*args, "--child", variant, str(n)], capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{variant} x{n} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n-low", type=int, default=100)
    parser.add_argument("--n-high", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind: apt-get install -y valgrind")
    per: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for variant in VARIANTS:
            low, high = count(variant, args.n_low, Path(scratch)), count(variant, args.n_high, Path(scratch))
            per[variant] = (high - low) / (args.n_high - args.n_low)
    added = per["run_json"] - per["run"]
    print(f"\n== instructions per request (callgrind; {args.n_high - args.n_low} requests' difference)")
    for variant in VARIANTS:
        print(f"{variant:10} {per[variant]:12,.0f}")
    print(f"{'added':10} {added:12,.0f}   (run_json - run)")
    print(f"added / bare_json: {added / per['bare_json']:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
