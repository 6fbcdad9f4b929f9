"""``OtlpHttpSender``: the plugin's own OTLP/HTTP span exporter, the one it builds from ``OTEL_*``.

It posts ``ExportTraceServiceRequest`` protobuf bytes to the traces endpoint with the standard settings:
``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``, ``_HEADERS``, ``_COMPRESSION`` (gzip, deflate, none),
``_TIMEOUT`` (seconds, as the Python SDK reads it) and ``_CERTIFICATE`` / ``_CLIENT_CERTIFICATE`` /
``_CLIENT_KEY``. A batch from the plugin's span builder (:class:`~._wire.EncodedBatch`) brings its bytes,
written by :mod:`._wire`; any other sequence of spans is encoded by the SDK's ``encode_spans``. It is
the plugin's own object: no other library's module or object is changed.

Being its own, it decides its retries, and keeps stderr quiet (every failure is counted, in
``failures`` and ``last_error``, and in the sender's and the pipeline's stats; nothing is logged above
DEBUG):

* a refused connection (nothing listens) fails at once: the sender rests before the next batch;
* 429, 502, 503 and 504 and a dropped connection are tried again, 0.5 s then doubling, within the one
  export's timeout (a ``Retry-After`` shorter than what is left is honoured);
* after :meth:`last_attempt` (the tracer is shutting down, at exit too) each batch gets one try, no
  backoff; :meth:`shutdown` also ends a backoff in progress. So at exit a refused collector costs no
  wait, and only one that accepts and hangs holds the exit, for at most the timeout (cut to
  ``TRACEDAGENT_EXIT_TIMEOUT`` when ``OTEL_*`` sets none) and never past the exit deadline, when the core
  abandons what is left.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import ssl
import threading
import time
import urllib.parse
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.re import parse_env_headers

from tracedagent import ConfigurationError

from . import _names as N
from . import _settings

__all__ = ["OtlpHttpSender"]

logger = logging.getLogger("tracedagent.otlp")

_RETRYABLE = frozenset({429, 502, 503, 504})
FIRST_BACKOFF_S = 0.5
_COMPRESSIONS = ("none", "gzip", "deflate")
_DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"


def _env(environ: Mapping[str, str], name: str) -> str:
    """``OTEL_EXPORTER_OTLP_TRACES_{name}``, else ``OTEL_EXPORTER_OTLP_{name}``, else empty."""
    return (environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(f"OTEL_EXPORTER_OTLP_{name}") or "").strip()


class OtlpHttpSender(SpanExporter):
    """Posts batches of spans as OTLP/HTTP protobuf. Used from one thread at a time (the tracer's
    sender); :meth:`shutdown` and :meth:`last_attempt` may come from any thread."""

    #: Read by :class:`~._sinks.ExporterSink`: this exporter takes the builder's encoded batches.
    takes_encoded_batches = True

    def __init__(
        self,
        endpoint: str = _DEFAULT_ENDPOINT,
        *,
        headers: Mapping[str, str] | None = None,
        compression: str = "none",
        timeout: float = _settings.OTEL_DEFAULT_TIMEOUT_S,
        certificate_file: str | None = None,
        client_certificate_file: str | None = None,
        client_key_file: str | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(f"OTLP endpoint {endpoint!r} is not an http(s) URL such as {_DEFAULT_ENDPOINT}")
        if compression not in _COMPRESSIONS:
            raise ConfigurationError(f"OTLP compression {compression!r}: use one of {', '.join(_COMPRESSIONS)}")
        self.endpoint = endpoint
        self.compression = compression
        self.timeout = timeout
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": f"tracedagent-otlp/{N.SCOPE_VERSION}",
            **{key.lower(): value for key, value in (headers or {}).items()},
        }
        if compression != "none":
            self._headers["Content-Encoding"] = compression
        self._ssl: ssl.SSLContext | None = None
        if self._https:
            self._ssl = ssl.create_default_context(cafile=certificate_file or None)
            if client_certificate_file:
                self._ssl.load_cert_chain(client_certificate_file, client_key_file or None)
        self._connection: http.client.HTTPConnection | None = None
        self._stop = threading.Event()
        self._final = False
        #: Failed exports, and what the last one was.
        self.failures = 0
        self.last_error: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> OtlpHttpSender:
        """The sender the ``OTEL_EXPORTER_OTLP_*`` variables describe. Without a timeout variable the
        timeout is OpenTelemetry's 10 s cut to ``TRACEDAGENT_EXIT_TIMEOUT``."""
        timeout = _settings.export_timeout_from_env(environ)
        if timeout is None:
            raw = _env(environ, "TIMEOUT")
            try:
                timeout = float(raw)
            except ValueError:
                raise ConfigurationError(
                    f"OTEL_EXPORTER_OTLP_TIMEOUT={raw!r} is not a number of seconds; set it to, say, 10"
                ) from None
        compression = _env(environ, "COMPRESSION").lower() or "none"
        return cls(
            _settings.endpoint_from_env(environ) or _DEFAULT_ENDPOINT,
            headers=parse_env_headers(_env(environ, "HEADERS"), liberal=True),
            compression=compression,
            timeout=timeout,
            certificate_file=_env(environ, "CERTIFICATE") or None,
            client_certificate_file=_env(environ, "CLIENT_CERTIFICATE") or None,
            client_key_file=_env(environ, "CLIENT_KEY") or None,
        )

    # ------------------------------------------------------------------------------- SpanExporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stop.is_set() and not self._final:
            return self._fail("the exporter was shut down")
        try:
            data = self._body(spans)
        except Exception as exc:
            return self._fail(f"the spans could not be encoded: {exc!r}")
        if self.compression == "gzip":
            data = gzip.compress(data, compresslevel=6)
        elif self.compression == "deflate":
            data = zlib.compress(data)
        deadline = time.monotonic() + self.timeout
        backoff = FIRST_BACKOFF_S
        while True:
            left = deadline - time.monotonic()
            status, why, retry_after = self._post(data, max(0.001, left))
            if status is not None and 200 <= status < 300:
                return SpanExportResult.SUCCESS
            retryable = (why is None and status in _RETRYABLE) or why == "the connection dropped"
            reason = why or f"HTTP {status}"
            if not retryable or self._final or self._stop.is_set():
                return self._fail(reason)
            wait = backoff if retry_after is None else retry_after
            if time.monotonic() + wait >= deadline:
                return self._fail(f"{reason}, and the export's {self.timeout:g} s timeout leaves no time to retry")
            if self._stop.wait(wait):
                return self._fail(f"{reason}; shut down while waiting to retry")
            backoff *= 2

    def last_attempt(self) -> None:
        """From now on one try per batch, without backoff (the tracer is shutting down)."""
        self._final = True
        self._stop.set()

    def shutdown(self) -> None:
        self._stop.set()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    # ----------------------------------------------------------------------------------- the wire

    def _body(self, spans: Sequence[ReadableSpan]) -> bytes:
        encoded = getattr(spans, "encoded", None)
        if encoded is not None:
            data: bytes = encoded()
            return data
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        data = encode_spans(spans).SerializePartialToString()
        return data

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        connection = self._connection
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._connection = connection
        else:
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        return connection

    def _post(self, data: bytes, timeout: float) -> tuple[int | None, str | None, float | None]:
        """One request: (HTTP status, None, Retry-After seconds) or (None, why it failed, None)."""
        connection = self._connect(timeout)
        try:
            connection.request("POST", self._path, body=data, headers=self._headers)
            response = connection.getresponse()
            response.read()
        except ConnectionRefusedError:
            self._drop_connection()
            return None, f"the connection to {self.endpoint} was refused", None
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            if isinstance(exc, TimeoutError):
                return None, f"{self.endpoint} did not answer within {timeout:.3g} s", None
            if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
                return None, "the connection dropped", None
            return None, f"{exc!r}", None
        if response.will_close:
            self._drop_connection()
        return response.status, None, _retry_after(response.getheader("Retry-After"))

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _fail(self, why: str) -> SpanExportResult:
        self.failures += 1
        self.last_error = why
        logger.debug("tracedagent-otlp: export to %s failed: %s", self.endpoint, why)
        return SpanExportResult.FAILURE

    def __repr__(self) -> str:
        return f"OtlpHttpSender({self.endpoint!r})"


def _retry_after(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
