"""Serving ``/metrics``: on its own port (``TRACEDAGENT_METRICS_ADDR``), or mounted in your app."""

from __future__ import annotations

import ipaddress
import os
import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from tracedagent import ConfigurationError

from ._tracer import LiveCollector

__all__ = ["ENV_ADDR", "asgi_app", "exposition_registry", "parse_addr", "serve", "wsgi_app"]

ENV_ADDR = "TRACEDAGENT_METRICS_ADDR"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464


def parse_addr(value: str) -> tuple[str, int]:
    """``host:port``, ``:port``, ``port`` or ``[v6]:port`` (the host defaults to 127.0.0.1); ``1`` or
    ``true`` mean 127.0.0.1:9464."""
    text = value.strip()
    if text.lower() in ("1", "true", "yes", "on"):
        return DEFAULT_HOST, DEFAULT_PORT
    host, port_text = DEFAULT_HOST, text
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise ConfigurationError(f"{ENV_ADDR}={value!r}: write an IPv6 address as [::1]:9464")
        host, port_text = text[1:close], text[close + 2 :]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        host = host or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_ADDR}={value!r} is not host:port; for example 127.0.0.1:9464 (or :9464 for 127.0.0.1)"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigurationError(f"{ENV_ADDR}={value!r}: the port must be between 0 and 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not host.replace("-", "").replace(".", "").isalnum():
                raise ConfigurationError(f"{ENV_ADDR}={value!r}: {host!r} is not a host name or address") from None
    return host, port


_servers: list[Any] = []
_lock = threading.Lock()


def exposition_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """The registry to expose: in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)
    a fresh one that merges every worker's files, plus this process's live values; else ``registry``."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
        merged = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        merged.register(LiveCollector())
        return merged
    return registry if registry is not None else REGISTRY


def serve(addr: str | None = None, registry: CollectorRegistry | None = None) -> tuple[str, int]:
    """Serve ``/metrics`` on ``addr`` (``TRACEDAGENT_METRICS_ADDR``, else 127.0.0.1:9464) in a daemon
    thread; returns the host and port bound (port 0 picks a free one)."""
    host, port = parse_addr(addr if addr is not None else os.environ.get(ENV_ADDR, f"{DEFAULT_HOST}:{DEFAULT_PORT}"))
    try:
        server, _thread = start_http_server(port, addr=host, registry=exposition_registry(registry))
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}); set {ENV_ADDR} to a free host:port"
        ) from None
    with _lock:
        _servers.append(server)
    bound_host, bound_port = server.server_address[:2]
    return str(bound_host), int(bound_port)


def wsgi_app(registry: CollectorRegistry | None = None) -> Any:
    """A WSGI app serving the metrics, to mount in your own server (Flask, Django, gunicorn)."""
    return make_wsgi_app(exposition_registry(registry))


def asgi_app(registry: CollectorRegistry | None = None) -> Any:
    """An ASGI app serving the metrics, to mount in your own server (Starlette, FastAPI)."""
    return make_asgi_app(exposition_registry(registry))
