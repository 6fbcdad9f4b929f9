"""The /metrics server of its own bounds its threads and closes connections that stop sending: 300
half-sent requests used to hold 303 threads for as long as the client liked."""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from tracedagent_prometheus import PrometheusTracer, _server, serve

GUARD_S = 30.0  # only a guard against hanging; never asserted on


def handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def closed_by_the_server(conn: socket.socket) -> bool:
    """Waits (bounded) for the server to close ``conn``: True on EOF, False if it stayed open."""
    conn.settimeout(GUARD_S)
    try:
        return conn.recv(1024) == b"" or conn.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.fixture
def bounded(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, _server.MetricsServer]]:
    registry = CollectorRegistry()
    PrometheusTracer(registry)
    idle = getattr(request, "param", 0.5)
    host, port = serve("127.0.0.1:0", registry, idle_timeout_s=idle, max_connections=4)
    server = _server._servers[-1]
    assert isinstance(server, _server.MetricsServer)
    yield host, port, server
    server.shutdown()
    server.server_close()


# An idle timeout far longer than opening 60 connections takes: the 4 served hold their slots throughout.
@pytest.mark.parametrize("bounded", [5.0], indirect=True)
def test_half_sent_requests_hold_at_most_max_connections_threads_and_are_closed(
    bounded: tuple[str, int, _server.MetricsServer],
) -> None:
    host, port, server = bounded
    before = handler_threads()
    conns = []
    for _ in range(60):
        conn = socket.create_connection((host, port), timeout=GUARD_S)
        conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never the blank line that ends it
        conns.append(conn)
    try:
        # Past the 4 slots, connections are closed at once; the 4 served wait for their requests' end.
        assert all(closed_by_the_server(conn) for conn in conns[4:])
        assert server.rejected == 56
        assert handler_threads() - before <= 4
        # ...until the idle timeout closes them too.
        assert all(closed_by_the_server(conn) for conn in conns[:4])
    finally:
        for conn in conns:
            conn.close()
    # and a normal scrape still works
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=GUARD_S) as response:
        assert response.status == 200
        assert b"tracedagent_export_queue_depth" in response.read()


def test_an_idle_connection_is_closed_after_the_timeout(bounded: tuple[str, int, _server.MetricsServer]) -> None:
    host, port, _ = bounded
    with socket.create_connection((host, port), timeout=GUARD_S) as conn:
        assert closed_by_the_server(conn)  # it sent nothing at all


@pytest.mark.parametrize("options", [{"max_connections": 0}, {"idle_timeout_s": 0}, {"max_connections": True}])
def test_bad_bounds_are_a_configuration_error(options: dict[str, object]) -> None:
    from tracedagent import ConfigurationError

    with pytest.raises(ConfigurationError):
        serve("127.0.0.1:0", CollectorRegistry(), **options)  # type: ignore[arg-type]
