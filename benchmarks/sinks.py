"""Fast backends on loopback for the telemetry benchmark, in a process of their own.

    python benchmarks/sinks.py        # prints one JSON line with the URLs, then serves until stdin closes

* OTLP/HTTP: ``POST /v1/traces`` answers 200 with an empty ``ExportTraceServiceResponse`` (protobuf);
  it counts requests, bytes and spans (the spans are counted from the protobuf, so the benchmark can
  check that every span arrived).
* LangSmith: ``GET /info`` with ``batch_ingest_config`` (multipart on, zstd allowed) and ``POST
  /runs/multipart``, ``POST /runs/batch``, ``POST /runs`` and ``PATCH /runs/<id>``, all answered 202;
  it counts requests, bytes and run operations (multipart parts named ``post.<id>`` or ``patch.<id>``).
* ``GET /stats`` on either: the counts as JSON.

They run in a separate process so that their parsing never takes the benchmark's GIL: on this 2-core
machine they share the second core with the export workers' I/O, as a collector on loopback would.
Standard library only, plus ``zstandard`` (a dependency of the langsmith SDK) to read compressed uploads
and ``opentelemetry-proto`` (a dependency of the OTLP exporter) to count spans.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INFO = {
    "version": "0.0.0-benchmark",
    "license_expiration_time": None,
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
    },
    "instance_flags": {
        "zstd_compression_enabled": True,
        "dataset_examples_multipart_enabled": True,
        "examples_multipart_enabled": True,
    },
}

_PART = re.compile(rb'name="(post|patch)\.[0-9a-f-]+"')


class Counts:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {"requests": 0, "bytes": 0, "spans": 0, "posts": 0, "patches": 0}

    def add(self, **kw: int) -> None:
        with self.lock:
            for key, value in kw.items():
                self.values[key] += value

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.values)


def _spans_in(body: bytes) -> int:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError:  # counted as unknown
        return 0
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def _handler(kind: str, counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body of an answer are two writes: with Nagle on, the body waits for the
        # client's delayed ACK (40 ms a request on Linux), and the SDK's uploads measured that, not us.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
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

        def _answer(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._body()
            if self.path.startswith("/stats"):
                self._answer(200, json.dumps(counts.snapshot()).encode(), "application/json")
            elif self.path.startswith("/info") and kind == "langsmith":
                self._answer(200, json.dumps(INFO).encode(), "application/json")
            else:
                self._answer(404, b"{}", "application/json")

        def do_POST(self) -> None:
            body = self._body()
            if kind == "otlp":
                spans = _spans_in(body) if self.path.startswith("/v1/traces") else 0
                counts.add(requests=1, bytes=len(body), spans=spans)
                self._answer(200, b"", "application/x-protobuf")
                return
            size = len(body)
            if self.headers.get("Content-Encoding", "").lower() == "zstd":
                import zstandard

                body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
            posts = patches = 0
            if self.path.startswith("/runs/multipart"):
                for match in _PART.finditer(body):
                    if match.group(1) == b"post":
                        posts += 1
                    else:
                        patches += 1
            elif self.path.startswith("/runs/batch"):
                document = json.loads(body or b"{}")
                posts, patches = len(document.get("post") or ()), len(document.get("patch") or ())
            elif self.path.rstrip("/") == "/runs":
                posts = 1
            counts.add(requests=1, bytes=size, posts=posts, patches=patches)
            self._answer(202, b"{}", "application/json")

        def do_PATCH(self) -> None:
            size = len(self._body())
            counts.add(requests=1, bytes=size, patches=1)
            self._answer(202, b"{}", "application/json")

    return Handler


def serve() -> dict[str, str]:
    urls = {}
    for kind in ("otlp", "langsmith"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kind, Counts()))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"sink-{kind}", daemon=True).start()
        host, port = server.server_address[:2]
        urls[kind] = f"http://{host}:{port}"
    return urls


def main() -> None:
    urls = serve()
    print(json.dumps(urls), flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin (or exits)


if __name__ == "__main__":
    main()
