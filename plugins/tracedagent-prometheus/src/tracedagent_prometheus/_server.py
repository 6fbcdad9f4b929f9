"""Serving ``/metrics``: on its own port (``TRACEDAGENT_METRICS_ADDR``), or mounted in your app.

The server of its own is prometheus-client's WSGI app on a threading server with two bounds: a connection
that sends nothing for ``idle_timeout_s`` (default 10 s; a half-sent request, an idle client) is closed,
and at most ``max_connections`` (default 16) are served at once, each on a thread of its own; a connection
past that is closed at once (counted in ``rejected``). So a client that opens many connections and never
finishes its requests holds at most ``max_connections`` threads, for at most ``idle_timeout_s`` each.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, make_wsgi_app
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.exposition import ThreadingWSGIServer

from tracedagent import ConfigurationError

from ._tracer import LiveCollector

__all__ = ["ENV_ADDR", "MetricsServer", "asgi_app", "exposition_registry", "parse_addr", "serve", "wsgi_app"]

ENV_ADDR = "TRACEDAGENT_METRICS_ADDR"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
DEFAULT_IDLE_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 16


class _QuietHandler(WSGIRequestHandler):
    """One request per connection; the socket's timeout (``timeout``, the server's ``idle_timeout_s``)
    closes a connection that stops sending."""

    timeout = DEFAULT_IDLE_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(ThreadingWSGIServer):
    """A threading WSGI server with an idle timeout per connection and a bound on connections (threads)."""

    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: The listen backlog: connections past it wait in the kernel (SYN retries) instead of being answered.
    request_queue_size = 128

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.rejected = 0
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # every thread busy: close the newcomer at once
            self.rejected += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection closed for idling, or reset by its client, is not an error worth a traceback."""
        import sys

        if isinstance(sys.exc_info()[1], (TimeoutError, ConnectionError)):
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


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


def serve(
    addr: str | None = None,
    registry: CollectorRegistry | None = None,
    *,
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> tuple[str, int]:
    """Serve ``/metrics`` on ``addr`` (``TRACEDAGENT_METRICS_ADDR``, else 127.0.0.1:9464) in a daemon
    thread; returns the host and port bound (port 0 picks a free one). A connection idle for
    ``idle_timeout_s`` is closed; at most ``max_connections`` are served at once (see the module)."""
    host, port = parse_addr(addr if addr is not None else os.environ.get(ENV_ADDR, f"{DEFAULT_HOST}:{DEFAULT_PORT}"))
    if not (isinstance(max_connections, int) and not isinstance(max_connections, bool) and max_connections > 0):
        raise ConfigurationError(f"max_connections must be a positive integer, not {max_connections!r}")
    if not idle_timeout_s > 0:
        raise ConfigurationError(f"idle_timeout_s must be a positive number of seconds, not {idle_timeout_s!r}")

    class Server(MetricsServer):
        pass

    Server.idle_timeout_s = float(idle_timeout_s)
    Server.max_connections = max_connections
    Server.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Handler(_QuietHandler):
        timeout = float(idle_timeout_s)

    try:
        server = make_server(host, port, make_wsgi_app(exposition_registry(registry)), Server, handler_class=Handler)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve /metrics on {host}:{port} ({exc.strerror or exc}); set {ENV_ADDR} to a free host:port"
        ) from None
    thread = threading.Thread(target=server.serve_forever, name="tracedagent-metrics", daemon=True)
    thread.start()
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
