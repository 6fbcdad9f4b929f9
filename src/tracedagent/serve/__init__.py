"""Serve an agent over HTTP: ``tracedagent serve MODULE:AGENT`` or ``asgi_app(agent)`` (Starlette, run by
uvicorn; ``pip install "tracedagent[serve]"``).

* ``POST /v1/runs`` ``{"input": ..., "session_id": ..., "messages": [...]}``: the run's result as JSON, or
  with ``Accept: text/event-stream`` its events as SSE (``event:`` the type, ``data:`` JSON): the stream
  events of ``agent.stream()`` and the spans of the run (``run_started``, ``model_call_started``...), last
  ``final_result``. A client that goes away cancels the run.
* ``POST /v1/runs/{run_id}/resume`` ``{"approvals": {...}, "results": {...}}``; ``GET /v1/runs/{run_id}``.
* ``POST /agui``: the AG-UI protocol. ``GET /metrics``, ``GET /healthz``, and ``GET /``: a page to talk to
  the agent that draws each run's spans as a waterfall while it runs.

An incoming ``traceparent`` makes the run part of the caller's trace; the response's ``traceparent``
names the run's span.
"""

from __future__ import annotations

from ._app import ServeSettings, asgi_app, settings_from_env
from ._server import serve

__all__ = ["ServeSettings", "asgi_app", "serve", "settings_from_env"]
