"""A LangSmith capture server on loopback: it speaks what the langsmith SDK's tracing expects.

* ``GET /info``: the server's version, ``batch_ingest_config`` (every field the SDK reads: whether to use
  the multipart endpoint, the batch size limits, the thread scale-up and scale-down triggers) and
  ``instance_flags`` (``zstd_compression_enabled`` makes the SDK compress its uploads);
* ``POST /runs/multipart``: the SDK's multipart form (``post.<id>``, ``post.<id>.inputs``,
  ``patch.<id>.outputs``, ... parts, each JSON), zstd-compressed when the server said it may be;
* ``POST /runs/batch`` (``{"post": [...], "patch": [...]}``) when multipart is off;
* ``POST /runs`` and ``PATCH /runs/<id>``, the SDK's one-run fallbacks.

Every request is kept (method, path, headers, decompressed body) and every run operation is applied the
way LangSmith applies it: a post creates the run, a patch sets the fields it carries (not the nulls).
The server can also fail (``mode="error"``: 500 for everything) or hang (``mode="slow"``: answer only
when released, or after a long guard; ``mode="slow-ingest"``: the same for uploads only, so the SDK
reads /info and compresses).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zstandard

SLOW_GUARD_S = 60.0  # a slow server answers after this at the latest (a guard, never waited for in a test)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # decompressed


@dataclass
class Op:
    operation: str  # "post" or "patch"
    run: dict[str, Any]
    endpoint: str


def info_document(*, multipart: bool = True, zstd: bool = True) -> dict[str, Any]:
    return {
        "version": "0.0.0-capture",
        "license_expiration_time": None,
        "batch_ingest_config": {
            "use_multipart_endpoint": multipart,
            "size_limit": 100,
            "size_limit_bytes": 20_971_520,
            "scale_up_qsize_trigger": 1000,
            "scale_up_nthreads_limit": 16,
            "scale_down_nempty_trigger": 4,
        },
        "instance_flags": {
            "zstd_compression_enabled": zstd,
            "dataset_examples_multipart_enabled": True,
            "examples_multipart_enabled": True,
        },
    }


def parse_multipart(body: bytes, boundary: str) -> list[tuple[str, bytes]]:
    """The ``(name, data)`` parts of a multipart/form-data body (each part's Content-Length is used when
    given, so a part's bytes are taken exactly)."""
    delimiter = b"--" + boundary.encode()
    parts: list[tuple[str, bytes]] = []
    position = body.find(delimiter)
    while position != -1:
        position += len(delimiter)
        if body[position : position + 2] == b"--":  # the closing delimiter
            break
        position += 2  # CRLF after the delimiter
        head_end = body.index(b"\r\n\r\n", position)
        head = body[position:head_end].decode("latin-1")
        data_start = head_end + 4
        name_match = re.search(r'name="([^"]+)"', head)
        assert name_match is not None, f"a multipart part without a name: {head!r}"
        length_match = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
        if length_match is not None:
            data_end = data_start + int(length_match.group(1))
            next_position = body.find(delimiter, data_end)
        else:
            next_position = body.find(delimiter, data_start)
            data_end = next_position - 2  # the CRLF before the next delimiter
        parts.append((name_match.group(1), body[data_start:data_end]))
        position = next_position
    return parts


def ops_from_multipart(parts: list[tuple[str, bytes]], endpoint: str) -> list[Op]:
    """Rebuild run operations from ``post.<id>`` / ``post.<id>.<field>`` parts, in order."""
    ops: dict[tuple[str, str], Op] = {}
    for name, data in parts:
        pieces = name.split(".")
        operation, run_id = pieces[0], pieces[1]
        if operation not in ("post", "patch"):
            continue  # feedback or attachments: not sent by this tracer
        key = (operation, run_id)
        op = ops.get(key)
        if op is None:
            op = ops[key] = Op(operation, {"id": run_id}, endpoint)
        value = json.loads(data)
        if len(pieces) == 2:
            op.run.update(value)
        else:
            op.run[pieces[2]] = value
    return list(ops.values())


class CaptureServer:
    """A LangSmith API stand-in on ``127.0.0.1``; ``url`` is what ``LANGSMITH_ENDPOINT`` should be."""

    def __init__(self, *, mode: str = "ok", multipart: bool = True, zstd: bool = True) -> None:
        self.mode = mode
        self.info = info_document(multipart=multipart, zstd=zstd)
        self.requests: list[Request] = []
        self.ops: list[Op] = []
        self.release = threading.Event()
        self._lock = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self, method: str) -> None:
                raw = self._read_body()
                if self.headers.get("Content-Encoding", "").lower() == "zstd":
                    raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
                request = Request(method, self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                server._record(request)
                hang = server.mode == "slow" or (server.mode == "slow-ingest" and request.path.startswith("/runs"))
                if hang:
                    server.release.wait(SLOW_GUARD_S)
                if server.mode == "error":
                    self._answer(500, {"detail": "capture server: failing on purpose"})
                else:
                    self._answer(*server._route(request))

            def _answer(self, status: int, document: Any) -> None:
                data = json.dumps(document).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (slow mode)
                    pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="langsmith-capture", daemon=True)

    def start(self) -> CaptureServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------------------ the API

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()

    def _route(self, request: Request) -> tuple[int, Any]:
        path = request.path.split("?", 1)[0]
        if request.method == "GET" and path == "/info":
            return 200, self.info
        if request.method == "POST" and path == "/runs/multipart":
            match = re.search(r"boundary=([^;\s]+)", request.headers.get("content-type", ""))
            assert match is not None, "a multipart request without a boundary"
            self._apply(ops_from_multipart(parse_multipart(request.body, match.group(1).strip('"')), path))
            return 202, {}
        if request.method == "POST" and path == "/runs/batch":
            document = json.loads(request.body)
            ops = [Op(kind, run, path) for kind in ("post", "patch") for run in document.get(kind) or ()]
            self._apply(ops)
            return 202, {}
        if request.method == "POST" and path == "/runs":
            self._apply([Op("post", json.loads(request.body), path)])
            return 202, {}
        if request.method == "PATCH" and path.startswith("/runs/"):
            run = json.loads(request.body)
            run.setdefault("id", path.rsplit("/", 1)[1])
            self._apply([Op("patch", run, path)])
            return 202, {}
        return 404, {"detail": f"capture server: no {request.method} {path}"}

    def _apply(self, ops: list[Op]) -> None:
        with self._lock:
            self.ops.extend(ops)
            self._lock.notify_all()

    # ---------------------------------------------------------------------------- for tests

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every run as LangSmith would hold it: created by its post, changed by its patches in order."""
        runs: dict[str, dict[str, Any]] = {}
        with self._lock:
            ops = list(self.ops)
        for op in ops:
            run_id = str(uuid.UUID(str(op.run["id"])))
            if op.operation == "post":
                runs[run_id] = {**runs.get(run_id, {}), **op.run}
            else:
                runs.setdefault(run_id, {}).update({k: v for k, v in op.run.items() if v is not None})
        return runs

    def ingest_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/runs")]

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait (at most ``timeout``, a guard) until ``predicate()`` holds, re-checked on each request."""
        with self._lock:
            return self._lock.wait_for(predicate, timeout)

    def raw(self) -> Iterator[tuple[str, bytes]]:
        """Everything each request carried besides its headers: the request line and the body."""
        with self._lock:
            requests = list(self.requests)
        for request in requests:
            yield f"{request.method} {request.path}", request.body


@contextmanager
def capture_server(**kwargs: Any) -> Iterator[CaptureServer]:
    server = CaptureServer(**kwargs).start()
    try:
        yield server
    finally:
        server.close()
