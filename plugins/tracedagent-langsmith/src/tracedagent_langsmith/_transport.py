"""The HTTP transport of the client the tracer builds: bounded retries, and an exit that cannot hang.

The langsmith SDK uploads on threads of its own that are not daemons (its tracing threads, and the
workers of its thread pool for compressed uploads, which Python also joins at exit), so Python waits for
them before the process can end. Against an endpoint that does not answer, each upload holds its thread
for its timeouts and retries: in a request, no flag can stop it. So the client this tracer builds sends
through :class:`ExitBoundAdapter`, which makes each request on a daemon thread of its own and waits for
it; at the exit deadline :meth:`ExitBoundAdapter.abandon` releases every waiting SDK thread at once
with a connection error (the request itself is left to its daemon thread, which does not hold the
process) and fails every later request at once, so the SDK's threads finish their queue in moments and
the process exits. Everything here uses only ``requests``' public adapter interface and the ``Client``'s
own ``session``, ``retry_config`` and ``timeout_ms`` parameters; the SDK's modules are not touched.

The SDK also logs on its own threads: a warning when the endpoint's ``/info`` does not offer zstd
compression ("Run compression is not enabled", which a local receiver or an older LangSmith never
offers, and which no client setting avoids but the process-wide ``LANGSMITH_DISABLE_RUN_COMPRESSION``),
and one for each upload that failed ("Failed to multipart ingest runs", "Failed to get info", with the
run ids), which its error callback already reports and the tracer counts. :class:`SdkNotices`, a filter
on the SDK's ``langsmith.client`` logger, keeps those records (WARNING and above) off the logs when they
come from a thread that sent through this tracer's adapter, the SDK's threads of the client the tracer
built, and counts them instead; every other record (an application's own client's among them) passes.

A client the application passes in (``LangSmithTracer(client=...)``) is its own: none of this applies
to it (see the README: its threads are the application's to bound, with ``LANGSMITH_USE_DAEMON=true`` or
``client.cleanup(timeout)``).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.util.retry import Retry

__all__ = [
    "COMPRESSION_NOTICE",
    "GIVEN_UP",
    "SDK_LOGGER",
    "TIMEOUT_MS",
    "ExitBoundAdapter",
    "SdkNotices",
    "bounded_retry",
    "exit_bound_session",
    "wrap_client_adapter",
]

#: The SDK's logger, and the start of the warning it logs when the endpoint does not offer compression.
SDK_LOGGER = "langsmith.client"
COMPRESSION_NOTICE = "Run compression is not enabled"

#: The message of the error an abandoned request ends with.
GIVEN_UP = "tracedagent: the process is exiting past TRACEDAGENT_EXIT_TIMEOUT; LangSmith upload given up"

#: (connect, read) timeouts of the client's API calls (its ``/info`` among them), in milliseconds. The
#: SDK's background uploads use their own, (3 s, 10 s).
TIMEOUT_MS = (3_000, 10_000)


def bounded_retry() -> Retry:
    """The transport retries of the client the tracer builds.

    The SDK already tries each upload three times itself, so the transport adds little: a refused or
    timed-out connection is not retried here (the SDK's next try comes at once), and a status that says
    "try later" (429, 5xx) is retried at most twice, 0.5 s then 1 s apart (or after ``Retry-After``).
    The SDK's default (three transport retries of every kind with backoff under each of its own three
    tries) keeps one upload to a dead endpoint going for over half a minute."""
    return Retry(
        total=2,
        connect=0,
        read=0,
        other=0,
        status=2,
        status_forcelist=(408, 425, 429, 500, 502, 503, 504),
        allowed_methods=None,  # every method: the SDK's uploads are POSTs and PATCHes
        backoff_factor=0.5,
        backoff_max=2.0,
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=True,
    )


class ExitBoundAdapter(BaseAdapter):
    """Sends through ``inner`` on a daemon thread per request and waits for it, until :meth:`abandon`:
    from then on a waiting request and every later one fail at once with ``requests.ConnectionError``.

    ``inner`` may be replaced (it is read at each send): the tracer mounts this adapter before the SDK's
    client mounts its own, then wraps the SDK's."""

    def __init__(self, inner: BaseAdapter) -> None:
        super().__init__()
        self.inner = inner
        self.abandoned = False
        #: Requests given up at :meth:`abandon` (in flight or later).
        self.given_up = 0
        self._lock = threading.Lock()
        self._waiting: set[threading.Event] = set()
        #: The threads that sent through this adapter (the SDK's threads of the client it serves).
        self.threads: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        done = threading.Event()
        outcome: list[tuple[bool, Any]] = []
        inner = self.inner
        self.threads.add(threading.current_thread())

        def send() -> None:
            try:
                response = inner.send(
                    request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
                )
                outcome.append((True, response))
            except BaseException as exc:  # handed to the waiting thread, which raises it
                outcome.append((False, exc))
            finally:
                done.set()

        with self._lock:
            if self.abandoned:
                self.given_up += 1
                raise requests.ConnectionError(GIVEN_UP, request=request)
            self._waiting.add(done)
        try:
            threading.Thread(target=send, name="tracedagent-langsmith-send", daemon=True).start()
            done.wait()
        finally:
            with self._lock:
                self._waiting.discard(done)
        if not outcome:  # released by abandon(): the request goes on, alone, on its daemon thread
            with self._lock:
                self.given_up += 1
            raise requests.ConnectionError(GIVEN_UP, request=request)
        ok, value = outcome[0]
        if ok:
            return value  # type: ignore[no-any-return]
        raise value

    def abandon(self) -> None:
        """Release every request waiting now and fail every later one, at once."""
        with self._lock:
            self.abandoned = True
            waiting = list(self._waiting)
        for done in waiting:
            done.set()

    def close(self) -> None:
        self.inner.close()


def exit_bound_session() -> tuple[requests.Session, ExitBoundAdapter]:
    """A session for the client the tracer builds, with an :class:`ExitBoundAdapter` already mounted (the
    client's first request, ``/info``, may start on the SDK's thread before the client mounts its own
    adapter; the tracer wraps that one as soon as the client is made)."""
    session = requests.Session()
    adapter = ExitBoundAdapter(HTTPAdapter(max_retries=bounded_retry()))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session, adapter


def wrap_client_adapter(session: requests.Session, adapter: ExitBoundAdapter) -> None:
    """After the SDK's client mounted its own adapter on ``session``: send through it, via ``adapter``."""
    for prefix in ("https://", "http://"):
        mounted = session.adapters.get(prefix)
        if mounted is not None and mounted is not adapter:
            adapter.inner = mounted
        session.mount(prefix, adapter)


class SdkNotices(logging.Filter):
    """On the SDK's logger: drops and counts the warnings and errors that come from a thread of
    ``adapter`` (the client the tracer built); every other record passes."""

    def __init__(self, adapter: ExitBoundAdapter) -> None:
        super().__init__()
        self.adapter = adapter
        #: Records kept off the logs.
        self.count = 0
        #: Of those, the "Run compression is not enabled" warnings.
        self.compression = 0
        #: The first record's message, cut to 200 characters (for ``tracedagent plugins``).
        self.first: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or threading.current_thread() not in self.adapter.threads:
            return True
        self.count += 1
        message = record.msg
        if isinstance(message, str) and message.startswith(COMPRESSION_NOTICE):
            self.compression += 1
        if self.first is None:
            try:
                self.first = record.getMessage()[:200]
            except Exception:
                self.first = str(message)[:200]
        return False
