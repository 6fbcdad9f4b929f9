"""``serve()``: run an agent's app on uvicorn until Ctrl-C (what ``tracedagent serve`` calls)."""

from __future__ import annotations

import sys
from typing import TextIO

from ._app import DEFAULT_MAX_RUNS, asgi_app
from ._runs import ServedAgent

__all__ = ["serve"]


def serve(
    agent: ServedAgent,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    max_concurrent_runs: int | None = DEFAULT_MAX_RUNS,
    log_level: str = "warning",
    out: TextIO | None = None,
) -> None:
    """Serve ``agent`` on ``host:port`` (loopback unless told otherwise) until the process is stopped."""
    import uvicorn

    out = out or sys.stdout
    app = asgi_app(agent, token=token or "", max_concurrent_runs=max_concurrent_runs)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    page = f"{where}?token=<token>" if token else where
    print(f"serving agent {agent.name!r} on {where} (page: {page}; API: {where}v1/runs)", file=out, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        print("warning: listening beyond loopback without a token; anyone who reaches it can run the agent", file=out)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
