"""Fast backends on loopback for the telemetry benchmark, in a process of their own.

    python benchmarks/sinks.py            # prints one JSON line with the URLs, then serves until stdin closes
    python benchmarks/sinks.py --record   # the same, and it keeps what identifies each span and run

* OTLP/HTTP: ``POST /v1/traces`` answers 200 with an empty ``ExportTraceServiceResponse`` (protobuf);
  it counts requests, bytes and spans (the spans are counted from the protobuf, so the benchmark can
  check that every span arrived).
* LangSmith: ``GET /info`` with ``batch_ingest_config`` (multipart on, zstd allowed) and ``POST
  /runs/multipart``, ``POST /runs/batch``, ``POST /runs`` and ``PATCH /runs/<id>``, all answered 202;
  it counts requests, bytes and run operations (multipart parts named ``post.<id>`` or ``patch.<id>``).
* ``GET /stats`` on either: the counts as JSON.
* With ``--record`` (the overload benchmark, ``overload.py``), each sink also keeps one record per span
  or run operation it received, so traces can be checked whole: OTLP ``[trace_id, span_id,
  parent_span_id, name, ended]`` (hex ids, ``""`` for no parent; ``ended`` when the span has an end
  time), LangSmith ``[op, run_id, trace_id, parent_run_id, ended]`` (``op`` is ``post`` or ``patch``;
  UUID strings, ``""`` when the operation does not say; ``ended`` when it carries an ``end_time``).
  ``GET /records`` answers ``{"records": [...]}``; ``GET /records?clear=1`` also forgets them.

They run in a separate process so that their parsing never takes the benchmark's GIL: on this 2-core
machine they share the second core with the export workers' I/O, as a collector on loopback would.
Standard library only, plus ``zstandard`` (a dependency of the langsmith SDK) to read compressed uploads
and ``opentelemetry-proto`` (a dependency of the OTLP exporter) to count spans.
"""

from __future__ import annotations

import argparse
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
#: A multipart part's main JSON (the run minus inputs, outputs, events...): ``name="post.<id>"``.
_MAIN_PART = re.compile(rb'name="(post|patch)\.([0-9a-f-]+)"')
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


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


class Records:
    """What identifies every span or run operation received (``--record``), for whole-trace checks."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.lock = threading.Lock()
        self.items: list[list[Any]] = []

    def extend(self, items: list[list[Any]]) -> None:
        if self.enabled and items:
            with self.lock:
                self.items.extend(items)

    def take(self, clear: bool) -> list[list[Any]]:
        with self.lock:
            items = self.items
            if clear:
                self.items = []
            return list(items)


def _spans_in(body: bytes, records: Records) -> int:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    except ImportError:  # counted as unknown
        return 0
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    if not records.enabled:
        return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)
    found = [
        [
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            span.name,
            span.end_time_unix_nano > 0,
        ]
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    records.extend(found)
    return len(found)


def _run_record(op: str, run: dict[str, Any], run_id: str = "") -> list[Any]:
    """``[op, run_id, trace_id, parent_run_id, ended]`` of one LangSmith run operation."""
    return [
        op,
        str(run.get("id") or run_id),
        str(run.get("trace_id") or ""),
        str(run.get("parent_run_id") or ""),
        bool(run.get("end_time")),
    ]


def _multipart_records(body: bytes, content_type: str) -> list[list[Any]]:
    """The run operations of a ``/runs/multipart`` body: one per ``post.<id>`` / ``patch.<id>`` part."""
    match = _BOUNDARY.search(content_type)
    if match is None:
        return []
    found = []
    for part in body.split(b"--" + match.group(1).encode()):
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = _MAIN_PART.search(head)  # the closing quote leaves out "post.<id>.inputs" and the like
        if name is None:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        try:
            run = json.loads(content)
        except ValueError:
            run = {}
        found.append(_run_record(name.group(1).decode(), run, name.group(2).decode()))
    return found


def _handler(kind: str, counts: Counts, records: Records) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The headers and the body of an answer are two writes: with Nagle on, the body waits for the
        # client's delayed ACK (40 ms a request on Linux), and the SDK's uploads measured that, not us.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
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
            elif self.path.startswith("/records"):
                taken = records.take(clear="clear=1" in self.path)
                self._answer(200, json.dumps({"records": taken}).encode(), "application/json")
            elif self.path.startswith("/info") and kind == "langsmith":
                self._answer(200, json.dumps(INFO).encode(), "application/json")
            else:
                self._answer(404, b"{}", "application/json")

        def do_POST(self) -> None:
            body = self._body()
            if kind == "otlp":
                spans = _spans_in(body, records) if self.path.startswith("/v1/traces") else 0
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
                if records.enabled:
                    records.extend(_multipart_records(body, self.headers.get("Content-Type", "")))
            elif self.path.startswith("/runs/batch"):
                document = json.loads(body or b"{}")
                posts, patches = len(document.get("post") or ()), len(document.get("patch") or ())
                if records.enabled:
                    records.extend([_run_record(op, run) for op in ("post", "patch") for run in document.get(op) or ()])
            elif self.path.rstrip("/") == "/runs":
                posts = 1
                if records.enabled:
                    records.extend([_run_record("post", json.loads(body or b"{}"))])
            counts.add(requests=1, bytes=size, posts=posts, patches=patches)
            self._answer(202, b"{}", "application/json")

        def do_PATCH(self) -> None:
            body = self._body()
            counts.add(requests=1, bytes=len(body), patches=1)
            if records.enabled and self.path.startswith("/runs/"):
                run_id = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                records.extend([_run_record("patch", json.loads(body or b"{}"), run_id)])
            self._answer(202, b"{}", "application/json")

    return Handler


def serve(record: bool = False, servers: list[ThreadingHTTPServer] | None = None) -> dict[str, str]:
    """Start both stand-ins on loopback; their URLs. ``servers`` (if given) gets the servers, to shut down."""
    urls = {}
    for kind in ("otlp", "langsmith"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kind, Counts(), Records(record)))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name=f"sink-{kind}", daemon=True).start()
        urls[kind] = f"http://127.0.0.1:{server.server_address[1]}"
        if servers is not None:
            servers.append(server)
    return urls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="loopback OTLP and LangSmith stand-ins")
    parser.add_argument("--record", action="store_true", help="keep the ids of every span and run (GET /records)")
    urls = serve(parser.parse_args(argv).record)
    print(json.dumps(urls), flush=True)
    sys.stdin.read()  # serve until the benchmark closes our stdin (or exits)


if __name__ == "__main__":
    main()
