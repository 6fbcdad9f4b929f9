"""What every HTTP provider shares: the client, headers with trace context, retries and error mapping.

A provider subclasses :class:`HTTPModel` and writes three things: the request body (``_payload``),
its headers (``_auth_headers``), and how its server-sent events become stream parts (``_parts``).
Opening the stream is retried (429, 408, 409, 5xx, connection errors and timeouts before the answer
starts) with exponential backoff and full jitter, honouring ``Retry-After`` (seconds or an HTTP date);
each retry fires the ``on_retry`` hook through the request. Once the answer has started streaming
nothing is retried: a stream that breaks is a :class:`ModelStreamError`, never a silently short answer.
Retries use tenacity; server-sent events are parsed by httpx-sse.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import httpx_sse
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from .._model import ModelRequest, ModelStreamPart
from .._otel import outgoing
from ..exceptions import ConfigurationError, ModelConnectionError, ModelError, ModelHTTPError, ModelStreamError

__all__ = ["HTTPModel"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms`` (as OpenAI sends) or ``Retry-After``."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"))


def _positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigurationError(f"{name} must be a positive number, not {value!r}")


class _Retryable(Exception):
    """An attempt failed in a way worth another try; carries the typed error for the final failure."""

    def __init__(self, error: ModelError, retry_after: float | None = None, cause: BaseException | None = None):
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.cause = cause


class HTTPModel:
    """The shared half of an HTTP model provider. Subclasses set ``provider`` and implement
    ``_endpoint``, ``_payload``, ``_auth_headers``, ``_parts`` and ``_error_message``."""

    provider: str = "http"
    #: The environment variable a subclass reads its base URL from, named in configuration errors.
    base_url_env: str | None = None

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 600.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 120.0,
        max_retries: int = 3,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a model needs a name such as 'gpt-4o-mini', not {name!r}")
        for label, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("retry_initial_delay", retry_initial_delay),
            ("retry_max_delay", retry_max_delay),
        ):
            _positive(label, value)
        _positive("max_retry_after", max_retry_after, allow_zero=True)
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be a whole number >= 0, not {max_retries!r}")
        where = f"base_url= or {self.base_url_env}" if self.base_url_env else "base_url="
        try:
            url = httpx.URL(base_url)
            host, port = url.host, url.port
        except Exception as exc:  # httpx.InvalidURL, and idna's errors for a host it cannot encode
            raise ConfigurationError(
                f"{self.provider} base URL {base_url!r} ({where}) is not a valid URL: {exc}"
            ) from None
        if url.scheme not in ("http", "https") or not host or (port is not None and not 0 < port < 65536):
            raise ConfigurationError(
                f"{self.provider} base URL must be an http(s) URL such as https://api.openai.com/v1, with a port "
                f"from 1 to 65535 if any, not {base_url!r} ({where})"
            )
        self._name = name
        self.base_url = str(base_url).rstrip("/")
        self._api_key = api_key
        self.headers = dict(headers or {})
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout, read=read_timeout)
        self.max_retries = max_retries
        self.retry_initial_delay = retry_initial_delay
        self.retry_max_delay = retry_max_delay
        self.max_retry_after = max_retry_after
        self._client = client
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self._name!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------------------ for subclasses

    def _endpoint(self) -> str:
        raise NotImplementedError

    def _payload(self, request: ModelRequest) -> dict[str, Any]:
        raise NotImplementedError

    def _auth_headers(self) -> dict[str, str]:
        raise NotImplementedError

    def _parts(
        self, events: AsyncIterator[httpx_sse.ServerSentEvent], request: ModelRequest
    ) -> AsyncIterator[ModelStreamPart]:
        raise NotImplementedError

    def _error_message(self, body: bytes) -> str:
        """The provider's own explanation, from an error response's body."""
        return body.decode("utf-8", "replace")[:500]

    # --------------------------------------------------------------------------------- the work

    def client(self) -> httpx.AsyncClient:
        """The HTTP client: the one given, or one per event loop (an ``asyncio.run`` per ``run_sync``)."""
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        entry = self._clients.get(id(loop))
        if entry is None or entry[0] is not loop:
            for key, (old_loop, _) in list(self._clients.items()):
                if old_loop.is_closed():
                    del self._clients[key]
            entry = (loop, httpx.AsyncClient(timeout=self.timeout))
            self._clients[id(loop)] = entry
        return entry[1]

    async def aclose(self) -> None:
        """Close the clients this model opened (not one it was given)."""
        for _, client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def redact(self, text: str) -> str:
        """``text`` with the API key removed, for messages that may echo it."""
        if self._api_key and self._api_key in text:
            return text.replace(self._api_key, "[redacted]")
        return text

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
        response = await self._open(request)
        try:
            events = self._events(response)
            async for part in self._parts(events, request):
                yield part
        finally:
            await response.aclose()

    async def _events(self, response: httpx.Response) -> AsyncIterator[httpx_sse.ServerSentEvent]:
        try:
            async for event in httpx_sse.EventSource(response).aiter_sse():
                yield event
        except httpx.TimeoutException as exc:
            raise ModelStreamError(
                f"{self.provider}:{self._name} stopped sending in the middle of its answer "
                f"(read timeout {self.timeout.read}s); the answer is incomplete"
            ) from exc
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise ModelStreamError(
                f"{self.provider}:{self._name} closed the connection in the middle of its answer "
                f"({type(exc).__name__}); the answer is incomplete"
            ) from exc

    def _headers(self, request: ModelRequest) -> dict[str, str]:
        headers = {"accept": "text/event-stream", **self.headers, **self._auth_headers()}
        span = request.span
        if span is not None:
            # The exported chat span's ids (the core's, unless a tracer's provider picked others).
            headers["traceparent"], tracestate = outgoing(span)
            if tracestate:
                headers["tracestate"] = tracestate
        return headers

    async def _open(self, request: ModelRequest) -> httpx.Response:
        client = self.client()
        url = f"{self.base_url}{self._endpoint()}"
        payload = self._payload(request)
        headers = self._headers(request)
        attempts = 0

        async def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            try:
                response = await client.send(
                    client.build_request("POST", url, json=payload, headers=headers), stream=True
                )
            except _TRANSIENT as exc:
                kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
                raise _Retryable(
                    ModelConnectionError(
                        f"request to {self.provider}:{self._name} at {self.base_url} {kind}: {type(exc).__name__}"
                        f"{': ' + self.redact(str(exc)) if str(exc) else ''}",
                        attempts=attempts,
                    ),
                    cause=exc,
                ) from exc
            if response.status_code < 400:
                return response
            try:
                body = await response.aread()
            except httpx.HTTPError:
                body = b""
            finally:
                await response.aclose()
            provider_message = self.redact(self._error_message(body))
            error = ModelHTTPError(
                f"{self.provider}:{self._name} answered HTTP {response.status_code}: {provider_message}",
                status_code=response.status_code,
                provider_message=provider_message,
                attempts=attempts,
            )
            if response.status_code in RETRY_STATUSES:
                raise _Retryable(error, retry_after(response.headers))
            raise error

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return min(exc.retry_after, self.max_retry_after)
            return float(backoff(state))

        # full jitter: a random wait between 0 and initial * 2**attempt, capped at retry_max_delay
        backoff = wait_random_exponential(multiplier=self.retry_initial_delay, max=self.retry_max_delay)

        def before_sleep(state: RetryCallState) -> None:
            if request.on_retry is None or state.outcome is None:
                return
            exc = state.outcome.exception()
            error = exc.error if isinstance(exc, _Retryable) else exc
            delay = state.next_action.sleep if state.next_action else 0.0
            if error is not None:
                request.on_retry(state.attempt_number, float(delay), error)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except _Retryable as final:
            error = final.error
            error.args = (f"{error.args[0]} (gave up after {attempts} attempts)",) if attempts > 1 else error.args
            if isinstance(error, (ModelHTTPError, ModelConnectionError)):
                error.attempts = attempts
            raise error from final.cause
