"""tracedagent-prometheus: the design's metrics, in the default registry or yours, and ``/metrics``.

Installed, it loads with tracedagent (entry point ``prometheus``) and keeps metrics of every run in
prometheus-client's default registry; with ``TRACEDAGENT_METRICS_ADDR=127.0.0.1:9464`` it also serves
``/metrics`` there. ``TRACEDAGENT_METRICS=0`` turns it off. Mount ``wsgi_app()`` / ``asgi_app()`` to serve
the metrics from your own server instead; multi-process servers work through prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

from typing import Any

import tracedagent

from ._server import ENV_ADDR, asgi_app, exposition_registry, parse_addr, serve, wsgi_app
from ._tracer import LabelGuard, LiveCollector, PrometheusTracer

__all__ = [
    "ENV_ADDR",
    "LabelGuard",
    "LiveCollector",
    "PrometheusTracer",
    "asgi_app",
    "exposition_registry",
    "parse_addr",
    "serve",
    "tracedagent_configure",
    "wsgi_app",
]


@tracedagent.hookimpl
def tracedagent_configure(context: Any) -> str:
    """Register the tracer on the default registry, and serve /metrics when TRACEDAGENT_METRICS_ADDR says."""
    environ = context.environ
    if environ.get("TRACEDAGENT_METRICS", "").strip().lower() in ("0", "false", "no", "off"):
        return "inactive: TRACEDAGENT_METRICS is off"
    context.register(PrometheusTracer(), "prometheus-tracer")
    addr = environ.get(ENV_ADDR, "").strip()
    if not addr:
        return f"active: metrics in the default registry; set {ENV_ADDR}=127.0.0.1:9464 to serve /metrics"
    host, port = serve(addr)
    return f"active: /metrics on http://{host}:{port}/metrics"
