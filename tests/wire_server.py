"""A loopback HTTP server that replays wire transcripts: real sockets, scripted answers.

Each request takes the next :class:`Reply` from the queue. A reply has a status, headers and body
chunks sent with chunked transfer encoding (as the providers do), each after an optional delay; it can
also drop the connection after some chunks (``drop_after``) or wait before sending anything
(``delay_headers``, to hit a client's read timeout). ``gate`` holds the chunks from index ``gate_before``
on until the test sets it (proof that a client handles the first chunks before the rest exist), and
``aborted`` is set when the client closes the connection before the reply is all sent. Every request
is recorded (method, path, headers, JSON body) for asserts.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    chunks: Sequence[bytes | str] = ()
    headers: dict[str, str] = field(default_factory=dict)
    delay_headers: float = 0.0
    chunk_delay: float = 0.0
    drop_after: int | None = None
    content_type: str = "text/event-stream"
    gate: threading.Event | None = None
    gate_before: int = 0
    aborted: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def sse(cls, events: Sequence[str], **kwargs: Any) -> Reply:
        """A reply whose chunks are SSE blocks (each already ``event: ...\\ndata: ...`` text)."""
        return cls(chunks=[e if e.endswith("\n\n") else e + "\n\n" for e in events], **kwargs)

    @classmethod
    def json(cls, status: int, body: Any, **kwargs: Any) -> Reply:
        return cls(status=status, chunks=[json.dumps(body)], content_type="application/json", **kwargs)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client: tuple[str, int] | None = None  # the client's address: the same for requests on one connection


class _QuietServer(ThreadingHTTPServer):
    """A client that gives up on a reply (a stream error, a timeout) resets its connection: not a failure."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class WireServer:
    """Serves queued replies on 127.0.0.1; ``url`` is its base URL."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(None)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                self._answer(body)

            def _answer(self, body: Any) -> None:
                with server._lock:
                    server.requests.append(
                        Recorded(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            self.client_address[:2],
                        )
                    )
                    reply = server.replies.pop(0) if server.replies else Reply(status=599, chunks=["no reply queued"])
                if reply.delay_headers:
                    server._release.wait(reply.delay_headers)
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("transfer-encoding", "chunked")
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for index, chunk in enumerate(reply.chunks):
                        if reply.drop_after is not None and index >= reply.drop_after:
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        if reply.gate is not None and index == reply.gate_before:
                            reply.gate.wait(10.0)
                        if reply.chunk_delay:
                            time.sleep(reply.chunk_delay)
                        data = chunk.encode() if isinstance(chunk, str) else chunk
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    reply.aborted.set()
                    self.close_connection = True

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: stop() (server.shutdown) waits up to one interval, once per test.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def start(self) -> WireServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def wire_server() -> Iterator[WireServer]:
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()
