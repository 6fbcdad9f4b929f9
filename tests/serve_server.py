"""A real uvicorn serving an ASGI app on 127.0.0.1 and a free port, in a thread, for the serve tests."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


class Running:
    def __init__(self, server: uvicorn.Server, port: int) -> None:
        self.server = server
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    _loop: asyncio.AbstractEventLoop


@contextmanager
def uvicorn_server(app: Any, **config: Any) -> Iterator[Running]:
    """Serve ``app`` until the block ends; yields the base URL's holder once uvicorn listens."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
    running = Running(server, port)

    def serve() -> None:
        loop = asyncio.new_event_loop()
        running._loop = loop
        loop.run_until_complete(server.serve(sockets=[sock]))
        loop.close()

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
